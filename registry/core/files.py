"""Writing a file so that a reader (another process, a crash) sees the old file or the whole new
one, never half: a temporary file in the same folder, flushed, then ``os.replace``. Used for the
resolver's cache, pulled files, downloads, the login file and the local blob store."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def atomic_write(path: Path, data: bytes | Iterable[bytes], mode: int = 0o644, *, fsync: bool = True,
                 prefix: str | None = None, dir_mode: int = 0o777) -> Path:
    """Write ``data`` (bytes, or chunks as they arrive) to ``path`` atomically, with ``mode``.
    ``prefix`` names the temporary file (the blob store's gc finds stale ones by it)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix or f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in [data] if isinstance(data, bytes | bytearray | memoryview) else data:
                handle.write(chunk)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

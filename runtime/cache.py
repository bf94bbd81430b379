"""The runtime's local cache: content-addressed blobs plus the version records needed offline.

Layout under the cache root (default ``PSEUDOWORD_CACHE`` or ``~/.cache/pseudoword``)::

    blobs/sha256/<aa>/<digest>              canonical embedding files, named by their SHA-256
    refs/<source>/<model>/<version>.json    version records, for offline resolution
    refs/by-hash/<algo>/<value>             the ``source:model@version`` a hash points to
    locks/<digest>.lock                     one file lock per blob (cross-process safety)

Every write goes to a temporary file in the destination folder and is moved into place with
``os.replace``, so a reader never sees half a file. Several processes may share one cache: a
blob is fetched under its file lock, so concurrent resolutions of the same digest download once
and leave one intact file. Every read re-checks the SHA-256, so a corrupted file is noticed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock

from pseudoword.registry.core.errors import IntegrityError, InvalidResponse
from pseudoword.registry.core.files import atomic_write
from pseudoword.registry.core.hashes import HASH_LENGTHS
from pseudoword.registry.core.record import VersionRecord
from pseudoword.runtime.settings import default_cache_dir

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Hex digits of each hash reference: the community short hashes are SHA-256 prefixes.


def record_hashes(record: VersionRecord) -> dict[str, set[str]]:
    """Every hash reference that names ``record``: SHA-256 and short hashes of both the stored
    canonical file and the original upload (as the registry resolves them)."""
    digests = [d for d in (record.sha256, record.original_sha256) if isinstance(d, str) and _HEX64.match(d)]
    out = {algo: {d[:length] for d in digests} for algo, length in HASH_LENGTHS.items()}
    for algo, value in (("autov2", record.autov2), ("a1111", record.a1111_hash)):
        if isinstance(value, str):
            out[algo].add(value.lower())
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_if_changed(path: Path, data: bytes) -> None:
    """Atomic write of a small cache file, skipped when it already holds ``data``. No fsync:
    a record lost to a crash is only a cache miss (a torn one fails to parse: also a miss)."""
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    atomic_write(path, data, fsync=False)


def _check_digest(digest: str) -> str:
    if not _HEX64.match(digest):
        raise IntegrityError(f"not a SHA-256 digest: {digest!r}", {"digest": digest})
    return digest


class Cache:
    """Blobs and records on disk; see the module docstring for the layout and guarantees."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    # -- blobs -------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        _check_digest(digest)
        return self.root / "blobs" / "sha256" / digest[:2] / digest

    def _lock(self, digest: str) -> FileLock:
        lock_dir = self.root / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(lock_dir / f"{digest}.lock"))

    def verified_blob(self, digest: str) -> Path | None:
        """The cached file for ``digest`` if present; None if absent.

        Raises IntegrityError (and leaves the file for the caller to replace) when the bytes on
        disk no longer hash to ``digest``."""
        path = self.blob_path(digest)
        if not path.is_file():
            return None
        actual = sha256_file(path)
        if actual != digest:
            raise IntegrityError(
                f"cached file {path} is corrupted (sha256 {actual}, expected {digest})",
                {"path": str(path), "expected": digest, "actual": actual},
            )
        return path

    def put_blob(self, digest: str, data: bytes) -> Path:
        """Store ``data`` under ``digest`` after checking that it hashes to it."""
        actual = hashlib.sha256(data).hexdigest()
        if actual != _check_digest(digest):
            raise IntegrityError(
                f"downloaded bytes do not match sha256 {digest} (got {actual})",
                {"expected": digest, "actual": actual},
            )
        path = self.blob_path(digest)
        atomic_write(path, data)
        return path

    def fetch_blob(self, digest: str, download: Callable[[], bytes] | None) -> Path:
        """The verified file for ``digest``, downloading it (under the digest's file lock) when
        absent or corrupted. With ``download=None`` (offline) a miss raises LookupError and a
        corrupted file raises IntegrityError."""
        try:
            path = self.verified_blob(digest)
        except IntegrityError:
            if download is None:
                raise
            path = None
        if path is not None:
            return path
        if download is None:
            raise LookupError(digest)
        with self._lock(digest):
            try:  # another process may have fetched it while we waited for the lock
                path = self.verified_blob(digest)
            except IntegrityError:
                path = None
            if path is None:
                path = self.put_blob(digest, download())
        return path

    # -- records -----------------------------------------------------------------------------

    def _record_path(self, source: str, model: str, version: str) -> Path:
        for part in (source, model, version):
            if not _SAFE_PART.match(part):
                raise ValueError(f"unsafe name for the cache: {part!r}")
        return self.root / "refs" / source / model / f"{version}.json"

    def put_record(self, record: VersionRecord) -> None:
        """Remember a version record (and the hashes that point to it) for offline use."""
        source, model, version = record.source, record.model, record.version
        data = json.dumps(record.to_wire(), sort_keys=True, indent=1).encode()
        _write_if_changed(self._record_path(source, model, version), data)
        for algo, values in record_hashes(record).items():
            for value in values:
                if re.fullmatch(r"[0-9a-f]+", value) and len(value) == HASH_LENGTHS[algo]:
                    _write_if_changed(self.root / "refs" / "by-hash" / algo / value, record.id.encode())

    def get_record(self, source: str, model: str, version: str) -> VersionRecord | None:
        try:
            path = self._record_path(source, model, version)
        except ValueError:
            return None
        if not path.is_file():
            return None
        try:
            return VersionRecord.from_wire(json.loads(path.read_text()))
        except (OSError, ValueError, InvalidResponse):
            return None  # unreadable or from an older layout: asked of the registry again

    def records_of(self, source: str, model: str) -> Iterator[VersionRecord]:
        """Every cached record of one model, in no particular order."""
        try:
            folder = self._record_path(source, model, "x").parent
        except ValueError:
            return
        if not folder.is_dir():
            return
        for path in folder.glob("*.json"):
            record = self.get_record(source, model, path.stem)
            if record is not None:
                yield record

    def record_for_hash(self, algo: str, value: str) -> VersionRecord | None:
        """The cached record a hash reference names (checked against the record's own hashes)."""
        if HASH_LENGTHS.get(algo) != len(value) or not re.fullmatch(r"[0-9a-f]+", value):
            return None
        pointer = self.root / "refs" / "by-hash" / algo / value
        if not pointer.is_file():
            return None
        ref = pointer.read_text().strip()
        head, _, version = ref.partition("@")
        source, _, model = head.partition(":")
        record = self.get_record(source, model, version)
        if record is None or value not in record_hashes(record)[algo]:
            return None
        return record

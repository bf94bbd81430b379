"""Images asked for as ``outputType: URL``: written under the worker's data directory, served
at ``/images/{imageUUID}.{ext}`` for ``url_ttl`` seconds, then removed by a sweep (and never
served once expired, even before the sweep runs)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from pseudoword.registry.core.files import atomic_write

EXTENSIONS = {"PNG": "png", "JPG": "jpg", "WEBP": "webp"}
MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.(png|jpg|webp)$")


class ImageStore:
    def __init__(self, directory: Path, ttl: float) -> None:
        self.directory = directory
        self.ttl = ttl
        directory.mkdir(parents=True, exist_ok=True)

    def put(self, image_uuid: str, fmt: str, data: bytes) -> str:
        """Write the file atomically; returns its name."""
        name = f"{image_uuid}.{EXTENSIONS[fmt]}"
        atomic_write(self.directory / name, data, fsync=False)  # a URL image outlives no crash anyway
        return name

    def get(self, name: str) -> Path | None:
        """The file for ``name`` if it is one of ours and not expired."""
        if not _NAME.match(name):
            return None
        path = self.directory / name
        try:
            written = path.stat().st_mtime
        except OSError:
            return None
        return path if time.time() - written <= self.ttl else None

    def sweep(self) -> int:
        """Remove expired files (and parts left by a crash); returns how many."""
        removed = 0
        now = time.time()
        for path in self.directory.iterdir():
            try:
                if now - path.stat().st_mtime > self.ttl:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    def count(self) -> int:
        return sum(1 for _ in self.directory.iterdir())

"""The hashes people use to name embedding files."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Hashes:
    sha256: str  # 64 hex
    autov2: str  # Civitai's AutoV2: first 10 hex of the SHA-256
    a1111: str  # AUTOMATIC1111's embedding short hash: first 12 hex of the SHA-256


def file_hashes(data: bytes) -> Hashes:
    digest = hashlib.sha256(data).hexdigest()
    return Hashes(sha256=digest, autov2=digest[:10], a1111=digest[:12])

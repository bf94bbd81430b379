"""The hashes people use to name embedding files."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: The community short hashes: Civitai's AutoV2 and AUTOMATIC1111's embedding hash are the first
#: 10 and 12 hex digits of the file's SHA-256.
SHORT_HASH_LENGTHS: dict[str, int] = {"autov2": 10, "a1111": 12}
#: Every hash a reference may name, by the prefix it is written with (``sha256:``, ``autov2:``, ...).
HASH_LENGTHS: dict[str, int] = {"sha256": 64, **SHORT_HASH_LENGTHS}


def autov2(sha256: str) -> str:
    return sha256[: SHORT_HASH_LENGTHS["autov2"]]


def a1111_hash(sha256: str) -> str:
    return sha256[: SHORT_HASH_LENGTHS["a1111"]]


@dataclass(frozen=True)
class Hashes:
    sha256: str  # 64 hex
    autov2: str  # Civitai's AutoV2: first 10 hex of the SHA-256
    a1111: str  # AUTOMATIC1111's embedding short hash: first 12 hex of the SHA-256


def file_hashes(data: bytes) -> Hashes:
    digest = hashlib.sha256(data).hexdigest()
    return Hashes(sha256=digest, autov2=autov2(digest), a1111=a1111_hash(digest))

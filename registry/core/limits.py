"""Limits that protect every reader against oversized files and bombs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    #: The largest legitimate file is ~0.6 MB (75 SDXL vectors in float32); 8 MiB leaves room for
    #: pickles with padding and metadata while keeping a hostile upload cheap to refuse.
    max_file_bytes: int = 8 * 1024 * 1024
    #: Sum of the uncompressed sizes of a torch zip's members.
    max_decompressed_bytes: int = 32 * 1024 * 1024
    #: Tensors in one file (an embedding has one or two; A1111 files carry a few more entries).
    max_tensors: int = 16
    #: A safetensors JSON header.
    max_header_bytes: int = 1024 * 1024


DEFAULT_LIMITS = Limits()

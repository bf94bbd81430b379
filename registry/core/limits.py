"""Limits that protect every reader against oversized files, bombs and amplification: each one
bounds what a small input may make the registry allocate, store or send back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    #: The largest legitimate file is ~0.6 MB (75 SDXL vectors in float32); 8 MiB leaves room for
    #: pickles with padding and metadata while keeping a hostile upload cheap to refuse.
    max_file_bytes: int = 8 * 1024 * 1024
    #: Sum of the uncompressed sizes of a torch zip's members (75 SDXL vectors in float64 are
    #: 1.2 MB; a deflated member could otherwise expand a small file many times over).
    max_decompressed_bytes: int = 16 * 1024 * 1024
    #: A torch zip's pickle (data.pkl). Real files' are under 2 KB; the objects a pickle builds
    #: grow with its opcodes, so this bounds what unpickling can allocate.
    max_pickle_bytes: int = 64 * 1024
    #: Tensors in one file (an embedding has one or two; A1111 files carry a few more entries).
    max_tensors: int = 16
    #: A safetensors JSON header.
    max_header_bytes: int = 1024 * 1024
    #: Metadata kept from a file (name, A1111's step and checkpoint, safetensors __metadata__):
    #: it is stored in the canonical blob and in every record, so each value and the whole are
    #: capped (real files keep a few short strings).
    max_metadata_entries: int = 32
    max_metadata_key_chars: int = 128
    max_metadata_value_chars: int = 1024
    max_metadata_total_chars: int = 8 * 1024
    #: The name stored in a file (the trigger it suggests).
    max_name_chars: int = 128


DEFAULT_LIMITS = Limits()

#: References one ``POST /resolve`` may carry: the service refuses more, and the client splits a
#: longer list into requests of at most this many.
MAX_RESOLVE_REFS = 256
#: Results in one search page (the client pages through more).
MAX_SEARCH_PAGE = 100

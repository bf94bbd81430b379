"""Reference grammar: ``SOURCE:MODEL[@VERSION]``, Civitai's AIR form, and hash references.

Grammar (DESIGN "Identifiers"):
- ``SOURCE:MODEL[@VERSION]``; SOURCE ``[a-z0-9][a-z0-9_-]{0,63}``, MODEL and VERSION
  ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``.
- ``urn:air:ECOSYSTEM:embedding:SOURCE:MODEL[@VERSION]`` with ECOSYSTEM one of sd1, sd2, sdxl.
- ``sha256:<64 hex>``; AutoV2 (10 hex) and AUTOMATIC1111's short hash (12 hex), bare or as
  ``autov2:<hex>`` / ``a1111:<hex>``. The prefixes are reserved source names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pseudoword.registry.core.embedding import ARCHITECTURES
from pseudoword.registry.core.errors import InvalidReference
from pseudoword.registry.core.hashes import HASH_LENGTHS

SOURCE_RE = r"[a-z0-9][a-z0-9_-]{0,63}"
NAME_RE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_MODEL_REF = re.compile(rf"(?P<source>{SOURCE_RE}):(?P<model>{NAME_RE})(?:@(?P<version>{NAME_RE}))?")
_AIR = re.compile(r"urn:air:(?P<eco>[^:]*):(?P<type>[^:]*):(?P<rest>.*)")
_HEX = re.compile(r"[0-9a-fA-F]+")

HashAlgo = Literal["sha256", "autov2", "a1111"]
#: Length of each hash reference's hex digits.
_ALGO_BY_LENGTH = {length: algo for algo, length in HASH_LENGTHS.items()}
RESERVED_SOURCES = frozenset({*HASH_LENGTHS, "urn"})
MAX_REF_LENGTH = 512


@dataclass(frozen=True)
class ModelRef:
    """A reference to a model, optionally pinned to a version; ``ecosystem`` is set when the
    reference was written as a full AIR and must then match the stored architecture."""

    source: str
    model: str
    version: str | None = None
    ecosystem: str | None = None

    def __str__(self) -> str:
        return f"{self.source}:{self.model}" + (f"@{self.version}" if self.version else "")

    @property
    def model_id(self) -> str:
        return f"{self.source}:{self.model}"

    def with_version(self, version: str) -> ModelRef:
        return ModelRef(self.source, self.model, version, self.ecosystem)

    def air(self, architecture: str | None = None) -> str:
        eco = architecture or self.ecosystem
        if eco is None:
            raise InvalidReference(f"cannot write {self} as an AIR without an architecture")
        return f"urn:air:{eco}:embedding:{self}"


@dataclass(frozen=True)
class HashRef:
    """A reference by file hash: a full SHA-256 or one of the community short hashes, which are
    prefixes of the SHA-256 (of the uploaded or of the canonical file)."""

    algo: HashAlgo
    value: str  # lowercase hex

    def __str__(self) -> str:
        return f"{self.algo}:{self.value}"


Ref = ModelRef | HashRef


def parse_ref(text: str) -> Ref:
    """Parse any accepted reference form; raise ``InvalidReference`` naming what is wrong."""
    if not isinstance(text, str):
        raise InvalidReference(f"a reference must be a string, got {type(text).__name__}")
    ref = text.strip()
    shown = ref if len(ref) <= 80 else ref[:77] + "..."
    if not ref:
        raise InvalidReference("empty reference; expected SOURCE:MODEL[@VERSION], an AIR or a hash")
    if len(ref) > MAX_REF_LENGTH:
        raise InvalidReference(f"reference is {len(ref)} characters long; at most {MAX_REF_LENGTH} allowed")
    if ref.startswith("urn:"):
        return _parse_air(ref, shown)
    head, sep, tail = ref.partition(":")
    if sep and head.lower() in HASH_LENGTHS:
        return _parse_hash(tail, shown, prefix=head.lower())
    if not sep and _HEX.fullmatch(ref) and len(ref) in _ALGO_BY_LENGTH:
        return _parse_hash(ref, shown, prefix=None)
    return _parse_model(ref, shown)


def _parse_model(ref: str, shown: str, ecosystem: str | None = None) -> ModelRef:
    match = _MODEL_REF.fullmatch(ref)
    if match is None:
        raise InvalidReference(
            f"invalid reference {shown!r}: expected SOURCE:MODEL[@VERSION] (SOURCE lowercase letters, "
            "digits, '_' or '-'; MODEL and VERSION letters, digits, '.', '_' or '-', starting with a letter "
            "or digit), urn:air:ECOSYSTEM:embedding:SOURCE:MODEL@VERSION, or a hash (sha256:<64 hex>, "
            "10-hex AutoV2, 12-hex A1111 short hash)",
            {"ref": shown},
        )
    if match["source"] in RESERVED_SOURCES:
        raise InvalidReference(f"invalid reference {shown!r}: source {match['source']!r} is reserved", {"ref": shown})
    return ModelRef(match["source"], match["model"], match["version"], ecosystem)


def _parse_air(ref: str, shown: str) -> ModelRef:
    match = _AIR.fullmatch(ref)
    if match is None:
        raise InvalidReference(
            f"invalid AIR {shown!r}: expected urn:air:ECOSYSTEM:embedding:SOURCE:MODEL@VERSION", {"ref": shown}
        )
    if match["eco"] not in ARCHITECTURES:
        raise InvalidReference(
            f"invalid AIR {shown!r}: ecosystem {match['eco']!r} is not one of {', '.join(ARCHITECTURES)}",
            {"ref": shown},
        )
    if match["type"] != "embedding":
        raise InvalidReference(f"invalid AIR {shown!r}: type {match['type']!r} is not 'embedding'", {"ref": shown})
    return _parse_model(match["rest"], shown, ecosystem=match["eco"])


def _parse_hash(digits: str, shown: str, prefix: str | None) -> HashRef:
    if not _HEX.fullmatch(digits) or len(digits) not in _ALGO_BY_LENGTH:
        raise InvalidReference(
            f"invalid hash reference {shown!r}: expected 64 hex digits (SHA-256), 10 (AutoV2) or 12 (A1111)",
            {"ref": shown},
        )
    algo = _ALGO_BY_LENGTH[len(digits)]
    if prefix in ("autov2", "a1111") and prefix != algo:
        raise InvalidReference(
            f"invalid hash reference {shown!r}: {prefix} takes {HASH_LENGTHS[prefix]} hex digits, got {len(digits)}",
            {"ref": shown},
        )
    return HashRef(algo, digits.lower())  # type: ignore[arg-type]


def parse_source(text: str) -> str:
    """A source name on its own (token scopes): the grammar's SOURCE, not a reserved prefix."""
    if not isinstance(text, str) or not re.fullmatch(SOURCE_RE, text):
        raise InvalidReference(f"invalid source {str(text)[:80]!r}: lowercase letters, digits, '_' or '-', "
                               "starting with a letter or digit, at most 64")
    if text in RESERVED_SOURCES:
        raise InvalidReference(f"source {text!r} is reserved (it names a kind of reference)")
    return text


def parse_model_ref(text: str, *, require_version: bool = False) -> ModelRef:
    """Parse a reference that must name a model (publishing, yanking)."""
    ref = parse_ref(text)
    if not isinstance(ref, ModelRef):
        raise InvalidReference(f"expected SOURCE:MODEL@VERSION here, got the hash reference {text!r}")
    if require_version and ref.version is None:
        raise InvalidReference(f"reference {text!r} needs a version: SOURCE:MODEL@VERSION")
    return ref

"""The embedding core: references, file formats, validation and hashes. Pure: no server code.

Names are imported on first use, so ``from pseudoword.registry.core import parse_ref`` (and the
CLI's ``--help``) does not pay for torch, which only reading and writing files need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pseudoword.registry.core.embedding import ARCHITECTURES, MAX_VECTORS, WIDTHS, Architecture, Embedding
    from pseudoword.registry.core.hashes import Hashes, file_hashes
    from pseudoword.registry.core.limits import DEFAULT_LIMITS, Limits
    from pseudoword.registry.core.reading import read_embedding, read_file_bytes, safetensors_header
    from pseudoword.registry.core.refs import HashRef, ModelRef, Ref, parse_model_ref, parse_ref
    from pseudoword.registry.core.triggers import Triggers, default_trigger, trigger_from_stem, triggers_for
    from pseudoword.registry.core.writing import EXPORT_FORMATS, EXPORT_SUFFIXES, canonical_bytes, export_bytes

_WHERE = {
    **dict.fromkeys(("ARCHITECTURES", "MAX_VECTORS", "WIDTHS", "Architecture", "Embedding"), "embedding"),
    **dict.fromkeys(("Hashes", "file_hashes"), "hashes"),
    **dict.fromkeys(("DEFAULT_LIMITS", "Limits"), "limits"),
    **dict.fromkeys(("read_embedding", "read_file_bytes", "safetensors_header"), "reading"),
    **dict.fromkeys(("HashRef", "ModelRef", "Ref", "parse_model_ref", "parse_ref"), "refs"),
    **dict.fromkeys(("Triggers", "default_trigger", "trigger_from_stem", "triggers_for"), "triggers"),
    **dict.fromkeys(("EXPORT_FORMATS", "EXPORT_SUFFIXES", "canonical_bytes", "export_bytes"), "writing"),
}

__all__ = [
    "ARCHITECTURES", "Architecture", "DEFAULT_LIMITS", "EXPORT_FORMATS", "EXPORT_SUFFIXES", "Embedding",
    "HashRef", "Hashes", "Limits", "MAX_VECTORS", "ModelRef", "Ref", "Triggers", "WIDTHS", "canonical_bytes",
    "default_trigger", "export_bytes", "file_hashes", "parse_model_ref", "parse_ref", "read_embedding",
    "read_file_bytes", "safetensors_header", "trigger_from_stem", "triggers_for",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pseudoword.registry.core' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pseudoword.registry.core.{module}"), name)

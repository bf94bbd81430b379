"""The embedding core: references, file formats, validation and hashes. Pure: no server code."""

from pseudoword.registry.core.embedding import ARCHITECTURES, MAX_VECTORS, WIDTHS, Architecture, Embedding
from pseudoword.registry.core.hashes import Hashes, file_hashes
from pseudoword.registry.core.limits import DEFAULT_LIMITS, Limits
from pseudoword.registry.core.reading import read_embedding, read_file_bytes, safetensors_header
from pseudoword.registry.core.refs import HashRef, ModelRef, Ref, parse_model_ref, parse_ref
from pseudoword.registry.core.triggers import Triggers, default_trigger, trigger_from_stem, triggers_for
from pseudoword.registry.core.writing import (
    EXPORT_FORMATS,
    EXPORT_SUFFIXES,
    canonical_bytes,
    export_bytes,
)

__all__ = [
    "ARCHITECTURES", "DEFAULT_LIMITS", "EXPORT_FORMATS", "EXPORT_SUFFIXES", "MAX_VECTORS", "WIDTHS",
    "Architecture", "Embedding", "HashRef", "Hashes", "Limits", "ModelRef", "Ref", "Triggers", "canonical_bytes",
    "default_trigger", "export_bytes", "file_hashes", "parse_model_ref", "parse_ref", "read_embedding",
    "read_file_bytes", "safetensors_header", "trigger_from_stem", "triggers_for",
]

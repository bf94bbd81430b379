"""The runtime: resolve embedding references and apply them to diffusers pipelines per request.

``encode`` and ``generate`` need the ``runtime`` extra (diffusers, transformers); they and the
``Resolver`` are imported on first use so that ``import pseudoword.runtime`` stays cheap.
"""

from __future__ import annotations

# Installed as `pseudoword.runtime`; the folder `runtime/` imported by its own name (from the repository root)
# would be a second copy whose exception classes the real ones do not catch.
if __name__ != "pseudoword.runtime":
    raise ImportError(f"import pseudoword.runtime, not {__name__} (the folder runtime/ is installed as pseudoword.runtime)")

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pseudoword.runtime.conditioning import Encoded, encode, encode_request
    from pseudoword.runtime.generation import generate
    from pseudoword.runtime.resolver import Resolver

__all__ = ["Encoded", "Resolver", "encode", "encode_request", "generate"]

_WHERE = {
    "encode": "pseudoword.runtime.conditioning",
    "encode_request": "pseudoword.runtime.conditioning",
    "Encoded": "pseudoword.runtime.conditioning",
    "generate": "pseudoword.runtime.generation",
    "Resolver": "pseudoword.runtime.resolver",
}

def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pseudoword.runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

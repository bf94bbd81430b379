"""Loading PyTorch pickles without ever running code from them.

Only the torch zip format (what ``torch.save`` writes since PyTorch 1.6, and every real
embedding file we know) is accepted, and it is read with PyTorch's restricted ``weights_only``
unpickler plus exactly the extra class real A1111 files need (``torch.nn.ParameterDict``). The zip
is checked for member count and uncompressed size before torch touches it. Raw pickle streams are
never unpickled: their opcodes are only scanned (by picklescan, the scanner the Hugging Face Hub
and Civitai run) so that a hostile one is reported as such.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import torch

from pseudoword.registry.core.errors import InvalidFile, TooLarge, UnsafePickle
from pseudoword.registry.core.limits import Limits
from pseudoword.registry.core.pickle_scan import pickle_imports

ZIP_MAGIC = b"PK\x03\x04"
#: Classes beyond torch's own weights-only allowlist that real embedding files contain.
EXTRA_SAFE_GLOBALS: list[Any] = [torch.nn.ParameterDict]
_GLOBAL_IN_ERROR = re.compile(r"(?:Unsupported global: GLOBAL|Trying to call reduce for callable|Unsupported operand) ?([^\s]+)?")
#: Extra zip members besides one per tensor storage (data.pkl, version, byteorder, ...).
_ZIP_OVERHEAD_MEMBERS = 8


def is_pickle(data: bytes) -> bool:
    return data[:1] == b"\x80"


def load_torch_zip(data: bytes, limits: Limits) -> Any:
    """Unpickle a torch zip file with the restricted loader, tensors mapped to the CPU."""
    _check_zip(data, limits)
    try:
        with torch.serialization.safe_globals(EXTRA_SAFE_GLOBALS):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (RecursionError, MemoryError, OverflowError):
        raise InvalidFile("unreadable torch file: its pickle nests or counts past what an embedding can hold") from None
    except pickle_errors() as exc:
        text = str(exc)
        if "Unsupported global" in text or "Weights only load failed" in text and "global" in text.lower():
            raise UnsafePickle(
                f"refused pickle: it asks for {_named_global(text)}, which the restricted loader does not "
                "allow (only tensors, containers and plain values are loaded)",
                {"global": _named_global(text)},
            ) from None
        if "Weights only load failed" in text:
            reason = text.split("WeightsUnpickler error:")[-1].strip().splitlines()[0] if "WeightsUnpickler error:" in text else "not allowed"
            raise UnsafePickle(f"refused pickle: {reason}", {"reason": reason}) from None
        raise InvalidFile(f"unreadable torch file: {_first_line(text)}") from None


def refuse_raw_pickle(data: bytes) -> None:
    """Explain why a bare pickle stream is refused, without unpickling it."""
    globals_named, _dangerous = pickle_imports(data)
    if globals_named:
        raise UnsafePickle(
            f"refused pickle: it imports {', '.join(sorted(globals_named)[:5])}; a raw pickle is never loaded",
            {"globals": sorted(globals_named)},
        )
    raise InvalidFile(
        "legacy or raw pickle format is not accepted: expected a torch zip file (torch.save since "
        "PyTorch 1.6) or safetensors"
    )


def pickle_errors() -> tuple[type[BaseException], ...]:
    import pickle

    return (pickle.UnpicklingError, RuntimeError, ValueError, TypeError, KeyError, AttributeError,
            IndexError, EOFError, OSError, zipfile.BadZipFile, UnicodeDecodeError, AssertionError)


def _check_zip(data: bytes, limits: Limits) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidFile(f"damaged or truncated torch zip file: {exc}") from None
    if len(members) > limits.max_tensors + _ZIP_OVERHEAD_MEMBERS:
        raise TooLarge(
            f"torch zip holds {len(members)} members; at most {limits.max_tensors + _ZIP_OVERHEAD_MEMBERS} allowed",
            {"members": len(members)},
        )
    total = sum(member.file_size for member in members)
    if total > limits.max_decompressed_bytes:
        raise TooLarge(
            f"torch zip expands to {total} bytes; at most {limits.max_decompressed_bytes} allowed",
            {"decompressed_bytes": total, "limit": limits.max_decompressed_bytes},
        )
    pickles = [member for member in members if member.filename.endswith("data.pkl")]
    if not pickles:
        raise InvalidFile("zip file is not a torch file: no data.pkl inside")
    if any(member.file_size > limits.max_pickle_bytes for member in pickles):
        size = max(member.file_size for member in pickles)
        raise TooLarge(f"the file's pickle is {size} bytes; at most {limits.max_pickle_bytes} allowed "
                       "(an embedding's is under 2 KB)", {"pickle_bytes": size, "limit": limits.max_pickle_bytes})


def _named_global(text: str) -> str:
    match = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"callable ([\w.<> ]+)", text)
    return match.group(1) if match else "a non-allowlisted global"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "unknown error"

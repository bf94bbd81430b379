"""Reading every embedding layout seen in the wild into one validated ``Embedding``.

Layouts (DESIGN "Files, architectures, validation"): safetensors ``{emb_params}``,
``{clip_l, clip_g}`` or ``{<token>}``; torch zip pickles in AUTOMATIC1111's
``{string_to_param: {'*': ...}, name, step, ...}``, diffusers' ``{<token>: [d] or [n, d]}`` and
SDXL's ``{clip_l, clip_g}``; and A1111's embedding images (the same dictionary in a PNG's
``sd-ti-embedding`` chunk, ``png_embedding.py``).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from pseudoword.registry.core import png_embedding, safe_pickle
from pseudoword.registry.core.embedding import ARCH_BY_WIDTH, MAX_VECTORS, WIDTHS, Embedding
from pseudoword.registry.core.errors import InvalidFile, NonFiniteValues, ShapeMismatch, TooLarge
from pseudoword.registry.core.limits import DEFAULT_LIMITS, Limits
from pseudoword.registry.core.text import check_text

#: Bytes per element of each safetensors dtype (for the header checks).
_ST_DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                   "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
_FLOAT_DTYPES = (torch.float16, torch.float32, torch.bfloat16, torch.float64)
#: Training metadata kept from A1111 files.
_A1111_METADATA = ("step", "sd_checkpoint", "sd_checkpoint_name")
#: Metadata keys the canonical writer uses (see writing.py).
META_NAME = "pseudoword.name"
META_ARCH = "pseudoword.architecture"
#: SAI ModelSpec's preview image (a data: URL): bounded by the header's own limit, never kept in the
#: metadata (the catalogue stores it as a preview image instead: modelspec.embedded_thumbnail).
META_THUMBNAIL = "modelspec.thumbnail"
META_SOURCE_FORMAT = "pseudoword.source_format"
#: The layouts a canonical file may say it was converted from (``Embedding.source_format``).
SOURCE_FORMATS = ("safetensors", "safetensors-diffusers", "a1111", "diffusers-pickle", "sdxl-pickle")
#: Tensor names that only ever come as SDXL's pair: one alone is half an SDXL file, not a token.
_SDXL_KEYS = frozenset({"clip_l", "clip_g"})

EXPECTED = (
    "expected one of: {emb_params: [n, 768 or 1024]}, {clip_l: [n, 768], clip_g: [n, 1280]}, "
    "{<token>: [n, d]}, or an AUTOMATIC1111 file {string_to_param: {'*': [n, d]}}, with 1 <= n <= 75"
)


def read_embedding(source: bytes | Path | str, *, filename: str | None = None,
                   limits: Limits = DEFAULT_LIMITS) -> Embedding:
    """Read and validate an embedding file from a path or its bytes."""
    data = read_file_bytes(source, limits) if isinstance(source, (Path, str)) else bytes(source)
    if len(data) > limits.max_file_bytes:
        raise TooLarge(f"file is {len(data)} bytes; at most {limits.max_file_bytes} allowed",
                       {"size": len(data), "limit": limits.max_file_bytes})
    if not data:
        raise InvalidFile("empty file")
    if _looks_like_safetensors(data):
        return _from_safetensors(data, limits)
    if data.startswith(safe_pickle.ZIP_MAGIC):
        obj = safe_pickle.load_torch_zip(data, limits)
        try:
            return _from_pickled_object(obj, limits)
        except RecursionError:  # a self-referencing or absurdly nested object graph
            raise InvalidFile("the pickled object is nested too deeply to be an embedding file") from None
    if png_embedding.is_png(data):  # A1111's embedding image: the .pt's dictionary in a text chunk
        return _from_pickled_object(png_embedding.embedding_dict_from_png(data, limits), limits)
    if safe_pickle.is_pickle(data):
        safe_pickle.refuse_raw_pickle(data)
    raise InvalidFile(
        f"not an embedding file: starts with {data[:8]!r}; expected safetensors or a torch zip file (.pt/.bin)"
        + (f" ({filename})" if filename else "")
    )


def read_file_bytes(path: Path | str, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """A file's bytes, refusing (before reading) one larger than any embedding can be."""
    path = Path(path)
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise TooLarge(f"{path.name} is {size} bytes; at most {limits.max_file_bytes} allowed",
                       {"size": size, "limit": limits.max_file_bytes})
    return path.read_bytes()


# --- safetensors -------------------------------------------------------------------------------


def _looks_like_safetensors(data: bytes) -> bool:
    return len(data) >= 9 and data[8:9] == b"{"


def safetensors_header(data: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The parsed, checked JSON header: sizes, offsets and dtypes must describe the file exactly."""
    (length,) = struct.unpack("<Q", data[:8])
    if length > limits.max_header_bytes:
        raise TooLarge(f"safetensors header claims {length} bytes; at most {limits.max_header_bytes} allowed")
    if 8 + length > len(data):
        raise InvalidFile(
            f"truncated safetensors file: header claims {length} bytes but the file holds {len(data) - 8} after the length field",
            {"claimed": length, "available": len(data) - 8},
        )
    try:
        header = json.loads(data[8 : 8 + length])
    except RecursionError:
        raise InvalidFile("safetensors header is nested too deeply to be valid") from None
    except ValueError as exc:  # not UTF-8, not JSON, or a number past Python's digit limit
        raise InvalidFile(f"safetensors header is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(header, dict):
        raise InvalidFile("safetensors header is not a JSON object")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if len(tensors) > limits.max_tensors:
        raise TooLarge(f"file holds {len(tensors)} tensors; at most {limits.max_tensors} allowed")
    body = len(data) - 8 - length
    spans: list[tuple[int, int, str]] = []
    for name, info in tensors.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            numel = math.prod(int(s) for s in shape)
            size = numel * _ST_DTYPE_SIZES[dtype]
        except (KeyError, TypeError, ValueError):
            raise InvalidFile(f"safetensors header entry {name!r} is malformed: {str(info)[:200]}") from None
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= body):
            raise InvalidFile(f"tensor {name!r} claims bytes {begin}..{end} but the data section holds {body}",
                              {"tensor": name, "offsets": [begin, end], "available": body})
        if end - begin != size:
            raise InvalidFile(f"tensor {name!r} is {dtype}{shape} ({size} bytes) but its offsets span {end - begin}")
        spans.append((begin, end, name))
    spans.sort()
    for (b1, e1, n1), (b2, _e2, n2) in zip(spans, spans[1:]):
        if b2 < e1:
            raise InvalidFile(f"tensors {n1!r} and {n2!r} overlap in the file (offsets {b1}..{e1} and {b2}..)")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidFile("safetensors __metadata__ must map strings to strings")
    check_metadata({k: v for k, v in metadata.items() if k != META_THUMBNAIL}, limits)
    return header


def _from_safetensors(data: bytes, limits: Limits) -> Embedding:
    header = safetensors_header(data, limits)
    metadata: dict[str, str] = dict(header.get("__metadata__") or {})
    try:
        tensors = load_safetensors(data)
    except SafetensorError as exc:
        raise InvalidFile(f"unreadable safetensors file: {exc}") from None
    name = metadata.pop(META_NAME, None)
    metadata.pop(META_ARCH, None)
    metadata.pop(META_THUMBNAIL, None)
    # A canonical file remembers the layout it was converted from; keep it so that re-reading and
    # re-writing a canonical file gives the same bytes.
    original_format = metadata.pop(META_SOURCE_FORMAT, "safetensors")
    if original_format not in SOURCE_FORMATS:
        raise InvalidFile(f"{META_SOURCE_FORMAT} is {original_format[:40]!r}; expected one of {', '.join(SOURCE_FORMATS)}")
    if set(tensors) == {"clip_l", "clip_g"} or set(tensors) == {"emb_params"}:
        return _build(tensors, original_format, name, metadata, limits)
    if len(tensors) == 1 and not set(tensors) & _SDXL_KEYS:
        ((token, tensor),) = tensors.items()
        return _build({"emb_params": tensor}, "safetensors-diffusers", name or token, metadata, limits)
    raise ShapeMismatch(f"found tensors {_describe(tensors)}; {EXPECTED}", {"found": _shapes(tensors)})


# --- torch pickles -----------------------------------------------------------------------------


def _from_pickled_object(obj: Any, limits: Limits) -> Embedding:
    if not isinstance(obj, Mapping):
        length = f" of {len(obj)} items" if hasattr(obj, "__len__") else ""
        raise ShapeMismatch(
            f"not a single embedding: the file holds a {type(obj).__name__}{length}; {EXPECTED}",
            {"found": type(obj).__name__},
        )
    if "string_to_param" in obj:
        params = obj["string_to_param"]
        items = dict(params.items()) if hasattr(params, "items") else {}
        tensors = {k: v for k, v in items.items() if isinstance(v, torch.Tensor)}
        if len(tensors) != 1:
            raise ShapeMismatch(
                f"AUTOMATIC1111 file with {len(tensors)} tensors in string_to_param (keys {list(items)[:8]}); "
                "expected exactly one", {"found": _shapes(tensors)})
        name = obj.get("name") if isinstance(obj.get("name"), str) else None
        metadata = {key: _metadata_text(key, obj[key]) for key in _A1111_METADATA if obj.get(key) is not None}
        return _build({"emb_params": next(iter(tensors.values()))}, "a1111", name, metadata, limits)
    if len(obj) > limits.max_tensors:
        raise TooLarge(f"file holds {len(obj)} entries; at most {limits.max_tensors} allowed")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if {"clip_l", "clip_g"} <= set(tensors) and len(tensors) == 2:
        return _build(tensors, "sdxl-pickle", None, {}, limits)
    if set(tensors) == {"emb_params"}:
        return _build(tensors, "a1111", None, {}, limits)
    if len(tensors) == 1 and len(obj) == 1 and not set(tensors) & _SDXL_KEYS:
        ((token, tensor),) = tensors.items()
        return _build({"emb_params": tensor}, "diffusers-pickle", token, {}, limits)
    raise ShapeMismatch(f"found {_describe(obj)}; {EXPECTED}", {"found": _shapes(obj)})


# --- validation --------------------------------------------------------------------------------


def _metadata_text(key: str, value: Any) -> str:
    """A1111 training metadata as text, refusing (before any conversion) what is not a plain value:
    a memoised list's text can be thousands of times its size on disk."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidFile(f"metadata {key!r} is a {type(value).__name__}; expected a number or text",
                          {"key": key, "found": type(value).__name__})
    if isinstance(value, int) and value.bit_length() > 64:
        raise InvalidFile(f"metadata {key!r} is an integer of {value.bit_length()} bits; at most 64 allowed",
                          {"key": key})
    return str(value)


def check_metadata(metadata: Mapping[str, str], limits: Limits = DEFAULT_LIMITS) -> None:
    """Caps on the metadata kept from a file: it is stored in the blob and in every record."""
    if len(metadata) > limits.max_metadata_entries:
        raise TooLarge(f"file metadata has {len(metadata)} entries; at most {limits.max_metadata_entries} allowed",
                       {"entries": len(metadata), "limit": limits.max_metadata_entries})
    total = 0
    for key, value in metadata.items():
        if len(key) > limits.max_metadata_key_chars or len(value) > limits.max_metadata_value_chars:
            raise TooLarge(f"file metadata {key[:40]!r} is {len(value)} characters (key {len(key)}); at most "
                           f"{limits.max_metadata_value_chars} (key {limits.max_metadata_key_chars}) allowed",
                           {"key": key[:40], "limit": limits.max_metadata_value_chars})
        check_text(key, "file metadata key", error=InvalidFile)
        check_text(value, f"file metadata {key!r}", multiline=True, error=InvalidFile)
        total += len(key) + len(value)
    if total > limits.max_metadata_total_chars:
        raise TooLarge(f"file metadata holds {total} characters; at most {limits.max_metadata_total_chars} allowed",
                       {"characters": total, "limit": limits.max_metadata_total_chars})


def _check_tensor(key: str, value: Any) -> tuple[int, int]:
    """Check a tensor on its metadata alone and return its [n, d] shape: nothing is read, copied or
    computed from its values here, so a tiny file describing a huge tensor costs nothing."""
    if not isinstance(value, torch.Tensor):
        raise ShapeMismatch(f"{key} is a {type(value).__name__}, not a tensor; {EXPECTED}")
    if value.layout != torch.strided or value.is_quantized or value.is_nested:
        raise ShapeMismatch(f"{key} is a {str(value.layout).removeprefix('torch.')} tensor; expected a dense tensor")
    if value.device.type != "cpu":
        raise ShapeMismatch(f"{key} is on device {value.device.type!r}; expected a tensor with data (cpu)")
    if value.dtype not in _FLOAT_DTYPES:
        raise ShapeMismatch(f"{key} has dtype {str(value.dtype).removeprefix('torch.')} {list(value.shape)}; "
                            "expected float32 or float16")
    if value.ndim not in (1, 2):
        raise ShapeMismatch(f"{key} has shape {list(value.shape)}; expected [n, d]")
    # The storage must really hold every element once: an expanded (stride-0) or overlapping view
    # describes more values than its file holds, and copying it would allocate them all.
    itemsize = value.element_size()
    extent = value.storage_offset() + 1 + sum((size - 1) * stride for size, stride in zip(value.shape, value.stride()))
    nbytes = value.untyped_storage().nbytes()
    if value.numel() * itemsize > nbytes or extent * itemsize > nbytes or 0 in value.stride():
        raise ShapeMismatch(f"{key} claims shape {list(value.shape)} with strides {list(value.stride())} but its "
                            f"storage holds {nbytes} bytes; expected {value.numel() * itemsize} bytes of distinct values",
                            {"tensor": key, "shape": list(value.shape), "storage_bytes": nbytes})
    return (1, value.shape[0]) if value.ndim == 1 else (value.shape[0], value.shape[1])


def _build(tensors: Mapping[str, Any], source_format: str, name: str | None,
           metadata: dict[str, str], limits: Limits) -> Embedding:
    if name is not None:
        if len(name) > limits.max_name_chars:
            raise TooLarge(f"the name stored in the file is {len(name)} characters; at most {limits.max_name_chars} allowed")
        check_text(name, "the name stored in the file", error=InvalidFile)
    check_metadata(metadata, limits)
    shapes = {key: _check_tensor(key, value) for key, value in tensors.items()}
    found = {"found": {key: list(shape) for key, shape in shapes.items()}}
    if set(shapes) == {"clip_l", "clip_g"}:
        architecture = "sdxl"
        for key in ("clip_l", "clip_g"):
            if shapes[key][1] != WIDTHS[key]:
                raise ShapeMismatch(
                    f"SDXL {key} has width {shapes[key][1]}; expected {WIDTHS[key]} "
                    f"(found {_describe(tensors)})", found)
        if shapes["clip_l"][0] != shapes["clip_g"][0]:
            raise ShapeMismatch(
                f"SDXL clip_l has {shapes['clip_l'][0]} vectors but clip_g has {shapes['clip_g'][0]}; "
                "expected equal counts", found)
    else:
        width = shapes["emb_params"][1]
        if width not in ARCH_BY_WIDTH:
            raise ShapeMismatch(
                f"vectors of width {width} (found {_describe(tensors)}); expected 768 (sd1) or 1024 (sd2), "
                "or an SDXL pair clip_l 768 + clip_g 1280", found)
        architecture = ARCH_BY_WIDTH[width]
    count = next(iter(shapes.values()))[0]
    if not 1 <= count <= MAX_VECTORS:
        raise ShapeMismatch(f"{count} vectors (found {_describe(tensors)}); expected 1 to {MAX_VECTORS}", found)
    vectors = {key: _as_matrix(value) for key, value in tensors.items()}
    for key, value in vectors.items():
        if not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise NonFiniteValues(f"{key} holds {bad} NaN or infinite values; all values must be finite",
                                  {"tensor": key, "non_finite": bad})
    return Embedding(vectors=vectors, architecture=architecture, source_format=source_format,  # type: ignore[arg-type]
                     name=name, metadata=metadata)


def _as_matrix(value: torch.Tensor) -> torch.Tensor:
    """A private, contiguous [n, d] copy on the CPU (only after ``_check_tensor`` passed)."""
    tensor = value.detach()
    if tensor.ndim == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.dtype not in (torch.float16, torch.float32):
        tensor = tensor.to(torch.float32)  # bfloat16/float64 are stored as float32
    return tensor.contiguous().clone()


def _shapes(tensors: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): (list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__) for k, v in tensors.items()}


def _describe(tensors: Mapping[str, Any]) -> str:
    parts = []
    for key, value in list(tensors.items())[:8]:
        if isinstance(value, torch.Tensor):
            parts.append(f"{key}: {str(value.dtype).removeprefix('torch.')}{list(value.shape)}")
        else:
            parts.append(f"{key}: {type(value).__name__}")
    more = f", ... ({len(tensors)} entries)" if len(tensors) > 8 else ""
    return "{" + ", ".join(parts) + more + "}"

"""Writing embeddings: the canonical stored form and the exports other tools load.

- canonical: safetensors ``{emb_params}`` or ``{clip_l, clip_g}``, dtype as given, with string
  metadata (name, architecture, original format, training metadata).
- ``a1111``: a torch zip in AUTOMATIC1111's layout (``{clip_l, clip_g}`` for sdxl, as A1111 reads).
- ``diffusers``: ``learned_embeds.safetensors`` ``{<trigger>: [n, d]}`` for sd1/sd2; for sdxl the
  ``{clip_l, clip_g}`` file that diffusers' SDXL guide loads one key per text encoder.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Literal

import torch
from safetensors.torch import save as save_safetensors

from pseudoword.registry.core.embedding import Embedding
from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.registry.core.reading import META_ARCH, META_NAME, META_SOURCE_FORMAT

ExportFormat = Literal["safetensors", "a1111", "diffusers"]
EXPORT_FORMATS: tuple[str, ...] = ("safetensors", "a1111", "diffusers")
#: File name suffix for each export, chosen so A1111 and ComfyUI pick the file up.
EXPORT_SUFFIXES = {"safetensors": ".safetensors", "a1111": ".pt", "diffusers": ".safetensors",
                   "diffusers-bin": ".bin", "diffusers-clip_l": ".safetensors", "diffusers-clip_g": ".safetensors"}
#: The single-tensor files diffusers' ``load_textual_inversion`` takes from a Hub repository:
#: ``{<trigger>: [n, d]}`` as a torch pickle (sd1/sd2, ``learned_embeds.bin``), and for sdxl one
#: safetensors file per text encoder (two calls, one per encoder).
HUB_FORMATS: dict[str, tuple[str, ...]] = {"sd1": ("diffusers-bin",), "sd2": ("diffusers-bin",),
                                           "sdxl": ("diffusers-clip_l", "diffusers-clip_g")}
#: The placeholder token id A1111 writes in string_to_token (its own files all say 265).
_A1111_TOKEN_ID = 265


def canonical_bytes(emb: Embedding) -> bytes:
    """The stored form: byte-identical for the same embedding, in any process."""
    metadata = {META_ARCH: emb.architecture, META_SOURCE_FORMAT: emb.source_format, **emb.metadata}
    if emb.name:
        metadata[META_NAME] = emb.name
    return _safetensors(dict(emb.vectors), metadata)


def export_bytes(emb: Embedding, fmt: str, trigger: str) -> bytes:
    if fmt == "safetensors":
        return canonical_bytes(emb)
    if fmt == "a1111":
        return _a1111(emb, trigger)
    if fmt == "diffusers":
        if emb.architecture == "sdxl":
            return _safetensors(dict(emb.vectors), {})
        return _safetensors({trigger: emb.vectors["emb_params"]}, {})
    if fmt == "diffusers-bin" and emb.architecture != "sdxl":
        buffer = io.BytesIO()
        torch.save({trigger: emb.vectors["emb_params"].clone()}, buffer)
        return buffer.getvalue()
    if fmt in ("diffusers-clip_l", "diffusers-clip_g") and emb.architecture == "sdxl":
        return _safetensors({trigger: emb.vectors[fmt.removeprefix("diffusers-")]}, {})
    raise InvalidRequest(f"unknown export format {fmt!r} for {emb.architecture}; expected one of "
                         f"{', '.join(served_formats(emb.architecture))}")


def served_formats(architecture: str) -> tuple[str, ...]:
    """Every file the registry derives from a version and serves (all stored and hashed at publish)."""
    return EXPORT_FORMATS + HUB_FORMATS.get(architecture, ())


def all_exports(emb: Embedding, trigger: str) -> dict[str, bytes]:
    """Each served format's bytes (the canonical file included): byte-identical in any process."""
    return {fmt: export_bytes(emb, fmt, trigger) for fmt in served_formats(emb.architecture)}


def safe_filename(trigger: str) -> str:
    """A file stem A1111/ComfyUI will call by ``trigger``: path separators and characters that
    are invalid on Windows become ``_``."""
    stem = "".join("_" if ch in '/\\:*?"<>|' or ord(ch) < 32 else ch for ch in trigger).strip().strip(".")
    return stem or "embedding"


def _a1111(emb: Embedding, trigger: str) -> bytes:
    if emb.architecture == "sdxl":
        # Keys in a fixed order: a file read by safetensors lists its tensors in a hash map's order,
        # which differs between processes, and the export's bytes are content-addressed.
        payload: dict[str, object] = {key: emb.vectors[key].clone() for key in sorted(emb.vectors)}
    else:
        payload = {
            "string_to_token": {"*": _A1111_TOKEN_ID},
            "string_to_param": {"*": emb.vectors["emb_params"].clone()},
            "name": trigger,
            "step": _step(emb.metadata.get("step", "")),
            "sd_checkpoint": emb.metadata.get("sd_checkpoint"),
            "sd_checkpoint_name": emb.metadata.get("sd_checkpoint_name"),
        }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _step(text: str) -> int | None:
    """A1111's training step as the integer it writes (None for anything else, or past 64 bits)."""
    return int(text) if text.isdigit() and len(text) <= 18 else None


def _safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes with the header's keys sorted: the library writes metadata in hash-map
    order, which differs between processes and would break content addressing."""
    raw = save_safetensors({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata or None)
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned, as the library does
    return struct.pack("<Q", len(text)) + text + raw[8 + length :]

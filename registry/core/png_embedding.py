"""AUTOMATIC1111's embeddings stored inside PNG images.

A1111's "save images with embedding in PNG chunks" writes the same dictionary as its ``.pt``
(``string_to_param``, ``name``, ``step``, ``sd_checkpoint``, ...) into a ``sd-ti-embedding`` text
chunk: base64 of JSON, each tensor written as ``{"TORCHTENSOR": nested lists}``
(modules/textual_inversion/image_embedding.py). This module reads that chunk with ``struct`` and
``json`` alone (the core has no image library) and hands the dictionary to the reader's A1111
path, so a PNG publishes exactly like its ``.pt``: no pickle, nothing executed.

The variant hidden in the pixels (``insert_image_data_embed``: zlib-compressed JSON split into
nibbles, XOR-ed with a fixed LCG sequence, in two bands left and right of the picture, each
behind a black column) is read too when Pillow is installed (the server has it; the core's own
dependencies do not include an image decoder): the image's size is checked before it is decoded,
and the bands and the inflated JSON have limits of their own.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import torch

from pseudoword.registry.core.errors import InvalidFile, TooLarge
from pseudoword.registry.core.limits import DEFAULT_LIMITS, Limits

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHUNK_KEYWORD = b"sd-ti-embedding"
_TENSOR_KEY = "TORCHTENSOR"
#: JSON nesting of A1111's dictionary: dict > string_to_param > '*' > tensor > rows > values.
_MAX_DEPTH = 8


def is_png(data: bytes) -> bool:
    return data.startswith(PNG_MAGIC)


def png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes, int]]:
    """Each chunk of a PNG as (type, body, offset past it), up to and including IEND. Lengths
    and CRCs are checked: a truncated or corrupt file is an error, not a short read."""
    if not is_png(data):
        raise InvalidFile("not a PNG file")
    offset = len(PNG_MAGIC)
    while True:
        if offset + 8 > len(data):
            raise InvalidFile("truncated PNG: the file ends before its IEND chunk")
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        end = offset + 8 + length + 4
        if end > len(data):
            raise InvalidFile(f"truncated PNG: chunk {kind!r} claims {length} bytes past the end of the file")
        body = data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4:end])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise InvalidFile(f"corrupt PNG: chunk {kind!r} fails its CRC check")
        yield kind, body, end
        if kind == b"IEND":
            return
        offset = end


def png_text_chunks(data: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, bytes]:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG as keyword -> raw text bytes. Compressed text
    is inflated only up to the decompressed limit, so a small zTXt cannot expand into gigabytes."""
    chunks: dict[str, bytes] = {}
    for kind, body, _end in png_chunks(data):
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            keyword, text = _text_chunk(kind, body, limits)
            chunks.setdefault(keyword, text)
    return chunks


def _text_chunk(kind: bytes, body: bytes, limits: Limits) -> tuple[str, bytes]:
    keyword, sep, rest = body.partition(b"\0")
    if not sep:
        raise InvalidFile(f"corrupt PNG: a {kind.decode()} chunk has no keyword terminator")
    if kind == b"tEXt":
        return keyword.decode("latin-1"), rest
    if kind == b"zTXt":
        return keyword.decode("latin-1"), _inflate(rest[1:], limits)
    # iTXt: compression flag, method, language tag \0, translated keyword \0, text
    if len(rest) < 2:
        raise InvalidFile("corrupt PNG: an iTXt chunk is cut off")
    compressed = rest[0] == 1
    _language, _, rest = rest[2:].partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    return keyword.decode("latin-1"), _inflate(text, limits) if compressed else text


def _inflate(data: bytes, limits: Limits) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limits.max_decompressed_bytes + 1)
    except zlib.error as exc:
        raise InvalidFile(f"corrupt PNG: a compressed text chunk does not inflate ({exc})") from None
    if len(out) > limits.max_decompressed_bytes or inflater.unconsumed_tail:
        raise TooLarge(f"a compressed PNG text chunk inflates past {limits.max_decompressed_bytes} bytes",
                       {"limit": limits.max_decompressed_bytes})
    return out


def embedding_dict_from_png(data: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """A1111's embedding dictionary from a PNG's ``sd-ti-embedding`` chunk, tensors as float64
    torch tensors (the reader converts them to float32 as it does for any file)."""
    chunks = png_text_chunks(data, limits)
    raw = chunks.get(CHUNK_KEYWORD.decode())
    if raw is None:
        hidden = embedding_dict_from_pixels(data, limits)
        if hidden is not None:
            return hidden
        raise InvalidFile(
            "a PNG without an 'sd-ti-embedding' text chunk or an embedding in its pixels: not an "
            "AUTOMATIC1111 embedding image", {"text_chunks": sorted(chunks)[:16]})
    try:
        decoded = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidFile("the 'sd-ti-embedding' chunk is not base64") from None
    return _embedding_json(decoded, "the 'sd-ti-embedding' chunk")


#: The most pixels an embedding image may have (A1111 writes the picture plus two narrow bands),
#: and the most data-band values read from it (the LCG runs once per value).
MAX_IMAGE_PIXELS = 2048 * 2048
MAX_BAND_VALUES = 4 * 1024 * 1024


def _lcg(count: int) -> Any:
    """A1111's ``lcg()``: m=2**32, a=1664525, c=1013904223, seed 0, each value modulo 255."""
    import numpy as np

    out = np.empty(count, dtype=np.uint8)
    seed = 0
    for i in range(count):
        seed = (1664525 * seed + 1013904223) % 4294967296
        out[i] = seed % 255
    return out


def embedding_dict_from_pixels(data: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any] | None:
    """A1111's ``extract_image_data_embed``: the embedding hidden in the pixels, or None when the
    image has no such bands (or Pillow is not installed)."""
    try:
        from PIL import Image
    except ModuleNotFoundError:
        return None
    import io

    import numpy as np

    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise TooLarge(f"the PNG is {width}x{height} pixels; an embedding image has at most "
                               f"{MAX_IMAGE_PIXELS}", {"width": width, "height": height})
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidFile(f"the PNG's pixels cannot be read: {str(exc)[:200]}") from None
    lit: Any = (pixels > 0).all(axis=2)  # crop_black: the box of pixels with no zero channel
    rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    if rows.size == 0:
        return None
    low = pixels[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] & 0x0F
    black = np.flatnonzero(low.sum(axis=(0, 2)) == 0)
    if black.size < 2:
        return None
    lower, upper = low[:, :black.min(), :], low[:, black.max() + 1:, :]
    if lower.shape != upper.shape or lower.size == 0:
        return None
    if lower.size > MAX_BAND_VALUES:
        raise TooLarge(f"the PNG's data bands hold {lower.size} values; at most {MAX_BAND_VALUES} read")
    key = (_lcg(lower.size) & 0x0F).reshape(lower.shape)
    packed = (((upper ^ key) << 4) | (lower ^ key)).astype(np.uint8).tobytes()
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(packed, limits.max_decompressed_bytes + 1)
    except zlib.error:
        return None  # bands that are not A1111's data: no hidden embedding
    if len(text) > limits.max_decompressed_bytes:
        raise TooLarge(f"the embedding in the PNG's pixels inflates past {limits.max_decompressed_bytes} bytes")
    return _embedding_json(text, "the embedding in the PNG's pixels")


def _tensors(value: Any, depth: int) -> Any:
    """Replace each ``{"TORCHTENSOR": lists}`` with a tensor, checking the lists are numbers."""
    if depth > _MAX_DEPTH:
        raise InvalidFile("the 'sd-ti-embedding' JSON is nested too deeply for an embedding")
    if isinstance(value, dict):
        if set(value) == {_TENSOR_KEY}:
            return _tensor(value[_TENSOR_KEY])
        return {str(key): _tensors(item, depth + 1) for key, item in value.items()}
    return value


def _tensor(rows: Any) -> torch.Tensor:
    if isinstance(rows, list) and rows and all(isinstance(row, list) for row in rows):
        width = len(rows[0])
        if not all(len(row) == width for row in rows):
            raise InvalidFile("a TORCHTENSOR in 'sd-ti-embedding' has rows of different lengths")
        values = [x for row in rows for x in row]
        shape: tuple[int, ...] = (len(rows), width)
    elif isinstance(rows, list):
        values, shape = rows, (len(rows),)
    else:
        raise InvalidFile(f"a TORCHTENSOR in 'sd-ti-embedding' is a {type(rows).__name__}; expected lists of numbers")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
        raise InvalidFile("a TORCHTENSOR in 'sd-ti-embedding' holds something other than numbers")
    return torch.tensor(values, dtype=torch.float64).reshape(shape)


def embedding_png_chunk(embedding_dict: dict[str, Any]) -> bytes:
    """The base64 text A1111 writes for ``embedding_dict`` (tests and round trips build images with it)."""

    def encode(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return {_TENSOR_KEY: value.detach().cpu().double().tolist()}
        if isinstance(value, dict):
            return {key: encode(item) for key, item in value.items()}
        return value

    return base64.b64encode(json.dumps(encode(embedding_dict)).encode())


def _embedding_json(text: bytes, where: str) -> dict[str, Any]:
    """A1111's embedding dictionary from its JSON (tensors in A1111's encoding turned back into
    tensors); every way the text can be wrong is an ``InvalidFile`` naming ``where``."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise InvalidFile(f"{where} holds JSON nested too deeply") from None
    except ValueError as exc:
        raise InvalidFile(f"{where} is not JSON: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise InvalidFile(f"{where} holds a JSON {type(obj).__name__}; expected an object")
    return _tensors(obj, 0)  # type: ignore[no-any-return]

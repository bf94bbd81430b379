"""AUTOMATIC1111's embedding images (the `sd-ti-embedding` PNG text chunk) read like the `.pt`."""

from __future__ import annotations

import base64
import io
import json
import zlib

import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from pseudoword.registry.core import canonical_bytes, read_embedding
from pseudoword.registry.core.errors import InvalidFile, TooLarge
from pseudoword.registry.core.png_embedding import embedding_png_chunk
from tests.integration.api import torch_file


def a1111_dict(rows: int = 3, width: int = 768, seed: int = 5) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"string_to_token": {"*": 265}, "string_to_param": {"*": torch.randn(rows, width, generator=generator)},
            "name": "glassy", "step": 1500, "sd_checkpoint": "abcdef12", "sd_checkpoint_name": "v1-5-pruned"}


def embedding_png(chunk: bytes | None, *, kind: str = "tEXt") -> bytes:
    info = PngInfo()
    if chunk is not None:
        info.add_text("sd-ti-embedding", chunk.decode(), zip=kind == "zTXt")
    out = io.BytesIO()
    Image.new("RGB", (32, 32), "gray").save(out, format="PNG", pnginfo=info)
    return out.getvalue()


@pytest.mark.parametrize("kind", ["tEXt", "zTXt"])
def test_png_reads_like_its_pt(kind: str) -> None:
    data = a1111_dict()
    from_png = read_embedding(embedding_png(embedding_png_chunk(data), kind=kind), filename="glassy.png")
    from_pt = read_embedding(torch_file(data), filename="glassy.pt")
    assert (from_png.architecture, from_png.num_vectors, from_png.name) == ("sd1", 3, "glassy")
    assert from_png.metadata == from_pt.metadata == {"step": "1500", "sd_checkpoint": "abcdef12",
                                                      "sd_checkpoint_name": "v1-5-pruned"}
    assert canonical_bytes(from_png) == canonical_bytes(from_pt)


def test_sd2_width_is_found() -> None:
    emb = read_embedding(embedding_png(embedding_png_chunk(a1111_dict(rows=1, width=1024))))
    assert emb.architecture == "sd2"


def test_png_without_the_chunk_names_what_is_missing() -> None:
    with pytest.raises(InvalidFile, match="without an .sd-ti-embedding. text chunk"):
        read_embedding(embedding_png(None))


@pytest.mark.parametrize(("payload", "words"), [
    (b"!!!not base64!!!", "not base64"),
    (base64.b64encode(b"{not json"), "not JSON"),
    (base64.b64encode(json.dumps({"string_to_param": {"*": {"TORCHTENSOR": [["x"]]}}}).encode()), "other than numbers"),
    (base64.b64encode(json.dumps({"string_to_param": {"*": {"TORCHTENSOR": [[1.0], [1.0, 2.0]]}}}).encode()),
     "rows of different lengths"),
    (base64.b64encode(json.dumps({"string_to_param": {"*": {"TORCHTENSOR": [[0.0] * 100]}}}).encode()), "width 100"),
    (base64.b64encode(json.dumps([1, 2]).encode()), "expected an object"),
])
def test_bad_chunks_are_refused_with_a_reason(payload: bytes, words: str) -> None:
    with pytest.raises(InvalidFile, match=words):
        read_embedding(embedding_png(payload))


def test_a_corrupt_or_truncated_png_is_refused() -> None:
    data = embedding_png(embedding_png_chunk(a1111_dict()))
    with pytest.raises(InvalidFile, match="truncated PNG"):
        read_embedding(data[: len(data) - 30])
    broken = bytearray(data)
    broken[40] ^= 0xFF  # inside the first chunk after IHDR
    with pytest.raises(InvalidFile, match="CRC|truncated"):
        read_embedding(bytes(broken))


def test_a_compressed_chunk_bomb_is_refused() -> None:
    # A zTXt chunk that inflates to 64 MiB from about 64 KiB.
    body = b"sd-ti-embedding\0\0" + zlib.compress(b"A" * (64 * 1024 * 1024), 9)
    import struct

    chunk = struct.pack(">I", len(body)) + b"zTXt" + body + struct.pack(">I", zlib.crc32(b"zTXt" + body))
    data = embedding_png(None)
    data = data[:33] + chunk + data[33:]  # after the signature (8) and IHDR (25)
    with pytest.raises(TooLarge, match="inflates past"):
        read_embedding(data)


def pixel_embedding_png(data: dict, picture_size: tuple[int, int] = (48, 40)) -> bytes:
    """An image as A1111's ``insert_image_data_embed`` makes it: the zlib-compressed JSON split
    into nibbles, XOR-ed with its LCG, in bands left and right of the picture behind black
    columns (the decorative dots A1111 draws into the high nibbles stand in as a fixed 0x30)."""
    import numpy as np

    from pseudoword.registry.core.png_embedding import _lcg

    compressed = zlib.compress(base64.b64decode(embedding_png_chunk(data)), 9)
    values = np.frombuffer(compressed, np.uint8)
    width, height = picture_size
    size = values.size + (height - values.size % height)
    size += height * 3 - size % (height * 3)
    key = _lcg(size) & 0x0F
    bands = [((np.resize(part, size) ^ key) | 0x30).reshape(height, -1, 3).astype(np.uint8)
             for part in (values & 0x0F, values >> 4)]
    band_width = bands[0].shape[1]
    canvas = Image.new("RGB", (width + 2 * band_width + 2, height), (0, 0, 0))
    canvas.paste(Image.fromarray(bands[0], "RGB"), (0, 0))
    canvas.paste(Image.new("RGB", picture_size, (200, 180, 160)), (band_width + 1, 0))
    canvas.paste(Image.fromarray(bands[1], "RGB"), (band_width + 1 + width + 1, 0))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


def test_embedding_hidden_in_the_pixels_reads_like_its_pt() -> None:
    data = a1111_dict(rows=2, seed=9)
    from_pixels = read_embedding(pixel_embedding_png(data), filename="glassy.png")
    assert canonical_bytes(from_pixels) == canonical_bytes(read_embedding(torch_file(data)))


def test_a_picture_without_bands_is_no_embedding() -> None:
    out = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 20, 30)).save(out, format="PNG")
    with pytest.raises(InvalidFile, match="or an embedding in its pixels"):
        read_embedding(out.getvalue())


def test_a_huge_picture_is_refused_before_its_pixels_are_decoded() -> None:
    out = io.BytesIO()
    Image.new("1", (3000, 3000)).save(out, format="PNG")  # 9 megapixels in a few kilobytes
    with pytest.raises(TooLarge, match="3000x3000 pixels"):
        read_embedding(out.getvalue())

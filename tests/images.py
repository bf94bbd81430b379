"""Images for the preview tests: good ones (with A1111's infotext) and hostile ones."""

from __future__ import annotations

import io
import random
import zipfile

from PIL import Image
from PIL.PngImagePlugin import PngInfo


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A reproducible RGB noise picture (the same bytes for the same size and seed)."""
    return Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))


INFOTEXT = ("a glass teapot, glassy\nNegative prompt: blurry\n"
            "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 64x64")


def png(size: tuple[int, int] = (64, 64), parameters: str | None = INFOTEXT, seed: int = 0) -> bytes:
    image = noise(size, seed)
    info = PngInfo()
    if parameters is not None:
        info.add_text("parameters", parameters)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def jpeg(size: tuple[int, int] = (80, 48), parameters: str | None = INFOTEXT) -> bytes:
    image = noise(size, 30)
    exif = Image.Exif()
    if parameters is not None:  # as A1111 writes it (piexif): UserComment, UNICODE, UTF-16BE
        exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + parameters.encode("utf-16-be")
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def webp(size: tuple[int, int] = (48, 48)) -> bytes:
    out = io.BytesIO()
    noise(size, 20).save(out, format="WEBP")
    return out.getvalue()


def decompression_bomb() -> bytes:
    """8000 x 8000 one-bit pixels (64 megapixels) compressed to a few kilobytes."""
    out = io.BytesIO()
    Image.new("1", (8000, 8000)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def long_side() -> bytes:
    """A 40,000 x 1 pixel PNG: a side far past any preview's."""
    out = io.BytesIO()
    Image.new("L", (40_000, 1)).save(out, format="PNG")
    return out.getvalue()


def truncated_png() -> bytes:
    data = png(size=(128, 128))
    return data[: len(data) // 2]


def polyglot() -> bytes:
    """A valid PNG that is also a zip archive holding a script (data appended after IEND)."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("run.py", "import os; os.system('touch /tmp/pwned')")
    return png() + archive.getvalue()


HOSTILE = {
    "decompression bomb": (decompression_bomb, "too_large", "decompression bomb"),
    "40000-pixel side": (long_side, "too_large", "40000x1"),
    "truncated PNG": (truncated_png, "invalid_file", "truncated"),
    "polyglot": (polyglot, "invalid_file", "polyglot"),
    "HTML page": (lambda: b"<html><script>alert(1)</script></html>", "invalid_file", "not a PNG, JPEG or WEBP"),
    "GIF": (lambda: b"GIF89a" + b"\0" * 64, "invalid_file", "not a PNG, JPEG or WEBP"),
}

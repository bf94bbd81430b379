"""The training images: read once, checked, and cut into the views the VAE encodes once.

Each image becomes a square (centre crop) at the training resolution, plus, with ``crops``, its
four corner crops of 7/8 of the side (the paper trains on random crops; four fixed ones give the
same variety while letting every view be encoded once), each also mirrored: 2 or 10 views per
image. A caption file beside an image (``cat1.png`` + ``cat1.txt``) describes that image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.registry.core.text import check_text

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_IMAGES = 1000
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_CAPTION_BYTES = 4096
CROP_FRACTION = 7 / 8


@dataclass(frozen=True)
class TrainImage:
    path: Path
    caption: str | None
    size: tuple[int, int]  # (width, height) as read


@dataclass(frozen=True)
class View:
    """One view of one image, as pixels in [-1, 1] ``[3, R, R]``, with what SDXL's UNet is told
    about it (original size and crop corner, as its micro-conditioning expects)."""

    image: int  # index into the images
    pixels: torch.Tensor
    original_size: tuple[int, int]  # (height, width)
    crop_top_left: tuple[int, int]


def find_images(folder: Path, resolution: int) -> list[TrainImage]:
    """The folder's images (sorted by name), each checked readable and at least ``resolution``
    on its short side, with its caption when one is beside it."""
    if not folder.is_dir():
        raise InvalidRequest(f"{folder} is not a folder of images", {"path": str(folder)})
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InvalidRequest(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); give 3 to 5 pictures of "
                             "the concept", {"path": str(folder)})
    if len(paths) > MAX_IMAGES:
        raise InvalidRequest(f"{folder} holds {len(paths)} images; at most {MAX_IMAGES}", {"count": len(paths)})
    return [_check(path, resolution) for path in paths]


def _check(path: Path, resolution: int) -> TrainImage:
    from PIL import Image, UnidentifiedImageError

    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise InvalidRequest(f"{path.name} is larger than {MAX_IMAGE_BYTES} bytes", {"path": str(path)})
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.load()
            size = image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidRequest(f"{path.name} is not a readable image: {' '.join(str(exc).split())}",
                             {"path": str(path)}) from None
    if min(size) < resolution:
        raise InvalidRequest(f"{path.name} is {size[0]}x{size[1]}, smaller than the training resolution "
                             f"{resolution}; give images at least {resolution} px on the short side (or a "
                             "smaller --resolution)", {"path": str(path), "size": list(size),
                                                       "resolution": resolution})
    return TrainImage(path, _caption(path), size)


def _caption(path: Path) -> str | None:
    caption = path.with_suffix(".txt")
    if not caption.is_file():
        return None
    if caption.stat().st_size > MAX_CAPTION_BYTES:
        raise InvalidRequest(f"caption {caption.name} is larger than {MAX_CAPTION_BYTES} bytes", {"path": str(caption)})
    try:
        text = " ".join(caption.read_text(encoding="utf-8").split())
    except UnicodeDecodeError:
        raise InvalidRequest(f"caption {caption.name} is not UTF-8 text", {"path": str(caption)}) from None
    check_text(text, f"caption {caption.name}")
    return text or None


def views(images: list[TrainImage], resolution: int, *, crops: bool) -> list[View]:
    """Every view of every image (see the module's note), in a fixed order."""
    import numpy as np
    from PIL import Image

    out: list[View] = []
    for index, item in enumerate(images):
        with Image.open(item.path) as opened:
            image = opened.convert("RGB")
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        boxes = [(left, top, side)]
        if crops:
            inner = round(side * CROP_FRACTION)
            for dx in (0, side - inner):
                for dy in (0, side - inner):
                    boxes.append((left + dx, top + dy, inner))
        for x, y, size in boxes:
            square = image.crop((x, y, x + size, y + size)).resize((resolution, resolution), Image.Resampling.BICUBIC)
            scale = resolution / size
            corner = (round(y * scale), round(x * scale))
            for mirrored in (False, True):
                view = square.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else square
                array = np.asarray(view, dtype=np.float32) / 127.5 - 1.0
                pixels = torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
                out.append(View(index, pixels, (height, width), corner))
    return out

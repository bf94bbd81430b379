"""Shared pieces of the training tests: small generated image folders and pipeline snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

COLOURS = [(200, 40, 40), (40, 180, 60), (50, 60, 210), (230, 200, 40)]


def image_folder(folder: Path, count: int = 3, size: tuple[int, int] = (72, 64)) -> Path:
    """``count`` solid squares with white stripes (a pattern the crops and flips change)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = Image.new("RGB", size, COLOURS[index % len(COLOURS)])
        draw = ImageDraw.Draw(image)
        for x in range(0, size[0], 16):
            draw.rectangle((x, 0, x + 5 + index, size[1] - 1), fill=(250, 250, 250))
        image.save(folder / f"image{index}.png")
    return folder


def pipeline_state(pipe: Any) -> dict[str, Any]:
    """Every weight of UNet, VAE and text encoders (cloned), and the tokenizers' vocabularies."""
    state: dict[str, Any] = {}
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            for key, value in module.state_dict().items():
                state[f"{name}.{key}"] = value.detach().clone()
    for name in ("tokenizer", "tokenizer_2"):
        tok = getattr(pipe, name, None)
        if tok is not None:
            state[f"{name}.vocab"] = dict(tok.get_vocab())
    return state


def same_state(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Keys whose values differ (bit for bit)."""
    assert before.keys() == after.keys()
    return [key for key in before if not (torch.equal(before[key], after[key]) if isinstance(before[key], torch.Tensor)
                                          else before[key] == after[key])]


def no_grads(pipe: Any) -> bool:
    return all(p.grad is None for name in ("unet", "vae", "text_encoder", "text_encoder_2")
               if getattr(pipe, name, None) is not None for p in getattr(pipe, name).parameters())

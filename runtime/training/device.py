"""Precision and attention follow the device: float32 on the CPU; on CUDA the forward passes run
under autocast in bfloat16 where the GPU has it (else float16, with a gradient scaler), and the
attention is PyTorch's scaled-dot-product kernel (diffusers' and transformers' default in torch 2,
reported here, never set: the pipeline is shared)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class DevicePlan:
    device: torch.device
    autocast: torch.dtype | None  # None: run in the weights' own dtype (float32 on the CPU)
    attention: str

    @property
    def precision(self) -> str:
        return str(self.autocast).removeprefix("torch.") if self.autocast else "float32"

    def context(self) -> Any:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast)

    def scaler(self) -> Any:
        """A gradient scaler when training under float16 (small gradients would underflow)."""
        if self.autocast == torch.float16:
            return torch.amp.GradScaler(self.device.type)
        return None


def plan_for(pipe: Any, device: torch.device) -> DevicePlan:
    autocast = None
    if device.type == "cuda":
        autocast = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return DevicePlan(device, autocast, attention_backend(pipe))


def attention_backend(pipe: Any) -> str:
    """What the UNet and text encoder attend with, e.g. ``AttnProcessor2_0 + sdpa``."""
    processors = sorted({type(p).__name__ for p in getattr(pipe.unet, "attn_processors", {}).values()})
    text = getattr(getattr(pipe.text_encoder_2 if getattr(pipe, "text_encoder", None) is None else pipe.text_encoder,
                           "config", None), "_attn_implementation", None)
    return f"{'/'.join(processors) or 'unknown'} + {text or 'eager'}"

"""What a pipeline's text side is: which CLIP encoders, tokenizers and embedding keys it has.

Embeddings are only meaningful for the CLIP text encoders of SD 1.x (CLIP-L, 768), SD 2.x
(OpenCLIP-H, 1024) and SDXL (CLIP-L 768 + OpenCLIP-bigG 1280 with projection). Everything is
read from the pipeline's components, so img2img / inpaint / ControlNet siblings work the same;
anything else (FLUX's T5, SD3's three encoders) is refused by name before any work is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pseudoword.registry.core.embedding import ARCH_BY_WIDTH
from pseudoword.registry.core.errors import ArchitectureMismatch, UnsupportedPipeline

#: How an architecture reads in messages.
ARCH_DESCRIPTIONS = {
    "sd1": "sd1 (768)",
    "sd2": "sd2 (1024)",
    "sdxl": "sdxl (clip_l 768 + clip_g 1280)",
}


@dataclass(frozen=True)
class TextSlot:
    """One tokenizer + CLIP encoder pair and the embedding key its vectors come from."""

    tokenizer: Any
    encoder: Any  # a transformers CLIP text model (torch's Module stub does not know its methods)
    vector_key: str  # "emb_params" (sd1/sd2), "clip_l" / "clip_g" (sdxl)
    width: int
    pooled: bool  # SDXL's second encoder also gives the projected pooled output
    penultimate: bool  # SDXL reads hidden_states[-2] (no final norm) by default


@dataclass(frozen=True)
class TextStack:
    architecture: str
    slots: tuple[TextSlot, ...]
    pipeline_name: str
    force_zeros_for_empty_prompt: bool

    @property
    def is_sdxl(self) -> bool:
        return self.architecture == "sdxl"

    @property
    def description(self) -> str:
        if self.is_sdxl and len(self.slots) == 1:
            return "sdxl (clip_g 1280 only)"
        return ARCH_DESCRIPTIONS[self.architecture]

    @property
    def device(self) -> torch.device:
        return self.slots[0].encoder.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.slots[0].encoder.get_input_embeddings().weight.dtype

    def check_architecture(self, label: str, architecture: str, embedding_description: str) -> None:
        if architecture != self.architecture:
            raise ArchitectureMismatch(
                f"embedding {label} is {embedding_description} but the pipeline {self.pipeline_name} "
                f"expects {self.description}",
                {"embedding": label, "embedding_architecture": architecture,
                 "pipeline": self.pipeline_name, "pipeline_architecture": self.architecture},
            )


def _class_name(obj: Any) -> str:
    return type(obj).__name__


def _is_clip(encoder: Any, *, projection: bool) -> bool:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    return isinstance(encoder, CLIPTextModelWithProjection if projection else CLIPTextModel)


def _width(encoder: Any) -> int:
    return int(encoder.config.hidden_size)


def _unsupported(pipe: Any, why: str) -> UnsupportedPipeline:
    encoders = [
        _class_name(getattr(pipe, name))
        for name in ("text_encoder", "text_encoder_2", "text_encoder_3")
        if getattr(pipe, name, None) is not None
    ]
    found = " + ".join(encoders) or "no text encoder"
    return UnsupportedPipeline(
        f"pipeline {_class_name(pipe)} has {found}: {why}; embeddings apply to the CLIP text encoders "
        "of SD 1.x, SD 2.x and SDXL pipelines (and their img2img / inpaint siblings)",
        {"pipeline": _class_name(pipe), "text_encoders": encoders},
    )


def text_stack(pipe: Any) -> TextStack:
    """Describe ``pipe``'s text side, or raise UnsupportedPipeline naming what it has."""
    name = _class_name(pipe)
    if getattr(pipe, "text_encoder_3", None) is not None:
        raise _unsupported(pipe, "a third (T5) text encoder, as in SD3")
    enc1, enc2 = getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)
    tok1, tok2 = getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None)
    force_zeros = bool(getattr(getattr(pipe, "config", None), "force_zeros_for_empty_prompt", False))
    if enc2 is not None:
        if not _is_clip(enc2, projection=True):
            raise _unsupported(pipe, f"its second text encoder is {_class_name(enc2)}, not CLIP")
        if _width(enc2) != 1280 or tok2 is None:
            raise _unsupported(pipe, f"its second text encoder is {_width(enc2)} wide; SDXL's is 1280")
        slots: list[TextSlot] = []
        if enc1 is not None:
            if not _is_clip(enc1, projection=False) or _width(enc1) != 768 or tok1 is None:
                raise _unsupported(pipe, f"its first text encoder is {_class_name(enc1)} "
                                         f"({_width(enc1)}), not SDXL's CLIP-L (768)")
            slots.append(TextSlot(tok1, enc1, "clip_l", 768, pooled=False, penultimate=True))
        slots.append(TextSlot(tok2, enc2, "clip_g", 1280, pooled=True, penultimate=True))
        return TextStack("sdxl", tuple(slots), name, force_zeros)
    if enc1 is None or tok1 is None:
        raise _unsupported(pipe, "no CLIP text encoder and tokenizer")
    if not _is_clip(enc1, projection=False):
        raise _unsupported(pipe, f"its text encoder is {_class_name(enc1)}, not CLIP")
    arch = ARCH_BY_WIDTH.get(_width(enc1))
    if arch is None:
        raise _unsupported(pipe, f"its CLIP text encoder is {_width(enc1)} wide (SD 1.x is 768, SD 2.x 1024)")
    return TextStack(arch, (TextSlot(tok1, enc1, "emb_params", _width(enc1), pooled=False, penultimate=False),),
                     name, force_zeros)

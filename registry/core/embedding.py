"""The one in-memory value every file layout is read into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the value holds tensors, but naming the type needs no torch import (the CLI's --help)
    import torch

Architecture = Literal["sd1", "sd2", "sdxl"]
ARCHITECTURES: tuple[Architecture, ...] = ("sd1", "sd2", "sdxl")

#: Width of the text encoder(s) each architecture's vectors are for.
WIDTHS: dict[str, int] = {"sd1": 768, "sd2": 1024, "clip_l": 768, "clip_g": 1280}
#: The architecture of single-encoder vectors, by their width (SDXL is the clip_l + clip_g pair).
ARCH_BY_WIDTH: dict[int, Architecture] = {WIDTHS["sd1"]: "sd1", WIDTHS["sd2"]: "sd2"}
MAX_VECTORS = 75

#: Names of the layouts we read (``Embedding.source_format``).
SourceFormat = Literal[
    "safetensors",  # canonical / kohya {emb_params} or SDXL {clip_l, clip_g}
    "safetensors-diffusers",  # {<token>: [n, d]}
    "a1111",  # torch pickle {string_to_param: {'*': ...}, name, step, ...}
    "diffusers-pickle",  # torch pickle {<token>: [d] or [n, d]}
    "sdxl-pickle",  # torch pickle {clip_l, clip_g}
]


@dataclass(frozen=True)
class Embedding:
    """A validated textual-inversion embedding.

    ``vectors`` holds ``{"emb_params": [n, d]}`` for sd1/sd2 and ``{"clip_l": [n, 768],
    "clip_g": [n, 1280]}`` for sdxl: the key names of the canonical file. Tensors are on the
    CPU, contiguous, float32 or float16.
    """

    vectors: dict[str, torch.Tensor]
    architecture: Architecture
    source_format: str
    name: str | None = None  # the trigger/name stored in the file, if any
    metadata: dict[str, str] = field(default_factory=dict)  # training metadata (step, ...)

    @property
    def num_vectors(self) -> int:
        return next(iter(self.vectors.values())).shape[0]

    @property
    def dtype(self) -> str:
        return str(next(iter(self.vectors.values())).dtype).removeprefix("torch.")

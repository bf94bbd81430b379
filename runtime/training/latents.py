"""Every view through the VAE once: its latent distribution (mean and std) is kept, and each
step draws a latent from it with the run's own generator (the same distribution diffusers'
example samples by running the VAE on every step)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from pseudoword.runtime.training.images import View

ENCODE_BATCH = 8


@dataclass(frozen=True)
class LatentCache:
    mean: torch.Tensor  # [views, C, h, w], float32 on the training device
    std: torch.Tensor
    scaling_factor: float

    def __len__(self) -> int:
        return self.mean.shape[0]

    def sample(self, index: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Scaled latents for the views ``index``, drawn with the standard-normal ``eps``."""
        return (self.mean[index] + self.std[index] * eps) * self.scaling_factor


def encode_views(vae: Any, views: list[View], device: torch.device) -> LatentCache:
    """The VAE's latent distribution of each view (float32). A float16 VAE that asks for it
    (``force_upcast``, SDXL's) runs on a float32 copy, as diffusers' pipelines upcast it."""
    encoder = vae
    dtype = next(vae.parameters()).dtype
    if dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
        encoder, dtype = copy.deepcopy(vae).float(), torch.float32
    means, stds = [], []
    with torch.no_grad():
        for start in range(0, len(views), ENCODE_BATCH):
            pixels = torch.stack([v.pixels for v in views[start:start + ENCODE_BATCH]]).to(device, dtype)
            dist = encoder.encode(pixels).latent_dist
            means.append(dist.mean.float())
            stds.append(dist.std.float())
    return LatentCache(torch.cat(means), torch.cat(stds), float(vae.config.scaling_factor))

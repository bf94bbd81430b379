"""Small random-weight Stable Diffusion pipelines: ``pseudoword demo-pipeline`` and the tests.

No hub is needed: the text encoders are random but have the real widths and shapes (CLIP-L 768,
OpenCLIP-H 1024, OpenCLIP-bigG 1280 with its 1280 projection), so real embedding files apply to
them; the tokenizer is CLIP's real one, from a directory given (``--tokenizer DIR``), else
``PSEUDOWORD_CLIP_TOKENIZER``, else ``openai/clip-vit-large-patch14`` in the Hugging Face cache
(never downloaded here; pseudoword ships no copy); UNet and VAE are tiny. The images are noise, but every step a real pipeline takes runs: prompt
syntax, embeddings, schedulers, clip skip, PNG metadata.

Sizes: the VAE downsamples by 8, as Stable Diffusion's does, and the UNet attends only at its
lower resolution, so the native 64x64 takes a few hundredths of a second a step on one CPU
core, 256x256 about half a second, 512x512 a few seconds (README: measured figures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pseudoword.registry.core.embedding import ARCHITECTURES

#: Where CLIP's tokenizer is found when no directory is given and PSEUDOWORD_CLIP_TOKENIZER is unset.
HUB_TOKENIZER = "openai/clip-vit-large-patch14"
VOCAB = 49408
BOS, EOS = 49406, 49407

#: Text-encoder shapes of the real checkpoints (hidden, heads, mlp, activation).
TEXT_SHAPES: dict[str, tuple[int, int, int, str]] = {
    "clip_l": (768, 12, 3072, "quick_gelu"),  # SD 1.x, SDXL's first encoder
    "open_clip_h": (1024, 16, 4096, "gelu"),  # SD 2.x
    "open_clip_g": (1280, 20, 5120, "gelu"),  # SDXL's second encoder
}


def text_config(shape: str, layers: int, projection_dim: int | None = None) -> Any:
    from transformers import CLIPTextConfig

    hidden, heads, mlp, act = TEXT_SHAPES[shape]
    return CLIPTextConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=mlp,
        num_attention_heads=heads,
        num_hidden_layers=layers,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=projection_dim or hidden,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=1,
    )


def text_encoder(shape: str, layers: int, *, seed: int, with_projection: bool = False) -> torch.nn.Module:
    """A random CLIP text encoder of real width (float32, eval mode)."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = text_config(shape, layers, projection_dim=1280 if with_projection else None)
    model = CLIPTextModelWithProjection(config) if with_projection else CLIPTextModel(config)
    return model.eval()


def _unet(cross_attention_dim: int, *, sdxl: bool, seed: int) -> Any:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    extra: dict[str, Any] = {}
    if sdxl:
        extra = {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 1280 + 6 * 8,
            "transformer_layers_per_block": 1,
        }
    unet: Any = UNet2DConditionModel(  # diffusers' classes are untyped to mypy
        sample_size=8,  # latents of a 64x64 image
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        # attention only at the lower resolution: at the full one it is what makes big images slow
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=32,
        **extra,
    )
    return unet.eval()


def _vae(seed: int) -> Any:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae: Any = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        # four levels: latents 1/8 of the image, as in Stable Diffusion
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=64,
    )
    return vae.eval()


def _scheduler() -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        steps_offset=1, timestep_spacing="leading",
    )


def tokenizer(directory: Path | str | None = None, *, pad: str | None = None) -> Any:
    """CLIP's tokenizer from ``directory``, else ``PSEUDOWORD_CLIP_TOKENIZER``, else the Hugging Face
    cache (offline); ``pad="!"`` makes SD 2.x's / SDXL's second tokenizer from the same vocabulary."""
    from transformers import CLIPTokenizer

    from pseudoword.registry.core.errors import InvalidRequest
    from pseudoword.runtime.settings import clip_tokenizer_dir

    extra: dict[str, Any] = {"pad_token": pad} if pad is not None else {}
    directory = directory or clip_tokenizer_dir()
    if directory is not None:
        if not (Path(directory) / "vocab.json").is_file():
            raise InvalidRequest(f"{directory} has no vocab.json: give a directory with CLIP's tokenizer files",
                                 {"path": str(directory)})
        return CLIPTokenizer.from_pretrained(str(directory), **extra)
    from huggingface_hub import try_to_load_from_cache

    # Asked of the cache file by file: transformers builds an empty tokenizer for a missing repo.
    vocab, merges = (try_to_load_from_cache(HUB_TOKENIZER, name) for name in ("vocab.json", "merges.txt"))
    if not (isinstance(vocab, str) and isinstance(merges, str)):
        raise InvalidRequest(f"no CLIP tokenizer: pass --tokenizer DIR (vocab.json, merges.txt), set "
                             f"PSEUDOWORD_CLIP_TOKENIZER, or have {HUB_TOKENIZER} in the Hugging Face cache")
    return CLIPTokenizer.from_pretrained(str(Path(vocab).parent), **extra)


def _tokenizer_2(directory: Path | str | None) -> Any:
    """SD 2.x's tokenizer (and SDXL's second): CLIP's, padded with ``!``."""
    return tokenizer(directory, pad="!")


def build_sd1(tokenizer_dir: Path | str | None = None, *, layers: int = 2, seed: int = 1) -> Any:
    """SD 1.x shape: CLIP-L (768) with the pad-``<|endoftext|>`` tokenizer."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=_vae(seed),
        text_encoder=text_encoder("clip_l", layers, seed=seed),
        tokenizer=tokenizer(tokenizer_dir),
        unet=_unet(768, sdxl=False, seed=seed),
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_sd2(tokenizer_2_dir: Path | str | None = None, *, layers: int = 2, seed: int = 2) -> Any:
    """SD 2.x shape: OpenCLIP-H (1024) with SD2's tokenizer settings (pad ``!``)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=_vae(seed),
        text_encoder=text_encoder("open_clip_h", layers, seed=seed),
        tokenizer=_tokenizer_2(tokenizer_2_dir),
        unet=_unet(1024, sdxl=False, seed=seed),
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_sdxl(tokenizer_dir: Path | str | None = None, tokenizer_2_dir: Path | str | None = None, *,
               layers: int = 2, seed: int = 3) -> Any:
    """SDXL shape: CLIP-L (768) + OpenCLIP-bigG with projection (1280), both at full width."""
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline(
        vae=_vae(seed),
        text_encoder=text_encoder("clip_l", layers, seed=seed),
        text_encoder_2=text_encoder("open_clip_g", layers, seed=seed + 100, with_projection=True),
        tokenizer=tokenizer(tokenizer_dir),
        tokenizer_2=_tokenizer_2(tokenizer_2_dir),
        unet=_unet(768 + 1280, sdxl=True, seed=seed),
        scheduler=_scheduler(),
        force_zeros_for_empty_prompt=True,
    )


def build(architecture: str, *, tokenizer_dir: Path | str | None = None, layers: int = 2) -> Any:
    """A demo pipeline of ``architecture`` (sd1, sd2, sdxl). ``tokenizer_dir`` holds CLIP's
    tokenizer files (vocab.json, merges.txt); SD 2.x and SDXL's second tokenizer use it with
    ``!`` as padding, as those models do."""
    if architecture == "sd1":
        return build_sd1(tokenizer_dir, layers=layers)
    if architecture == "sd2":
        return build_sd2(tokenizer_dir, layers=layers)
    if architecture == "sdxl":
        return build_sdxl(tokenizer_dir, tokenizer_dir, layers=layers)
    raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")

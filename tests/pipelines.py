"""Small Stable Diffusion pipelines built from configs, for the runtime's tests and benchmarks.

No weights can be downloaded here, so the text encoders are random but have the real widths
(CLIP-L 768, OpenCLIP-H 1024, OpenCLIP-bigG 1280 with a 1280 projection) and the real corpus
tokenizer; UNet and VAE are tiny so a 2-step 64x64 generation takes a fraction of a second.
The number of text-encoder layers is a parameter: 2 for tests, 12 for the benchmark.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

VOCAB = 49408
BOS, EOS = 49406, 49407

#: Text-encoder shapes of the real checkpoints (hidden, heads, mlp, activation).
TEXT_SHAPES: dict[str, tuple[int, int, int, str]] = {
    "clip_l": (768, 12, 3072, "quick_gelu"),  # SD 1.x, SDXL's first encoder
    "open_clip_h": (1024, 16, 4096, "gelu"),  # SD 2.x
    "open_clip_g": (1280, 20, 5120, "gelu"),  # SDXL's second encoder
}


def text_config(shape: str, layers: int, projection_dim: int | None = None) -> CLIPTextConfig:
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


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def text_encoder(shape: str, layers: int, *, seed: int, with_projection: bool = False) -> torch.nn.Module:
    """A random CLIP text encoder of real width (float32, eval mode)."""
    _seeded(seed)
    config = text_config(shape, layers, projection_dim=1280 if with_projection else None)
    model = CLIPTextModelWithProjection(config) if with_projection else CLIPTextModel(config)
    return model.eval()


def _unet(cross_attention_dim: int, *, sdxl: bool, seed: int) -> UNet2DConditionModel:
    _seeded(seed)
    extra: dict[str, Any] = {}
    if sdxl:
        extra = {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 1280 + 6 * 8,
            "transformer_layers_per_block": 1,
        }
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=32,
        **extra,
    ).eval()


def _vae(seed: int) -> AutoencoderKL:
    _seeded(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    ).eval()


def _scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        steps_offset=1, timestep_spacing="leading",
    )


def tokenizer(directory: Path) -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(str(directory))


def build_sd1(tokenizer_dir: Path, *, layers: int = 2, seed: int = 1) -> StableDiffusionPipeline:
    """SD 1.x shape: CLIP-L (768) with the pad-``<|endoftext|>`` tokenizer."""
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


def build_sd2(tokenizer_2_dir: Path, *, layers: int = 2, seed: int = 2) -> StableDiffusionPipeline:
    """SD 2.x shape: OpenCLIP-H (1024) with SD2's tokenizer settings (pad ``!``)."""
    return StableDiffusionPipeline(
        vae=_vae(seed),
        text_encoder=text_encoder("open_clip_h", layers, seed=seed),
        tokenizer=tokenizer(tokenizer_2_dir),
        unet=_unet(1024, sdxl=False, seed=seed),
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_sdxl(tokenizer_dir: Path, tokenizer_2_dir: Path, *, layers: int = 2, seed: int = 3,
               ) -> StableDiffusionXLPipeline:
    """SDXL shape: CLIP-L (768) + OpenCLIP-bigG with projection (1280), both at full width."""
    return StableDiffusionXLPipeline(
        vae=_vae(seed),
        text_encoder=text_encoder("clip_l", layers, seed=seed),
        text_encoder_2=text_encoder("open_clip_g", layers, seed=seed + 100, with_projection=True),
        tokenizer=tokenizer(tokenizer_dir),
        tokenizer_2=tokenizer(tokenizer_2_dir),
        unet=_unet(768 + 1280, sdxl=True, seed=seed),
        scheduler=_scheduler(),
        force_zeros_for_empty_prompt=True,
    )


def copy_text_side(pipe: Any) -> Any:
    """The same pipeline with its own deep copies of the tokenizers and text encoders, for
    diffusers' ``load_textual_inversion`` (which changes them) to run on without touching the
    shared one. UNet, VAE and scheduler stay shared: TI never touches them."""
    components = dict(pipe.components)
    for name in ("tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2"):
        if components.get(name) is not None:
            components[name] = copy.deepcopy(components[name])
    return type(pipe)(**components)


def text_state(pipe: Any) -> dict[str, Any]:
    """Everything encode must leave unchanged: tokenizer sizes and text-encoder weights (cloned)."""
    state: dict[str, Any] = {}
    for name in ("tokenizer", "tokenizer_2"):
        tok = getattr(pipe, name, None)
        if tok is not None:
            state[f"{name}.len"] = len(tok)
    for name in ("text_encoder", "text_encoder_2"):
        enc = getattr(pipe, name, None)
        if enc is not None:
            for key, value in enc.state_dict().items():
                state[f"{name}.{key}"] = value.detach().clone()
    return state


# -- shared instances ------------------------------------------------------------------------
# Built once per test process (seeded, so identical everywhere) and shared by every module's
# fixtures; tests must never change them (the parity tests work on copy_text_side copies).


@functools.cache
def shared_sd1(tokenizer_dir: Path) -> StableDiffusionPipeline:
    pipe = build_sd1(tokenizer_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def shared_sd2(tokenizer_2_dir: Path) -> StableDiffusionPipeline:
    pipe = build_sd2(tokenizer_2_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def shared_sdxl(tokenizer_dir: Path, tokenizer_2_dir: Path) -> StableDiffusionXLPipeline:
    pipe = build_sdxl(tokenizer_dir, tokenizer_2_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -- a resolver without a registry -------------------------------------------------------------


@dataclass(frozen=True)
class FakeResolved:
    """What ``Resolver.resolve`` gives, for a local file: ``.ref``, ``.record``, ``.path``,
    ``.embedding()`` (counted, to show repeats are served from the vector cache)."""

    ref: str
    record: dict[str, Any]
    path: Path
    owner: FakeResolver

    def embedding(self) -> Any:
        from pseudoword.registry.core import read_embedding

        self.owner.reads.append(self.ref)
        return read_embedding(self.path.read_bytes(), filename=self.path.name)


@dataclass
class FakeResolver:
    """Serves ``source:model@version`` references from local files; unknown ones raise
    RemoteNotFound as the real resolver does."""

    files: dict[str, tuple[Path, dict[str, Any]]] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)

    def add(self, ref: str, path: Path, *, trigger: str, kind: str = "positive") -> FakeResolver:
        import hashlib

        from pseudoword.registry.core import canonical_bytes, read_embedding

        data = path.read_bytes()
        emb = read_embedding(data, filename=path.name)
        source, rest = ref.split(":", 1)
        model, version = rest.split("@", 1)
        digest = hashlib.sha256(canonical_bytes(emb)).hexdigest()
        original = hashlib.sha256(data).hexdigest()
        record = {
            "id": ref, "source": source, "model": model, "version": version,
            "architecture": emb.architecture, "vectors": emb.num_vectors, "kind": kind, "trigger": trigger,
            "sha256": digest, "original_sha256": original, "a1111_hash": original[:12], "autov2": original[:10],
        }
        self.files[ref] = (path, record)
        return self

    def resolve(self, refs: list[str]) -> list[FakeResolved]:
        from pseudoword.registry.core.errors import RemoteNotFound

        self.calls.append(list(refs))
        out = []
        for ref in refs:
            if ref not in self.files:
                raise RemoteNotFound(f"{ref}: no such embedding in the registry", {"ref": ref})
            path, record = self.files[ref]
            out.append(FakeResolved(ref, record, path, self))
        return out


def with_diffusers_ti(pipe: Any, embeddings: list[tuple[Any, str]]) -> Any:
    """A copy of ``pipe``'s text side with ``(Embedding, trigger)`` pairs loaded by diffusers'
    own ``load_textual_inversion``: the reference the runtime must match."""
    ref = copy_text_side(pipe)
    for name in ("text_encoder", "text_encoder_2"):
        encoder = getattr(ref, name, None)
        if encoder is not None:  # the new rows are overwritten anyway: skip transformers'
            # covariance-matched initialisation of resized embeddings (seconds per encoder)
            encoder.resize_token_embeddings = functools.partial(
                type(encoder).resize_token_embeddings, encoder, mean_resizing=False)
    tokens = [trigger for _, trigger in embeddings]
    if getattr(ref, "text_encoder_2", None) is not None:
        ref.load_textual_inversion([e.vectors["clip_l"] for e, _ in embeddings], token=tokens,
                                   text_encoder=ref.text_encoder, tokenizer=ref.tokenizer)
        ref.load_textual_inversion([e.vectors["clip_g"] for e, _ in embeddings], token=tokens,
                                   text_encoder=ref.text_encoder_2, tokenizer=ref.tokenizer_2)
    else:
        ref.load_textual_inversion([e.vectors["emb_params"] for e, _ in embeddings], token=tokens)
    return ref

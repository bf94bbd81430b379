"""Small Stable Diffusion pipelines built from configs, for the runtime's tests and benchmarks.

The builders live in the package (``pseudoword.runtime.demo_pipeline``, also behind
``pseudoword demo-pipeline``); here the tests build them with the corpus tokenizer, 2 text-encoder
layers for tests and 12 for the benchmark, and keep one seeded instance of each per process.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from pseudoword.runtime.demo_pipeline import (  # noqa: F401 - re-exported for the tests and benchmarks
    _scheduler,
    _unet,
    _vae,
    build_sd1,
    build_sd2,
    build_sdxl,
    text_config,
    text_encoder,
    tokenizer,
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

"""What the output file says about itself: our keys, A1111's training keys, and the same facts
under Stability AI's ModelSpec keys (``modelspec.*``, as kohya's sd-scripts write them) so other
tools can read them. No date is written: the same run gives the same bytes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from pseudoword.runtime.text_stack import TextStack

MODELSPEC_VERSION = "1.0.1"
#: ModelSpec's base architecture ids (kohya's ``sai_model_spec``), by ours.
_MODELSPEC_BASES = {"sd1": "stable-diffusion-v1", "sdxl": "stable-diffusion-xl-v1-base"}


def text_encoder_sha256(stack: TextStack) -> str:
    """SHA-256 over every text encoder's weights (names and bytes, in order): which base model
    the vectors were learned against."""
    digest = hashlib.sha256()
    for slot in stack.slots:
        for name, tensor in sorted(slot.encoder.state_dict().items()):
            digest.update(f"{slot.vector_key}.{name}".encode())
            digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())  # no copy
    return digest.hexdigest()


def prediction_type(pipe: Any) -> str:
    return str(getattr(pipe.scheduler.config, "prediction_type", None) or "epsilon")


def modelspec_architecture(architecture: str, resolution: int, prediction: str) -> str:
    if architecture == "sd2":
        base = "stable-diffusion-v2-768-v" if prediction == "v_prediction" else "stable-diffusion-v2-512"
    else:
        base = _MODELSPEC_BASES[architecture]
    return f"{base}/textual-inversion"


def training_metadata(*, trigger: str, architecture: str, vectors: int, steps: int, pipeline_name: str,
                      encoder_sha256: str, init_word: str, kind: str, resolution: int, prediction: str,
                      settings: dict[str, Any]) -> dict[str, str]:
    """String metadata for the canonical file (the core's limits: at most 32 short entries)."""
    return {
        "pseudoword.trigger": trigger,
        "pseudoword.vectors": str(vectors),
        "pseudoword.steps": str(steps),
        "pseudoword.kind": kind,
        "pseudoword.init_word": init_word,
        "pseudoword.base_pipeline": pipeline_name,
        "pseudoword.text_encoder_sha256": encoder_sha256,
        "pseudoword.training": json.dumps(settings, sort_keys=True, separators=(",", ":")),
        # AUTOMATIC1111's training keys (its .pt export carries them).
        "step": str(steps),
        "sd_checkpoint_name": pipeline_name,
        # Stability AI's ModelSpec, as kohya's trainers write it.
        "modelspec.sai_model_spec": MODELSPEC_VERSION,
        "modelspec.architecture": modelspec_architecture(architecture, resolution, prediction),
        "modelspec.implementation": ("https://github.com/Stability-AI/generative-models" if architecture == "sdxl"
                                     else "diffusers"),
        "modelspec.title": trigger,
        "modelspec.resolution": f"{resolution}x{resolution}",
        "modelspec.prediction_type": "v" if prediction == "v_prediction" else "epsilon",
        "modelspec.trigger_phrase": trigger,
        "modelspec.is_negative_embedding": "False",
        "modelspec.tags": kind,
        "modelspec.description": f"textual inversion ({kind}) of {vectors} vector(s), {steps} steps on "
                                 f"{pipeline_name}, init word {init_word!r}",
    }

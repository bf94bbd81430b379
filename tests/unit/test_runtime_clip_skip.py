"""``clipSkip`` in a request has Runware's meaning (the seed "Text to image"): layers skipped
beyond the model's default, 0 = default, and "SDXL models already skip one layer by default, so
setting ClipSkip to 2 with SDXL effectively skips three layers". That is diffusers' own
``clip_skip`` count; A1111's "Clip skip" is one more on SD 1.x, two more on SDXL."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from pseudoword.runtime.clip_forward import transformer
from pseudoword.runtime.generation import a1111_clip_skip, encode_generation, parse_request
from tests.pipelines import text_encoder


@pytest.fixture(scope="module")
def sdxl3(sdxl: Any) -> Any:
    """The small SDXL pipeline with 3-layer text encoders, so that skipping three layers leaves
    one to read (the embeddings' output)."""
    return type(sdxl)(**{**sdxl.components, "text_encoder": text_encoder("clip_l", 3, seed=31),
                         "text_encoder_2": text_encoder("open_clip_g", 3, seed=32, with_projection=True)})


def _ids(tokenizer: Any, texts: list[str]) -> torch.Tensor:
    return tokenizer(texts, padding="max_length", max_length=77, return_tensors="pt").input_ids


def _request(clip_skip: int) -> Any:
    return parse_request({"positivePrompt": "a cat", "negativePrompt": "a dog", "clipSkip": clip_skip})


@pytest.mark.parametrize("clip_skip", [0, 1, 2])
def test_sd1_reads_the_layer_before_the_last_minus_clip_skip(sd1: Any, clip_skip: int) -> None:
    got = encode_generation(sd1, _request(clip_skip)).kwargs
    with torch.no_grad():
        out = sd1.text_encoder(_ids(sd1.tokenizer, ["a cat", "a dog"]), output_hidden_states=True)
        # the default is the last layer (through the final norm); each skip goes one layer back
        expected = transformer(sd1.text_encoder).final_layer_norm(out.hidden_states[-1 - clip_skip])
    assert torch.allclose(got["prompt_embeds"][0], expected[0], atol=1e-5)
    assert torch.allclose(got["negative_prompt_embeds"][0], expected[1], atol=1e-5)
    # (diffusers' own SD 1.x clip_skip path reads text_encoder.text_model, which transformers 5
    # no longer has; the SDXL test below compares with diffusers' clip_skip directly)
    assert a1111_clip_skip(sd1, clip_skip) == clip_skip + 1


@pytest.mark.parametrize("clip_skip", [0, 1, 2])
def test_sdxl_already_skips_one(sdxl3: Any, clip_skip: int) -> None:
    got = encode_generation(sdxl3, _request(clip_skip)).kwargs
    layer = -2 - clip_skip  # clipSkip 2 "effectively skips three layers": hidden_states[-4]
    with torch.no_grad():
        first = sdxl3.text_encoder(_ids(sdxl3.tokenizer, ["a cat", "a dog"]), output_hidden_states=True)
        second = sdxl3.text_encoder_2(_ids(sdxl3.tokenizer_2, ["a cat", "a dog"]), output_hidden_states=True)
    expected = torch.cat([first.hidden_states[layer], second.hidden_states[layer]], dim=-1)
    assert torch.allclose(got["prompt_embeds"][0], expected[0], atol=1e-5)
    assert torch.allclose(got["negative_prompt_embeds"][0], expected[1], atol=1e-5)
    assert torch.allclose(got["pooled_prompt_embeds"][0], second.text_embeds[0], atol=1e-5)  # pooled: last layer
    theirs = sdxl3.encode_prompt("a cat", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False,
                                 clip_skip=clip_skip or None)
    assert torch.allclose(got["prompt_embeds"], theirs[0], atol=1e-5)
    assert a1111_clip_skip(sdxl3, clip_skip) == clip_skip + 2

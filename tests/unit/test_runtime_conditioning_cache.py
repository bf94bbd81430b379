"""The conditioning cache: a recurring side (the service's negative prompt) skips the encoder,
gives the bits a fresh encode gives, and is never answered for a request it does not fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import pseudoword.runtime.conditioning as conditioning
from pseudoword.registry.core.errors import InvalidSetting
from pseudoword.runtime import encode_request
from pseudoword.runtime.clip_forward import transformer
from pseudoword.runtime.conditioning_cache import ConditioningCache
from tests.pipelines import FakeResolver, copy_text_side

NEGATIVE = "lowres, blurry, bad anatomy"


@pytest.fixture(scope="module")
def resolver(embeddings_dir: Path) -> FakeResolver:
    return (FakeResolver()
            .add("civitai:7808@9208", embeddings_dir / "EasyNegative.safetensors", trigger="easynegative",
                 kind="negative")
            .add("civitai:1@2", embeddings_dir / "ulzzang-6500.pt", trigger="ulzzang")
            .add("civitai:403492@1", embeddings_dir / "zPDXL.pt", trigger="zpdxl"))


@pytest.fixture
def forwards(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows of each encoder forward pass ``encode`` runs."""
    seen: list[int] = []
    real = conditioning.encode_embeds

    def counting(encoder: Any, inputs: torch.Tensor, **kwargs: Any) -> Any:
        seen.append(inputs.shape[0])
        return real(encoder, inputs, **kwargs)

    monkeypatch.setattr(conditioning, "encode_embeds", counting)
    return seen


def _request(pipe: Any, prompt: str, resolver: FakeResolver, cache: ConditioningCache, **kw: Any) -> Any:
    mix = kw.pop("embeddings", [{"model": "civitai:1@2", "weight": 1.5}, {"model": "civitai:7808@9208", "weight": -1}])
    return encode_request(pipe, prompt, kw.pop("negative", NEGATIVE), mix, resolver=resolver,
                          conditioning_cache=cache, **kw).kwargs


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_recurring_negative_side_runs_no_forward_and_gives_the_same_bits(
        sd1: Any, resolver: FakeResolver, forwards: list[int]) -> None:
    cache = ConditioningCache(8 << 20)
    first = _request(sd1, "a portrait, ulzzang", resolver, cache)
    assert forwards == [1, 1]  # each side on its own
    second = _request(sd1, "a landscape at dusk", resolver, cache)
    assert forwards == [1, 1, 1]  # only the new prompt went through the encoder
    assert cache.hits == 1 and cache.misses == 3
    fresh = _request(sd1, "a landscape at dusk", resolver, ConditioningCache(0))
    assert _equal(second, fresh)
    assert torch.equal(first["negative_prompt_embeds"], second["negative_prompt_embeds"])
    assert not torch.equal(first["prompt_embeds"], second["prompt_embeds"])


def test_sdxl_sides_and_pooled_outputs_come_back_the_same(sdxl: Any, resolver: FakeResolver,
                                                         forwards: list[int]) -> None:
    cache = ConditioningCache(8 << 20)
    mix = [{"model": "civitai:403492@1", "weight": -0.8}]
    _request(sdxl, "a cat", resolver, cache, embeddings=mix)
    assert len(forwards) == 4  # two encoders, two sides
    got = _request(sdxl, "a dog", resolver, cache, embeddings=mix)
    assert len(forwards) == 6 and cache.hits == 2
    fresh = _request(sdxl, "a dog", resolver, ConditioningCache(0), embeddings=mix)
    assert set(got) == {"prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                        "negative_pooled_prompt_embeds"}
    assert _equal(got, fresh)


@pytest.mark.parametrize("change", [
    {"embeddings": [{"model": "civitai:1@2", "weight": 1.5}, {"model": "civitai:7808@9208", "weight": -2}]},
    {"embeddings": [{"model": "civitai:1@2", "weight": 1.5}]},
    {"negative": NEGATIVE + ", watermark"},
    {"clip_skip": 1},
], ids=["negative weight", "negative embedding gone", "negative text", "clip_skip"])
def test_anything_the_side_depends_on_is_part_of_the_key(sd1: Any, resolver: FakeResolver,
                                                         change: dict[str, Any]) -> None:
    cache = ConditioningCache(8 << 20)
    base = _request(sd1, "a portrait", resolver, cache)
    got = _request(sd1, "a portrait", resolver, cache, **change)
    assert cache.hits == (0 if "clip_skip" in change else 1)  # the unchanged prompt side only
    assert _equal(got, _request(sd1, "a portrait", resolver, ConditioningCache(0), **change))
    assert not torch.equal(got["negative_prompt_embeds"], base["negative_prompt_embeds"])


def test_an_in_place_change_to_the_encoder_is_never_answered_from_the_cache(
        sd1: Any, resolver: FakeResolver) -> None:
    own = copy_text_side(sd1)
    cache = ConditioningCache(8 << 20)
    before = _request(own, "a portrait", resolver, cache)
    with torch.no_grad():
        transformer(own.text_encoder).encoder.layers[0].mlp.fc1.weight.mul_(1.1)  # as fusing a LoRA does
    after = _request(own, "a portrait", resolver, cache)
    assert cache.hits == 0
    assert not torch.allclose(after["negative_prompt_embeds"], before["negative_prompt_embeds"], atol=1e-4)
    assert _equal(after, _request(own, "a portrait", resolver, ConditioningCache(0)))


def test_what_encode_returns_never_aliases_the_cache(sd1: Any, resolver: FakeResolver) -> None:
    cache = ConditioningCache(8 << 20)
    first = _request(sd1, "a portrait", resolver, cache)
    expected = {k: v.clone() for k, v in first.items()}
    for value in first.values():
        value.fill_(7.0)  # a caller scribbling on its own tensors
    again = _request(sd1, "a portrait", resolver, cache)
    assert cache.hits == 2
    assert _equal(again, expected)


def test_the_cache_is_bounded_by_bytes(sd1: Any, resolver: FakeResolver) -> None:
    one_side = 77 * 768 * 4  # [1, 77, 768] float32
    cache = ConditioningCache(3 * one_side)

    def request(i: int) -> None:
        _request(sd1, f"prompt number {i}", resolver, cache, negative=f"negative number {i}", embeddings=[])

    for i in range(6):
        request(i)
    assert len(cache) == 3 and cache.nbytes == 3 * one_side
    request(5)  # the newest stayed
    assert cache.hits == 2
    request(0)  # the oldest went
    assert cache.hits == 2


def test_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSEUDOWORD_CONDITIONING_CACHE", "0")
    assert not ConditioningCache().enabled
    monkeypatch.setenv("PSEUDOWORD_CONDITIONING_CACHE", "16")
    assert ConditioningCache().max_bytes == 16 << 20
    monkeypatch.setenv("PSEUDOWORD_CONDITIONING_CACHE", "lots")
    with pytest.raises(InvalidSetting, match="PSEUDOWORD_CONDITIONING_CACHE must be a whole number, not 'lots'"):
        ConditioningCache().max_bytes  # noqa: B018 - read on first use


def test_off_means_every_side_is_encoded(sd1: Any, resolver: FakeResolver, forwards: list[int]) -> None:
    cache = ConditioningCache(0)
    _request(sd1, "a portrait", resolver, cache)
    _request(sd1, "a portrait", resolver, cache)
    assert forwards == [1, 1, 1, 1] and len(cache) == 0 and cache.hits == 0


def test_an_unfused_lora_on_the_text_encoder_is_part_of_the_key(sd1: Any, forwards: list[int]) -> None:
    """A PEFT LoRA on the text encoder (as ``load_lora_weights`` installs it): changing its scale
    or switching it off changes no parameter, yet the conditioning returned follows it, cached
    sides and the empty-prompt anchor alike."""
    from diffusers.utils.peft_utils import set_adapter_layers, set_weights_and_activate_adapters
    from peft import LoraConfig, inject_adapter_in_model

    own = copy_text_side(sd1)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    inject_adapter_in_model(config, own.text_encoder, adapter_name="style")  # random A and B: it does something
    cache = ConditioningCache(8 << 20)

    def conditioning_now(negative: str = NEGATIVE) -> dict[str, torch.Tensor]:
        return encode_request(own, "a portrait", negative, conditioning_cache=cache).kwargs

    def fresh(negative: str = NEGATIVE) -> dict[str, torch.Tensor]:
        return encode_request(own, "a portrait", negative, conditioning_cache=ConditioningCache(0)).kwargs

    full = conditioning_now()
    assert _equal(conditioning_now(), full) and cache.hits == 2  # unchanged adapter: both sides cached
    set_weights_and_activate_adapters(own.text_encoder, ["style"], [0.25])
    passes = len(forwards)
    quarter = conditioning_now()
    assert len(forwards) == passes + 2, "a new scale is encoded afresh"
    assert _equal(quarter, fresh())
    assert not torch.allclose(quarter["prompt_embeds"], full["prompt_embeds"], atol=1e-4)
    assert not torch.allclose(quarter["negative_prompt_embeds"], full["negative_prompt_embeds"], atol=1e-4)
    # the empty-prompt anchor (an empty negative prompt) follows the scale too
    theirs = own.encode_prompt("", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)[0]
    assert torch.allclose(conditioning_now("")["negative_prompt_embeds"], theirs, atol=1e-5)
    set_adapter_layers(own.text_encoder, enabled=False)
    off = conditioning_now()
    assert _equal(off, encode_request(sd1, "a portrait", NEGATIVE, conditioning_cache=ConditioningCache(0)).kwargs)

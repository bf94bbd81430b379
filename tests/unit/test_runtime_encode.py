"""``encode`` on small pipelines of real width: weights, placement, long prompts, clip_skip,
statelessness, concurrency and the vector cache."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from pseudoword.registry.core import read_embedding
from pseudoword.runtime import encode, encode_request
from pseudoword.runtime.vector_cache import VectorCache
from tests.pipelines import FakeResolver, copy_text_side, text_state, with_diffusers_ti


@pytest.fixture(scope="module")
def resolver(embeddings_dir: Path) -> FakeResolver:
    return (FakeResolver()
            .add("civitai:7808@9208", embeddings_dir / "EasyNegative.safetensors", trigger="easynegative",
                 kind="negative")
            .add("civitai:116230@125849", embeddings_dir / "bad-hands-5.pt", trigger="bad-hands-5", kind="negative")
            .add("hf:charturner@2", embeddings_dir / "charturnerv2.pt", trigger="charturner")
            .add("civitai:1@2", embeddings_dir / "ulzzang-6500.pt", trigger="ulzzang")
            .add("civitai:75v@1", embeddings_dir / "bad-picture-chill-75v.pt", trigger="badpicture")
            .add("civitai:403492@1", embeddings_dir / "zPDXL.pt", trigger="zpdxl"))


def _same_state(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return before.keys() == after.keys() and all(
        torch.equal(before[k], after[k]) if isinstance(before[k], torch.Tensor) else before[k] == after[k]
        for k in before
    )


def _positions(sd1: Any, prompt: str, word: str, count: int) -> list[int]:
    ids = sd1.tokenizer(prompt.replace(word, " ".join(["x"] * count))).input_ids
    x = sd1.tokenizer("x", add_special_tokens=False).input_ids[0]
    return [i for i, t in enumerate(ids) if t == x]


def test_weight_two_doubles_the_difference_from_the_empty_prompt_at_the_embedding_only(
        sd1: Any, resolver: FakeResolver) -> None:
    prompt = "a portrait, ulzzang, soft light"
    one = encode(sd1, prompt, "", [{"model": "civitai:1@2", "weight": 1}], resolver=resolver)["prompt_embeds"][0]
    two = encode(sd1, prompt, "", [{"model": "civitai:1@2", "weight": 2}], resolver=resolver)["prompt_embeds"][0]
    empty = sd1.encode_prompt("", device="cpu", num_images_per_prompt=1,
                              do_classifier_free_guidance=False)[0][0]
    where = _positions(sd1, prompt, "ulzzang", 3)
    assert len(where) == 3
    others = [i for i in range(77) if i not in where]
    assert torch.equal(two[others], one[others])  # bit-identical elsewhere
    assert torch.allclose(two[where] - empty[where], 2 * (one[where] - empty[where]), atol=1e-5)
    assert not torch.allclose(two[where], one[where], atol=1e-3)


def test_negative_weight_lands_in_the_negative_conditioning(sd1: Any, resolver: FakeResolver) -> None:
    plain = encode(sd1, "a cat", "blurry")
    neg = encode(sd1, "a cat", "blurry", [{"model": "civitai:7808@9208", "weight": -1}], resolver=resolver)
    written = encode(sd1, "a cat", "blurry, easynegative", [{"model": "civitai:7808@9208", "weight": 1}],
                     resolver=resolver)
    assert torch.equal(neg["prompt_embeds"], plain["prompt_embeds"])
    assert not torch.allclose(neg["negative_prompt_embeds"], plain["negative_prompt_embeds"], atol=1e-3)
    assert torch.equal(neg["negative_prompt_embeds"], written["negative_prompt_embeds"])


def test_default_weight_follows_the_published_kind(sd1: Any, resolver: FakeResolver) -> None:
    """A version published as kind=negative with no weight goes to the negative side (-1)."""
    result = encode_request(sd1, "a cat", "", [{"model": "civitai:7808@9208"}], resolver=resolver)
    assert result.applied[0].weight == -1.0
    assert result.negative_prompt == "easynegative" and result.prompt == "a cat"
    positive = encode_request(sd1, "a cat", "", [{"model": "civitai:1@2"}], resolver=resolver)
    assert positive.applied[0].weight == 1.0 and positive.prompt == "a cat, ulzzang"


def test_weights_mix_and_record_what_was_applied(sd1: Any, resolver: FakeResolver) -> None:
    result = encode_request(
        sd1, "a hero, charturner", "lowres",
        [{"model": "hf:charturner@2", "weight": 1.5}, {"model": "civitai:116230@125849", "weight": -1},
         {"model": "civitai:1@2", "weight": 0.5}],
        resolver=resolver,
    )
    assert [a.weight for a in result.applied] == [1.5, -1.0, 0.5]
    assert result.prompt == "a hero, charturner, ulzzang"
    assert result.negative_prompt == "lowres, bad-hands-5"
    assert all(a.sha256 and len(a.sha256) == 64 for a in result.applied)
    assert result.kwargs["prompt_embeds"].shape == (1, 77, 768)


def test_long_prompt_keeps_a_75_vector_embedding_whole(sd1: Any, resolver: FakeResolver,
                                                       embeddings_dir: Path) -> None:
    words = ", ".join(f"word{i}" for i in range(40))  # well over 75 tokens
    result = encode_request(sd1, f"{words}, badpicture", "blurry", [{"model": "civitai:75v@1", "weight": 1}],
                            resolver=resolver)
    pos, neg = result.kwargs["prompt_embeds"], result.kwargs["negative_prompt_embeds"]
    assert result.chunks >= 2
    assert pos.shape == neg.shape == (1, 77 * result.chunks, 768)  # both sides line up for CFG
    # the whole run moved to a chunk of its own: that chunk is what diffusers gives for the
    # trigger alone (BOS, 75 vectors, EOS), and the chunks before it are the words alone
    emb = read_embedding(embeddings_dir / "bad-picture-chill-75v.pt")
    ref = with_diffusers_ti(sd1, [(emb, "badpicture")])
    alone = ref.encode_prompt("badpicture", device="cpu", num_images_per_prompt=1,
                              do_classifier_free_guidance=False)[0]
    assert torch.allclose(pos[:, -77:], alone, atol=1e-5)
    words_only = encode(sd1, f"{words},", "")["prompt_embeds"]  # the comma before the trigger stays
    assert torch.equal(pos[:, :-77], words_only)


def test_long_prompt_chunks_are_encoded_separately(sd1: Any) -> None:
    """Without A1111's comma backtrack the first chunk is exactly the first 75 tokens, as
    diffusers' (truncating) encoding gives them."""
    first = ", ".join(f"alpha{i}" for i in range(30))
    second = "a red bicycle"
    both = encode_request(sd1, f"{first} {second}", "", comma_backtrack=0).kwargs["prompt_embeds"]
    assert both.shape[1] % 77 == 0 and both.shape[1] >= 2 * 77
    ids = sd1.tokenizer(f"{first} {second}", add_special_tokens=False).input_ids[:75]
    row = torch.tensor([[sd1.tokenizer.bos_token_id, *ids, sd1.tokenizer.eos_token_id]])
    with torch.no_grad():
        expected = sd1.text_encoder(row)[0]
    assert torch.allclose(both[:, :77], expected, atol=1e-5)


def test_clip_skip_reads_the_earlier_layer_through_the_final_norm(sd1: Any) -> None:
    ours = encode(sd1, "a cat", "dog", clip_skip=1)
    ids = sd1.tokenizer(["a cat", "dog"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        out = sd1.text_encoder(ids, output_hidden_states=True)
        expected = sd1.text_encoder.final_layer_norm(out.hidden_states[-2])
    assert torch.allclose(ours["prompt_embeds"][0], expected[0], atol=1e-5)
    assert torch.allclose(ours["negative_prompt_embeds"][0], expected[1], atol=1e-5)
    assert not torch.allclose(ours["prompt_embeds"], encode(sd1, "a cat", "dog")["prompt_embeds"], atol=1e-3)


def test_empty_rows_come_from_a_cache_that_follows_the_weights(sd1: Any) -> None:
    """An empty negative prompt is served from the cached empty-prompt encoding; changing the
    encoder's weights in place (as fusing a LoRA does) is noticed and the cache not reused."""
    own = copy_text_side(sd1)

    def diffusers_empty() -> torch.Tensor:
        return own.encode_prompt("", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)[0]

    first = encode(own, "a cat", "")["negative_prompt_embeds"]
    assert torch.allclose(first, diffusers_empty(), atol=1e-5)
    with torch.no_grad():
        own.text_encoder.final_layer_norm.weight.mul_(1.5)
    second = encode(own, "a cat", "")["negative_prompt_embeds"]
    assert not torch.allclose(second, first, atol=1e-3)
    assert torch.allclose(second, diffusers_empty(), atol=1e-5)


@pytest.mark.slow  # one of the slowest (a subprocess or a real pipeline); CI runs it
def test_encoding_never_changes_the_pipeline(sd1: Any, sdxl: Any, resolver: FakeResolver,
                                             embeddings_dir: Path) -> None:
    before = {id(p): text_state(p) for p in (sd1, sdxl)}
    for weight in (1, 2.5, -0.5, -4):
        encode(sd1, "ulzzang portrait", "", [{"model": "civitai:1@2", "weight": weight}], resolver=resolver)
        encode(sd1, "x", "", [{"path": str(embeddings_dir / "EasyNegative.safetensors"), "weight": weight}])
        encode(sdxl, "a cat", "", [{"model": "civitai:403492@1", "weight": weight}], resolver=resolver)
    assert _same_state(before[id(sd1)], text_state(sd1))
    assert _same_state(before[id(sdxl)], text_state(sdxl))


@pytest.mark.slow  # one of the slowest (a subprocess or a real pipeline); CI runs it
def test_eight_threads_give_the_results_of_running_one_by_one(sd1: Any, resolver: FakeResolver) -> None:
    refs = ["civitai:7808@9208", "civitai:116230@125849", "hf:charturner@2", "civitai:1@2"]
    weights = [1, 1.5, -1, -2.5, 0.75]
    requests = []
    for i in range(8):
        mix = [{"model": refs[(i + j) % 4], "weight": weights[(i + j) % 5]} for j in range(1 + i % 3)]
        requests.append((f"portrait number {i}, detailed", "blurry" if i % 2 else "", mix))
    before = text_state(sd1)
    alone = [encode(sd1, p, n, m, resolver=resolver) for p, n, m in requests]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda r: encode(sd1, r[0], r[1], r[2], resolver=resolver), requests * 2))
    for expected, got in zip(alone * 2, together):
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[k], got[k]) for k in expected)
    for i, a in enumerate(alone):  # the mixes really differ
        assert not any(torch.equal(a["prompt_embeds"], b["prompt_embeds"]) for b in alone[i + 1:])
    assert _same_state(before, text_state(sd1))


def test_repeated_embeddings_are_served_from_the_vector_cache(sd1: Any, embeddings_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = FakeResolver().add("civitai:1@2", embeddings_dir / "ulzzang-6500.pt", trigger="ulzzang")
    cache = VectorCache(max_entries=2)
    first = encode_request(sd1, "ulzzang", "", [{"model": "civitai:1@2"}], resolver=resolver, vector_cache=cache)
    again = encode_request(sd1, "ulzzang", "", [{"model": "civitai:1@2"}], resolver=resolver, vector_cache=cache)
    assert resolver.reads == ["civitai:1@2"]  # one file read for two requests
    assert len(resolver.calls) == 2 and cache.hits == 1 and cache.misses == 1
    assert torch.equal(first.kwargs["prompt_embeds"], again.kwargs["prompt_embeds"])

    import pseudoword.runtime.embedding_entries as entries_module

    reads: list[str] = []
    real = entries_module.read_embedding
    monkeypatch.setattr(entries_module, "read_embedding", lambda data, **kw: reads.append(kw["filename"]) or
                        real(data, **kw))
    local = [{"path": str(embeddings_dir / "bad-hands-5.pt"), "weight": -1}]
    encode_request(sd1, "a", "", local, vector_cache=cache)
    encode_request(sd1, "b", "", local, vector_cache=cache)
    assert reads == ["bad-hands-5.pt"]
    # bounded: a third embedding evicts the least recently used
    encode_request(sd1, "c", "", [{"path": str(embeddings_dir / "bad-artist.pt")}], vector_cache=cache)
    assert len(cache) == 2
    cached = next(iter(cache._items.values())).vectors["emb_params"]
    assert cached.device == sd1.text_encoder.device and cached.dtype == sd1.text_encoder.dtype


def test_local_file_trigger_is_the_file_name_and_the_stored_name_an_alias(sd1: Any, embeddings_dir: Path,
                                                                          tmp_path: Path) -> None:
    result = encode_request(sd1, "a cat", "", [{"path": str(embeddings_dir / "bad-image-v2-39000.pt"), "weight": -1}])
    assert result.applied[0].trigger == "bad-image-v2-39000" and result.negative_prompt == "bad-image-v2-39000"
    # a file named otherwise than it stores (as badhandv4.pt stores badhandv3): the file name is
    # the trigger, the stored name still calls it
    renamed = tmp_path / "badhandv4.pt"
    renamed.write_bytes((embeddings_dir / "bad-hands-5.pt").read_bytes())
    by_name = encode_request(sd1, "a cat, badhandv4", "", [{"path": str(renamed)}])
    by_alias = encode_request(sd1, "a cat, bad-hands-5", "", [{"path": str(renamed)}])
    assert by_name.applied[0].trigger == "badhandv4" and by_name.applied[0].placement.prompt == 1
    assert by_alias.applied[0].placement.prompt == 1 and by_alias.prompt == "a cat, bad-hands-5"
    assert torch.equal(by_name.kwargs["prompt_embeds"], by_alias.kwargs["prompt_embeds"])
    # an explicit trigger replaces the file name, the stored name stays an alias
    chosen = encode_request(sd1, "badhandv4, bad-hands-5", "", [{"path": str(renamed), "trigger": "myhands"}])
    assert chosen.applied[0].trigger == "myhands" and chosen.applied[0].placement.prompt == 1


def test_sdxl_places_clip_l_and_clip_g_vectors(sdxl: Any, resolver: FakeResolver) -> None:
    plain = encode(sdxl, "a cat", "")
    result = encode(sdxl, "a cat", "", [{"model": "civitai:403492@1", "weight": 1}], resolver=resolver)
    assert result["prompt_embeds"].shape == (1, 77, 2048)
    assert result["pooled_prompt_embeds"].shape == (1, 1280)
    width = {"clip_l": slice(0, 768), "clip_g": slice(768, 2048)}
    for part in width.values():
        assert not torch.allclose(result["prompt_embeds"][..., part], plain["prompt_embeds"][..., part], atol=1e-3)
    assert torch.equal(result["negative_prompt_embeds"], plain["negative_prompt_embeds"])


def test_img2img_and_inpaint_siblings_encode_the_same(sd1: Any, sdxl: Any, resolver: FakeResolver) -> None:
    from diffusers import (
        StableDiffusionImg2ImgPipeline,
        StableDiffusionInpaintPipeline,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLInpaintPipeline,
    )

    request = ("ulzzang, a cat", "blurry", [{"model": "civitai:1@2", "weight": 1.5}])
    base = encode(sd1, *request, resolver=resolver)
    for cls in (StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline):
        sibling = cls(**sd1.components)
        got = encode(sibling, *request, resolver=resolver)
        assert all(torch.equal(base[k], got[k]) for k in base)
    xl_request = ("zpdxl, a cat", "blurry", [{"model": "civitai:403492@1", "weight": 1}])
    xl = encode(sdxl, *xl_request, resolver=resolver)
    for cls in (StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline):
        sibling = cls(**{k: v for k, v in sdxl.components.items() if k in cls._optional_components
                         or k in ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet",
                                  "scheduler")})
        got = encode(sibling, *xl_request, resolver=resolver)
        assert all(torch.equal(xl[k], got[k]) for k in xl)


def test_img2img_runs_with_the_encoded_arguments(sd1: Any, resolver: FakeResolver) -> None:
    from diffusers import StableDiffusionImg2ImgPipeline
    from PIL import Image

    pipe = StableDiffusionImg2ImgPipeline(**sd1.components)
    pipe.set_progress_bar_config(disable=True)
    kwargs = encode(pipe, "a cat", "", [{"model": "civitai:7808@9208", "weight": -1}], resolver=resolver)
    image = Image.new("RGB", (64, 64), (120, 30, 200))
    out = pipe(image=image, strength=0.5, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
               **kwargs).images[0]
    assert out.size == (64, 64)


def test_device_and_dtype_follow_the_pipeline(sd1: Any, resolver: FakeResolver) -> None:
    """A bfloat16 text encoder (as served on GPUs) gets bfloat16 vectors and conditioning that
    matches its own encode_prompt; the float32 pipeline beside it is not affected."""
    own = copy_text_side(sd1)
    own.text_encoder.to(torch.bfloat16)
    cache = VectorCache()
    got = encode_request(own, "a portrait", "blurry", [{"model": "civitai:1@2", "weight": 1.5}],
                         resolver=resolver, vector_cache=cache).kwargs
    assert {v.dtype for v in got.values()} == {torch.bfloat16}
    assert {v.vectors["emb_params"].dtype for v in cache._items.values()} == {torch.bfloat16}
    plain = encode(own, "a portrait", "blurry")
    expected = own.encode_prompt("a portrait", "cpu", 1, True, "blurry")
    assert plain["prompt_embeds"].dtype == torch.bfloat16
    assert torch.allclose(plain["prompt_embeds"].float(), expected[0].float(), atol=2e-2)
    assert torch.allclose(plain["negative_prompt_embeds"].float(), expected[1].float(), atol=2e-2)
    assert not torch.allclose(got["prompt_embeds"].float(), plain["prompt_embeds"].float(), atol=1e-2)
    assert encode(sd1, "a portrait", "blurry")["prompt_embeds"].dtype == torch.float32


def test_run_encoder_is_differentiable_in_the_vectors(sd1: Any, embeddings_dir: Path) -> None:
    """Training reuses encode's swap-in path: the same chunks, trainable vectors in their place,
    gradients reaching the vectors and nothing else, and the values encode gives."""
    from pseudoword.runtime.clip_forward import hidden_layer_index
    from pseudoword.runtime.conditioning import prepare_request, run_encoder

    own = copy_text_side(sd1)
    own.text_encoder.requires_grad_(False)
    prepared = prepare_request(own, "a photo of EasyNegative", "", [{"path": str(embeddings_dir /
                                                                                "EasyNegative.safetensors")}])
    slot = prepared.stack.slots[0]
    trainable = prepared.loaded[0].vectors.vectors["emb_params"].clone().requires_grad_(True)
    hidden, _ = run_encoder(slot, prepared.layouts[0][0], [trainable], final_norm=True,
                            read_at=hidden_layer_index(slot.encoder, None, penultimate=False))
    hidden.pow(2).sum().backward()
    assert trainable.grad is not None and bool(trainable.grad.abs().sum() > 0)
    assert all(p.grad is None for p in own.text_encoder.parameters())
    assert torch.allclose(hidden.detach(), encode(own, "a photo of EasyNegative", "", [
        {"path": str(embeddings_dir / "EasyNegative.safetensors")}])["prompt_embeds"][0], atol=1e-6)

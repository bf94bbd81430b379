"""Prompts as people write them, through ``encode``: the sign table case by case (placement read
in the token ids, strength by the weight formula), A1111 emphasis and ComfyUI's embedding syntax
with the one emphasis formula, literal prompts, BREAK and A1111's chunk cuts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pseudoword.runtime import encode, encode_request
from pseudoword.runtime.conditioning import prepare_request
from pseudoword.runtime.conditioning_cache import ConditioningCache
from pseudoword.runtime.placement import NEGATIVE, PROMPT, Placement

NO_CACHE = ConditioningCache(0)
TRIGGER = "EasyNegative"  # EasyNegative.safetensors: 8 vectors, no stored name


@pytest.fixture(scope="module")
def easyneg(embeddings_dir: Path) -> str:
    return str(embeddings_dir / "EasyNegative.safetensors")


def _z_empty(pipe: Any) -> torch.Tensor:
    return encode(pipe, "", "")["prompt_embeds"][0]


def _tokens(pipe: Any, text: str) -> list[int]:
    return pipe.tokenizer(text, add_special_tokens=False).input_ids


def _layout(pipe: Any, text: str, trigger: str | None, count: int) -> tuple[list[int], int | None]:
    """The ids a side must have: BOS, the words, ``count`` placeholders where ``trigger`` stands,
    EOS, padding; and where the run starts."""
    tok = pipe.tokenizer
    if trigger is None or trigger not in text:
        body, start = _tokens(pipe, text), None
    else:
        before, after = text.split(trigger, 1)
        start = 1 + len(_tokens(pipe, before))
        body = _tokens(pipe, before) + [tok.eos_token_id] * count + _tokens(pipe, after)
    ids = [tok.bos_token_id, *body, tok.eos_token_id]
    return ids + [tok.pad_token_id] * (77 - len(ids)), start


# (prompt, negative, W) -> (prompt as encoded, negative prompt as encoded, placement)
SIGN_TABLE = [
    pytest.param("a cat, EasyNegative", "blurry", 2, "a cat, EasyNegative", "blurry", Placement(prompt=1),
                 id="W>0 in the prompt: applied there"),
    pytest.param("a cat", "blurry, EasyNegative", 2, "a cat", "blurry, EasyNegative", Placement(negative=1),
                 id="W>0 in the negative prompt: applied there"),
    pytest.param("a cat", "blurry", 2, "a cat, EasyNegative", "blurry", Placement(prompt=1, appended=PROMPT),
                 id="W>0 nowhere: appended to the prompt"),
    pytest.param("a cat", "blurry, EasyNegative", -2, "a cat", "blurry, EasyNegative", Placement(negative=1),
                 id="W<0 in the negative prompt: applied there"),
    pytest.param("a cat, EasyNegative, soft light", "blurry", -2, "a cat, soft light", "blurry, EasyNegative",
                 Placement(negative=1, moved=1), id="W<0 in the prompt: taken out, applied in the negative"),
    pytest.param("a cat", "blurry", -2, "a cat", "blurry, EasyNegative", Placement(negative=1, appended=NEGATIVE),
                 id="W<0 nowhere: appended to the negative prompt"),
    pytest.param("a cat", "", -2, "a cat", "EasyNegative", Placement(negative=1, appended=NEGATIVE),
                 id="W<0 nowhere, empty negative: just the trigger"),
]


@pytest.mark.parametrize(("prompt", "negative", "weight", "encoded_prompt", "encoded_negative", "placement"),
                         SIGN_TABLE)
def test_the_sign_table(sd1: Any, easyneg: str, prompt: str, negative: str, weight: float, encoded_prompt: str,
                        encoded_negative: str, placement: Placement) -> None:
    entries = [{"path": easyneg, "weight": weight}]
    prepared = prepare_request(sd1, prompt, negative, entries)
    assert (prepared.prompt, prepared.negative_prompt) == (encoded_prompt, encoded_negative)
    assert prepared.applied[0].placement == placement
    # placement, in the token ids: the run stands where the trigger stands, no name tokens remain
    starts = {}
    for side, text in enumerate((encoded_prompt, encoded_negative)):
        [row] = prepared.layouts[0][side]
        expected_ids, start = _layout(sd1, text, TRIGGER, 8)
        assert row.ids == expected_ids
        assert [(s, run.index, run.length) for s, run in row.runs] == ([(start, 0, 8)] if start else [])
        starts[side] = start
    # strength, by the weight formula: |W| times the difference from the empty prompt, there only
    strong = encode_request(sd1, prompt, negative, entries, conditioning_cache=NO_CACHE).kwargs
    unit = encode_request(sd1, prompt, negative, [{"path": easyneg, "weight": weight / abs(weight)}],
                          conditioning_cache=NO_CACHE).kwargs
    z_empty = _z_empty(sd1)
    for side, key in enumerate(("prompt_embeds", "negative_prompt_embeds")):
        a, b = strong[key][0], unit[key][0]
        if starts[side] is None:
            assert torch.equal(a, b)
            continue
        where = list(range(starts[side], starts[side] + 8))
        others = [i for i in range(77) if i not in where]
        assert torch.equal(a[others], b[others])
        assert torch.allclose(a[where] - z_empty[where], abs(weight) * (b[where] - z_empty[where]), atol=1e-5)
        assert not torch.allclose(a[where], b[where], atol=1e-3)


def test_a_negative_weight_on_a_trigger_in_the_prompt_suppresses_it(sd1: Any, easyneg: str) -> None:
    """Before: W = -2 gave bit for bit what W = +2 gave. Now -2 leaves the prompt without the
    concept and puts it, at strength 2, in the negative prompt."""
    plus = encode_request(sd1, "a cat, EasyNegative", "blurry", [{"path": easyneg, "weight": 2}]).kwargs
    minus = encode_request(sd1, "a cat, EasyNegative", "blurry", [{"path": easyneg, "weight": -2}]).kwargs
    assert not torch.allclose(plus["prompt_embeds"], minus["prompt_embeds"], atol=1e-3)
    assert torch.equal(minus["prompt_embeds"], encode(sd1, "a cat", "blurry")["prompt_embeds"])
    appended = encode_request(sd1, "a cat", "blurry, EasyNegative", [{"path": easyneg, "weight": -2}]).kwargs
    assert torch.equal(minus["negative_prompt_embeds"], appended["negative_prompt_embeds"])


def test_written_weights_and_the_comfyui_syntax_give_the_same_conditioning(sd1: Any, easyneg: str) -> None:
    """``(embedding:NAME:1.2)`` = ``(NAME:1.2)`` = ``NAME`` at W = 1.2; a written weight multiplies
    the request's |W|; ``embedding:NAME.safetensors`` = ``NAME``."""
    def prompt_embeds(prompt: str, weight: float = 1) -> torch.Tensor:
        return encode(sd1, prompt, "", [{"path": easyneg, "weight": weight}])["prompt_embeds"]

    comfy = prompt_embeds("a cat, (embedding:EasyNegative:1.2)")
    assert torch.equal(comfy, prompt_embeds("a cat, (EasyNegative:1.2)"))
    assert torch.equal(comfy, prompt_embeds("a cat, EasyNegative", 1.2))
    assert torch.equal(prompt_embeds("a cat, (EasyNegative:1.5)", 2), prompt_embeds("a cat, EasyNegative", 3))
    assert torch.equal(prompt_embeds("a cat, embedding:EasyNegative.safetensors"), prompt_embeds("a cat, EasyNegative"))
    assert torch.equal(prompt_embeds("a cat, embedding:easynegative"), prompt_embeds("a cat, EasyNegative"))
    assert not torch.allclose(comfy, prompt_embeds("a cat, EasyNegative"), atol=1e-3)


def test_plain_words_get_the_same_emphasis_formula(sd1: Any) -> None:
    plain = encode(sd1, "a red cat", "")["prompt_embeds"][0]
    strong = encode(sd1, "a (red:1.5) cat", "")["prompt_embeds"][0]
    weak = encode(sd1, "a [red] cat", "")["prompt_embeds"][0]
    z_empty = _z_empty(sd1)
    red = 2  # BOS, a, red
    others = [i for i in range(77) if i != red]
    assert torch.equal(strong[others], plain[others])  # the brackets never reach the tokenizer
    assert torch.allclose(strong[red] - z_empty[red], 1.5 * (plain[red] - z_empty[red]), atol=1e-5)
    assert torch.allclose(weak[red] - z_empty[red], (plain[red] - z_empty[red]) / 1.1, atol=1e-5)
    assert torch.equal(encode(sd1, "a \\(red\\) cat", "")["prompt_embeds"],
                       encode(sd1, "a (red) cat", "", literal=True)["prompt_embeds"])


def test_literal_prompts_reach_the_tokenizer_as_written(sd1: Any, easyneg: str) -> None:
    text = "a (red:1.5) cat BREAK [embedding:nothing]"
    ours = encode(sd1, text, "blurry", literal=True)
    theirs = sd1.encode_prompt(text, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True,
                               negative_prompt="blurry")
    assert torch.allclose(ours["prompt_embeds"], theirs[0], atol=1e-5)
    assert not torch.allclose(ours["prompt_embeds"], encode(sd1, text.replace("[embedding:nothing]", ""),
                                                            "blurry")["prompt_embeds"], atol=1e-3)
    # in literal mode the trigger still calls its embedding, only as a plain word
    result = encode_request(sd1, "(EasyNegative:1.5)", "", [{"path": easyneg}], literal=True)
    assert result.applied[0].placement == Placement(prompt=1)
    assert result.prompt == "(EasyNegative:1.5)"


def test_break_starts_a_new_chunk(sd1: Any) -> None:
    result = encode_request(sd1, "a red cat BREAK a blue dog", "")
    assert result.chunks == 2 and result.kwargs["prompt_embeds"].shape == (1, 154, 768)
    assert torch.equal(result.kwargs["prompt_embeds"][:, 77:], encode(sd1, "a blue dog", "")["prompt_embeds"])


def test_a_long_prompt_is_cut_after_its_last_comma_as_a1111_does(sd1: Any) -> None:
    """95 tokens, the last comma within 20 of the limit is token 64: chunks of 64 and 31, each
    the encoding of its own words; ``comma_backtrack=0`` cuts at exactly 75."""
    first, second = " ".join(["cat"] * 63) + ",", " ".join(["dog"] * 31)
    prepared = prepare_request(sd1, f"{first} {second}", "")
    assert [row.eos_position - 1 for row in prepared.layouts[0][0]] == [64, 31]
    embeds = encode(sd1, f"{first} {second}", "")["prompt_embeds"]
    assert torch.equal(embeds[:, :77], encode(sd1, first, "")["prompt_embeds"])
    assert torch.equal(embeds[:, 77:], encode(sd1, second, "")["prompt_embeds"])
    strict = prepare_request(sd1, f"{first} {second}", "", comma_backtrack=0)
    assert [row.eos_position - 1 for row in strict.layouts[0][0]] == [75, 20]


def test_an_unknown_comfyui_embedding_is_refused(sd1: Any, easyneg: str) -> None:
    from pseudoword.registry.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="negative prompt names embedding:badhandv4, which is none"):
        encode(sd1, "a cat", "embedding:badhandv4", [{"path": easyneg}])

"""Prompt layout: trigger matching, placement of appended triggers, 75-token chunks.

Only the real tokenizer is needed here (no text encoder)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.runtime.conditioning import place_triggers
from pseudoword.runtime.prompt_layout import (
    CHUNK_LENGTH,
    MAX_CHUNKS,
    Run,
    chunk,
    split_prompt,
    tokenize_pieces,
    trigger_pattern,
)
from tests.pipelines import tokenizer as load_tokenizer


@pytest.fixture(scope="module")
def tok(tokenizer_dir: Path) -> Any:
    return load_tokenizer(tokenizer_dir)


def _split(text: str, triggers: list[str], lengths: list[int] | None = None) -> list[Any]:
    return split_prompt(text, trigger_pattern(triggers), {t.lower(): i for i, t in enumerate(triggers)},
                        lengths or [1] * len(triggers))


def test_trigger_matches_whole_words_in_any_case() -> None:
    pieces = _split("EasyNegative, a cat; easynegative! not easynegatives or xeasynegative", ["EasyNegative"], [8])
    runs = [p for p in pieces if isinstance(p, Run)]
    assert runs == [Run(0, 8), Run(0, 8)]
    assert "easynegatives" in "".join(p for p in pieces if isinstance(p, str))


def test_longest_trigger_wins_and_punctuation_in_triggers_works() -> None:
    pieces = _split("zPDXL-neg and zPDXL, <cat-toy>", ["zPDXL", "zPDXL-neg", "<cat-toy>"], [17, 19, 1])
    assert [p for p in pieces if isinstance(p, Run)] == [Run(1, 19), Run(0, 17), Run(2, 1)]


def test_no_triggers_leaves_the_prompt_alone() -> None:
    assert _split("a cat", []) == ["a cat"]


def test_split_tokenization_equals_whole_tokenization(tok: Any) -> None:
    """Tokenizing the parts around a trigger gives the same ids as the whole prompt would
    (here the trigger is an ordinary word, so both can be compared)."""
    text = "a photo of dog, (masterpiece:1.2), dog's bowl, dog"
    pieces = _split(text, ["dog"], [1])
    dog = tok("dog", add_special_tokens=False).input_ids
    assert len(dog) == 1
    items = [dog[0] if isinstance(p, Run) else p for p in tokenize_pieces(tok, pieces)]
    assert items == tok(text, add_special_tokens=False).input_ids


def test_a_short_prompt_is_one_chunk_like_the_tokenizer(tok: Any) -> None:
    text = "a photo of a cat"
    rows = chunk(tokenize_pieces(tok, [text]), bos=tok.bos_token_id, eos=tok.eos_token_id,
                 pad=tok.pad_token_id, placeholder=0)
    assert len(rows) == 1
    assert rows[0].ids == tok(text, padding="max_length", max_length=77).input_ids
    assert rows[0].eos_position == len(tok(text, add_special_tokens=False).input_ids) + 1


def test_runs_are_never_split_across_chunks(tok: Any) -> None:
    """70 words then a 75-vector embedding: the embedding moves whole to the next chunk."""
    items: list[Any] = [320] * 70 + [Run(0, 75)] + [530] * 3
    rows = chunk(items, bos=tok.bos_token_id, eos=tok.eos_token_id, pad=tok.pad_token_id, placeholder=0)
    assert len(rows) == 3
    assert all(len(r.ids) == CHUNK_LENGTH for r in rows)
    assert rows[0].runs == [] and rows[0].eos_position == 71
    assert rows[1].runs == [(1, Run(0, 75))] and rows[1].eos_position == 76
    assert rows[2].ids[:5] == [tok.bos_token_id, 530, 530, 530, tok.eos_token_id]


def test_too_long_a_prompt_is_refused(tok: Any) -> None:
    items = [320] * (MAX_CHUNKS * 75 + 1)
    with pytest.raises(InvalidRequest, match="at most 1200"):
        chunk(items, bos=tok.bos_token_id, eos=tok.eos_token_id, pad=tok.pad_token_id, placeholder=0)


def _loaded(trigger: str, weight: float) -> Any:
    return SimpleNamespace(trigger=trigger, weight=weight)


@pytest.mark.parametrize(
    ("prompt", "negative", "entries", "expected"),
    [
        ("a cat", "", [("style", 1.5)], ("a cat, style", "")),
        ("a cat", "blurry", [("easyneg", -1)], ("a cat", "blurry, easyneg")),
        ("a cat", "", [("easyneg", -2)], ("a cat", "easyneg")),
        ("", "", [("style", 1)], ("style", "")),
        ("a cat,", "", [("style", 1)], ("a cat, style", "")),
        # already in either prompt: placed where it stands, nothing appended
        ("a Style cat", "", [("style", -1)], ("a Style cat", "")),
        ("a cat", "EASYNEG", [("easyneg", 1)], ("a cat", "EASYNEG")),
    ],
)
def test_triggers_are_appended_to_the_side_the_sign_picks(prompt: str, negative: str, entries: list,
                                                          expected: tuple[str, str]) -> None:
    assert place_triggers(prompt, negative, [_loaded(t, w) for t, w in entries]) == expected

"""Prompt layout: words that call embeddings, the sign table on prompt text, and chunks cut where
AUTOMATIC1111 cuts them.

Only the real tokenizer is needed here (no text encoder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.runtime.placement import NEGATIVE, PROMPT, Placement, place_embeddings
from pseudoword.runtime.prompt_layout import (
    CHUNK_LENGTH,
    MAX_CHUNKS,
    Names,
    Run,
    Text,
    Token,
    chunk,
    comma_id,
    split_segments,
    tokenize_pieces,
)
from pseudoword.runtime.prompt_syntax import BREAK, parse_prompt
from tests.pipelines import tokenizer as load_tokenizer


@pytest.fixture(scope="module")
def tok(tokenizer_dir: Path) -> Any:
    return load_tokenizer(tokenizer_dir)


def _split(text: str, triggers: list[str], lengths: list[int] | None = None, *, aliases: list[list[str]] | None = None,
           literal: bool = True) -> list[Any]:
    names = Names([(t, (aliases or [[]] * len(triggers))[i]) for i, t in enumerate(triggers)], syntax=not literal)
    return split_segments(parse_prompt(text, literal=literal), names, lengths or [1] * len(triggers))[0]


def _rows(tok: Any, items: list[Any], **options: Any) -> list[Any]:
    return chunk(items, bos=tok.bos_token_id, eos=tok.eos_token_id, pad=tok.pad_token_id, placeholder=0,
                 comma=comma_id(tok), **options)


def test_trigger_matches_whole_words_in_any_case() -> None:
    pieces = _split("EasyNegative, a cat; easynegative! not easynegatives or xeasynegative", ["EasyNegative"], [8])
    runs = [p for p in pieces if isinstance(p, Run)]
    assert runs == [Run(0, 8), Run(0, 8)]
    assert "easynegatives" in "".join(p.text for p in pieces if isinstance(p, Text))


def test_longest_trigger_wins_and_punctuation_in_triggers_works() -> None:
    pieces = _split("zPDXL-neg and zPDXL, <cat-toy>", ["zPDXL", "zPDXL-neg", "<cat-toy>"], [17, 19, 1])
    assert [p for p in pieces if isinstance(p, Run)] == [Run(1, 19), Run(0, 17), Run(2, 1)]


def test_aliases_call_their_embedding_unless_another_claims_them() -> None:
    """The name stored in the file calls the embedding too; an alias that is another
    embedding's trigger, or the alias of two embeddings, calls neither."""
    pieces = _split("badhandv3, bad-hands-5, shared", ["badhandv4", "bad-hands-5_2", "other"], [2, 2, 1],
                    aliases=[["badhandv3", "shared"], ["bad-hands-5", "shared"], ["badhandv4"]])
    assert [p for p in pieces if isinstance(p, Run)] == [Run(0, 2), Run(1, 2)]
    assert "shared" in "".join(p.text for p in pieces if isinstance(p, Text))


def test_comfyui_embedding_syntax_with_or_without_extension_and_weight() -> None:
    pieces = _split("embedding:EasyNegative.safetensors, (embedding:bad-hands-5.pt:1.2), [embedding:ulzzang]",
                    ["EasyNegative", "bad-hands-5", "ulzzang"], [8, 2, 3], literal=False)
    runs = [p for p in pieces if isinstance(p, Run)]
    assert runs == [Run(0, 8, 1.0), Run(1, 2, 1.2), Run(2, 3, pytest.approx(1 / 1.1))]
    assert "embedding" not in "".join(p.text for p in pieces if isinstance(p, Text))


def test_an_unknown_comfyui_embedding_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(InvalidRequest, match=r"embedding:nosuch, which is none of the request's embeddings "
                                             r"\(they answer to EasyNegative\)"):
        _split("a cat, embedding:nosuch", ["EasyNegative"], [8], literal=False)
    assert [p for p in _split("a cat, embedding:nosuch", ["EasyNegative"], [8]) if isinstance(p, Run)] == []


def test_split_tokenization_equals_whole_tokenization(tok: Any) -> None:
    """Tokenizing the parts around a trigger gives the same ids as the whole prompt would
    (here the trigger is an ordinary word, so both can be compared)."""
    text = "a photo of dog, masterpiece, dog's bowl, dog"
    pieces = _split(text, ["dog"], [1])
    dog = tok("dog", add_special_tokens=False).input_ids
    assert len(dog) == 1
    items = [dog[0] if isinstance(p, Run) else p.id for p in tokenize_pieces(tok, pieces)]
    assert items == tok(text, add_special_tokens=False).input_ids


def test_a_short_prompt_is_one_chunk_like_the_tokenizer(tok: Any) -> None:
    text = "a photo of a cat"
    rows = _rows(tok, tokenize_pieces(tok, [text]))
    assert len(rows) == 1
    assert rows[0].ids == tok(text, padding="max_length", max_length=77).input_ids
    assert rows[0].eos_position == len(tok(text, add_special_tokens=False).input_ids) + 1
    assert not rows[0].weighted


def _words(tok: Any, word: str, count: int) -> list[int]:
    [token] = tok(word, add_special_tokens=False).input_ids
    return [token] * count


def test_a_full_chunk_is_cut_after_the_last_comma_within_20_tokens(tok: Any) -> None:
    """A1111's default: 95 tokens whose last comma (within 20 of the limit) is token 64 split
    [64, 31], not [75, 20]; the distance is a setting, 0 cuts at exactly 75."""
    text = " ".join(["cat"] * 63) + ", " + " ".join(["dog"] * 31)
    items = tokenize_pieces(tok, [text])
    assert len(items) == 95 and items[63].id == comma_id(tok)
    rows = _rows(tok, items)
    assert [r.eos_position - 1 for r in rows] == [64, 31]
    assert rows[0].ids[64] == comma_id(tok) and rows[1].ids[1:32] == _words(tok, "dog", 31)
    assert [r.eos_position - 1 for r in _rows(tok, items, backtrack=0)] == [75, 20]
    # a comma further back than the distance is not used
    far = tokenize_pieces(tok, [" ".join(["cat"] * 50) + ", " + " ".join(["dog"] * 44)])
    assert [r.eos_position - 1 for r in _rows(tok, far)] == [75, 20]
    assert [r.eos_position - 1 for r in _rows(tok, far, backtrack=30)] == [51, 44]


def test_a_cut_moves_the_runs_after_the_comma_whole(tok: Any) -> None:
    comma = comma_id(tok)
    items: list[Any] = [320] * 60 + [comma] + [Run(0, 5, 1.3)] + [530] * 9 + [530]
    rows = _rows(tok, items)
    assert [r.eos_position - 1 for r in rows] == [61, 15]
    assert rows[0].runs == [] and rows[1].runs == [(1, Run(0, 5, 1.3))]
    assert rows[1].weights[1:6] == (1.3,) * 5 and rows[1].weights[6] == 1.0


def test_runs_are_never_split_across_chunks(tok: Any) -> None:
    """70 words then a 75-vector embedding: the embedding moves whole to the next chunk."""
    items: list[Any] = [320] * 70 + [Run(0, 75)] + [530] * 3
    rows = _rows(tok, items)
    assert len(rows) == 3
    assert all(len(r.ids) == CHUNK_LENGTH for r in rows)
    assert rows[0].runs == [] and rows[0].eos_position == 71
    assert rows[1].runs == [(1, Run(0, 75))] and rows[1].eos_position == 76
    assert rows[2].ids[:5] == [tok.bos_token_id, 530, 530, 530, tok.eos_token_id]


def test_break_ends_the_chunk_and_weights_follow_their_tokens(tok: Any) -> None:
    pieces = _split("(a red:1.5) BREAK [cat]", [], literal=False)
    rows = _rows(tok, tokenize_pieces(tok, pieces))
    assert len(rows) == 2
    assert rows[0].ids[:4] == [tok.bos_token_id, *tok("a red", add_special_tokens=False).input_ids, tok.eos_token_id]
    assert rows[0].weights[:4] == (1.0, 1.5, 1.5, 1.0)
    assert rows[1].weights[:3] == (1.0, pytest.approx(1 / 1.1), 1.0)
    assert len(_rows(tok, [BREAK, 320])) == 2  # a leading BREAK gives an empty chunk, as in A1111
    assert len(_rows(tok, [320, BREAK])) == 1  # a trailing one does not


def test_too_long_a_prompt_is_refused(tok: Any) -> None:
    items = [Token(320)] * (MAX_CHUNKS * 75 + 1)
    with pytest.raises(InvalidRequest, match=r"at most 16 chunks of 75 tokens \(1200\)"):
        _rows(tok, items)


def _place(prompt: str, negative: str, entries: list[tuple[str, float]], literal: bool = False) -> tuple[str, str]:
    names = Names([(t, ()) for t, _ in entries], syntax=not literal)
    placed = place_embeddings(prompt, negative, names, [t for t, _ in entries], [w for _, w in entries],
                              literal=literal)
    return placed.prompt, placed.negative


@pytest.mark.parametrize(
    ("prompt", "negative", "entries", "expected"),
    [
        # W > 0: applied where it stands (either prompt), appended to the prompt where it stands nowhere
        ("a Style cat", "", [("style", 1.5)], ("a Style cat", "")),
        ("a cat", "EASYNEG", [("easyneg", 1)], ("a cat", "EASYNEG")),
        ("a cat", "", [("style", 1.5)], ("a cat, style", "")),
        ("", "", [("style", 1)], ("style", "")),
        ("a cat,", "", [("style", 1)], ("a cat, style", "")),
        # W < 0: applied in the negative prompt where it stands there...
        ("a cat", "blurry, easyneg", [("easyneg", -1)], ("a cat", "blurry, easyneg")),
        # ... taken out of the prompt and moved to the negative prompt, with its written weight ...
        ("a cat, easyneg, soft light", "blurry", [("easyneg", -2)], ("a cat, soft light", "blurry, easyneg")),
        ("easyneg a cat", "", [("easyneg", -1)], ("a cat", "easyneg")),
        ("a cat, (easyneg:1.2)", "", [("easyneg", -1)], ("a cat", "(easyneg:1.2)")),
        ("a ((embedding:easyneg.pt)) cat", "", [("easyneg", -1)], ("a cat", "((embedding:easyneg.pt))")),
        ("(a cat, easyneg:1.3)", "", [("easyneg", -1)], ("(a cat:1.3)", "(easyneg:1.3)")),
        ("a cat, easyneg", "easyneg, blurry", [("easyneg", -1)], ("a cat", "easyneg, blurry")),
        # ... and appended to the negative prompt where it stands nowhere
        ("a cat", "blurry", [("easyneg", -1)], ("a cat", "blurry, easyneg")),
        ("a cat", "", [("easyneg", -2)], ("a cat", "easyneg")),
        # literal prompts: brackets are text, an occurrence moves as written
        ("a cat, (easyneg:1.2)", "", [("easyneg", -1)], ("a cat, (:1.2)", "easyneg")),
    ],
)
def test_the_sign_table_on_prompt_text(prompt: str, negative: str, entries: list, expected: tuple[str, str]) -> None:
    literal = expected[0] == "a cat, (:1.2)"
    assert _place(prompt, negative, entries, literal) == expected


def test_placements_say_where_each_embedding_went() -> None:
    names = Names([("style", ()), ("easyneg", ()), ("badhand", ()), ("glass", ())])
    placed = place_embeddings("glass cup, style, badhand", "glass", names, ["style", "easyneg", "badhand", "glass"],
                              [1, -1, -1.5, 2])
    assert placed.prompt == "glass cup, style" and placed.negative == "glass, easyneg, badhand"
    assert placed.placements == (Placement(prompt=1), Placement(negative=1, appended=NEGATIVE),
                                 Placement(negative=1, moved=1), Placement(prompt=1, negative=1))
    assert Placement(prompt=2, appended=PROMPT).to_dict() == {"prompt": 2, "appended": "prompt"}

"""The prompt parser: AUTOMATIC1111's documented attention examples give its documented weights;
escapes, BREAK, literal mode, and positions in the prompt as written."""

from __future__ import annotations

import pytest

from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.runtime.prompt_syntax import BREAK, Segment, escape, parse_prompt


def _pairs(text: str, **options: bool) -> list[object]:
    return [item if item is BREAK else [item.text, item.weight] for item in parse_prompt(text, **options)]


# The examples in the docstring of A1111's parse_prompt_attention (modules/prompt_parser.py),
# with the weights it documents, to the last bit.
A1111_EXAMPLES = [
    ("normal text", [["normal text", 1.0]]),
    ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
    ("(unbalanced", [["unbalanced", 1.1]]),
    ("\\(literal\\]", [["(literal]", 1.0]]),
    ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [["a ", 1.0], ["house", 1.5730000000000004], [" ", 1.1], ["on", 1.0], [" a ", 1.1], ["hill", 0.55],
      [", sun, ", 1.1], ["sky", 1.4641000000000006], [".", 1.1]]),
]


@pytest.mark.parametrize(("text", "expected"), A1111_EXAMPLES)
def test_a1111_documented_examples(text: str, expected: list[list[object]]) -> None:
    assert _pairs(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(word)", [["word", 1.1]]),
        ("[word]", [["word", 1 / 1.1]]),
        ("((word))", [["word", 1.1 * 1.1]]),
        ("[[word]]", [["word", 1 / 1.1 / 1.1]]),
        ("(word:1.3)", [["word", 1.3]]),
        ("( word : 0.5 )", [[" word ", 0.5]]),  # spaces around the weight, as newer A1111 allows
        ("(a (b:2) c)", [["a ", 1.1], ["b", 2.2], [" c", 1.1]]),
        ("a) b]", [["a) b]", 1.0]]),  # closing brackets with nothing open are text
        ("x:y (z:w)", [["x:y ", 1.0], ["z:w", 1.1]]),  # a colon without a number is text
        ("C:\\dir \\\\ \\[x\\]", [["C:dir \\ [x]", 1.0]]),  # lone backslashes drop, as in A1111
    ],
)
def test_emphasis_nesting_and_escapes(text: str, expected: list[list[object]]) -> None:
    assert _pairs(text) == expected


def test_break_splits_chunks_even_inside_brackets() -> None:
    assert _pairs("a cat BREAK a dog") == [["a cat", 1.0], BREAK, ["a dog", 1.0]]
    assert _pairs("(red BREAK blue)") == [["red", 1.1], BREAK, ["blue", 1.1]]  # A1111 would keep "BREAK" as text here
    assert _pairs("BREAKfast, break, xBREAK") == [["BREAKfast, break, xBREAK", 1.0]]  # only the word, in capitals


def test_a_weight_that_is_not_a_number_is_refused_with_its_position() -> None:
    with pytest.raises(InvalidRequest, match=r"the weight '1\.2\.3' at character 6 of the prompt is not a number"):
        parse_prompt("(word:1.2.3)")


def test_literal_mode_leaves_the_text_alone() -> None:
    text = "a (cat:1.3) [dog] \\( BREAK embedding:x"
    assert _pairs(text, literal=True) == [[text, 1.0]]
    assert parse_prompt("", literal=True) == [] and parse_prompt("") == []


def test_every_character_knows_where_it_stood() -> None:
    text = "a ((red\\) cat:1.2)) dog"
    segments = [s for s in parse_prompt(text) if isinstance(s, Segment)]
    for segment in segments:
        for char, offset in zip(segment.text, segment.offsets, strict=True):
            assert text[offset] == char
    red = next(s for s in segments if "red" in s.text)
    assert red.text == "red) cat" and red.weight == pytest.approx(1.2 * 1.1)
    assert text[slice(*red.span(0, 4))] == "red\\)"


def test_escape_reads_back_as_itself() -> None:
    for text in ("plain", "ünïcode-(v2)", "a[b]c\\d", "(x:1.2)"):
        assert _pairs(escape(text)) == [[text, 1.0]]

"""Prompt syntax as AUTOMATIC1111 users write it: emphasis, escapes and ``BREAK``.

The grammar is A1111's (``modules/prompt_parser.py``, ``parse_prompt_attention``), which most
prompts on Civitai are written in and which ComfyUI reads nearly the same way:

- ``(text)`` multiplies the weight of ``text`` by 1.1, ``[text]`` divides it by 1.1, and
  ``(text:1.3)`` multiplies it by 1.3; groups nest and multiply (``((a))`` = 1.21,
  ``((a:1.3))`` = 1.43). An unclosed ``(`` or ``[`` applies to the rest of the prompt; a ``)``
  or ``]`` with nothing open is plain text.
- ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` are the literal characters; a backslash before
  anything else is dropped (as A1111 does).
- ``BREAK`` (upper case, a word on its own) ends the current 75-token chunk.

Where we differ from A1111, and why: ``BREAK`` inside parentheses still breaks (A1111 turns it
into the literal word there, a side effect of weighting its marker), and a weight that is not a
number (``(a:1.2.3)``) is refused with its position (A1111 fails with a Python error).
ComfyUI differs from both in two ways we do not follow: a written weight replaces the enclosing
ones instead of multiplying (``((a:1.3))`` = 1.3 there), and ``[text]`` is plain text.

The parser keeps, for every character of the text it returns, where it stood in the prompt, so
that an embedding's trigger found in parsed text can be taken out of the prompt as written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pseudoword.registry.core.errors import InvalidRequest

ROUND = 1.1
SQUARE = 1 / 1.1

_ATTENTION = re.compile(
    r"""
    \\[()\[\]\\]            # an escaped bracket or backslash
    | \\                    # a lone backslash (dropped)
    | \(                    # open a round group
    | \[                    # open a square group
    | :\s*([+-]?[.\d]+)\s*\)  # close a round group with a weight
    | \)
    | \]
    | [^\\()\[\]:]+         # plain text
    | :
    """,
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


@dataclass(frozen=True)
class Segment:
    """A run of prompt text with one weight; ``offsets[i]`` is where ``text[i]`` stood in the
    prompt as written."""

    text: str
    weight: float
    offsets: tuple[int, ...]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The prompt-as-written span of ``text[start:end]`` (``end > start``)."""
        return self.offsets[start], self.offsets[end - 1] + 1


class Break:
    """``BREAK``: the current chunk ends here."""

    def __repr__(self) -> str:
        return "BREAK"


BREAK = Break()
Parsed = Segment | Break


def parse_prompt(text: str, *, literal: bool = False) -> list[Parsed]:
    """``text`` as weighted segments and BREAK markers; ``literal`` keeps it as one segment of
    weight 1 (no syntax at all)."""
    if literal:
        return [Segment(text, 1.0, tuple(range(len(text))))] if text else []
    # Each entry: [characters, offsets, weight], or BREAK (which no weight touches).
    items: list[list | Break] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for item in items[start:]:
            if not isinstance(item, Break):
                item[2] *= factor

    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            if len(token) == 2:
                items.append([token[1], [match.start() + 1], 1.0])
        elif token == "(":
            round_open.append(len(items))
        elif token == "[":
            square_open.append(len(items))
        elif weight is not None and round_open:
            multiply(round_open.pop(), _number(weight, match.start(1)))
        elif token == ")" and round_open:
            multiply(round_open.pop(), ROUND)
        elif token == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
        else:
            _plain(items, token, match.start())
    for start in round_open:
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)
    return _merge(items)


def _number(raw: str, position: int) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidRequest(f"the weight {raw!r} at character {position} of the prompt is not a number "
                             "(write (text:1.3), or \\( \\) for literal brackets)",
                             {"weight": raw, "position": position})
    return value


def _plain(items: list, text: str, start: int) -> None:
    """Plain text, split at BREAK."""
    last = 0
    for found in _BREAK.finditer(text):
        items.append([text[last:found.start()], list(range(start + last, start + found.start())), 1.0])
        items.append(BREAK)
        last = found.end()
    items.append([text[last:], list(range(start + last, start + len(text))), 1.0])


def _merge(items: list) -> list[Parsed]:
    """Neighbours of equal weight become one segment (as A1111 does); empty text goes."""
    out: list[Parsed] = []
    chars: list[str] = []
    offsets: list[int] = []
    weight: float | None = None

    def flush() -> None:
        if chars:
            out.append(Segment("".join(chars), weight if weight is not None else 1.0, tuple(offsets)))
            chars.clear()
            offsets.clear()

    for item in items:
        if isinstance(item, Break):
            flush()
            out.append(BREAK)
            weight = None
            continue
        if not item[0]:
            continue
        if item[2] != weight:
            flush()
            weight = item[2]
        chars.extend(item[0])
        offsets.extend(item[1])
    flush()
    return out


def escape(text: str) -> str:
    """``text`` written so that ``parse_prompt`` reads it back as itself."""
    return re.sub(r"([()\[\]\\])", r"\\\1", text)

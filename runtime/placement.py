"""Sign and side: which prompt each embedding's vectors go to (DESIGN, "The runtime").

| W | its trigger stands in | result |
| --- | --- | --- |
| > 0 | the prompt and/or the negative prompt | applied with strength \\|W\\| where it stands |
| > 0 | neither | ``, TRIGGER`` appended to the prompt, applied there |
| < 0 | the negative prompt | applied there with \\|W\\| |
| < 0 | the prompt | taken out of the prompt, applied in the negative prompt (appended there unless it stands there already) |
| < 0 | neither | ``, TRIGGER`` appended to the negative prompt (just ``TRIGGER`` where it is empty) |

The sign is never dropped: W = -2 on a trigger written in the prompt suppresses the concept, it
does not strengthen it. An occurrence taken out of the prompt keeps its written weight: the text
moved is the occurrence with the brackets that hold only it (``(bad-hands-5:1.2)``), or the
trigger with its weight written out. ``Placement`` records what happened to each embedding.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pseudoword.runtime.prompt_layout import Names, Occurrence, split_segments
from pseudoword.runtime.prompt_syntax import Segment, escape, parse_prompt

PROMPT, NEGATIVE = "prompt", "negative prompt"


@dataclass(frozen=True)
class Placement:
    """Where one embedding went: its occurrences in each prompt as encoded, whether its trigger
    was appended (and to which), and how many occurrences were moved out of the prompt."""

    prompt: int = 0
    negative: int = 0
    appended: str | None = None  # PROMPT or NEGATIVE
    moved: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if value}


@dataclass(frozen=True)
class Placed:
    prompt: str
    negative: str
    placements: tuple[Placement, ...]


def find(text: str, names: Names, *, literal: bool, label: str) -> list[Occurrence]:
    return split_segments(parse_prompt(text, literal=literal), names, label=label)[1]


def place_embeddings(prompt: str, negative: str, names: Names, triggers: Sequence[str],
                     weights: Sequence[float], *, literal: bool = False) -> Placed:
    """The prompts with the sign table applied; ``names`` finds each embedding's words,
    ``triggers[i]`` and ``weights[i]`` are embedding i's trigger and W."""
    in_prompt = find(prompt, names, literal=literal, label=PROMPT)
    in_negative = find(negative, names, literal=literal, label=NEGATIVE)
    moved: dict[int, list[str]] = {}
    for occurrence in sorted(in_prompt, key=lambda o: o.start, reverse=True):
        if weights[occurrence.index] < 0:
            prompt, text = _take_out(prompt, occurrence, literal)
            moved.setdefault(occurrence.index, []).insert(0, text)
    appended: dict[int, str] = {}
    written_negative = {o.index for o in in_negative}
    written_prompt = {o.index for o in in_prompt}
    for index, (trigger, weight) in enumerate(zip(triggers, weights, strict=True)):
        word = trigger if literal else escape(trigger)
        if weight > 0 and index not in written_prompt and index not in written_negative:
            prompt = append(prompt, word)
            appended[index] = PROMPT
        elif weight < 0 and index not in written_negative:
            for text in dict.fromkeys(moved.get(index, [])) or [word]:
                negative = append(negative, text)
            if index not in moved:
                appended[index] = NEGATIVE
    final_prompt = _count(find(prompt, names, literal=literal, label=PROMPT))
    final_negative = _count(find(negative, names, literal=literal, label=NEGATIVE))
    placements = tuple(
        Placement(final_prompt.get(i, 0), final_negative.get(i, 0), appended.get(i), len(moved.get(i, [])))
        for i in range(len(triggers))
    )
    return Placed(prompt, negative, placements)


def _count(found: list[Occurrence]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for occurrence in found:
        counts[occurrence.index] = counts.get(occurrence.index, 0) + 1
    return counts


def append(text: str, word: str) -> str:
    """``text, word`` (just ``word`` when ``text`` is empty; no second comma after one)."""
    stripped = text.rstrip()
    if not stripped:
        return word
    return f"{stripped} {word}" if stripped.endswith(",") else f"{stripped}, {word}"


_OPEN = re.compile(r"(?<!\\)([(\[])\s*$")
_CLOSE = {"(": re.compile(r"\s*(?::\s*[+-]?[.\d]+\s*)?\)"), "[": re.compile(r"\s*\]")}


def _take_out(text: str, occurrence: Occurrence, literal: bool) -> tuple[str, str]:
    """``text`` without the occurrence (and without brackets that held only it, and one comma
    beside it), and the occurrence as it should be written in the negative prompt."""
    start, end = occurrence.start, occurrence.end
    while not literal:
        opened = _OPEN.search(text, max(0, start - 256), start)  # brackets stand right before it
        closed = _CLOSE[opened.group(1)].match(text, end) if opened else None
        if opened is None or closed is None:
            break
        start, end = opened.start(), closed.end()
    taken = text[start:end]
    if not literal and _weight_of(taken) != occurrence.weight:
        taken = f"({text[occurrence.start:occurrence.end]}:{occurrence.weight:g})"
    left, right = text[:start].rstrip(), text[end:].lstrip()
    if right.startswith(","):
        right = right[1:].lstrip()
    elif left.endswith(","):
        left = left[:-1].rstrip()
    space = left and right and not left.endswith(("(", "[")) and not right.startswith((")", "]", ":"))
    return left + (" " if space else "") + right, taken


def _weight_of(text: str) -> float | None:
    parsed = parse_prompt(text)
    return parsed[0].weight if len(parsed) == 1 and isinstance(parsed[0], Segment) else None

"""The word a user types to call an embedding: one rule for publish, import and the runtime.

AUTOMATIC1111 and ComfyUI call an embedding by its file name: ``bad-hands-5.pt`` is typed
``bad-hands-5`` (A1111) or ``embedding:bad-hands-5`` (ComfyUI), whatever name the file stores
inside (``badhandv4.pt`` stores ``badhandv3``, ``nartfixer.pt`` stores ``wer``). So the trigger
is the file's stem, trimmed; and because a trigger is one prompt word (the catalogue searches
it, the runtime matches it whole), whitespace and commas in the stem become ``-``:
``Low_Quality2xx_ By_Stable_Yogi-neg.pt`` -> ``Low_Quality2xx_-By_Stable_Yogi-neg``.

What else a user may type for the same file is kept as an alias that also matches: the name
stored inside the file (the trigger of A1111's training tab, and of files shared without their
original name) and the stem as written, spaces included (what an A1111 user types).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from pseudoword.registry.core.embedding import Embedding
from pseudoword.registry.core.errors import InvalidRequest

#: Longest trigger kept (the catalogue's and the runtime's limit).
MAX_TRIGGER_CHARS = 128
_SEPARATORS = re.compile(r"[\s,]+")
_ENDS = re.compile(r"^[\s,]+|[\s,]+$")


@dataclass(frozen=True)
class Triggers:
    """The trigger a user types, and the other words that call the same embedding."""

    trigger: str
    aliases: tuple[str, ...] = ()


def trigger_from_stem(stem: str) -> str:
    """A file stem (or any name) as one prompt word: trimmed, whitespace and comma runs -> ``-``;
    '' when nothing is left."""
    return _SEPARATORS.sub("-", _ENDS.sub("", stem))[:MAX_TRIGGER_CHARS]


def file_stem(filename: str) -> str:
    """``dir/Name.v2.pt`` -> ``Name.v2``: what A1111 and ComfyUI list the file as."""
    return PurePath(filename.replace("\\", "/")).stem


def triggers_for(emb: Embedding, filename: str | None) -> Triggers:
    """The trigger for a file read as ``emb`` (from ``filename``, when known) and its aliases."""
    return triggers_from(filename, emb.name)


def triggers_from(filename: str | None, stored_name: str | None) -> Triggers:
    """The trigger for a file called ``filename`` that stores ``stored_name``, and its aliases.

    Without a usable file name (an upload with none) the name stored in the file is the trigger;
    a file with neither must be given one (InvalidRequest)."""
    stored = (stored_name or "").strip()
    stem = file_stem(filename).strip() if filename else ""
    if not trigger_from_stem(stem):
        stem = ""
    trigger = trigger_from_stem(stem) or trigger_from_stem(stored)
    if not trigger:
        raise InvalidRequest("neither the file name nor the file gives a usable trigger: give a trigger word")
    return Triggers(trigger, aliases_for(trigger, stem, stored))


def aliases_for(trigger: str, *names: str) -> tuple[str, ...]:
    """``names`` that differ from ``trigger`` (and from each other), case-insensitively."""
    seen = {trigger.lower()}
    aliases = []
    for name in names:
        name = name.strip()[:MAX_TRIGGER_CHARS]
        if name and name.lower() not in seen:
            seen.add(name.lower())
            aliases.append(name)
    return tuple(aliases)


def default_trigger(emb: Embedding, filename: str | None) -> str:
    """The word that calls the embedding in a prompt (see ``triggers_for``)."""
    return triggers_for(emb, filename).trigger

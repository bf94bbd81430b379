"""Where each token and each embedding vector goes: prompt text -> 77-token chunks.

The tokenizer is never told about triggers. Instead the prompt is split around trigger
occurrences, the plain parts are tokenized as usual, and each occurrence becomes a run of
``n`` placeholder positions (one per vector) that the encoder fills with the embedding's
vectors. CLIP's pre-tokenizer splits at word and punctuation boundaries, so tokenizing the
parts gives the same ids as tokenizing the whole.

Long prompts are cut into chunks of 75 tokens, each wrapped in BOS/EOS and padded to 77, as
AUTOMATIC1111 does; an embedding's run is never split: if it does not fit in what is left of a
chunk, that chunk is padded and the run starts the next one.
"""

from __future__ import annotations

import copy
import re
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pseudoword.registry.core.errors import InvalidRequest

CHUNK_TOKENS = 75  # tokens between BOS and EOS
CHUNK_LENGTH = CHUNK_TOKENS + 2
#: A request may not encode more than this many chunks per prompt (1200 tokens).
MAX_CHUNKS = 16


@dataclass(frozen=True)
class Run:
    """An occurrence of embedding ``index`` (into the request's embeddings) of ``length`` vectors."""

    index: int
    length: int


Piece = str | Run


@dataclass
class Chunk:
    """One 77-position row: token ids (placeholders where vectors go) and the runs placed in it."""

    ids: list[int]
    runs: list[tuple[int, Run]] = field(default_factory=list)  # (start position, run)
    eos_position: int = 1


def trigger_pattern(triggers: Sequence[str]) -> re.Pattern[str] | None:
    """One case-insensitive pattern matching any trigger as a whole word (CLIP lowercases
    prompts, so ``EasyNegative`` and ``easynegative`` are the same word), longest first so a
    trigger that extends another wins."""
    if not triggers:
        return None
    alternatives = "|".join(re.escape(t) for t in sorted(set(triggers), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def split_prompt(text: str, pattern: re.Pattern[str] | None, index_of: dict[str, int],
                 lengths: Sequence[int]) -> list[Piece]:
    """``text`` as plain parts and runs; ``index_of`` maps a lowercased trigger to its entry."""
    if pattern is None:
        return [text]
    pieces: list[Piece] = []
    last = 0
    for match in pattern.finditer(text):
        if match.start() > last:
            pieces.append(text[last:match.start()])
        index = index_of[match.group(0).lower()]
        pieces.append(Run(index, lengths[index]))
        last = match.end()
    if last < len(text):
        pieces.append(text[last:])
    return pieces


def contains_trigger(text: str, trigger: str) -> bool:
    pattern = trigger_pattern([trigger])
    return bool(pattern and pattern.search(text))


_private: weakref.WeakKeyDictionary[Any, tuple[int, Any, threading.Lock]] = weakref.WeakKeyDictionary()
_private_lock = threading.Lock()


def _own_copy(tokenizer: Any) -> tuple[Any, threading.Lock]:
    """A private copy of the pipeline's tokenizer, and a lock for it.

    A fast tokenizer keeps its padding/truncation settings as state that every call may reset,
    so calls from several threads (ours, or diffusers' own ``encode_prompt`` on the same
    pipeline) can race ("Already borrowed"). Ours go to a copy nobody else touches, one at a
    time; the copy is renewed when the original's vocabulary size changes (tokens added)."""
    with _private_lock:
        found = _private.get(tokenizer)
        if found is None or found[0] != len(tokenizer):
            found = (len(tokenizer), copy.deepcopy(tokenizer), threading.Lock())
            _private[tokenizer] = found
        return found[1], found[2]


def tokenize_pieces(tokenizer: Any, pieces: Sequence[Piece]) -> list[int | Run]:
    """Token ids for the plain parts (one batched tokenizer call), runs kept in place."""
    texts = [p for p in pieces if isinstance(p, str)]
    ids: list[list[int]] = []
    if texts:
        own, lock = _own_copy(tokenizer)
        with lock:
            ids = own(texts, add_special_tokens=False).input_ids
    out: list[int | Run] = []
    it = iter(ids)
    for piece in pieces:
        if isinstance(piece, str):
            out.extend(next(it))
        else:
            out.append(piece)
    return out


def chunk(items: Sequence[int | Run], *, bos: int, eos: int, pad: int, placeholder: int,
          label: str = "prompt") -> list[Chunk]:
    """Pack tokens and runs into 77-position chunks (at least one)."""
    rows: list[tuple[list[int], list[tuple[int, Run]]]] = [([], [])]
    for item in items:
        tokens, runs = rows[-1]
        size = item.length if isinstance(item, Run) else 1
        if len(tokens) + size > CHUNK_TOKENS:
            rows.append(([], []))
            tokens, runs = rows[-1]
        if isinstance(item, Run):
            runs.append((len(tokens) + 1, item))  # +1 for BOS
            tokens.extend([placeholder] * item.length)
        else:
            tokens.append(item)
    if len(rows) > MAX_CHUNKS:
        total = sum(r.length if isinstance(r, Run) else 1 for r in items)
        raise InvalidRequest(
            f"{label} is {total} tokens long; at most {MAX_CHUNKS * CHUNK_TOKENS} are encoded",
            {"tokens": total, "limit": MAX_CHUNKS * CHUNK_TOKENS},
        )
    return [_row(tokens, runs, bos, eos, pad) for tokens, runs in rows]


def empty_chunk(*, bos: int, eos: int, pad: int) -> Chunk:
    return _row([], [], bos, eos, pad)


def _row(tokens: list[int], runs: list[tuple[int, Run]], bos: int, eos: int, pad: int) -> Chunk:
    ids = [bos, *tokens, eos]
    ids.extend([pad] * (CHUNK_LENGTH - len(ids)))
    return Chunk(ids=ids, runs=runs, eos_position=len(tokens) + 1)

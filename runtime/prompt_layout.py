"""Where each token and each embedding vector goes: prompt text -> 77-token chunks.

The tokenizer is never told about triggers. The prompt is parsed (``prompt_syntax``), each
segment's text is split around the words that call the request's embeddings, the plain parts
are tokenized as usual, and each occurrence becomes a run of ``n`` placeholder positions (one
per vector) that the encoder fills with the embedding's vectors. CLIP's pre-tokenizer splits at
word and punctuation boundaries, so tokenizing the parts gives the ids the whole would give.

Words that call an embedding: its trigger and its aliases (``registry.core.triggers``), whole
words, any case (CLIP lowercases prompts); with the prompt syntax on, also ComfyUI's
``embedding:NAME``, with or without the file's extension (``embedding:EasyNegative.pt``).
``embedding:NAME`` naming none of the request's embeddings is refused: ComfyUI drops it with a
warning in its log, which a service's user never sees.

Chunks follow AUTOMATIC1111 (``sd_hijack_clip.py``, ``tokenize_line``): 75 tokens between BOS
and EOS, padded to 77; when a chunk is full and a comma stood within ``backtrack`` (default 20)
tokens of its end, the chunk ends after that comma and the rest moves to the next one, so a
phrase is not cut in half; ``BREAK`` ends a chunk. An embedding's run is never split: if it does
not fit in what is left of a chunk, that chunk ends and the run starts the next one.
"""

from __future__ import annotations

import copy
import re
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.runtime.prompt_syntax import BREAK, Break, Parsed

CHUNK_TOKENS = 75  # tokens between BOS and EOS
CHUNK_LENGTH = CHUNK_TOKENS + 2
#: A request may not encode more than this many chunks per prompt (1200 tokens).
MAX_CHUNKS = 16
#: A1111's default "comma padding backtrack": how far back a full chunk looks for a comma.
COMMA_BACKTRACK = 20
#: File suffixes ComfyUI accepts after ``embedding:NAME``.
EMBEDDING_SUFFIXES = (".pt", ".safetensors", ".bin")


@dataclass(frozen=True)
class Run:
    """An occurrence of embedding ``index`` (into the request's embeddings) of ``length``
    vectors, with the weight written around it (the request's |W| is applied on top)."""

    index: int
    length: int
    weight: float = 1.0


class Token(NamedTuple):
    id: int
    weight: float = 1.0


@dataclass(frozen=True)
class Text:
    text: str
    weight: float = 1.0


Piece = Text | Run | Break
Item = int | Token | Run | Break


@dataclass
class Chunk:
    """One 77-position row: token ids (placeholders where vectors go), the runs placed in it,
    and the written weight of every position (1.0 for BOS, EOS and padding)."""

    ids: list[int]
    runs: list[tuple[int, Run]] = field(default_factory=list)  # (start position, run)
    eos_position: int = 1
    weights: tuple[float, ...] = (1.0,) * CHUNK_LENGTH

    @property
    def weighted(self) -> bool:
        return any(w != 1.0 for w in self.weights)


@dataclass(frozen=True)
class Occurrence:
    """Where a word calling embedding ``index`` stands in the prompt as written."""

    index: int
    weight: float
    start: int
    end: int


class Names:
    """The words that call the request's embeddings (triggers, then aliases) and the pattern
    that finds them.

    A trigger belongs to its embedding; an alias that is another embedding's trigger, or the
    alias of two embeddings, calls neither (the request's triggers are unique, checked earlier)."""

    def __init__(self, entries: Sequence[tuple[str, Sequence[str]]], *, syntax: bool = True) -> None:
        self.syntax = syntax
        self.index_of: dict[str, int] = {}  # lowercased name -> embedding
        self.written: dict[str, str] = {}  # lowercased name -> as the embedding spells it
        for index, (trigger, _) in enumerate(entries):
            self._add(trigger, index)
        claimed: dict[str, list[tuple[str, int]]] = {}
        for index, (_, aliases) in enumerate(entries):
            for alias in aliases:
                claimed.setdefault(alias.lower(), []).append((alias, index))
        for key, owners in claimed.items():
            if key not in self.index_of and len({index for _, index in owners}) == 1:
                self._add(*owners[0])
        self.pattern = _pattern(list(self.written.values()), syntax) if self.index_of else None

    def _add(self, name: str, index: int) -> None:
        if name.lower() not in self.index_of:
            self.index_of[name.lower()] = index
            self.written[name.lower()] = name

    def find(self, text: str) -> Iterator[tuple[int, int, int]]:
        """``(start, end, index)`` of each word in ``text`` that calls an embedding."""
        if self.pattern is None:
            return
        for match in self.pattern.finditer(text):
            name = match.groupdict().get("comfy") or match.group("word")
            yield match.start(), match.end(), self.index_of[name.lower()]


def _pattern(names: list[str], syntax: bool) -> re.Pattern[str]:
    """Any name as a whole word, longest first so a name that extends another wins; with the
    syntax on, also ``embedding:NAME[.pt|.safetensors|.bin]``."""
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    word = rf"(?P<word>{alternatives})"
    if syntax:
        suffixes = "|".join(re.escape(s) for s in EMBEDDING_SUFFIXES)
        comfy = rf"embedding:(?P<comfy>{alternatives})(?:{suffixes})?"
        return re.compile(rf"(?<!\w)(?:{comfy}|{word})(?!\w)", re.IGNORECASE)
    return re.compile(rf"(?<!\w){word}(?!\w)", re.IGNORECASE)


_UNKNOWN_EMBEDDING = re.compile(r"(?<!\w)embedding:([^\s,()\[\]]*)", re.IGNORECASE)


def split_segments(parsed: Sequence[Parsed], names: Names, lengths: Sequence[int] | None = None, *,
                   label: str = "prompt") -> tuple[list[Piece], list[Occurrence]]:
    """The parsed prompt as plain text pieces, runs (of ``lengths[index]`` vectors) and BREAKs,
    and where each run stood in the prompt as written."""
    pieces: list[Piece] = []
    found: list[Occurrence] = []
    for segment in parsed:
        if isinstance(segment, Break):
            pieces.append(BREAK)
            continue
        last = 0
        for start, end, index in names.find(segment.text):
            if start > last:
                pieces.append(Text(segment.text[last:start], segment.weight))
            pieces.append(Run(index, lengths[index] if lengths is not None else 0, segment.weight))
            found.append(Occurrence(index, segment.weight, *segment.span(start, end)))
            last = end
        if last < len(segment.text):
            pieces.append(Text(segment.text[last:], segment.weight))
    if names.syntax:
        _refuse_unknown_embeddings(pieces, names, label)
    return pieces, found


def _refuse_unknown_embeddings(pieces: Sequence[Piece], names: Names, label: str) -> None:
    for piece in pieces:
        if isinstance(piece, Text):
            match = _UNKNOWN_EMBEDDING.search(piece.text)
            if match:
                known = sorted(names.written.values(), key=str.lower)
                raise InvalidRequest(
                    f"the {label} names embedding:{match.group(1)}, which is none of the request's embeddings"
                    + (f" (they answer to {', '.join(known)})" if known else " (it has none)"),
                    {"embedding": match.group(1), "known": known},
                )


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


def tokenize_pieces(tokenizer: Any, pieces: Sequence[Piece | str]) -> list[Item]:
    """Token ids for the text pieces (one batched tokenizer call), each with its weight; runs
    and BREAKs kept in place. A plain ``str`` piece is text of weight 1."""
    parts: list[Piece] = [Text(p) if isinstance(p, str) else p for p in pieces]
    texts = [p.text for p in parts if isinstance(p, Text)]
    ids: list[list[int]] = []
    if texts:
        own, lock = _own_copy(tokenizer)
        with lock:
            ids = own(texts, add_special_tokens=False).input_ids
    out: list[Item] = []
    it = iter(ids)
    for piece in parts:
        if isinstance(piece, Text):
            out.extend(Token(i, piece.weight) for i in next(it))
        else:
            out.append(piece)
    return out


def comma_id(tokenizer: Any) -> int | None:
    """The id of CLIP's ``,</w>`` (the comma A1111 cuts after), if the vocabulary has one."""
    found = tokenizer.convert_tokens_to_ids(",</w>")
    return None if found is None or found == tokenizer.unk_token_id else found


class _Builder:
    """The chunk being filled, as A1111's ``tokenize_line`` fills it."""

    def __init__(self, bos: int, eos: int, pad: int) -> None:
        self.bos, self.eos, self.pad = bos, eos, pad
        self.rows: list[Chunk] = []
        self.tokens: list[int] = []
        self.weights: list[float] = []
        self.runs: list[tuple[int, Run]] = []
        self.last_comma = -1

    def close(self) -> None:
        self.rows.append(_row(self.tokens, self.weights, self.runs, self.bos, self.eos, self.pad))
        self.tokens, self.weights, self.runs, self.last_comma = [], [], [], -1

    def back_to_comma(self) -> None:
        """End the chunk after its last comma; what followed it starts the next chunk."""
        cut = self.last_comma + 1
        tokens, weights = self.tokens[cut:], self.weights[cut:]
        runs = [(start - cut, run) for start, run in self.runs if start >= cut]
        self.tokens, self.weights = self.tokens[:cut], self.weights[:cut]
        self.runs = [(start, run) for start, run in self.runs if start < cut]
        self.close()
        self.tokens, self.weights, self.runs = tokens, weights, runs


def chunk(items: Sequence[Item], *, bos: int, eos: int, pad: int, placeholder: int, comma: int | None = None,
          backtrack: int = COMMA_BACKTRACK, label: str = "prompt") -> list[Chunk]:
    """Pack tokens, runs and BREAKs into 77-position chunks (at least one).

    ``comma`` is the comma's token id (``comma_id``); ``backtrack`` 0 cuts at exactly 75."""
    rows = _Builder(bos, eos, pad)
    for item in items:
        if isinstance(item, Break):
            rows.close()
            continue
        token = Token(item) if isinstance(item, int) else item
        full = len(rows.tokens) == CHUNK_TOKENS
        if isinstance(token, Token) and token.id == comma:
            rows.last_comma = len(rows.tokens)
        elif full and backtrack and rows.last_comma != -1 and len(rows.tokens) - rows.last_comma <= backtrack:
            rows.back_to_comma()
        if len(rows.tokens) == CHUNK_TOKENS:
            rows.close()
        if isinstance(token, Run):
            if len(rows.tokens) + token.length > CHUNK_TOKENS:
                rows.close()
            rows.runs.append((len(rows.tokens), token))
            rows.tokens.extend([placeholder] * token.length)
            rows.weights.extend([token.weight] * token.length)
        else:
            rows.tokens.append(token.id)
            rows.weights.append(token.weight)
    if rows.tokens or not rows.rows:
        rows.close()
    if len(rows.rows) > MAX_CHUNKS:
        total = sum(r.length if isinstance(r, Run) else 0 if isinstance(r, Break) else 1 for r in items)
        raise InvalidRequest(
            f"{label} is {total} tokens long in {len(rows.rows)} chunks; at most {MAX_CHUNKS} chunks of "
            f"{CHUNK_TOKENS} tokens ({MAX_CHUNKS * CHUNK_TOKENS}) are encoded",
            {"tokens": total, "chunks": len(rows.rows), "limit": MAX_CHUNKS * CHUNK_TOKENS},
        )
    return rows.rows


def empty_chunk(*, bos: int, eos: int, pad: int) -> Chunk:
    return _row([], [], [], bos, eos, pad)


def _row(tokens: list[int], weights: list[float], runs: list[tuple[int, Run]], bos: int, eos: int,
         pad: int) -> Chunk:
    ids = [bos, *tokens, eos]
    ids.extend([pad] * (CHUNK_LENGTH - len(ids)))
    row_weights = (1.0, *weights, *([1.0] * (CHUNK_LENGTH - 1 - len(weights))))
    return Chunk(ids=ids, runs=[(start + 1, run) for start, run in runs], eos_position=len(tokens) + 1,
                 weights=row_weights)

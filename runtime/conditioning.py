"""``encode``: a prompt, a negative prompt and weighted embeddings -> pipeline keyword arguments.

The vectors are swapped in at encode time (as AUTOMATIC1111 and ComfyUI do): the shared
tokenizers and text encoders are only read, never changed, so one loaded pipeline serves
concurrent requests with different embeddings and each gets what it would get alone.

Semantics (DESIGN "The runtime"):
- prompts are read as A1111 users write them (``prompt_syntax``: ``(text:1.3)``, ``[text]``,
  escapes, ``BREAK``) and ComfyUI's ``embedding:NAME``; ``literal=True`` reads them as plain text;
- which prompt each embedding goes to follows the sign of its weight (``placement``);
- every position gets its weight with one formula, ComfyUI's interpolation from the empty
  prompt: ``z' = z_empty + (z - z_empty) * w``, where w is the written weight, times ``|W|`` at
  an embedding's positions (w = 1 leaves a position bit-identical);
- prompts over 75 tokens go in chunks as A1111 cuts them (``prompt_layout``), concatenated;
  both sides get the same number of chunks (the shorter padded with empty ones) so
  classifier-free guidance lines up;
- each side goes through the encoder on its own, and a side seen before (the recurring
  negative prompt of a service) comes from ``conditioning_cache`` with the same bits;
- ``clip_skip`` as diffusers counts it (1 = the layer before the one the model reads by default).

The steps, for callers that batch requests or train (``encode_request`` runs them in order):
``prepare_request`` resolves the embeddings and lays the prompts out (``Prepared``: every
chunk's token ids, runs and weights, per encoder and side); ``encode_prepared`` runs the
encoders on a layout; ``run_encoder`` is the differentiable core both use: chunks and one vector
tensor per embedding in, hidden states out, with no ``torch.no_grad`` of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.runtime.clip_forward import encode_embeds, hidden_layer_index
from pseudoword.runtime.conditioning_cache import DEFAULT_CONDITIONING_CACHE, ConditioningCache, EncodedSide
from pseudoword.runtime.embedding_entries import (
    AppliedEmbedding,
    LoadedEmbedding,
    ResolverLike,
    load_entries,
    parse_entries,
)
from pseudoword.runtime.empty_prompt import EmptyEncoding, empty_encoding, weights_fingerprint
from pseudoword.runtime.placement import NEGATIVE, PROMPT, place_embeddings
from pseudoword.runtime.prompt_layout import (
    COMMA_BACKTRACK,
    Chunk,
    Names,
    Piece,
    chunk,
    comma_id,
    empty_chunk,
    split_segments,
    tokenize_pieces,
)
from pseudoword.runtime.prompt_syntax import parse_prompt
from pseudoword.runtime.text_stack import TextSlot, TextStack, text_stack
from pseudoword.runtime.vector_cache import DEFAULT_CACHE, VectorCache

#: Longest prompt text accepted (characters); the token limit is in prompt_layout.
MAX_PROMPT_CHARS = 20_000


@dataclass(frozen=True)
class Encoded:
    """``kwargs`` for the pipeline call, and what was applied (for metadata and logs)."""

    kwargs: dict[str, torch.Tensor]
    applied: tuple[AppliedEmbedding, ...]  # each with its placement: where it went
    prompt: str  # as encoded: triggers appended, moved or taken out
    negative_prompt: str | None
    chunks: int


@dataclass(frozen=True)
class Prepared:
    """A request laid out for the encoders: nothing has run through them yet."""

    stack: TextStack
    loaded: tuple[LoadedEmbedding, ...]
    prompt: str  # as it will be encoded
    negative_prompt: str | None  # None: the negative side is zeros (SDXL given no negative prompt)
    layouts: tuple[tuple[list[Chunk], ...], ...]  # per encoder: (prompt chunks, [negative chunks])
    clip_skip: int | None

    @property
    def chunks(self) -> int:
        """Chunks per side once the shorter side is padded (the prompt_embeds length / 77)."""
        return max(len(rows) for sides in self.layouts for rows in sides)

    @property
    def applied(self) -> tuple[AppliedEmbedding, ...]:
        return tuple(item.applied for item in self.loaded)


def encode(
    pipe: Any,
    prompt: str,
    negative_prompt: str | None = "",
    embeddings: Sequence[dict[str, Any]] | None = None,
    resolver: ResolverLike | None = None,
    clip_skip: int | None = None,
    *,
    literal: bool = False,
) -> dict[str, torch.Tensor]:
    """Keyword arguments for ``pipe(...)``: ``prompt_embeds``, ``negative_prompt_embeds`` and,
    for SDXL, ``pooled_prompt_embeds``, ``negative_pooled_prompt_embeds``.

    ``negative_prompt=None`` means "none given", as in diffusers: SDXL pipelines configured with
    ``force_zeros_for_empty_prompt`` then get zeros (unless a negative embedding lands there).
    """
    return encode_request(pipe, prompt, negative_prompt, embeddings, resolver=resolver,
                          clip_skip=clip_skip, literal=literal).kwargs


def encode_request(
    pipe: Any,
    prompt: str,
    negative_prompt: str | None = "",
    embeddings: Sequence[dict[str, Any]] | None = None,
    *,
    resolver: ResolverLike | None = None,
    clip_skip: int | None = None,
    literal: bool = False,
    comma_backtrack: int = COMMA_BACKTRACK,
    vector_cache: VectorCache | None = None,
    conditioning_cache: ConditioningCache | None = None,
) -> Encoded:
    """``encode`` with the details: which embeddings (digests, triggers, weights) were applied
    and where each went.

    ``literal`` reads both prompts as plain text (no emphasis, escapes, BREAK or
    ``embedding:``); ``comma_backtrack`` is how far back a full chunk looks for a comma to cut
    after (A1111's default 20; 0 cuts at exactly 75 tokens). ``vector_cache`` and
    ``conditioning_cache`` default to the process-wide ones; pass ``ConditioningCache(0)`` to
    encode every side afresh."""
    prepared = prepare_request(pipe, prompt, negative_prompt, embeddings, resolver=resolver, clip_skip=clip_skip,
                               literal=literal, comma_backtrack=comma_backtrack, vector_cache=vector_cache)
    kwargs = encode_prepared(prepared, conditioning_cache=conditioning_cache)
    device = _execution_device(pipe, prepared.stack)
    kwargs = {key: value.to(device) for key, value in kwargs.items()}
    return Encoded(kwargs, prepared.applied, prepared.prompt, prepared.negative_prompt, prepared.chunks)


def prepare_request(
    pipe: Any,
    prompt: str,
    negative_prompt: str | None = "",
    embeddings: Sequence[dict[str, Any]] | None = None,
    *,
    resolver: ResolverLike | None = None,
    clip_skip: int | None = None,
    literal: bool = False,
    comma_backtrack: int = COMMA_BACKTRACK,
    vector_cache: VectorCache | None = None,
) -> Prepared:
    """Validate the request, resolve and load its embeddings, place them by the sign of their
    weights and lay both prompts out in chunks for every text encoder of ``pipe``."""
    _check_text("prompt", prompt, allow_none=False)
    _check_text("negative_prompt", negative_prompt, allow_none=True)
    if clip_skip is not None and (isinstance(clip_skip, bool) or not isinstance(clip_skip, int)):
        raise InvalidRequest(f"clip_skip must be an integer or None, got {clip_skip!r}")
    if isinstance(comma_backtrack, bool) or not isinstance(comma_backtrack, int) or comma_backtrack < 0:
        raise InvalidRequest(f"comma_backtrack must be a whole number of tokens (0 = off), got {comma_backtrack!r}")
    stack = text_stack(pipe)
    for slot in stack.slots:  # refuse a bad clip_skip before resolving anything
        hidden_layer_index(slot.encoder, clip_skip, penultimate=slot.penultimate)
    entries = parse_entries(embeddings)
    cache = vector_cache if vector_cache is not None else DEFAULT_CACHE
    loaded = load_entries(entries, stack, resolver=resolver, cache=cache)
    names = Names([(item.trigger, item.aliases) for item in loaded], syntax=not literal)
    placed = place_embeddings(prompt, negative_prompt or "", names, [item.trigger for item in loaded],
                              [item.weight for item in loaded], literal=literal)
    loaded = [dataclasses.replace(item, applied=dataclasses.replace(item.applied, placement=placement))
              for item, placement in zip(loaded, placed.placements, strict=True)]
    zero_negative = (stack.is_sdxl and stack.force_zeros_for_empty_prompt and negative_prompt is None
                     and not placed.negative)
    sides = [(placed.prompt, PROMPT)] + ([] if zero_negative else [(placed.negative, NEGATIVE)])
    lengths = [item.vectors.num_vectors for item in loaded]
    pieces = [(split_segments(parse_prompt(text, literal=literal), names, lengths, label=label)[0], label)
              for text, label in sides]
    layouts = tuple(tuple(_chunks(slot, side, comma_backtrack, label) for side, label in pieces)
                    for slot in stack.slots)
    return Prepared(stack, tuple(loaded), placed.prompt, None if zero_negative else placed.negative, layouts,
                    clip_skip)


def _check_text(name: str, value: Any, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"{name} is {len(value)} characters; at most {MAX_PROMPT_CHARS}",
                             {"length": len(value), "limit": MAX_PROMPT_CHARS})


def _chunks(slot: TextSlot, pieces: Sequence[Piece], backtrack: int, label: str) -> list[Chunk]:
    tok = slot.tokenizer
    return chunk(tokenize_pieces(tok, pieces), bos=tok.bos_token_id, eos=tok.eos_token_id, pad=tok.pad_token_id,
                 placeholder=tok.eos_token_id, comma=comma_id(tok), backtrack=backtrack, label=label)


def encode_prepared(prepared: Prepared, *, conditioning_cache: ConditioningCache | None = None,
                    ) -> dict[str, torch.Tensor]:
    """Run the encoders on a prepared request: the pipeline's keyword arguments, on the text
    encoders' device."""
    cache = conditioning_cache if conditioning_cache is not None else DEFAULT_CONDITIONING_CACHE
    stack, loaded, clip_skip = prepared.stack, prepared.loaded, prepared.clip_skip
    n = prepared.chunks
    has_negative = prepared.negative_prompt is not None
    hidden_parts, pooled_sides = [], None
    with torch.no_grad():
        for slot, sides in zip(stack.slots, prepared.layouts):
            fingerprint = weights_fingerprint(slot.encoder) if cache.enabled else None  # once per encoder
            encoded = [_encode_side(slot, rows, loaded, clip_skip, cache, fingerprint) for rows in sides]
            hidden_parts.append(torch.cat([_pad(slot, side.hidden, n, clip_skip) for side in encoded]))
            if slot.pooled:
                pooled_sides = [side.pooled for side in encoded]
    # torch.cat always copies, so nothing returned aliases a cached tensor.
    hidden = torch.cat(hidden_parts, dim=-1)
    width = hidden.shape[-1]
    prompt_embeds = hidden[:n].reshape(1, -1, width)
    negative_embeds = hidden[n:].reshape(1, -1, width) if has_negative else torch.zeros_like(prompt_embeds)
    kwargs = {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_embeds}
    if stack.is_sdxl:
        assert pooled_sides is not None and pooled_sides[0] is not None
        # The pooled output of the first chunk of each side, as A1111 and ComfyUI do.
        kwargs["pooled_prompt_embeds"] = pooled_sides[0][0:1].clone()
        negative_pooled = pooled_sides[1] if has_negative else None
        kwargs["negative_pooled_prompt_embeds"] = (negative_pooled[0:1].clone() if negative_pooled is not None
                                                   else torch.zeros_like(kwargs["pooled_prompt_embeds"]))
    return kwargs


def _encode_side(slot: TextSlot, chunks: list[Chunk], loaded: Sequence[LoadedEmbedding],
                 clip_skip: int | None, cache: ConditioningCache, fingerprint: int | None) -> EncodedSide:
    """One side (prompt or negative prompt) of one encoder, on its own: never batched with the
    other side, so its bits do not depend on the other side or on what the cache holds."""
    def compute() -> EncodedSide:
        hidden, pooled = _encode_rows(slot, chunks, loaded, clip_skip)
        return EncodedSide(hidden, pooled)

    key = _side_key(slot, chunks, loaded, clip_skip, fingerprint) if fingerprint is not None else None
    return cache.get_or_encode(slot.encoder, key, compute)


def _side_key(slot: TextSlot, chunks: list[Chunk], loaded: Sequence[LoadedEmbedding],
              clip_skip: int | None, fingerprint: int) -> tuple[Any, ...] | None:
    """Everything the side's encoding depends on; None when an embedding has no digest."""
    rows = []
    for row in chunks:
        runs = []
        for start, run in row.runs:
            item = loaded[run.index]
            if item.applied.sha256 is None:
                return None
            runs.append((start, run.length, item.applied.sha256, abs(item.weight)))
        rows.append((tuple(row.ids), row.eos_position, row.weights, tuple(runs)))
    return (slot.vector_key, clip_skip, slot.penultimate, slot.pooled, fingerprint, tuple(rows))


def _pad(slot: TextSlot, hidden: torch.Tensor, n: int, clip_skip: int | None) -> torch.Tensor:
    """``hidden`` followed by empty-prompt rows up to ``n`` chunks (a shorter side lines up)."""
    if hidden.shape[0] == n:
        return hidden
    empty = _empty(slot, hidden_layer_index(slot.encoder, clip_skip, penultimate=slot.penultimate))
    return torch.cat([hidden, empty.hidden.expand(n - hidden.shape[0], *empty.hidden.shape)])


def _encode_rows(slot: TextSlot, rows: list[Chunk], loaded: Sequence[LoadedEmbedding],
                 clip_skip: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hidden states ``[rows, 77, D]`` (and pooled outputs for SDXL's second encoder).

    Rows of the empty prompt (an empty negative prompt) are not run through the encoder: they
    are the cached empty-prompt encoding. Whether a row is empty depends only on the request,
    so a request always takes the same path and gives the same bits, cached or not."""
    tok = slot.tokenizer
    read_at = hidden_layer_index(slot.encoder, clip_skip, penultimate=slot.penultimate)
    blank = empty_chunk(bos=tok.bos_token_id, eos=tok.eos_token_id, pad=tok.pad_token_id).ids
    live = [r for r, row in enumerate(rows) if row.runs or row.ids != blank]
    hidden = pooled = None
    if live:
        vectors = [item.vectors.vectors[slot.vector_key] for item in loaded]
        hidden, pooled = run_encoder(slot, [rows[r] for r in live], vectors, read_at=read_at,
                                     final_norm=not slot.penultimate)
    scales = position_weights(rows, [abs(item.weight) for item in loaded])
    if len(live) < len(rows) or scales is not None:
        empty = _empty(slot, read_at)
        if len(live) < len(rows):
            full = empty.hidden.expand(len(rows), *empty.hidden.shape).clone()
            full_pooled = (empty.pooled.expand(len(rows), *empty.pooled.shape).clone()
                           if slot.pooled and empty.pooled is not None else None)
            if live:
                assert hidden is not None  # the live rows were encoded above
                index = torch.tensor(live, device=full.device)
                full[index] = hidden
                if full_pooled is not None and pooled is not None:
                    full_pooled[index] = pooled
            hidden, pooled = full, full_pooled
        if scales is not None:
            assert hidden is not None
            hidden = emphasise(hidden, empty.hidden, scales)
    assert hidden is not None
    return hidden, pooled


def _empty(slot: TextSlot, read_at: int) -> EmptyEncoding:
    """The empty prompt encoded as this slot reads its encoder at ``read_at``."""
    return empty_encoding(slot.encoder, slot.tokenizer, read_at=read_at, final_norm=not slot.penultimate,
                          pooled=slot.pooled)


def run_encoder(slot: TextSlot, rows: Sequence[Chunk], vectors: Sequence[torch.Tensor], *, read_at: int,
                final_norm: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One batched pass of ``slot``'s encoder over ``rows``, ``vectors[i]`` (``[n, width]``)
    placed at every run of embedding i; differentiable in ``vectors`` (training passes
    trainable ones). Returns ``hidden_states[read_at]`` per row (final-normed when
    ``final_norm``) and, for a pooled slot, each row's pooled output."""
    encoder = slot.encoder
    table = encoder.get_input_embeddings()
    device = table.weight.device
    ids = torch.tensor([row.ids for row in rows], device=device)
    inputs = table(ids)  # a new tensor: the table itself is only read
    for r, row in enumerate(rows):
        for start, run in row.runs:
            inputs[r, start:start + run.length] = vectors[run.index].to(device=device, dtype=inputs.dtype)
    eos = torch.tensor([row.eos_position for row in rows], device=device) if slot.pooled else None
    return encode_embeds(encoder, inputs, read_at=read_at, final_norm=final_norm, pooled_positions=eos)


def position_weights(rows: Sequence[Chunk], run_scales: Sequence[float]) -> torch.Tensor | None:
    """``[rows, 77]`` weights: the written weight of every position, times ``run_scales[i]``
    (an embedding's |W|) at embedding i's positions; None when every weight is 1."""
    table = []
    for row in rows:
        weights = list(row.weights)
        for start, run in row.runs:
            for position in range(start, start + run.length):
                weights[position] *= run_scales[run.index]
        table.append(weights)
    if all(w == 1.0 for weights in table for w in weights):
        return None
    return torch.tensor(table, dtype=torch.float32)


def emphasise(hidden: torch.Tensor, z_empty: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``z_empty + (hidden - z_empty) * w`` at every position whose weight w is not 1 (computed
    in float32); positions of weight 1 keep their bits."""
    weights = weights.to(hidden.device)
    anchor = z_empty.float()
    moved = (anchor + (hidden.float() - anchor) * weights[..., None]).to(hidden.dtype)
    return torch.where((weights != 1.0)[..., None], moved, hidden)


def _execution_device(pipe: Any, stack: TextStack) -> torch.device:
    try:
        device = pipe._execution_device
    except Exception:  # noqa: BLE001 - not a diffusers pipeline, or no modules registered
        return stack.device
    return device if isinstance(device, torch.device) else stack.device

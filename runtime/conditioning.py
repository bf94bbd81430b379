"""``encode``: a prompt, a negative prompt and weighted embeddings -> pipeline keyword arguments.

The vectors are swapped in at encode time (as AUTOMATIC1111 and ComfyUI do): the shared
tokenizers and text encoders are only read, never changed, so one loaded pipeline serves
concurrent requests with different embeddings and each gets what it would get alone.

Semantics (DESIGN "The runtime"):
- where an embedding's trigger stands in the prompt or the negative prompt, its vectors go
  there; where it stands in neither, W > 0 appends ``, TRIGGER`` to the prompt and W < 0 to the
  negative prompt (just ``TRIGGER`` where that prompt is empty);
- ``|W|`` scales the embedding's positions against the empty prompt:
  ``z' = z_empty + (z - z_empty) * |W|`` (W = 1 leaves them bit-identical);
- prompts over 75 tokens go in 75-token chunks, concatenated; both sides get the same number
  of chunks (the shorter padded with empty ones) so classifier-free guidance lines up;
- each side goes through the encoder on its own, and a side seen before (the recurring
  negative prompt of a service) comes from ``conditioning_cache`` with the same bits;
- ``clip_skip`` as diffusers counts it (1 = the penultimate layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.runtime.clip_forward import encode_embeds, hidden_layer_index
from pseudoword.runtime.embedding_entries import (
    AppliedEmbedding,
    LoadedEmbedding,
    ResolverLike,
    load_entries,
    parse_entries,
)
from pseudoword.runtime.conditioning_cache import DEFAULT_CONDITIONING_CACHE, ConditioningCache, EncodedSide
from pseudoword.runtime.empty_prompt import EmptyEncoding, empty_encoding, weights_fingerprint
from pseudoword.runtime.prompt_layout import (
    Chunk,
    Run,
    chunk,
    empty_chunk,
    split_prompt,
    tokenize_pieces,
    trigger_pattern,
)
from pseudoword.runtime.text_stack import TextSlot, TextStack, text_stack
from pseudoword.runtime.vector_cache import DEFAULT_CACHE, VectorCache

#: Longest prompt text accepted (characters); the token limit is in prompt_layout.
MAX_PROMPT_CHARS = 20_000


@dataclass(frozen=True)
class Encoded:
    """``kwargs`` for the pipeline call, and what was applied (for metadata and logs)."""

    kwargs: dict[str, torch.Tensor]
    applied: tuple[AppliedEmbedding, ...]
    prompt: str  # as encoded, after triggers were appended
    negative_prompt: str | None
    chunks: int


def encode(
    pipe: Any,
    prompt: str,
    negative_prompt: str | None = "",
    embeddings: Sequence[dict[str, Any]] | None = None,
    resolver: ResolverLike | None = None,
    clip_skip: int | None = None,
) -> dict[str, torch.Tensor]:
    """Keyword arguments for ``pipe(...)``: ``prompt_embeds``, ``negative_prompt_embeds`` and,
    for SDXL, ``pooled_prompt_embeds``, ``negative_pooled_prompt_embeds``.

    ``negative_prompt=None`` means "none given", as in diffusers: SDXL pipelines configured with
    ``force_zeros_for_empty_prompt`` then get zeros (unless a negative embedding lands there).
    """
    return encode_request(pipe, prompt, negative_prompt, embeddings, resolver=resolver,
                          clip_skip=clip_skip).kwargs


def encode_request(
    pipe: Any,
    prompt: str,
    negative_prompt: str | None = "",
    embeddings: Sequence[dict[str, Any]] | None = None,
    *,
    resolver: ResolverLike | None = None,
    clip_skip: int | None = None,
    vector_cache: VectorCache | None = None,
    conditioning_cache: ConditioningCache | None = None,
) -> Encoded:
    """``encode`` with the details: which embeddings (digests, triggers, weights) were applied.

    ``vector_cache`` and ``conditioning_cache`` default to the process-wide ones; pass
    ``ConditioningCache(0)`` to encode every side afresh."""
    _check_text("prompt", prompt, allow_none=False)
    _check_text("negative_prompt", negative_prompt, allow_none=True)
    if clip_skip is not None and (isinstance(clip_skip, bool) or not isinstance(clip_skip, int)):
        raise InvalidRequest(f"clip_skip must be an integer or None, got {clip_skip!r}")
    stack = text_stack(pipe)
    for slot in stack.slots:  # refuse a bad clip_skip before resolving anything
        hidden_layer_index(slot.encoder, clip_skip, penultimate=slot.penultimate)
    entries = parse_entries(embeddings)
    cache = vector_cache if vector_cache is not None else DEFAULT_CACHE
    loaded = load_entries(entries, stack, resolver=resolver, cache=cache)
    positive, negative = place_triggers(prompt, negative_prompt or "", loaded)
    zero_negative = (stack.is_sdxl and stack.force_zeros_for_empty_prompt and negative_prompt is None
                     and not negative)
    with torch.no_grad():
        kwargs, chunks = _encode(stack, positive, None if zero_negative else negative, loaded, clip_skip,
                                 conditioning_cache if conditioning_cache is not None else DEFAULT_CONDITIONING_CACHE)
    device = _execution_device(pipe, stack)
    kwargs = {key: value.to(device) for key, value in kwargs.items()}
    return Encoded(kwargs, tuple(item.applied for item in loaded), positive,
                   negative if not zero_negative else negative_prompt, chunks)


def _check_text(name: str, value: Any, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"{name} is {len(value)} characters; at most {MAX_PROMPT_CHARS}",
                             {"length": len(value), "limit": MAX_PROMPT_CHARS})


def place_triggers(prompt: str, negative: str, loaded: Sequence[LoadedEmbedding]) -> tuple[str, str]:
    """Append the trigger of each embedding that stands in neither prompt to the side its
    weight's sign picks."""
    pattern = trigger_pattern([item.trigger for item in loaded])
    if pattern is None:
        return prompt, negative
    present = {m.group(0).lower() for text in (prompt, negative) for m in pattern.finditer(text)}
    for item in loaded:
        if item.trigger.lower() in present:
            continue
        if item.weight > 0:
            prompt = _append(prompt, item.trigger)
        else:
            negative = _append(negative, item.trigger)
    return prompt, negative


def _append(text: str, trigger: str) -> str:
    stripped = text.rstrip()
    if not stripped:
        return trigger
    return f"{stripped} {trigger}" if stripped.endswith(",") else f"{stripped}, {trigger}"


def _layout(slot: TextSlot, text: str, loaded: Sequence[LoadedEmbedding], label: str) -> list[Chunk]:
    tok = slot.tokenizer
    triggers = [item.trigger for item in loaded]
    pieces = split_prompt(text, trigger_pattern(triggers), {t.lower(): i for i, t in enumerate(triggers)},
                          [item.vectors.num_vectors for item in loaded])
    return chunk(tokenize_pieces(tok, pieces), bos=tok.bos_token_id, eos=tok.eos_token_id,
                 pad=tok.pad_token_id, placeholder=tok.eos_token_id, label=label)


def _encode(stack: TextStack, positive: str, negative: str | None, loaded: Sequence[LoadedEmbedding],
            clip_skip: int | None, cache: ConditioningCache) -> tuple[dict[str, torch.Tensor], int]:
    texts = [(positive, "prompt")] + ([(negative, "negative prompt")] if negative is not None else [])
    layouts = [[_layout(slot, text, loaded, label) for text, label in texts] for slot in stack.slots]
    n = max(len(chunks) for sides in layouts for chunks in sides)
    hidden_parts, pooled_sides = [], None
    for slot, sides in zip(stack.slots, layouts):
        fingerprint = weights_fingerprint(slot.encoder) if cache.enabled else None  # once per encoder
        encoded = [_encode_side(slot, chunks, loaded, clip_skip, cache, fingerprint) for chunks in sides]
        hidden_parts.append(torch.cat([_pad(slot, side.hidden, n, clip_skip) for side in encoded]))
        if slot.pooled:
            pooled_sides = [side.pooled for side in encoded]
    # torch.cat always copies, so nothing returned aliases a cached tensor.
    hidden = torch.cat(hidden_parts, dim=-1)
    width = hidden.shape[-1]
    prompt_embeds = hidden[:n].reshape(1, -1, width)
    negative_embeds = hidden[n:].reshape(1, -1, width) if negative is not None else torch.zeros_like(prompt_embeds)
    kwargs = {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_embeds}
    if stack.is_sdxl:
        assert pooled_sides is not None and pooled_sides[0] is not None
        # The pooled output of the first chunk of each side, as A1111 and ComfyUI do.
        kwargs["pooled_prompt_embeds"] = pooled_sides[0][0:1].clone()
        negative_pooled = pooled_sides[1] if negative is not None else None
        kwargs["negative_pooled_prompt_embeds"] = (negative_pooled[0:1].clone() if negative_pooled is not None
                                                   else torch.zeros_like(kwargs["pooled_prompt_embeds"]))
    return kwargs, n


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
        rows.append((tuple(row.ids), row.eos_position, tuple(runs)))
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
    encoder = slot.encoder
    tok = slot.tokenizer
    read_at = hidden_layer_index(encoder, clip_skip, penultimate=slot.penultimate)
    final_norm = not slot.penultimate
    blank = empty_chunk(bos=tok.bos_token_id, eos=tok.eos_token_id, pad=tok.pad_token_id).ids
    live = [r for r, row in enumerate(rows) if row.runs or row.ids != blank]
    hidden = pooled = None
    if live:
        hidden, pooled = _run_rows(slot, [rows[r] for r in live], loaded, read_at, final_norm)
    weighted = [(r, start, run, abs(loaded[run.index].weight)) for r, row in enumerate(rows)
                for start, run in row.runs if abs(loaded[run.index].weight) != 1.0]
    if len(live) < len(rows) or weighted:
        empty = _empty(slot, read_at)
        if len(live) < len(rows):
            full = empty.hidden.expand(len(rows), *empty.hidden.shape).clone()
            full_pooled = empty.pooled.expand(len(rows), *empty.pooled.shape).clone() if slot.pooled else None
            if live:
                index = torch.tensor(live, device=full.device)
                full[index] = hidden
                if full_pooled is not None:
                    full_pooled[index] = pooled
            hidden, pooled = full, full_pooled
        for r, start, run, scale in weighted:
            _emphasise(hidden, empty.hidden, r, start, run, scale)
    assert hidden is not None
    return hidden, pooled


def _empty(slot: TextSlot, read_at: int) -> EmptyEncoding:
    """The empty prompt encoded as this slot reads its encoder at ``read_at``."""
    return empty_encoding(slot.encoder, slot.tokenizer, read_at=read_at, final_norm=not slot.penultimate,
                          pooled=slot.pooled)


def _run_rows(slot: TextSlot, rows: list[Chunk], loaded: Sequence[LoadedEmbedding], read_at: int,
              final_norm: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One batched pass of the encoder over ``rows``, vectors placed at their runs."""
    encoder = slot.encoder
    table = encoder.get_input_embeddings()
    device = table.weight.device
    ids = torch.tensor([row.ids for row in rows], device=device)
    inputs = table(ids)  # a new tensor: the table itself is only read
    for r, row in enumerate(rows):
        for start, run in row.runs:
            inputs[r, start:start + run.length] = loaded[run.index].vectors.vectors[slot.vector_key]
    eos = torch.tensor([row.eos_position for row in rows], device=device) if slot.pooled else None
    return encode_embeds(encoder, inputs, read_at=read_at, final_norm=final_norm, pooled_positions=eos)


def _emphasise(hidden: torch.Tensor, z_empty: torch.Tensor, row: int, start: int, run: Run, scale: float) -> None:
    stop = start + run.length
    anchor = z_empty[start:stop]
    hidden[row, start:stop] = anchor + (hidden[row, start:stop] - anchor) * scale


def _execution_device(pipe: Any, stack: TextStack) -> torch.device:
    try:
        device = pipe._execution_device
    except Exception:  # noqa: BLE001 - not a diffusers pipeline, or no modules registered
        return stack.device
    return device if isinstance(device, torch.device) else stack.device

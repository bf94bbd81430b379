"""``z_empty``: the encoding of the empty prompt, the anchor of an embedding's weight.

``z' = z_empty + (z - z_empty) * |W|`` needs the empty prompt encoded by the same encoder,
layer and clip skip. It depends only on the encoder's weights, so it is computed once and kept
per encoder (weakly: it goes when the encoder goes), keyed by a fingerprint of the weights
(storage address and in-place version counter of every parameter) so that a LoRA fused into the
encoder, or any other in-place change, gets a fresh one instead of a stale anchor.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import torch

from pseudoword.runtime.clip_forward import encode_embeds
from pseudoword.runtime.prompt_layout import empty_chunk

_MAX_PER_ENCODER = 8
_cache: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], torch.Tensor]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _fingerprint(encoder: torch.nn.Module) -> int:
    return hash(tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in encoder.parameters()))


def empty_hidden(encoder: Any, tokenizer: Any, *, read_at: int, final_norm: bool) -> torch.Tensor:
    """``[77, D]`` hidden states of the empty prompt (BOS, EOS, padding) for this reading."""
    key = (read_at, final_norm, _fingerprint(encoder))
    with _lock:
        found = _cache.get(encoder, {}).get(key)
    if found is not None:
        return found
    row = empty_chunk(bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id)
    table = encoder.get_input_embeddings()
    ids = torch.tensor([row.ids], device=table.weight.device)
    with torch.no_grad():
        hidden, _ = encode_embeds(encoder, table(ids), read_at=read_at, final_norm=final_norm)
    value = hidden[0]
    with _lock:
        per_encoder = _cache.setdefault(encoder, {})
        per_encoder[key] = value
        while len(per_encoder) > _MAX_PER_ENCODER:
            per_encoder.pop(next(iter(per_encoder)))
    return value

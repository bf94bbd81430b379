"""``z_empty``: the encoding of the empty prompt, the anchor of an embedding's weight.

It is also what every empty row of a request encodes to (an empty negative prompt, the padding
chunks that line up a long prompt's sides), so those rows are taken from here, not recomputed.

``z' = z_empty + (z - z_empty) * |W|`` needs the empty prompt encoded by the same encoder,
layer and clip skip. It depends only on the encoder's state, so it is computed once and kept
per encoder (weakly: it goes when the encoder goes), keyed by a fingerprint of that state
(storage address and in-place version counter of every parameter, and every PEFT adapter's
active set and scale) so that a LoRA fused into the encoder, an unfused one whose scale or
active set changes, or any other in-place change, gets a fresh one instead of a stale anchor.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch

from pseudoword.runtime.clip_forward import encode_embeds
from pseudoword.runtime.prompt_layout import empty_chunk


@dataclass(frozen=True)
class EmptyEncoding:
    hidden: torch.Tensor  # [77, D] at the layer read
    pooled: torch.Tensor | None  # [P] for encoders that give a pooled output


_MAX_PER_ENCODER = 8
_cache: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], EmptyEncoding]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def weights_fingerprint(encoder: torch.nn.Module) -> int:
    """Changes whenever any parameter is replaced or written in place, or any adapter is
    switched, enabled, disabled, merged or rescaled (for cache keys)."""
    parameters = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in encoder.parameters())
    return hash((parameters, adapter_state(encoder)))


def adapter_state(encoder: torch.nn.Module) -> tuple[Any, ...]:
    """What an unfused adapter's output depends on beyond its parameters: for every PEFT tuner
    layer (LoRA, LoHa, LoKr... as ``load_lora_weights`` and ``set_adapters`` manage them) its
    active adapters, whether adapters are disabled, which are merged, and their scales. Changing
    a scale touches no parameter, so the parameter part of the fingerprint cannot see it."""
    state = []
    for name, module in encoder.named_modules():
        if not (hasattr(module, "active_adapters") and hasattr(module, "merged_adapters")):
            continue
        scaling = getattr(module, "scaling", None)
        scales = tuple(sorted((str(k), float(v)) for k, v in scaling.items())) if isinstance(scaling, dict) else ()
        state.append((name, tuple(module.active_adapters), bool(getattr(module, "disable_adapters", False)),
                      tuple(module.merged_adapters), scales))
    return tuple(state)


def empty_encoding(encoder: Any, tokenizer: Any, *, read_at: int, final_norm: bool, pooled: bool) -> EmptyEncoding:
    """The empty prompt (BOS, EOS, padding) encoded for this reading; never written to."""
    key = (read_at, final_norm, pooled, weights_fingerprint(encoder))
    with _lock:
        found = _cache.get(encoder, {}).get(key)
    if found is not None:
        return found
    row = empty_chunk(bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id)
    table = encoder.get_input_embeddings()
    ids = torch.tensor([row.ids], device=table.weight.device)
    eos = torch.tensor([row.eos_position], device=table.weight.device) if pooled else None
    with torch.no_grad():
        hidden, pooled_out = encode_embeds(encoder, table(ids), read_at=read_at, final_norm=final_norm,
                                           pooled_positions=eos)
    value = EmptyEncoding(hidden[0], pooled_out[0] if pooled_out is not None else None)
    with _lock:
        per_encoder = _cache.setdefault(encoder, {})
        per_encoder[key] = value
        while len(per_encoder) > _MAX_PER_ENCODER:
            per_encoder.pop(next(iter(per_encoder)))
    return value

"""CLIP's text transformer run from input embeddings instead of token ids.

``CLIPTextModel`` only takes ``input_ids``, and the only ways to make it see new vectors are to
grow its embedding matrix (what ``load_textual_inversion`` does, changing a model every request
shares) or to hook it (also shared state). So this module calls the model's own pieces on a
per-request tensor: token embeddings looked up here, the embedding's vectors placed into that
copy, then the model's position embeddings, causal mask, encoder layers and final layer norm,
exactly as ``CLIPTextTransformer.forward`` does. Nothing of the model is written.

Which hidden state is returned follows diffusers: SD 1.x / 2.x take the last layer through the
final layer norm, or with ``clip_skip`` ``hidden_states[-(clip_skip + 1)]`` through the final
norm; SDXL takes ``hidden_states[-(clip_skip + 2)]`` (penultimate by default) without it. Layers
after the one read are not run at all, except where the pooled output needs the last one.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

import torch

from pseudoword.registry.core.errors import InvalidRequest


def transformer(encoder: Any) -> Any:
    """The module holding ``embeddings``, ``encoder`` and ``final_layer_norm``: the model itself
    in transformers 5, ``.text_model`` in 4.x (and inside ``CLIPTextModelWithProjection``)."""
    inner = getattr(encoder, "text_model", None)
    return inner if inner is not None else encoder


def num_layers(encoder: Any) -> int:
    return len(transformer(encoder).encoder.layers)


def hidden_layer_index(encoder: Any, clip_skip: int | None, *, penultimate: bool) -> int:
    """How many encoder layers to run before reading the hidden state (``hidden_states[i]``)."""
    layers = num_layers(encoder)
    skip = (clip_skip or 0) + (1 if penultimate else 0)
    index = layers - skip
    if clip_skip is not None and (clip_skip < 0 or index < 0):
        most = layers - (1 if penultimate else 0)
        raise InvalidRequest(
            f"clip_skip {clip_skip} is out of range for a {layers}-layer text encoder (0 to {most})",
            {"clip_skip": clip_skip, "layers": layers},
        )
    return index


@lru_cache(maxsize=64)
def _legacy_layer_signature(forward: Any) -> bool:
    """transformers 4.x layers take ``(hidden, attention_mask, causal_attention_mask)`` and
    return a tuple; 5.x take ``(hidden, attention_mask, **kwargs)`` and return the tensor.
    Cached per layer class's ``forward``."""
    return "causal_attention_mask" in inspect.signature(forward).parameters


@lru_cache(maxsize=4)
def _cache_parameter(function: Any) -> str:
    """``create_causal_mask`` names its cache ``past_key_values`` until transformers 5.2x and
    ``cache`` after (the old name warns, then goes)."""
    return "cache" if "cache" in inspect.signature(function).parameters else "past_key_values"


def _causal_mask(model: Any, hidden: torch.Tensor) -> torch.Tensor | None:
    try:
        from transformers.masking_utils import create_causal_mask
    except ImportError:  # transformers 4.x
        create_causal_mask = None
    if create_causal_mask is not None:
        return create_causal_mask(config=model.config, inputs_embeds=hidden, attention_mask=None,
                                  **{_cache_parameter(create_causal_mask): None})
    from transformers.modeling_attn_mask_utils import _create_4d_causal_attention_mask

    return _create_4d_causal_attention_mask(hidden.shape[:2], hidden.dtype, device=hidden.device)


def encode_embeds(
    encoder: Any,
    inputs_embeds: torch.Tensor,
    *,
    read_at: int,
    final_norm: bool,
    pooled_positions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the text transformer on token embeddings ``[B, 77, D]`` (positions are added here).

    Returns ``hidden_states[read_at]`` (through the final layer norm when ``final_norm``) and,
    when ``pooled_positions`` ([B] indexes of each row's EOS) is given, the pooled output: the
    final-normed last layer at those positions, through ``text_projection`` if the model has one.
    """
    model = transformer(encoder)
    layers = model.encoder.layers
    hidden = model.embeddings(inputs_embeds=inputs_embeds)
    mask = _causal_mask(model, hidden)
    legacy = _legacy_layer_signature(type(layers[0]).forward) if len(layers) else False
    run_to = len(layers) if pooled_positions is not None else read_at
    selected = hidden if read_at == 0 else None
    for index in range(run_to):
        layer = layers[index]
        hidden = layer(hidden, None, mask)[0] if legacy else layer(hidden, mask, is_causal=True)
        if index + 1 == read_at:
            selected = hidden
    assert selected is not None
    if final_norm:
        selected = model.final_layer_norm(selected)
    pooled = None
    if pooled_positions is not None:
        last = model.final_layer_norm(hidden) if not (final_norm and read_at == len(layers)) else selected
        pooled = last[torch.arange(last.shape[0], device=last.device), pooled_positions.to(last.device)]
        projection = getattr(encoder, "text_projection", None)
        if projection is not None:
            pooled = projection(pooled)
    return selected, pooled

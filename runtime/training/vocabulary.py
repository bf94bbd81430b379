"""The two words a run starts from: the new trigger (which must not already be a word of the
tokenizer's vocabulary) and the init word (one token, whose embedding row the vectors start at).

Why refuse a vocabulary word: the trigger is matched whole-word in every prompt the embedding is
applied to, so a trigger such as ``cat`` would replace the ordinary word wherever it is written.
"""

from __future__ import annotations

import torch

from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.runtime.text_stack import TextStack


def check_trigger_is_new(stack: TextStack, trigger: str) -> None:
    """Refuse a trigger CLIP already knows as one whole word (CLIP lowercases prompts)."""
    for slot in stack.slots:
        vocab = slot.tokenizer.get_vocab()
        if f"{trigger.lower()}</w>" in vocab:
            raise InvalidRequest(
                f"trigger {trigger!r} is already a word of the tokenizer's vocabulary: prompts using that word "
                f"would get the new vectors instead; choose a made-up word (e.g. '{trigger}-ti' or 'sks{trigger}')",
                {"field": "trigger", "trigger": trigger})


def init_token(stack: TextStack, init_word: str) -> int:
    """The init word's token id (the same in every tokenizer of SD 1.x/2.x/SDXL: one vocabulary)."""
    ids = None
    for slot in stack.slots:
        found = slot.tokenizer(init_word, add_special_tokens=False).input_ids
        if len(found) != 1:
            pieces = slot.tokenizer.convert_ids_to_tokens(found)
            raise InvalidRequest(
                f"init word {init_word!r} is {len(found)} tokens ({' '.join(pieces)}); it must be one token, such "
                "as 'object', 'style', 'dog', 'painting'", {"field": "init_word", "tokens": pieces})
        if ids is not None and found[0] != ids:
            raise InvalidRequest(f"init word {init_word!r} is a different token in each tokenizer",
                                 {"field": "init_word"})
        ids = found[0]
    assert ids is not None
    return ids


def initial_vectors(stack: TextStack, token: int, count: int) -> dict[str, torch.Tensor]:
    """``count`` copies of the init token's embedding row per encoder, float32 on the CPU
    (the trainable copy; the encoders' tables are only read)."""
    out = {}
    for slot in stack.slots:
        row = slot.encoder.get_input_embeddings().weight[token].detach().to("cpu", torch.float32)
        out[slot.vector_key] = row.expand(count, -1).clone()
    return out

"""Training prompts as the encoder's rows: the same layout ``encode`` uses (``prompt_layout``),
with the trigger as a run of the learned vectors. Prompts are read literally (a caption's
brackets are text), and one 77-token chunk is the most a training prompt may take."""

from __future__ import annotations

from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.runtime.prompt_layout import Chunk, Names, chunk, comma_id, split_segments, tokenize_pieces
from pseudoword.runtime.prompt_syntax import parse_prompt
from pseudoword.runtime.text_stack import TextSlot


def prompt_row(slot: TextSlot, prompt: str, trigger: str, vectors: int) -> Chunk:
    """The one chunk of ``prompt`` for ``slot``, with the trigger's run of ``vectors`` positions."""
    names = Names([(trigger, ())], syntax=False)
    pieces, found = split_segments(parse_prompt(prompt, literal=True), names, [vectors])
    if not found:
        raise InvalidRequest(f"training prompt {prompt!r} does not contain the trigger {trigger!r}")
    tok = slot.tokenizer
    rows = chunk(tokenize_pieces(tok, pieces), bos=tok.bos_token_id, eos=tok.eos_token_id, pad=tok.pad_token_id,
                 placeholder=tok.eos_token_id, comma=comma_id(tok), backtrack=0)
    if len(rows) != 1:
        raise InvalidRequest(f"training prompt {prompt[:80]!r}... is longer than 75 tokens; shorten its caption",
                             {"prompt": prompt[:200]})
    return rows[0]

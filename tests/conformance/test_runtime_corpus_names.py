"""Every file of the corpus, called in a prompt by its file name as an A1111 user types it (and
by ComfyUI's ``embedding:FILE``): all its vectors land at that place, in every text encoder, and
no text of the name is left as tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import pseudoword.runtime.conditioning as conditioning
from pseudoword.registry.core import read_embedding
from pseudoword.runtime.conditioning import encode_prepared, prepare_request
from pseudoword.runtime.conditioning_cache import ConditioningCache
from pseudoword.runtime.prompt_layout import Run

BEFORE, AFTER = "a photo of", ", detailed"


def _rows(manifest: list[dict[str, str]]) -> list[dict[str, str]]:
    return [row for row in manifest if row["architecture"] != "reject"]


def _sequence(chunks: list[Any]) -> list[Any]:
    """The chunks' contents in order, without BOS/EOS/padding: token ids, and a Run per run."""
    out: list[Any] = []
    for row in chunks:
        starts = {start: run for start, run in row.runs}
        position = 1
        while position < row.eos_position:
            if position in starts:
                out.append(starts[position])
                position += starts[position].length
            else:
                out.append(row.ids[position])
                position += 1
    return out


@pytest.fixture()
def captured(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """The token embeddings each encoder pass is given (the pass itself is skipped); the empty
    negative prompt takes no pass, so there is one per encoder."""
    seen: list[torch.Tensor] = []

    def fake(encoder: Any, inputs_embeds: torch.Tensor, *, read_at: int, final_norm: bool,
             pooled_positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        seen.append(inputs_embeds.detach().clone())
        pooled = torch.zeros(inputs_embeds.shape[0], 1280) if pooled_positions is not None else None
        return torch.zeros_like(inputs_embeds), pooled

    monkeypatch.setattr(conditioning, "encode_embeds", fake)
    return seen


@pytest.mark.slow  # one of the slowest (a subprocess or a real pipeline); CI runs it
@pytest.mark.parametrize("form", ["file name", "comfyui"])
def test_every_corpus_file_called_by_its_file_name(form: str, manifest: list[dict[str, str]], embeddings_dir: Path,
                                                   request: pytest.FixtureRequest,
                                                   captured: list[torch.Tensor]) -> None:
    for row in _rows(manifest):
        path = embeddings_dir / row["file"]
        pipe = request.getfixturevalue(row["architecture"])
        called = path.stem if form == "file name" else f"embedding:{path.name}"
        prepared = prepare_request(pipe, f"{BEFORE} {called}{AFTER}", "", [{"path": str(path)}])
        [applied] = prepared.applied
        assert applied.placement.prompt == 1 and applied.placement.appended is None, row["file"]
        assert prepared.prompt == f"{BEFORE} {called}{AFTER}"
        emb = read_embedding(path)
        n = emb.num_vectors
        captured.clear()
        encode_prepared(prepared, conditioning_cache=ConditioningCache(0))
        for slot, sides, inputs in zip(prepared.stack.slots, prepared.layouts, captured, strict=True):
            tok = slot.tokenizer
            expected = [*tok(BEFORE, add_special_tokens=False).input_ids, Run(0, n),
                        *tok(AFTER, add_special_tokens=False).input_ids]
            assert _sequence(sides[0]) == expected, (row["file"], slot.vector_key)
            # the vectors themselves, at that place
            placed = [(r, start) for r, chunk in enumerate(sides[0]) for start, _ in chunk.runs]
            assert len(placed) == 1
            r, start = placed[0]
            vectors = emb.vectors[slot.vector_key].to(inputs.dtype)
            assert torch.equal(inputs[r, start:start + n], vectors), (row["file"], slot.vector_key)

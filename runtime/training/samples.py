"""Sample images during training, made by ``generate`` (the path users will run the embedding
on) from the vectors as they stand: written to a temporary canonical file and applied as a
local-path embedding, so a sample shows exactly what the file at that step would give."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pseudoword.registry.core.embedding import Embedding
from pseudoword.registry.core.files import atomic_write
from pseudoword.registry.core.writing import canonical_bytes
from pseudoword.runtime.training.templates import prompt_for


def sample_prompt(kind: str, trigger: str) -> str:
    return prompt_for(kind, 0, trigger, None)


def write_sample(pipe: Any, embedding: Embedding, *, trigger: str, kind: str, resolution: int, steps: int,
                 seed: int, path: Path) -> Path:
    from pseudoword.runtime.generation import generate

    with tempfile.TemporaryDirectory(prefix="pseudoword-sample-") as folder:
        vectors = Path(folder) / f"{trigger}.safetensors"
        vectors.write_bytes(canonical_bytes(embedding))
        request = {"positivePrompt": sample_prompt(kind, trigger), "negativePrompt": "", "width": resolution,
                   "height": resolution, "steps": steps, "seed": seed, "promptWeighting": "none",
                   "embeddings": [{"path": str(vectors), "trigger": trigger}]}
        result = generate(request, pipe)[0]
    atomic_write(path, result.data)
    return path

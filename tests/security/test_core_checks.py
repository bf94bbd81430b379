"""The core refuses what the service refuses, before any copy, so `inspect` and `import` (which read
files through it on a user's machine) are as safe as publishing: a 1.5 KB file describing a
600 MB tensor costs nothing to refuse."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pseudoword.cli.main import app
from pseudoword.registry.core import export_bytes, read_embedding
from pseudoword.registry.core.errors import ShapeMismatch
from tests.integration.api import torch_file


def test_a_huge_view_is_refused_on_its_metadata(tmp_path: Path) -> None:
    data = torch_file({"emb_params": torch.zeros(1).expand(200_000, 768)})
    assert len(data) < 2048
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ShapeMismatch, match="storage holds 4 bytes"):
        read_embedding(data)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 64 * 1024  # KiB: under 64 MB
    path = tmp_path / "view.pt"
    path.write_bytes(data)
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 1 and "shape_mismatch" in result.output and "Traceback" not in result.output


def test_a1111_step_beyond_64_bits_is_not_exported() -> None:
    from safetensors.torch import save

    emb = read_embedding(save({"emb_params": torch.zeros(2, 768)}, metadata={"step": "9" * 1000}))
    assert read_embedding(export_bytes(emb, "a1111", "word")).metadata.get("step") is None

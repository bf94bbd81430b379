"""`pseudoword inspect` and `convert`: the contract keys, the written files and the one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_safetensors
from typer.testing import CliRunner

from pseudoword.cli.main import app
from pseudoword.registry.core import file_hashes, read_embedding

pytestmark = pytest.mark.smoke  # run against the built wheel too (tests/unit/test_packaging.py)

runner = CliRunner()


@pytest.fixture()
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "my style.safetensors"
    path.write_bytes(save_safetensors({"emb_params": torch.randn(3, 768)}))
    return path


def test_inspect_json_has_the_contract_keys(sample: Path) -> None:
    result = runner.invoke(app, ["inspect", str(sample), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"format", "architecture", "vectors", "sha256", "autov2", "trigger"} <= set(doc)
    assert doc["architecture"] == "sd1" and doc["vectors"] == 3 and doc["trigger"] == "my-style"
    assert doc["sha256"] == file_hashes(sample.read_bytes()).sha256 and doc["autov2"] == doc["sha256"][:10]


def test_inspect_text(sample: Path) -> None:
    result = runner.invoke(app, ["inspect", str(sample)])
    assert result.exit_code == 0
    assert "sd1" in result.stdout and "architecture" in result.stdout


@pytest.mark.parametrize("fmt", ["safetensors", "a1111", "diffusers"])
def test_convert_writes_a_file_that_reads_back(sample: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"out.{fmt}"
    result = runner.invoke(app, ["convert", str(sample), "--to", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert torch.equal(read_embedding(out).vectors["emb_params"], read_embedding(sample).vectors["emb_params"])


@pytest.mark.slow  # one of the slowest (a subprocess or a real pipeline); CI runs it
def test_bad_file_fails_with_one_line_and_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(save_safetensors({"emb_params": torch.zeros(2, 512)}))
    proc = subprocess.run([sys.executable, "-m", "pseudoword", "inspect", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # exactly one line
    assert proc.stderr.startswith("error [shape_mismatch]: vectors of width 512")
    assert "Traceback" not in proc.stderr + proc.stdout


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["inspect", str(tmp_path / "nope.pt")])
    assert result.exit_code == 1
    assert "No such file" in result.output


def test_convert_unknown_format_is_a_usage_error(sample: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["convert", str(sample), "--to", "ckpt", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert not (tmp_path / "x").exists()

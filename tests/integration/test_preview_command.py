"""`pseudoword preview REF --pipeline DIR`: the comparison is rendered through the runtime's
generate (same seed without and with the embedding) on the small demo pipeline and attached."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image
from typer.testing import CliRunner

from pseudoword.cli.main import app
from pseudoword.cli.preview_cmd import PROMPTS, prompt_kind
from tests.integration.api import random_embedding
from tests.integration.cli_server import Cli, LiveRegistry, cli, live_registry  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def demo_pipeline(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    target = tmp_path_factory.mktemp("pipe") / "sd1"
    result = CliRunner().invoke(app, ["demo-pipeline", str(target), "--arch", "sd1", "--json", "--tokenizer",
                                      str(tokenizer_dir)])
    assert result.exit_code == 0, result.output
    return target


def test_prompts_are_chosen_by_kind() -> None:
    assert prompt_kind({"kind": "negative", "tags": ["style"]}) == "negative"
    assert prompt_kind({"kind": "positive", "tags": ["style"]}) == "style"
    assert prompt_kind({"kind": "positive", "tags": ["character"], "title": "Bob"}) == "object"


def test_preview_renders_the_comparison_and_attaches_it(live_registry: LiveRegistry, cli: Cli,  # noqa: F811
                                                         demo_pipeline: Path, tmp_path: Path) -> None:
    emb = tmp_path / "shine.safetensors"
    emb.write_bytes(random_embedding(seed=31))
    assert cli("publish", emb, "--id", "studio:shine@1", "--tag", "style").exit_code == 0
    out = tmp_path / "comparison.png"
    result = cli("preview", "studio:shine", "--pipeline", demo_pipeline, "--steps", "2", "--size", "64",
                 "--out", out, "--json", env={"OMP_NUM_THREADS": "1"})
    assert result.exit_code == 0, result.stderr + result.stdout
    summary = result.json()
    assert summary["id"] == "studio:shine@1" and summary["attached"]
    with Image.open(out) as image:
        # two columns of 64 px (+3 px gap), a 12 px label strip and three 64 px rows (+1 px each)
        assert image.size == (2 * 64 + 3, 12 + len(PROMPTS["style"]) * 65)
        assert "without" in image.info["parameters"] and "studio:shine@1" in image.info["parameters"]
        left = image.crop((0, 12, 64, 76)).tobytes()
        right = image.crop((67, 12, 131, 76)).tobytes()
    assert left != right  # the embedding changed the picture (same seed on both sides)
    previews = httpx.get(f"{live_registry.url}/api/v1/embeddings/studio/shine/1").json()["previews"]
    assert len(previews) == 1 and previews[0]["sha256"] == summary["previews"][0]["sha256"]
    served = httpx.get(live_registry.url + previews[0]["url"]).content
    assert served == out.read_bytes()
    assert "studio:shine@1" in previews[0]["parameters"]
    with Image.open(io.BytesIO(served)) as image:
        assert image.format == "PNG"


def test_preview_of_a_missing_model_fails_in_one_line(live_registry: LiveRegistry, cli: Cli,  # noqa: F811
                                                      demo_pipeline: Path) -> None:
    result = cli("preview", "studio:nope-nope", "--pipeline", demo_pipeline, "--steps", "2")
    assert result.exit_code == 1 and "not_found" in result.stderr

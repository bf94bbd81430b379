"""``generate`` and ``pseudoword generate``: request validation, schedulers, deterministic PNGs
that carry the request and the resolved digests."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from pseudoword.cli.main import app
from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.runtime import generate
from pseudoword.runtime.generation import parse_request
from pseudoword.runtime.schedulers import SCHEDULERS, canonical_name, make_scheduler
from tests.pipelines import FakeResolver, shared_sdxl


@pytest.fixture(scope="module")
def pipeline_dir(sd1: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small SD 1.x pipeline saved as a diffusers directory (safetensors), for the CLI."""
    target = tmp_path_factory.mktemp("pipeline") / "tiny-sd1"
    sd1.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def resolver(embeddings_dir: Path) -> FakeResolver:
    return FakeResolver().add("civitai:7808@9208", embeddings_dir / "EasyNegative.safetensors",
                              trigger="easynegative", kind="negative")


def _request(embeddings_dir: Path, **changes: Any) -> dict[str, Any]:
    request = {
        "positivePrompt": "a lighthouse at dusk",
        "negativePrompt": "blurry",
        "width": 64,
        "height": 64,
        "steps": 2,
        "CFGScale": 7,
        "seed": 1234,
        "scheduler": "DPM++ 2M Karras",
        "clipSkip": 2,
        "embeddings": [{"path": str(embeddings_dir / "bad-hands-5.pt"), "weight": -1.5}],
    }
    request.update(changes)
    return request


def _text(png: bytes) -> dict[str, str]:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (64, 64)
        return dict(image.text)


def test_same_request_same_bytes_other_seed_other_image(sd1: Any, embeddings_dir: Path) -> None:
    first = generate(_request(embeddings_dir), sd1)
    again = generate(_request(embeddings_dir), sd1)
    other = generate(_request(embeddings_dir, seed=1235), sd1)
    assert first.png == again.png
    assert first.png[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(first.png)) as a, Image.open(io.BytesIO(other.png)) as b:
        assert a.tobytes() != b.tobytes()


def test_png_carries_the_request_and_the_resolved_digests(sd1: Any, embeddings_dir: Path,
                                                          resolver: FakeResolver) -> None:
    request = _request(embeddings_dir, embeddings=[{"model": "civitai:7808@9208"}])
    result = generate(request, sd1, resolver=resolver)
    text = _text(result.png)
    record = resolver.files["civitai:7808@9208"][1]
    document = json.loads(text["pseudoword"])
    assert document["request"]["seed"] == 1234 and document["request"]["scheduler"] == "DPM++ 2M Karras"
    assert document["request"]["embeddings"] == [{"model": "civitai:7808@9208"}]
    [applied] = document["embeddings"]
    assert applied["sha256"] == record["sha256"] and applied["id"] == "civitai:7808@9208"
    assert applied["weight"] == -1.0 and applied["trigger"] == "easynegative"
    assert document["encoded"]["negativePrompt"] == "blurry, easynegative"
    params = text["parameters"].splitlines()
    assert params[0] == "a lighthouse at dusk"
    assert params[1] == "Negative prompt: blurry, easynegative"
    assert "Steps: 2, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 64x64" in params[2]
    assert f'TI hashes: "easynegative: {record["a1111_hash"]}"' in params[2]
    assert "Clip skip: 2" in params[2]


def test_a_missing_seed_is_drawn_and_recorded(sd1: Any, embeddings_dir: Path) -> None:
    request = _request(embeddings_dir)
    del request["seed"]
    result = generate(request, sd1)
    seed = json.loads(_text(result.png)["pseudoword"])["request"]["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**32
    assert generate({**request, "seed": seed}, sd1).png == result.png


def test_generate_leaves_the_shared_pipeline_scheduler_alone(sd1: Any, embeddings_dir: Path) -> None:
    before = (type(sd1.scheduler), dict(sd1.scheduler.config))
    generate(_request(embeddings_dir, scheduler="DDIM"), sd1)
    assert (type(sd1.scheduler), dict(sd1.scheduler.config)) == before


def test_sdxl_generates(tokenizer_dir: Path, tokenizer_2_dir: Path, embeddings_dir: Path) -> None:
    sdxl = shared_sdxl(tokenizer_dir, tokenizer_2_dir)
    request = _request(embeddings_dir, scheduler="Euler a", clipSkip=None,
                       embeddings=[{"path": str(embeddings_dir / "zPDXL.pt"), "weight": 1.2}])
    result = generate(request, sdxl)
    assert _text(result.png)["parameters"].startswith("a lighthouse at dusk, zPDXL")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"positivePrompt": None}, "positivePrompt is required"),
        ({"prompt": "x"}, "unknown request keys"),
        ({"width": 65}, "multiple of 8"),
        ({"height": 4096}, "out of range"),
        ({"steps": 0}, "steps 0 is out of range"),
        ({"steps": "20"}, "steps must be an integer"),
        ({"CFGScale": -1}, "CFGScale must be a number"),
        ({"seed": 2**40}, "seed .* out of range"),
        ({"scheduler": "Fancy 3000"}, "unknown scheduler 'Fancy 3000'; known: DPM\\+\\+ 2M"),
        ({"clipSkip": 13}, "clipSkip 13 is out of range"),
        ({"embeddings": {"model": "a:b@c"}}, "embeddings must be a list"),
    ],
)
def test_bad_requests_are_refused_clearly(embeddings_dir: Path, changes: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        parse_request(_request(embeddings_dir, **changes))


def test_scheduler_names_as_people_write_them() -> None:
    assert canonical_name("DPM++ 2M Karras") == canonical_name("dpmpp_2m_karras") == "DPM++ 2M Karras"
    assert canonical_name("DPM2MKarras") == "DPM++ 2M Karras"  # Civitai's API spelling
    assert canonical_name("Euler A") == canonical_name("Euler a") == canonical_name("EulerA") == "Euler a"
    assert canonical_name("ddim") == "DDIM" and canonical_name("UniPC") == "UniPC"
    import diffusers

    assert all(hasattr(diffusers, cls) for cls, _ in SCHEDULERS.values())


def test_schedulers_are_built_fresh_from_the_pipeline_config(sd1: Any) -> None:
    karras = make_scheduler("DPM++ 2M Karras", sd1.scheduler)
    assert type(karras).__name__ == "DPMSolverMultistepScheduler" and karras.config.use_karras_sigmas
    assert karras.config.beta_schedule == sd1.scheduler.config.beta_schedule
    own = make_scheduler(None, sd1.scheduler)
    assert type(own) is type(sd1.scheduler) and own is not sd1.scheduler


# -- the CLI -----------------------------------------------------------------------------------


def _write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_cli_generate_writes_the_same_png_twice(pipeline_dir: Path, embeddings_dir: Path, tmp_path: Path) -> None:
    request = _write(tmp_path / "request.json", _request(embeddings_dir))
    runner = CliRunner()
    outputs = []
    for name in ("a.png", "b.png"):
        result = runner.invoke(app, ["generate", str(request), "--pipeline", str(pipeline_dir),
                                     "--out", str(tmp_path / name), "--cache-dir", str(tmp_path / "cache")])
        assert result.exit_code == 0, result.output
        assert f"wrote {tmp_path / name}" in result.output
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]
    assert "Model: tiny-sd1" in _text(outputs[0])["parameters"]


@pytest.mark.parametrize(
    ("document", "extra", "code"),
    [
        ({"positivePrompt": "x", "width": 63}, [], "invalid_request"),
        ("not an object", [], "invalid_request"),
        ({"positivePrompt": "x", "steps": 2, "width": 64, "height": 64,
          "embeddings": [{"model": "civitai:1@2"}]}, ["--registry", "http://127.0.0.1:9"], "registry_unreachable"),
        ({"positivePrompt": "x", "steps": 2, "width": 64, "height": 64,
          "embeddings": [{"model": "civitai:1@2"}]}, ["--offline"], "local_not_found"),
    ],
)
def test_cli_generate_failures_are_one_line_and_write_nothing(pipeline_dir: Path, tmp_path: Path, document: Any,
                                                              extra: list[str], code: str) -> None:
    if code == "registry_unreachable":
        pytest.importorskip("pseudoword.registry.client", reason="the registry HTTP client is not in this tree yet")
    request = _write(tmp_path / "request.json", document)
    out = tmp_path / "out.png"
    result = CliRunner().invoke(app, ["generate", str(request), "--pipeline", str(pipeline_dir), "--out", str(out),
                                      "--cache-dir", str(tmp_path / "cache"), *extra])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith(f"error [{code}]:"), result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_cli_generate_refuses_a_directory_that_is_not_a_pipeline(tmp_path: Path) -> None:
    request = _write(tmp_path / "request.json", {"positivePrompt": "x"})
    result = CliRunner().invoke(app, ["generate", str(request), "--pipeline", str(tmp_path), "--out",
                                      str(tmp_path / "o.png")])
    assert result.exit_code == 1
    assert "no model_index.json" in result.output

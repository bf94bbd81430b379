"""``generate`` and ``pseudoword generate``: requests and Runware tasks as clients send them,
deterministic files that carry the request and the resolved digests, batches of jobs, and the
CLI (progress, resolved embeddings, Runware task lists, demo-pipeline)."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pseudoword.cli.main import app
from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.runtime import encode, generate
from pseudoword.runtime.generation import Job, denoise, parse_request
from tests.pipelines import FakeResolver, text_state


@pytest.fixture(scope="module")
def pipeline_dir(sd1: Any, tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small SD 1.x pipeline written by ``pseudoword demo-pipeline`` (the corpus tokenizer,
    the same seeded weights as the ``sd1`` fixture)."""
    target = tmp_path_factory.mktemp("pipeline") / "tiny-sd1"
    result = CliRunner().invoke(app, ["demo-pipeline", str(target), "--arch", "sd1", "--tokenizer",
                                      str(tokenizer_dir), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["architecture"] == "sd1" and set(document["versions"]) >= {"torch", "diffusers"}
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
        "clipSkip": 1,
        "embeddings": [{"path": str(embeddings_dir / "bad-hands-5.pt"), "weight": -1.5}],
    }
    request.update(changes)
    return request


def _text(data: bytes) -> dict[str, str]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.size == (64, 64)
        return dict(image.text)


def _pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


def test_same_request_same_bytes_other_seed_other_image(sd1: Any, embeddings_dir: Path) -> None:
    [first] = generate(_request(embeddings_dir), sd1)
    [again] = generate(_request(embeddings_dir), sd1)
    [other] = generate(_request(embeddings_dir, seed=1235), sd1)
    assert first.data == again.data and first.format == "PNG"
    assert first.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert _pixels(first.data) != _pixels(other.data)


def test_png_carries_the_request_and_the_resolved_digests(sd1: Any, embeddings_dir: Path,
                                                          resolver: FakeResolver) -> None:
    request = _request(embeddings_dir, embeddings=[{"model": "civitai:7808@9208"}])
    [result] = generate(request, sd1, resolver=resolver)
    text = _text(result.data)
    record = resolver.files["civitai:7808@9208"][1]
    document = json.loads(text["pseudoword"])
    assert document["request"]["seed"] == 1234 and document["request"]["scheduler"] == "DPM++ 2M Karras"
    assert document["request"]["embeddings"] == [{"model": "civitai:7808@9208"}]
    [applied] = document["embeddings"]
    assert applied["sha256"] == record["sha256"] and applied["id"] == "civitai:7808@9208"
    assert applied["weight"] == -1.0 and applied["trigger"] == "easynegative"
    assert applied["placement"] == {"negative": 1, "appended": "negative prompt"}
    assert document["encoded"]["negativePrompt"] == "blurry, easynegative"
    params = text["parameters"].splitlines()
    assert params[0] == "a lighthouse at dusk"
    assert params[1] == "Negative prompt: blurry, easynegative"
    assert "Steps: 2, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 64x64" in params[2]
    assert f'TI hashes: "easynegative: {record["a1111_hash"]}"' in params[2]
    assert "Clip skip: 2" in params[2]  # Runware's clipSkip 1 is A1111's "Clip skip 2" on SD 1.x


def test_a_missing_seed_is_drawn_and_recorded(sd1: Any, embeddings_dir: Path) -> None:
    request = _request(embeddings_dir)
    del request["seed"]
    [result] = generate(request, sd1)
    seed = json.loads(_text(result.data)["pseudoword"])["request"]["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**32 and seed == result.seed
    assert generate({**request, "seed": seed}, sd1)[0].data == result.data


def test_generate_leaves_the_shared_pipeline_alone(sd1: Any, embeddings_dir: Path) -> None:
    before = (type(sd1.scheduler), dict(sd1.scheduler.config))
    state = text_state(sd1)
    generate(_request(embeddings_dir, scheduler="DDIM"), sd1)
    assert (type(sd1.scheduler), dict(sd1.scheduler.config)) == before
    after = text_state(sd1)
    assert all(torch.equal(state[k], after[k]) if isinstance(state[k], torch.Tensor) else state[k] == after[k]
               for k in state)


def test_sdxl_generates_and_states_a1111s_clip_skip(sdxl: Any, embeddings_dir: Path) -> None:
    request = _request(embeddings_dir, scheduler="Euler a", clipSkip=0,
                       embeddings=[{"path": str(embeddings_dir / "zPDXL.pt"), "weight": 1.2}])
    [result] = generate(request, sdxl)
    params = _text(result.data)["parameters"]
    assert params.startswith("a lighthouse at dusk, zPDXL\n")  # the file's name is the trigger
    assert "Sampler: Euler a" in params and "Clip skip: 2" in params  # SDXL reads the penultimate layer


def test_a_runware_task_built_by_runwares_sdk_is_accepted(sd1: Any, embeddings_dir: Path) -> None:
    """The task exactly as Runware's Python SDK builds it (its own request builder), with
    ``numberResults`` 2: two images, seeds 42 and 43, the second the image seed 43 gives alone."""
    from runware.base import RunwareBase
    from runware.types import IEmbedding, IImageInference

    easyneg = str(embeddings_dir / "EasyNegative.safetensors")
    inference = IImageInference(
        model="civitai:4384@128713", positivePrompt="a lighthouse, (detailed:1.2)", negativePrompt="blurry",
        width=64, height=64, steps=2, CFGScale=7.0, seed=42, scheduler="EulerAncestralDiscreteScheduler",
        clipSkip=1, numberResults=2, outputType="base64Data", outputFormat="PNG", taskUUID=str(uuid.uuid4()),
        embeddings=[IEmbedding(model="civitai:7808@9208", weight=-1)],
    )
    task = RunwareBase.__new__(RunwareBase)._buildImageRequest(inference, inference.positivePrompt, [], {}, [], {},
                                                               {}, {})
    assert {"taskType", "taskUUID", "model", "deliveryMethod", "numberResults", "outputType"} <= set(task)
    request = parse_request(task)
    assert (request.number_results, request.seeds, request.scheduler) == (2, [42, 43], "EulerAncestralDiscreteScheduler")
    assert request.task_uuid == inference.taskUUID and request.model == "civitai:4384@128713"
    assert request.output_type == ("base64Data",) and request.delivery_method == "sync"
    resolver = FakeResolver().add("civitai:7808@9208", Path(easyneg), trigger="EasyNegative", kind="negative")
    first, second = generate(request, sd1, resolver=resolver)
    assert (first.seed, second.seed) == (42, 43) and _pixels(first.data) != _pixels(second.data)
    assert "Sampler: Euler a" in first.parameters and "Seed: 43" in second.parameters
    [alone] = generate({**task, "seed": 43, "numberResults": 1}, sd1, resolver=resolver)
    difference = (torch.tensor(list(_pixels(alone.data))) - torch.tensor(list(_pixels(second.data)))).abs()
    assert difference.max() <= 2  # one batch or alone: the same noise, the same image (to rounding)
    assert json.loads(_text(first.data)["pseudoword"])["request"]["taskUUID"] == inference.taskUUID


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"positivePrompt": None}, "positivePrompt is required"),
        ({"prompt": "x"}, "unknown request keys \\['prompt'\\]"),
        ({"width": 65}, "multiple of 8"),
        ({"height": 4096}, "out of range"),
        ({"steps": 0}, "steps 0 is out of range"),
        ({"steps": "20"}, "steps must be an integer"),
        ({"CFGScale": -1}, "CFGScale must be a number"),
        ({"seed": 2**64}, "seed .* out of range"),
        ({"seed": 2**63 - 1, "numberResults": 2}, "passes the largest seed"),
        ({"scheduler": "Fancy 3000"}, "unknown scheduler 'Fancy 3000'; known: Default, DPM\\+\\+ 2M"),
        ({"scheduler": "DDIMInverseScheduler"}, "runs diffusion backwards"),
        ({"clipSkip": 3}, "clipSkip 3 is out of range \\(0 to 2\\)"),
        ({"clipSkip": -1}, "clipSkip -1 is out of range"),
        ({"embeddings": {"model": "a:b@c"}}, "embeddings must be a list"),
        ({"taskType": "imageUpscale"}, "taskType 'imageUpscale' is not 'imageInference'"),
        ({"taskUUID": "not-a-uuid"}, "taskUUID must be a UUID"),
        ({"numberResults": 21}, "numberResults 21 is out of range"),
        ({"outputFormat": "GIF"}, "outputFormat must be one of PNG, JPG, WEBP"),
        ({"outputType": ["URL", "blob"]}, "outputType must be one of URL, base64Data, dataURI"),
        ({"deliveryMethod": "later"}, "deliveryMethod must be one of sync, async"),
        ({"promptWeighting": "compel"}, "promptWeighting 'compel' is not supported"),
        ({"lora": [{"model": "civitai:1@1", "weight": 1}], "seedImage": "x"},
         "not supported by pseudoword.*lora \\(LoRA\\), seedImage \\(image-to-image\\)"),
    ],
)
def test_bad_requests_are_refused_clearly(embeddings_dir: Path, changes: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        parse_request(_request(embeddings_dir, **changes))


def test_runware_keys_that_change_nothing_here_are_understood(embeddings_dir: Path) -> None:
    request = parse_request(_request(embeddings_dir, taskType="imageInference", includeCost=True, lora=[],
                                     checkNSFW=False, outputType="dataURI", outputFormat="webp", outputQuality=80,
                                     deliveryMethod="async", promptWeighting="sdEmbeds", scheduler="Default"))
    assert request.include_cost and request.output_type == ("dataURI",) and request.output_format == "WEBP"
    assert (request.output_quality, request.delivery_method, request.scheduler, request.literal) == (80, "async", None,
                                                                                                     False)
    assert parse_request(_request(embeddings_dir, promptWeighting="none")).literal


def test_literal_prompts_are_written_so_a1111_reads_them_literally(sd1: Any, embeddings_dir: Path) -> None:
    [literal] = generate(_request(embeddings_dir, positivePrompt="a (red) cat", promptWeighting="none"), sd1)
    [parsed] = generate(_request(embeddings_dir, positivePrompt="a (red) cat"), sd1)
    assert "Emphasis: None" in literal.parameters and "Emphasis" not in parsed.parameters
    assert literal.parameters.startswith("a (red) cat\n") and _pixels(literal.data) != _pixels(parsed.data)


def test_jpg_and_webp_carry_the_parameters_where_a1111_puts_them(sd1: Any, embeddings_dir: Path) -> None:
    for fmt, pil in (("JPG", "JPEG"), ("WEBP", "WEBP")):
        [result] = generate(_request(embeddings_dir, outputFormat=fmt, outputQuality=90), sd1)
        assert generate(_request(embeddings_dir, outputFormat=fmt, outputQuality=90), sd1)[0].data == result.data
        with Image.open(io.BytesIO(result.data)) as image:
            assert image.format == pil
            comment = image.getexif().get_ifd(0x8769)[0x9286]
        assert comment.startswith(b"UNICODE\0") and comment[8:].decode("utf-16-be") == result.parameters


def test_jobs_of_one_shape_share_a_denoising_batch(sd1: Any) -> None:
    """Two different requests in one batch, each with its own seed: each image is the one it
    gets alone (to rounding); conditioning of another length cannot join."""
    a, b = encode(sd1, "a red cat", "blurry"), encode(sd1, "a blue dog", "")
    options = {"width": 64, "height": 64, "steps": 2, "cfg_scale": 7.0, "scheduler": "DPM++ 2M SDE"}
    together = denoise(sd1, [Job(a, 5), Job(b, 6)], **options)
    alone = [denoise(sd1, [job], **options)[0] for job in (Job(a, 5), Job(b, 6))]
    for one, other in zip(together, alone, strict=True):
        difference = (torch.tensor(list(one.tobytes())) - torch.tensor(list(other.tobytes()))).abs()
        assert difference.max() <= 2
    assert together[0].tobytes() != together[1].tobytes()
    with pytest.raises(ValueError, match="the same number of prompt chunks"):
        denoise(sd1, [Job(a, 1), Job(encode(sd1, "x BREAK y", ""), 2)], **options)


def test_progress_is_reported_after_every_step(sd1: Any, embeddings_dir: Path) -> None:
    seen: list[tuple[int, int]] = []
    generate(_request(embeddings_dir, steps=3), sd1, progress=lambda step, total: seen.append((step, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


# -- the CLI -----------------------------------------------------------------------------------


def _write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_demo_pipeline_is_the_test_pipeline(pipeline_dir: Path, sd1: Any) -> None:
    from diffusers import StableDiffusionPipeline

    loaded = StableDiffusionPipeline.from_pretrained(pipeline_dir, local_files_only=True)
    assert loaded.tokenizer("a (cat), wow!").input_ids == sd1.tokenizer("a (cat), wow!").input_ids
    mine, theirs = loaded.text_encoder.state_dict(), sd1.text_encoder.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_demo_pipeline_without_a_tokenizer_says_where_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PSEUDOWORD_CLIP_TOKENIZER", raising=False)
    import pseudoword.runtime.demo_pipeline as demo

    monkeypatch.setattr(demo, "HUB_TOKENIZER", "pseudoword-tests/no-such-tokenizer")  # not in any cache
    result = CliRunner().invoke(app, ["demo-pipeline", str(tmp_path / "demo"), "--arch", "sd1"])
    assert result.exit_code == 1, result.output
    assert "no CLIP tokenizer: pass --tokenizer DIR" in result.stderr and "PSEUDOWORD_CLIP_TOKENIZER" in result.stderr
    assert not (tmp_path / "demo").exists() or not any((tmp_path / "demo").iterdir())


def test_demo_pipeline_takes_the_tokenizer_from_the_environment(tokenizer_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from pseudoword.runtime.demo_pipeline import tokenizer

    monkeypatch.setenv("PSEUDOWORD_CLIP_TOKENIZER", str(tokenizer_dir))
    assert tokenizer().vocab_size == 49408
    monkeypatch.setenv("PSEUDOWORD_CLIP_TOKENIZER", str(tmp_path))
    with pytest.raises(InvalidRequest, match="has no vocab.json"):
        tokenizer()


def test_demo_pipeline_refuses_a_directory_in_use(pipeline_dir: Path) -> None:
    result = CliRunner().invoke(app, ["demo-pipeline", str(pipeline_dir), "--arch", "sdxl"])
    assert result.exit_code == 1 and "is not an empty directory" in result.output


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
        # what each embedding resolved to and where it went
        assert (f"{embeddings_dir / 'bad-hands-5.pt'} sha256:01b60bdcc335, trigger 'bad-hands-5', weight -1.5: "
                "negative prompt, appended to the negative prompt") in result.output
    assert outputs[0] == outputs[1]
    assert "Model: tiny-sd1" in _text(outputs[0])["parameters"]


def test_cli_generate_takes_a_runware_task_list_and_numbers_the_files(pipeline_dir: Path, embeddings_dir: Path,
                                                                      tmp_path: Path) -> None:
    """A body as sent to Runware's REST endpoint: an authentication task and the inference task."""
    task = {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), "model": "runware:101@1",
            "numberResults": 2, "outputType": "URL", **_request(embeddings_dir, seed=7)}
    request = _write(tmp_path / "task.json", [{"taskType": "authentication", "apiKey": "secret-key"}, task])
    result = CliRunner().invoke(app, ["generate", str(request), "--pipeline", str(pipeline_dir), "--out",
                                      str(tmp_path / "out.png"), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["paths"] == [str(tmp_path / "out.png"), str(tmp_path / "out-2.png")]
    assert document["seeds"] == [7, 8] and document["request"]["taskUUID"] == task["taskUUID"]
    assert "secret-key" not in result.output
    assert _pixels((tmp_path / "out.png").read_bytes()) != _pixels((tmp_path / "out-2.png").read_bytes())


@pytest.mark.parametrize(
    ("document", "extra", "code"),
    [
        ({"positivePrompt": "x", "width": 63}, [], "invalid_request"),
        ("not an object", [], "invalid_request"),
        ([{"taskType": "imageInference", "positivePrompt": "x"}] * 2, [], "invalid_request"),
        ({"positivePrompt": "x", "outputFormat": "JPG"}, [], "invalid_request"),  # --out says PNG
        ({"positivePrompt": "x", "steps": 2, "width": 64, "height": 64,
          "embeddings": [{"model": "civitai:1@2"}]}, ["--registry", "http://127.0.0.1:9"], "registry_unreachable"),
        ({"positivePrompt": "x", "steps": 2, "width": 64, "height": 64,
          "embeddings": [{"model": "civitai:1@2"}]}, ["--offline"], "local_not_found"),
    ],
)
def test_cli_generate_failures_are_one_line_and_write_nothing(pipeline_dir: Path, tmp_path: Path, document: Any,
                                                              extra: list[str], code: str) -> None:
    request = _write(tmp_path / "request.json", document)
    out = tmp_path / "out.png"
    result = CliRunner().invoke(app, ["generate", str(request), "--pipeline", str(pipeline_dir), "--out", str(out),
                                      "--cache-dir", str(tmp_path / "cache"), *extra])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith(f"error [{code}]:"), result.output
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.slow  # one of the slowest (a subprocess or a real pipeline); CI runs it
def test_an_sde_scheduler_gives_the_same_png_in_two_processes(pipeline_dir: Path, embeddings_dir: Path,
                                                              tmp_path: Path) -> None:
    """``DPM++ SDE`` draws its noise from a Brownian tree that, unseeded, takes its seed from
    torch's global random state; seeded from the request, this process (whose global state the
    other tests have moved) and a fresh one write the same bytes."""
    import subprocess
    import sys

    request = _write(tmp_path / "request.json", _request(embeddings_dir, scheduler="DPM++ SDE Karras", steps=3))
    torch.manual_seed(int.from_bytes(uuid.uuid4().bytes[:4], "little"))
    here = CliRunner().invoke(app, ["generate", str(request), "--pipeline", str(pipeline_dir), "--out",
                                    str(tmp_path / "here.png")])
    assert here.exit_code == 0, here.output
    there = subprocess.run([sys.executable, "-m", "pseudoword", "generate", str(request), "--pipeline",
                            str(pipeline_dir), "--out", str(tmp_path / "there.png")], capture_output=True, text=True,
                           timeout=600)
    assert there.returncode == 0, there.stderr
    assert (tmp_path / "here.png").read_bytes() == (tmp_path / "there.png").read_bytes()
    other = _write(tmp_path / "other.json", _request(embeddings_dir, scheduler="DPM++ SDE Karras", steps=3, seed=1235))
    assert CliRunner().invoke(app, ["generate", str(other), "--pipeline", str(pipeline_dir), "--out",
                                    str(tmp_path / "other.png")]).exit_code == 0
    assert _pixels((tmp_path / "other.png").read_bytes()) != _pixels((tmp_path / "here.png").read_bytes())


def test_cli_generate_refuses_a_directory_that_is_not_a_pipeline(tmp_path: Path) -> None:
    request = _write(tmp_path / "request.json", {"positivePrompt": "x"})
    result = CliRunner().invoke(app, ["generate", str(request), "--pipeline", str(tmp_path), "--out",
                                      str(tmp_path / "o.png")])
    assert result.exit_code == 1
    assert "no model_index.json" in result.output

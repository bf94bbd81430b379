"""The worker's pieces without a pipeline: models.toml, task arrays and Runware's error shape,
the runtime's errors translated with their parameter, API keys, URL image expiry, the CLI."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pseudoword.cli.main import app
from pseudoword.registry.core import errors as core
from pseudoword.runtime.worker.images import ImageStore
from pseudoword.runtime.worker.models import canonical_air, load_models_file
from pseudoword.runtime.worker.protocol import TaskError, check_task, envelope, from_runtime, parse_body, rest_status
from pseudoword.runtime.worker.settings import WorkerSettings

UUID = "6c0ad2c5-5e61-4f8c-9a5b-1b2a3c4d5e6f"


def _models(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_models_file_maps_airs_to_pipelines_relative_to_itself(tmp_path: Path) -> None:
    path = _models(tmp_path, '''
[[model]]
air = "civitai:4384@128713"
path = "pipes/dream"
architecture = "sd1"
tags = ["photo"]
[model.defaults]
width = 512
steps = 25
scheduler = "DPM++ 2M Karras"

[[model]]
air = "runware:101@1"
path = "/abs/sdxl"
architecture = "sdxl"
''')
    first, second = load_models_file(path)
    assert (first.air, first.path, first.architecture, first.name) == (
        "civitai:4384@128713", (tmp_path / "pipes" / "dream").resolve(), "sd1", "civitai:4384@128713")
    assert first.with_defaults({"width": 256, "height": None}) == {"width": 256, "height": None, "steps": 25,
                                                                   "scheduler": "DPM++ 2M Karras"} | {"height": None}
    assert second.path == Path("/abs/sdxl") and second.defaults == {}
    assert canonical_air("urn:air:sdxl:checkpoint:runware:101@1") == "runware:101@1"


@pytest.mark.parametrize(("text", "words"), [
    ("", "declares no models"),
    ("[[model]]\nair = 'civitai:1'\npath = 'x'\narchitecture = 'sd1'", "SOURCE:MODEL@VERSION"),
    ("[[model]]\nair = 'civitai:1@2'\narchitecture = 'sd1'", "path must name"),
    ("[[model]]\nair = 'civitai:1@2'\npath = 'x'\narchitecture = 'flux'", "architecture must be one of"),
    ("[[model]]\nair = 'civitai:1@2'\npath = 'x'\narchitecture = 'sd1'\nlora = 1", "unknown keys ['lora']"),
    ("[[model]]\nair = 'civitai:1@2'\npath = 'x'\narchitecture = 'sd1'\n[model.defaults]\nseed = 1", "defaults may"),
    ("[[model]]\nair = 'a:1@2'\npath = 'x'\narchitecture = 'sd1'\n[[model]]\nair = 'a:1@2'\npath = 'y'\n"
     "architecture = 'sd1'", "declared twice"),
    ("not toml [", "not valid TOML"),
    ("[server]\nport = 1", "unknown top-level keys"),
])
def test_a_bad_models_file_is_refused_naming_what_is_wrong(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(core.InvalidRequest) as caught:
        load_models_file(_models(tmp_path, text))
    assert words in caught.value.message


def test_the_body_must_be_a_bounded_json_array() -> None:
    assert parse_body(b'[{"taskType": "ping"}]', max_bytes=100, max_tasks=2) == [{"taskType": "ping"}]
    assert parse_body(b'{"taskType": "ping"}', max_bytes=100, max_tasks=2) == [{"taskType": "ping"}]
    for raw, code, status in ((b"x" * 101, "payloadTooLarge", 413), (b"[", "invalidJSON", 400),
                              (b"3", "invalidPayload", 400), (b"[]", "invalidPayload", 400),
                              (b"[1,2,3]", "tooManyTasks", 400), (b"\xff\xfe", "invalidJSON", 400)):
        with pytest.raises(TaskError) as caught:
            parse_body(raw, max_bytes=100, max_tasks=2)
        assert (caught.value.code, caught.value.status) == (code, status), raw


def test_each_task_envelope_is_checked() -> None:
    seen: set[str] = set()
    task = check_task({"taskType": "imageInference", "taskUUID": UUID.upper()}, seen)
    assert task.task_uuid == UUID.upper() and seen == {UUID}
    with pytest.raises(TaskError) as caught:
        check_task({"taskType": "imageInference", "taskUUID": UUID}, seen)
    assert caught.value.code == "duplicateTaskUUID"
    assert check_task({"taskType": "ping"}, set()).task_type == "ping"  # needs no UUID
    cases = [({"taskUUID": UUID}, "missingTaskType", "taskType"),
             ({"taskType": "x" * 100}, "unsupportedTaskType", "taskType"),
             ({"taskType": "videoInference", "taskUUID": UUID}, "unsupportedTaskType", "taskType"),
             ({"taskType": "modelSearch"}, "missingTaskUUID", "taskUUID"),
             ({"taskType": "modelSearch", "taskUUID": ["x"]}, "invalidTaskUUID", "taskUUID"),
             ({"taskType": "modelSearch", "taskUUID": "u" * 1000}, "invalidTaskUUID", "taskUUID")]
    for raw, code, parameter in cases:
        with pytest.raises(TaskError) as caught:
            check_task(raw, set())
        assert (caught.value.code, caught.value.parameter) == (code, parameter), raw
        assert len(caught.value.message) < 300
    with pytest.raises(TaskError) as caught:
        check_task({"taskType": "videoInference", "taskUUID": UUID}, set())
    assert "a Runware task type this worker does not run" in caught.value.message


def test_runtime_errors_become_runware_errors_naming_the_parameter() -> None:
    task = {"scheduler": "Nope", "embeddings": [{"model": "a:b@1"}, {"model": "c:d@2", "weight": 9}]}
    cases = [
        (core.InvalidWeight("bad", {"embedding": "c:d@2", "weight": 9}), "invalidEmbeddingWeight",
         "embeddings[1].weight", 400),
        (core.ArchitectureMismatch("arch", {"embedding": "a:b@1 (x)"}), "embeddingArchitectureMismatch",
         "embeddings", 400),
        (core.ArchitectureMismatch("arch", {"ref": "c:d@2"}), "embeddingArchitectureMismatch",
         "embeddings[1].model", 400),
        (core.RemoteNotFound("nf", {"ref": "a:b@1"}), "unknownEmbedding", "embeddings[0].model", 400),
        (core.RegistryUnreachable("down", {"ref": "c:d@2"}), "registryUnavailable", "embeddings[1].model", 503),
        (core.InvalidRequest("scheduler 'Nope' is unknown", {"scheduler": "Nope"}), "invalidScheduler",
         "scheduler", 400),
        (core.InvalidRequest("x", {"field": "width"}), "invalidWidth", "width", 400),
        (core.InvalidRequest("x", {"unsupported": ["lora", "vae"]}), "unsupportedParameter", "lora", 400),
        (core.InvalidRequest("x", {"unknown": ["foo"]}), "unknownParameter", "foo", 400),
        (core.UnsupportedPipeline("flux"), "unsupportedPipeline", None, 422),
    ]
    for exc, code, parameter, status in cases:
        error = from_runtime(exc, task).for_task("imageInference", UUID)
        assert (error.code, error.parameter, error.status) == (code, parameter, status), exc
        assert error.to_dict()["taskUUID"] == UUID and error.to_dict()["taskType"] == "imageInference"


def test_rest_status_and_envelope() -> None:
    busy = TaskError("workerBusy", "full", status=503)
    assert rest_status([], [busy]) == 503 and rest_status([{"x": 1}], [busy]) == 200
    assert envelope([], []) == {"data": []}
    assert set(envelope([{"x": 1}], [busy])) == {"data", "errors"}


def test_api_keys_from_the_environment_are_compared_and_hidden(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("from-file\nkey-gamma, key-delta\n\n")
    monkeypatch.setenv("PSEUDOWORD_WORKER_API_KEYS", "key-alpha, key-beta")
    settings = WorkerSettings.from_env()
    assert settings.key_ok("key-beta") and settings.key_ok("key-alpha") and not settings.key_ok("from-file")
    assert not settings.key_ok("three") and not settings.key_ok(None) and not settings.key_ok("x" * 10_000)
    assert "key-alpha" not in repr(settings)
    monkeypatch.setenv("PSEUDOWORD_WORKER_API_KEYS_FILE", str(keys))
    with pytest.raises(core.InvalidSetting, match="not both"):
        WorkerSettings.from_env()
    monkeypatch.delenv("PSEUDOWORD_WORKER_API_KEYS")
    settings = WorkerSettings.from_env()
    assert settings.key_ok("from-file") and settings.key_ok("key-delta") and not settings.key_ok("key-alpha")
    assert "from-file" not in repr(settings)
    assert WorkerSettings().key_ok("anything")  # no keys configured: open (the CLI warns)
    monkeypatch.setenv("PSEUDOWORD_WORKER_QUEUE_SIZE", "lots")
    with pytest.raises(core.InvalidSetting, match="PSEUDOWORD_WORKER_QUEUE_SIZE must be a whole number"):
        WorkerSettings.from_env()
    monkeypatch.setenv("PSEUDOWORD_WORKER_QUEUE_SIZE", "-1")
    with pytest.raises(core.InvalidSetting, match="must be at least 0"):
        WorkerSettings.from_env()


def test_url_images_expire_and_names_are_checked(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images", ttl=60)
    name = store.put(UUID, "PNG", b"png")
    assert store.get(name) == tmp_path / "images" / name
    for bad in ("../x.png", f"{UUID}.exe", "x" * 300, f"{UUID}.png/.."):
        assert store.get(bad) is None
    old = time.time() - 120
    os.utime(tmp_path / "images" / name, (old, old))
    assert store.get(name) is None  # expired: not served even before the sweep
    assert store.sweep() == 1 and store.count() == 0


def test_cli_worker_refuses_a_bad_models_file_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["worker", "--models", str(tmp_path / "missing.toml")])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output
    bad = _models(tmp_path, json.dumps({"x": 1}))
    result = CliRunner().invoke(app, ["worker", "--models", str(bad)])
    assert result.exit_code == 1 and "error [invalid_request]" in result.output


def test_cli_worker_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins

    real_import = builtins.__import__

    def no_litestar(name: str, *args: object, **kwargs: object) -> object:
        if name == "litestar":
            raise ModuleNotFoundError("No module named 'litestar'", name="litestar")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_litestar)
    result = CliRunner().invoke(app, ["worker", "--models", str(tmp_path / "models.toml")])
    assert result.exit_code == 1
    assert "pip install 'pseudoword[worker]'" in result.output and "litestar" in result.output


def test_the_worker_never_imports_the_registry_service_or_sqlmodel() -> None:
    import subprocess
    import sys

    code = ("import sys; import pseudoword.runtime.worker.app, pseudoword.runtime.worker.service, "
            "pseudoword.cli.worker_cmd; "
            "bad = sorted(m for m in sys.modules if m.startswith(('sqlmodel', 'sqlalchemy', 'alembic', "
            "'pseudoword.registry.service'))); print(','.join(bad))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""

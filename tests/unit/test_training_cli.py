"""``pseudoword train`` end to end: a demo pipeline directory, a folder of images, the file, its
loss curve and sample, and ``--publish`` into a live registry (SQLite) through the client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pseudoword.cli.main import app
from pseudoword.registry.client import RegistryClient
from tests.integration.servers import Server, start_server
from tests.unit.training_support import image_folder


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("pipe") / "sd1"
    made = CliRunner().invoke(app, ["demo-pipeline", str(folder), "--layers", "1", "--json",
                                    "--tokenizer", str(tokenizer_dir)])
    assert made.exit_code == 0, made.output
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    live = start_server(tmp_path_factory.mktemp("registry"))
    yield live
    live.stop()


def _train(pipeline_dir: Path, tmp_path: Path, *extra: str) -> Any:
    return CliRunner().invoke(app, [
        "train", str(image_folder(tmp_path / "images")), "--pipeline", str(pipeline_dir), "--trigger", "zqtoy",
        "--out", str(tmp_path / "out" / "zqtoy.safetensors"), "--steps", "2", "--checkpoint-every", "0",
        "--sample-every", "2", "--batch", "2", "--device", "cpu", *extra])


def test_train_then_publish(pipeline_dir: Path, server: Server, tmp_path: Path) -> None:
    done = _train(pipeline_dir, tmp_path, "--json", "--publish", "studio:zqtoy@1", "--registry", server.url,
                  "--token", server.admin_token)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["architecture"], report["vectors"], report["trigger"]) == ("sd1", 1, "zqtoy")
    assert Path(report["path"]).is_file() and Path(report["loss_png"]).is_file()
    assert [Path(p).name for p in report["samples"]] == ["zqtoy-000002.png"]
    assert report["precision"] == "float32"
    published = report["published"]
    assert published["id"] == "studio:zqtoy@1" and published["created"] is True and published["preview"] is True
    with RegistryClient(server.url) as client:
        record = client.get_version("studio:zqtoy@1")
        previews = record.get("previews") or []
        assert len(previews) == 1  # the final sample, stored as sent
        assert client.preview_bytes(previews[0]["url"]) == Path(report["samples"][-1]).read_bytes()
    assert (record.architecture, record.vectors, record.trigger) == ("sd1", 1, "zqtoy")
    assert "style" not in record.tags and "object" in record.tags


def test_bad_input_is_one_line_and_writes_nothing(pipeline_dir: Path, tmp_path: Path) -> None:
    refused = _train(pipeline_dir, tmp_path, "--init-word", "red car")
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [
        "error [invalid_request]: init word 'red car' is 2 tokens (red</w> car</w>); it must be one token, such as "
        "'object', 'style', 'dog', 'painting'"]
    assert not (tmp_path / "out").exists()
    bad_ref = _train(pipeline_dir, tmp_path, "--publish", "studio:zqtoy")
    assert bad_ref.exit_code == 2 and "SOURCE:MODEL@VERSION" in bad_ref.output
    assert not (tmp_path / "out").exists()


def test_publish_sends_the_final_sample_as_the_preview(tmp_path: Path) -> None:
    """The trainer's last sample goes as the version's preview; a run without samples publishes
    the file alone."""
    import torch

    from pseudoword.registry.client import PublishResult
    from pseudoword.registry.core.embedding import Embedding
    from pseudoword.runtime.training.publishing import publish_result
    from pseudoword.runtime.training.trainer import TrainResult

    emb = Embedding({"emb_params": torch.zeros(1, 768)}, "sd1", "safetensors", name="zqtoy",
                    metadata={"pseudoword.kind": "style"})
    samples = [tmp_path / "zqtoy-000001.png", tmp_path / "zqtoy-000002.png"]
    calls: list[dict[str, Any]] = []

    class Client:
        def publish(self, file: Path, *, id: str, filename: str | None = None, trigger: str | None = None,
                    kind: str | None = None, tags: tuple[str, ...] = (), title: str | None = None,
                    description: str | None = None, progress: Any = None, previews: tuple[Path, ...] = (),
                    ) -> PublishResult:
            calls.append({"id": id, "trigger": trigger, "tags": tags, "previews": list(previews)})
            return PublishResult({"id": id}, True)  # type: ignore[arg-type]

    for made in (samples, []):
        result = TrainResult(tmp_path / "zqtoy.safetensors", emb, [1, 2], [1.0, 0.9], tmp_path / "l.csv",
                             tmp_path / "l.png", samples=made)
        assert publish_result(Client(), result, "studio:zqtoy@1").preview_sent is bool(made)  # type: ignore[arg-type]
    assert calls[0] == {"id": "studio:zqtoy@1", "trigger": "zqtoy", "tags": ("style", "textual-inversion"),
                        "previews": [samples[-1]]}
    assert calls[1]["previews"] == []

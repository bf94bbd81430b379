"""``pseudoword worker`` as users run it (a subprocess on a demo pipeline and the session's live
registry, on each backend: SQLite + local blobs, PostgreSQL + S3 through moto),
driven by clients we did not write: Runware's WebSocket SDK (``runware``, pinned in the dev
extra) and its REST SDK (``runware-sdk``, pinned in scripts/runware_sdk_env.sh, in a venv of its
own because both install a package named ``runware``). The same request and seed give the same
pixels through REST, WebSocket and ``pseudoword generate``."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pseudoword.cli.main import app
from tests.conftest import ROOT, require
from tests.integration.servers import Server
from tests.integration.worker_fixtures import KEY, publish_all
from tests.worker_harness import SD1_AIR, WorkerProcess, start_worker_process


@pytest.fixture(scope="module")
def published(registry: Server, embeddings_dir: Path) -> Server:
    """The session's live registry (one per backend: SQLite + local blobs, PostgreSQL + S3),
    holding the test embeddings (publishing them again is a no-op)."""
    publish_all(registry, embeddings_dir)
    return registry


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    target = tmp_path_factory.mktemp("pipelines") / "tiny-sd1"
    result = CliRunner().invoke(app, ["demo-pipeline", str(target), "--arch", "sd1", "--tokenizer", str(tokenizer_dir)])
    assert result.exit_code == 0, result.output
    return target


@pytest.fixture(scope="module")
def models_file(pipeline_dir: Path) -> Path:
    path = pipeline_dir.parent / "models.toml"
    path.write_text(f'''
[[model]]
air = "{SD1_AIR}"
path = "{pipeline_dir.name}"
architecture = "sd1"
name = "Tiny SD 1.x"
tags = ["demo", "tiny"]

[model.defaults]
width = 64
height = 64
steps = 3
scheduler = "Euler a"
''')
    return path


@pytest.fixture(scope="module")
def worker(models_file: Path, published: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    process = start_worker_process(models_file, tmp_path_factory.mktemp("clients-worker"), published.url,
                                   extra_env={"PSEUDOWORD_WORKER_API_KEYS": f"other-key,{KEY}"})
    yield process
    process.stop()


@pytest.fixture(scope="session")
def runware_sdk_python() -> str:
    """The python of the venv with Runware's REST SDK (created from PyPI on first use)."""
    try:
        done = subprocess.run([str(ROOT / "scripts" / "runware_sdk_env.sh")], capture_output=True, text=True,
                              timeout=600, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        require(False, f"could not install runware-sdk from PyPI: {getattr(exc, 'stderr', exc)}")
    return done.stdout.strip().splitlines()[-1]


def rest_sdk(python: str, url: str, calls: list[dict[str, Any]], key: str = KEY) -> list[dict[str, Any]]:
    spec = {"url": f"{url}/v1", "key": key, "calls": calls}
    done = subprocess.run([python, str(ROOT / "tests" / "integration" / "worker_rest_sdk_driver.py")],
                          input=json.dumps(spec), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (64, 64)
        return np.asarray(image.convert("RGB"))


REQUEST = {"positivePrompt": "a glassy lighthouse, (detailed:1.2)", "negativePrompt": "blurry", "width": 64,
           "height": 64, "steps": 3, "CFGScale": 6.5, "seed": 4242, "scheduler": "DPM++ 2M Karras",
           "clipSkip": 1, "embeddings": [{"model": "wk:glass@1", "weight": 1.3}, {"model": "wk:easyneg@1", "weight": -1}]}


def test_runwares_rest_sdk_runs_inference_with_embeddings_and_model_search(worker: WorkerProcess,
                                                                           runware_sdk_python: str) -> None:
    inference = {"taskType": "imageInference", "model": SD1_AIR, "deliveryMethod": "sync", "outputType": "URL",
                 "outputFormat": "PNG", "numberResults": 2, "includeCost": True, **REQUEST}
    calls = [
        {"kind": "run", "params": inference},
        {"kind": "model_search", "params": {"search": "wk", "category": "embeddings", "architecture": "sd1x",
                                            "tags": ["style"], "limit": 2, "offset": 0}},
        {"kind": "model_search", "params": {"category": "checkpoint"}},
        {"kind": "run", "params": {**inference, "lora": [{"model": "civitai:1@1", "weight": 1}]}},
        {"kind": "run", "params": {**inference, "embeddings": [{"model": "wk:pdxl@1", "weight": 1}]}},
        # the SDK's default delivery: acknowledged, then polled with getResponse
        {"kind": "run", "params": {key: value for key, value in inference.items() if key != "deliveryMethod"}},
    ]
    images, embeddings, checkpoints, lora, wrong_arch, polled = rest_sdk(runware_sdk_python, worker.url, calls)
    assert [item["seed"] for item in polled["result"]] == [4242, 4243]
    assert all(item["status"] == "success" and item["imageURL"] for item in polled["result"])
    items = images["result"]
    assert [item["seed"] for item in items] == [4242, 4243]
    for item in items:
        assert item["taskType"] == "imageInference" and uuid.UUID(item["imageUUID"]) and item["cost"] > 0
        fetched = httpx.get(item["imageURL"], timeout=30)
        assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
        _pixels(fetched.content)
    [search] = embeddings["result"]
    assert search["totalResults"] == 4  # glass, eyeliner, ulzzang, invoke: sd1 and tagged style
    assert len(search["results"]) == 2
    assert all(r["category"] == "embeddings" and r["architecture"] == "sd1x" and "style" in r["tags"]
               for r in search["results"])
    [found] = checkpoints["result"]
    assert [r["air"] for r in found["results"]] == [SD1_AIR] and found["results"][0]["defaultWidth"] == 64
    assert lora["error"]["parameter"] == "lora" and "LoRA" in lora["error"]["message"]
    assert wrong_arch["error"]["parameter"] == "embeddings[0].model" and "sdxl" in wrong_arch["error"]["message"]


def test_runwares_websocket_sdk_runs_inference_with_embeddings_and_model_search(worker: WorkerProcess) -> None:
    from runware import IEmbedding, IImageInference, IModelSearch, Runware
    from runware.utils import RunwareAPIError

    async def session() -> tuple[Any, Any, Any, Any]:
        client = Runware(api_key=KEY, url=worker.ws_url)
        await client.connect()
        try:
            images = await client.imageInference(requestImage=IImageInference(
                model=SD1_AIR, positivePrompt="a lighthouse", width=64, height=64, steps=2, seed=7, numberResults=2,
                outputType="base64Data", outputFormat="PNG",
                embeddings=[IEmbedding(model="wk:eyeliner@1", weight=1.5), IEmbedding(model="wk:badhands@1", weight=-1)]))
            found = await client.modelSearch(IModelSearch(search="negative", category="embeddings", limit=10))
            page = await client.modelSearch(IModelSearch(category="embeddings", tags=["negative"], limit=1, offset=1))
            try:
                await client.imageInference(requestImage=IImageInference(
                    model=SD1_AIR, positivePrompt="x", width=64, height=64, steps=2,
                    embeddings=[IEmbedding(model="wk:nosuch@1", weight=1)]))
                refused = None
            except RunwareAPIError as exc:
                refused = exc
            return images, found, page, refused
        finally:
            await client.disconnect()

    images, found, page, refused = asyncio.run(session())
    assert [image.seed for image in images] == [7, 8]
    for image in images:
        _pixels(base64.b64decode(image.imageBase64Data))
    assert {model.air for model in found.results} >= {"wk:badhands@1", "wk:easyneg@1"}
    assert page.totalResults == 4 and len(page.results) == 1  # badhands, badartist, badimage, easyneg
    assert refused is not None and refused.code == "unknownEmbedding"
    assert refused.error_data["parameter"] == "embeddings[0].model" and "wk:nosuch@1" in refused.error_data["message"]


def test_same_request_same_image_over_rest_websocket_and_generate(worker: WorkerProcess, published: Server,
                                                                  pipeline_dir: Path, tmp_path: Path) -> None:
    task = {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), "model": SD1_AIR,
            "outputType": "base64Data", "outputFormat": "PNG", **REQUEST}
    rest = httpx.post(f"{worker.url}/v1", json=[task], headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    assert rest.status_code == 200, rest.text
    rest_pixels = _pixels(base64.b64decode(rest.json()["data"][0]["imageBase64Data"]))

    async def over_ws() -> dict[str, Any]:
        import websockets

        async with websockets.connect(worker.ws_url) as ws:
            await ws.send(json.dumps([{"taskType": "authentication", "apiKey": KEY}]))
            json.loads(await ws.recv())
            await ws.send(json.dumps([{**task, "taskUUID": str(uuid.uuid4())}]))
            return json.loads(await ws.recv())  # type: ignore[no-any-return]

    ws_pixels = _pixels(base64.b64decode(asyncio.run(over_ws())["data"][0]["imageBase64Data"]))
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(task))
    out = tmp_path / "out.png"
    result = CliRunner().invoke(app, ["generate", str(request_file), "--pipeline", str(pipeline_dir), "--out",
                                      str(out), "--registry", published.url, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    generate_pixels = _pixels(out.read_bytes())
    assert np.array_equal(rest_pixels, ws_pixels)
    assert np.array_equal(rest_pixels, generate_pixels)


def test_websocket_authentication_ping_and_sessions(worker: WorkerProcess) -> None:
    import websockets

    async def run() -> list[Any]:
        answers = []
        async with websockets.connect(worker.ws_url) as ws:
            await ws.send(json.dumps([{"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), "model": SD1_AIR,
                                       "positivePrompt": "x"}]))
            answers.append(json.loads(await ws.recv()))  # not authenticated yet
            await ws.send(json.dumps([{"taskType": "authentication", "apiKey": "wrong"}]))
            answers.append(json.loads(await ws.recv()))
            await ws.send(json.dumps([{"taskType": "authentication", "apiKey": KEY}]))
            answers.append(json.loads(await ws.recv()))
            await ws.send(json.dumps([{"taskType": "ping", "ping": True}]))
            answers.append(json.loads(await ws.recv()))
            await ws.send("not json")
            answers.append(json.loads(await ws.recv()))
        session = answers[2]["data"][0]["connectionSessionUUID"]
        async with websockets.connect(worker.ws_url, max_size=None) as ws:  # a message over the limit
            await ws.send(json.dumps([{"taskType": "ping", "pad": "x" * (1024 * 1024 + 1)}]))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            answers.append(closed.value.rcvd.code if closed.value.rcvd else None)
        async with websockets.connect(worker.ws_url) as ws:  # a reconnecting client keeps its session
            await ws.send(json.dumps([{"taskType": "authentication", "apiKey": KEY, "connectionSessionUUID": session}]))
            answers.append(json.loads(await ws.recv()))
        return answers

    unauthenticated, wrong, ok, pong, garbage, too_big, resumed = asyncio.run(run())
    assert too_big == 1009  # "message too big": the connection closes, the worker goes on
    assert unauthenticated["errors"][0]["code"] == "missingApiKey"
    assert wrong["errors"][0] == {"code": "invalidApiKey", "message": "invalid API key", "parameter": "apiKey",
                                  "taskType": "authentication", "taskUUID": None}
    session = ok["data"][0]["connectionSessionUUID"]
    assert uuid.UUID(session) and ok["data"][0]["taskType"] == "authentication"
    assert pong == {"data": [{"taskType": "ping", "pong": True}]}
    assert garbage["errors"][0]["code"] == "invalidJSON"
    assert resumed["data"][0]["connectionSessionUUID"] == session
    log = worker.log.read_text()
    assert KEY not in log and "wrong" not in log


def test_metrics_and_sigterm_drains_in_flight_work(models_file: Path, published: Server, tmp_path: Path) -> None:
    import time

    process = start_worker_process(models_file, tmp_path, published.url, extra_env={"PSEUDOWORD_LOG_FORMAT": "json"})
    try:
        answered: list[tuple[float, httpx.Response]] = []
        task = {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), "model": SD1_AIR,
                "positivePrompt": "slow", "width": 512, "height": 512, "steps": 4, "outputType": "base64Data"}
        def send() -> None:
            response = httpx.post(f"{process.url}/v1", json=[task], timeout=300)
            answered.append((time.monotonic(), response))

        thread = threading.Thread(target=send)
        thread.start()
        deadline = time.monotonic() + 60
        while 'pseudoword_worker_queue_seconds_count{model="' not in httpx.get(f"{process.url}/metrics").text:
            assert time.monotonic() < deadline, "the task never reached the pipeline"
            time.sleep(0.05)
        stopped = time.monotonic()  # the task is denoising now (a few seconds at 512x512)
        process.process.send_signal(signal.SIGTERM)
        thread.join(300)
        [(when, response)] = answered
        assert response.status_code == 200, response.text  # finished, not dropped
        assert when > stopped
        # uvicorn re-raises the signal once it has shut down gracefully (exit -15, not a crash)
        assert process.process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        process.stop()
    lines = [json.loads(line) for line in process.log.read_text().splitlines() if line.startswith("{")]
    assert any(line.get("taskUUID") == task["taskUUID"] and line.get("outcome") == "ok" for line in lines)
    assert lines[-1]["message"] == "worker stopped" and lines[-1]["level"] == "info"

"""The worker on a live registry, in-process (uvicorn on loopback in a thread, the shared small
SD 1.x pipeline): embeddings change images as their weights say, batches of different mixes give
each request's own image, and every failure (busy, deadline, client gone, registry down,
malformed arrays) has its error while the worker keeps serving and leaks nothing."""

from __future__ import annotations

import asyncio
import base64
import gc
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from pseudoword.runtime.generation import Job, denoise
from pseudoword.runtime.resolver import Resolver
from pseudoword.runtime.worker.batcher import Ticket
from pseudoword.runtime.worker.settings import WorkerSettings
from tests.integration.servers import Server, start_server
from tests.integration.worker_fixtures import EMBEDDINGS, KEY, publish_all, task
from tests.pipelines import text_state
from tests.worker_harness import LiveWorker, loaded, start_worker

#: What batching may change in an image, against the same request run alone: batched kernels
#: reassociate float sums, nothing else differs (own noise, own generator, own conditioning).
#: Measured on the small pipeline: at most 1/255 on a few pixels; guaranteed here: 2/255.
TOLERANCE = 2


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, embeddings_dir: Path) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("worker-registry"))
    publish_all(server, embeddings_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def resolver(registry: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Resolver]:
    with Resolver(registry.url, cache_dir=tmp_path_factory.mktemp("worker-cache"), offline=False) as res:
        yield res


def _settings(tmp: Path, **changes: Any) -> WorkerSettings:
    values: dict[str, Any] = {"data_dir": tmp, "api_keys": (KEY,), "batch_wait": 0.0, "max_batch": 8,
                              "queue_size": 16, "task_timeout": 120.0, "max_body_bytes": 256 * 1024,
                              "max_tasks": 32, "shutdown_grace": 5.0}
    values.update(changes)
    return WorkerSettings(**values)


@pytest.fixture(scope="module")
def live(sd1: Any, resolver: Resolver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWorker]:
    worker = start_worker([loaded(sd1)], _settings(tmp_path_factory.mktemp("worker-data")), resolver)
    yield worker
    worker.stop()


def post(worker: LiveWorker, body: Any, *, key: str | None = KEY, raw: bytes | None = None,
         timeout: float = 120) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if raw is not None:
        return httpx.post(f"{worker.url}/v1", content=raw, headers=headers | {"Content-Type": "application/json"},
                          timeout=timeout)
    return httpx.post(f"{worker.url}/v1", json=body, headers=headers, timeout=timeout)


def pixels(item: dict[str, Any]) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(item["imageBase64Data"]))) as image:
        assert image.format == "PNG" and image.size == (64, 64)
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def one_image(worker: LiveWorker, **changes: Any) -> np.ndarray:
    response = post(worker, [task(**changes)])
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    return pixels(item)


def assert_serving(worker: LiveWorker) -> None:
    response = post(worker, [task(steps=1)])
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 1


# -- embeddings change the image as their weights say ----------------------------------------


def test_an_embedding_changes_the_image_and_its_sign_matters(live: LiveWorker) -> None:
    plain = one_image(live)
    positive = one_image(live, embeddings=[{"model": "wk:glass@1", "weight": 1}])
    negative = one_image(live, embeddings=[{"model": "wk:glass@1", "weight": -1}])
    again = one_image(live, embeddings=[{"model": "wk:glass@1", "weight": 1}])
    assert np.array_equal(positive, again)  # the same request and seed: the same image
    assert np.abs(plain - positive).max() > 8
    assert np.abs(positive - negative).max() > 8
    assert np.abs(plain - negative).max() > 8


def test_a_wrong_architecture_embedding_gets_its_documented_error(live: LiveWorker) -> None:
    item = task(embeddings=[{"model": "wk:glass@1", "weight": 1}, {"model": "wk:pdxl@1", "weight": 0.8}])
    response = post(live, [item])
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["code"] == "embeddingArchitectureMismatch"
    assert error["parameter"] == "embeddings[1].model"
    assert error["taskUUID"] == item["taskUUID"] and error["taskType"] == "imageInference"
    assert "sdxl" in error["message"] and "sd1" in error["message"]


@pytest.mark.parametrize(("changes", "code", "parameter"), [
    ({"embeddings": [{"model": "wk:nosuch@1", "weight": 1}]}, "unknownEmbedding", "embeddings[0].model"),
    ({"embeddings": [{"model": "wk:glass@1", "weight": 5}]}, "invalidEmbeddingWeight", "embeddings[0].weight"),
    ({"embeddings": [{"model": "wk:glass@1", "weight": 0}]}, "invalidEmbeddingWeight", "embeddings[0].weight"),
    ({"embeddings": [{"path": "/etc/passwd", "weight": 1}]}, "unsupportedParameter", "embeddings[0].path"),
    ({"model": "civitai:1@1"}, "unknownModel", "model"),
    ({"width": 96}, "invalidWidth", "width"),
    ({"steps": "many"}, "invalidSteps", "steps"),
    ({"CFGScale": 99}, "invalidCFGScale", "CFGScale"),
    ({"outputFormat": "GIF"}, "invalidOutputFormat", "outputFormat"),
    ({"numberResults": 17}, "invalidNumberResults", "numberResults"),  # more than the queue (16) holds
    ({"scheduler": "Nope"}, "invalidScheduler", "scheduler"),
    ({"lora": [{"model": "civitai:1@1", "weight": 1}]}, "unsupportedParameter", "lora"),
    ({"controlNet": [{"model": "x"}]}, "unsupportedParameter", "controlNet"),
    ({"refiner": {"model": "x"}}, "unsupportedParameter", "refiner"),
    ({"fancyNewThing": 1}, "unknownParameter", "fancyNewThing"),
    ({"deliveryMethod": "later"}, "invalidDeliveryMethod", "deliveryMethod"),
])
def test_bad_values_and_unsupported_features_are_refused_by_name(live: LiveWorker, changes: dict[str, Any],
                                                                  code: str, parameter: str) -> None:
    item = task(**changes)
    response = post(live, [item])
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert (error["code"], error["parameter"], error["taskUUID"]) == (code, parameter, item["taskUUID"])


def test_async_delivery_is_acknowledged_then_polled_with_get_response(live: LiveWorker) -> None:
    item = task(deliveryMethod="async", embeddings=[{"model": "wk:glass@1", "weight": 1}])
    ack = post(live, [item])
    assert ack.status_code == 200
    assert ack.json()["data"] == [{"taskType": "imageInference", "taskUUID": item["taskUUID"], "status": "processing"}]
    poll = [{"taskType": "getResponse", "taskUUID": item["taskUUID"]}]
    _wait(lambda: post(live, poll).json()["data"][0]["status"] == "success")
    [result] = post(live, poll).json()["data"]
    assert result["taskType"] == "imageInference" and result["seed"] == 1234
    assert np.array_equal(pixels(result), one_image(live, embeddings=[{"model": "wk:glass@1", "weight": 1}]))
    again = post(live, [item])  # the same taskUUID again
    assert again.status_code == 400 and again.json()["errors"][0]["code"] == "duplicateTaskUUID"
    failing = task(deliveryMethod="async", embeddings=[{"model": "wk:nosuch@1", "weight": 1}])
    assert post(live, [failing]).json()["data"][0]["status"] == "processing"
    poll = [{"taskType": "getResponse", "taskUUID": failing["taskUUID"]}]
    _wait(lambda: "errors" in post(live, poll).json())
    [error] = post(live, poll).json()["errors"]
    assert (error["code"], error["parameter"], error["taskUUID"]) == (
        "unknownEmbedding", "embeddings[0].model", failing["taskUUID"])
    unknown = post(live, [{"taskType": "getResponse", "taskUUID": "6c0ad2c5-5e61-4f8c-9a5b-1b2a3c4d5e6f"}])
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["code"] == "unknownTaskUUID"


def test_each_checkpoint_has_its_pipeline_and_embeddings_must_match_it(sd1: Any, sdxl: Any, resolver: Resolver,
                                                                       tmp_path: Path) -> None:
    from tests.worker_harness import SDXL_AIR

    worker = start_worker([loaded(sd1), loaded(sdxl, SDXL_AIR, "sdxl", width=64, height=64)],
                          _settings(tmp_path), resolver)
    try:
        xl = task(model=SDXL_AIR, embeddings=[{"model": "wk:pdxl@1", "weight": 1}], steps=2)
        del xl["width"], xl["height"]  # the model's defaults fill them in
        response = post(worker, [xl, task(embeddings=[{"model": "wk:glass@1", "weight": 1}], steps=2)])
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]) == 2
        wrong = post(worker, [task(model=SDXL_AIR, embeddings=[{"model": "wk:glass@1", "weight": 1}])])
        [error] = wrong.json()["errors"]
        assert (error["code"], error["parameter"]) == ("embeddingArchitectureMismatch", "embeddings[0].model")
        search = post(worker, [{"taskType": "modelSearch", "taskUUID": str(uuid.uuid4()), "category": "checkpoint",
                                "architecture": "sdxl"}]).json()["data"][0]
        assert [r["air"] for r in search["results"]] == [SDXL_AIR] and search["totalResults"] == 1
        both = post(worker, [{"taskType": "modelSearch", "taskUUID": str(uuid.uuid4()), "search": "pony"}])
        assert [r["air"] for r in both.json()["data"][0]["results"]] == ["wk:pdxl@1"]
        assert set(worker.worker.queues) == {loaded(sd1).air, SDXL_AIR}
    finally:
        worker.stop()


# -- batching --------------------------------------------------------------------------------

MIXES: list[list[dict[str, Any]]] = [
    [],
    [{"model": "wk:glass@1", "weight": 1}],
    [{"model": "wk:glass@1", "weight": -1.5}],
    [{"model": "wk:eyeliner@1", "weight": 1.2}, {"model": "wk:easyneg@1", "weight": -1}],
    [{"model": "wk:ulzzang@1", "weight": 0.7}],
    [{"model": "wk:badhands@1", "weight": -1}, {"model": "wk:badartist@1", "weight": -2}],
    [{"model": "wk:invoke@1", "weight": 2}, {"model": "wk:badimage@1", "weight": -1}],
    [{"model": "wk:glass@1", "weight": 0.5}, {"model": "wk:eyeliner@1", "weight": -0.5}],
]


def _concurrently(worker: LiveWorker, bodies: list[Any]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120, headers={"Authorization": f"Bearer {KEY}"}) as client:
            return list(await asyncio.gather(*(client.post(f"{worker.url}/v1", json=b) for b in bodies)))

    return asyncio.run(run())


def test_eight_mixes_batched_each_equal_their_image_alone(sd1: Any, resolver: Resolver,
                                                          tmp_path: Path) -> None:
    before = text_state(sd1)
    tasks = [task(embeddings=mix, seed=100 + i, positivePrompt=f"a lighthouse, view {i}")
             for i, mix in enumerate(MIXES)]
    batched_worker = start_worker([loaded(sd1)], _settings(tmp_path / "b", batch_wait=10.0), resolver)
    try:
        responses = _concurrently(batched_worker, [[t] for t in tasks])
        metrics = batched_worker.worker.metrics.registry
        batches = metrics.get_sample_value("pseudoword_worker_batch_size_count", {"model": loaded(sd1).air})
        images = metrics.get_sample_value("pseudoword_worker_batch_size_sum", {"model": loaded(sd1).air})
    finally:
        batched_worker.stop()
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses if r.status_code != 200]
    assert (batches, images) == (1, 8)  # one denoising batch of all eight
    alone_worker = start_worker([loaded(sd1)], _settings(tmp_path / "a", max_batch=1), resolver)
    try:
        alone = [one_image(alone_worker, **t) for t in tasks]
    finally:
        alone_worker.stop()
    batched = [pixels(r.json()["data"][0]) for r in responses]
    differences = [int(np.abs(b - a).max()) for b, a in zip(batched, alone, strict=True)]
    assert max(differences) <= TOLERANCE, differences
    distinct = {img.tobytes() for img in alone}
    assert len(distinct) == 8  # eight different images, not one image eight times
    after = text_state(sd1)
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert (value == after[key]) if isinstance(value, int) else bool((value == after[key]).all()), key


# -- failures: each its error, the worker keeps serving --------------------------------------


class Gate:
    """A denoise that waits for ``open()`` before running: the queue fills behind it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.entered = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        self.event.wait(timeout=60)
        return denoise(*args, **kwargs)

    def open(self) -> None:
        self.event.set()


@pytest.fixture()
def gated(sd1: Any, resolver: Resolver, tmp_path: Path) -> Iterator[tuple[LiveWorker, Gate]]:
    gate = Gate()
    worker = start_worker([loaded(sd1)], _settings(tmp_path, queue_size=2, max_batch=1, task_timeout=3.0),
                          resolver, denoise_fn=gate)
    yield worker, gate
    gate.open()
    worker.stop()


def _in_background(worker: LiveWorker, body: Any) -> tuple[threading.Thread, list[httpx.Response]]:
    out: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: out.append(post(worker, body)))
    thread.start()
    return thread, out


def _wait(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_full_queue_answers_busy_and_the_queued_work_still_runs(gated: tuple[LiveWorker, Gate]) -> None:
    worker, gate = gated
    queue = next(iter(worker.worker.queues.values()))
    running, out1 = _in_background(worker, [task(seed=1)])
    gate.entered.wait(30)  # one image in the pipeline; the queue (2) fills with two more
    waiting = [_in_background(worker, [task(seed=s)]) for s in (2, 3)]
    _wait(lambda: queue.depth() == 2)
    response = post(worker, [task(seed=4)])
    assert response.status_code == 503
    [error] = response.json()["errors"]
    assert error["code"] == "workerBusy" and error["parameter"] == "model"
    gate.open()
    for thread, _ in [(running, out1), *waiting]:
        thread.join(60)
    assert [out[0].status_code for _, out in [(running, out1), *waiting]] == [200, 200, 200]
    assert_serving(worker)


def test_a_task_past_its_deadline_gets_a_timeout_and_never_runs(gated: tuple[LiveWorker, Gate]) -> None:
    worker, gate = gated
    queue = next(iter(worker.worker.queues.values()))
    running, out1 = _in_background(worker, [task(seed=1)])
    gate.entered.wait(30)
    started = time.monotonic()
    response = post(worker, [task(seed=2)])  # waits behind the gate past its 3 s deadline
    assert response.status_code == 504, response.text
    assert response.json()["errors"][0]["code"] == "timeoutProvider"
    assert time.monotonic() - started < 10
    assert queue.depth() == 0  # dropped from the queue, not run later
    gate.open()
    running.join(60)
    assert_serving(worker)


def test_a_client_that_leaves_cancels_its_queued_work(gated: tuple[LiveWorker, Gate]) -> None:
    worker, gate = gated
    queue = next(iter(worker.worker.queues.values()))
    running, _ = _in_background(worker, [task(seed=1)])
    gate.entered.wait(30)
    with pytest.raises(httpx.ReadTimeout):  # the client gives up while its task is queued
        httpx.post(f"{worker.url}/v1", json=[task(seed=2)], headers={"Authorization": f"Bearer {KEY}"},
                   timeout=1.0)
    _wait(lambda: queue.depth() == 0, timeout=10)  # its queued image went with it

    async def ws_client_leaves() -> None:
        import websockets

        async with websockets.connect(worker.ws_url) as ws:
            await ws.send(json.dumps([{"taskType": "authentication", "apiKey": KEY}]))
            json.loads(await ws.recv())
            await ws.send(json.dumps([task(seed=3)]))
            await asyncio.get_running_loop().run_in_executor(None, _wait, lambda: queue.depth() == 1)

    asyncio.run(ws_client_leaves())
    _wait(lambda: queue.depth() == 0, timeout=10)
    gate.open()
    running.join(60)
    assert_serving(worker)


def test_registry_down_cached_embeddings_keep_serving(sd1: Any, embeddings_dir: Path, tmp_path: Path) -> None:
    registry = start_server(tmp_path / "registry")
    publish_all(registry, embeddings_dir, {ref: EMBEDDINGS[ref] for ref in ("wk:glass@1", "wk:eyeliner@1")})
    with Resolver(registry.url, cache_dir=tmp_path / "cache", offline=False) as res:
        worker = start_worker([loaded(sd1)], _settings(tmp_path / "data"), res)
        try:
            pinned = [{"model": "wk:glass@1", "weight": 1}]
            unpinned = [{"model": "wk:glass", "weight": 1}]
            warm = one_image(worker, embeddings=pinned)
            assert np.array_equal(one_image(worker, embeddings=unpinned), warm)
            registry.stop()
            assert np.array_equal(one_image(worker, embeddings=pinned), warm)  # no network needed
            assert np.array_equal(one_image(worker, embeddings=unpinned), warm)  # newest cached version
            response = post(worker, [task(embeddings=[{"model": "wk:eyeliner@1", "weight": 1}])])
            assert response.status_code == 503
            [error] = response.json()["errors"]
            assert (error["code"], error["parameter"]) == ("registryUnavailable", "embeddings[0].model")
            assert_serving(worker)
        finally:
            worker.stop()
            registry.stop()


@pytest.mark.parametrize(("body", "status", "code"), [
    (b'{"taskType": "imageInference"', 400, "invalidJSON"),
    (b'"a string"', 400, "invalidPayload"),
    (b"42", 400, "invalidPayload"),
    (b"[]", 400, "invalidPayload"),
    (json.dumps([{"taskType": "ping"}] * 10_000, separators=(",", ":")).encode(), 400, "tooManyTasks"),
    (json.dumps([{"taskType": "ping", "pad": "x" * 300_000}]).encode(), 413, "payloadTooLarge"),
    (json.dumps([{"taskType": "imageUpscale", "taskUUID": "6c0ad2c5-5e61-4f8c-9a5b-1b2a3c4d5e6f"}]).encode(),
     400, "unsupportedTaskType"),
    (json.dumps([{"taskType": "teleport", "taskUUID": "6c0ad2c5-5e61-4f8c-9a5b-1b2a3c4d5e6f"}]).encode(),
     400, "unsupportedTaskType"),
    (json.dumps([{"taskType": "imageInference", "positivePrompt": "x"}]).encode(), 400, "missingTaskUUID"),
    (json.dumps([{"taskType": "imageInference", "taskUUID": "not-a-uuid"}]).encode(), 400, "invalidTaskUUID"),
    (json.dumps([{"taskType": "imageInference", "taskUUID": 12}]).encode(), 400, "invalidTaskUUID"),
    (json.dumps([{"taskType": 7}]).encode(), 400, "missingTaskType"),
    (json.dumps([[1, 2]]).encode(), 400, "invalidTask"),
    (json.dumps([None]).encode(), 400, "invalidTask"),
])
def test_malformed_task_arrays_get_their_error_and_the_worker_keeps_serving(live: LiveWorker, body: bytes,
                                                                            status: int, code: str) -> None:
    response = post(live, None, raw=body)
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert errors[0]["code"] == code
    assert set(errors[0]) >= {"code", "message", "taskType", "taskUUID"}
    assert_serving(live)


def test_transport_refusals_are_in_runwares_shape_too(live: LiveWorker) -> None:
    def chunks() -> Any:
        yield b'[{"taskType": "ping", "pad": "'
        for _ in range(300):
            yield b"x" * 1024
        yield b'"}]'

    chunked = httpx.post(f"{live.url}/v1", content=chunks(), headers={"Authorization": f"Bearer {KEY}"})
    assert chunked.status_code == 413 and chunked.json()["errors"][0]["code"] == "payloadTooLarge"
    wrong_method = httpx.get(f"{live.url}/v1")
    assert wrong_method.status_code == 405 and wrong_method.json()["errors"][0]["code"] == "methodNotAllowed"
    for name in ("nothing-here.png", "x" * 100):
        missing = httpx.get(f"{live.url}/images/{name}")
        assert missing.status_code in (400, 404) and "errors" in missing.json()
    assert_serving(live)


def test_wrong_types_in_a_task_name_the_parameter(live: LiveWorker) -> None:
    for changes, parameter in (({"positivePrompt": 5}, "positivePrompt"), ({"width": "64"}, "width"),
                               ({"seed": 1.5}, "seed"), ({"numberResults": True}, "numberResults"),
                               ({"embeddings": "wk:glass@1"}, "embeddings"),
                               ({"includeCost": "yes"}, "includeCost")):
        response = post(live, [task(**changes)])
        assert response.status_code == 400, (changes, response.text)
        assert response.json()["errors"][0]["parameter"] == parameter, (changes, response.json())
    assert_serving(live)


def test_keys_are_required_and_never_logged(live: LiveWorker, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG"):
        missing = post(live, [task()], key=None)
        wrong = post(live, [task()], key="not-the-key")
        in_task = post(live, [{"taskType": "authentication", "apiKey": KEY}, task()], key=None)
    assert missing.status_code == 401 and missing.json()["errors"][0]["code"] == "missingApiKey"
    assert wrong.status_code == 401 and wrong.json()["errors"][0]["code"] == "invalidApiKey"
    assert in_task.status_code == 200 and len(in_task.json()["data"]) == 1
    assert KEY not in caplog.text and "not-the-key" not in caplog.text


def test_a_mixed_array_answers_data_and_errors_together(live: LiveWorker) -> None:
    good, bad = task(numberResults=2, outputType=["URL", "dataURI"], includeCost=True), task(width=100)
    response = post(live, [good, bad, {"taskType": "ping", "ping": True}])
    assert response.status_code == 200
    body = response.json()
    images = [item for item in body["data"] if item["taskType"] == "imageInference"]
    assert [item["seed"] for item in images] == [1234, 1235]
    assert all(item["imageDataURI"].startswith("data:image/png;base64,") and item["cost"] > 0 for item in images)
    assert {"taskType": "ping", "pong": True} in body["data"]
    assert [e["taskUUID"] for e in body["errors"]] == [bad["taskUUID"]]
    fetched = httpx.get(images[0]["imageURL"])
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert fetched.content == base64.b64decode(images[0]["imageDataURI"].split(",", 1)[1])


def test_output_formats_and_quality(live: LiveWorker) -> None:
    sizes = {}
    for fmt, quality, magic in (("JPG", 30, b"\xff\xd8"), ("JPG", 95, b"\xff\xd8"), ("WEBP", 80, b"RIFF"),
                                (None, None, b"\xff\xd8")):  # Runware's default is JPG
        changes: dict[str, Any] = {"outputFormat": fmt, "outputQuality": quality, "width": 256, "height": 256,
                                   "steps": 1}
        body = task(**{k: v for k, v in changes.items() if v is not None})
        if fmt is None:
            del body["outputFormat"]
        item = post(live, [body]).json()["data"][0]
        data = base64.b64decode(item["imageBase64Data"])
        assert data.startswith(magic), (fmt, data[:8])
        sizes[(fmt, quality)] = len(data)
    assert sizes[("JPG", 30)] < sizes[("JPG", 95)]


# -- nothing leaks ---------------------------------------------------------------------------


def test_nothing_leaks_threads_tickets_or_expired_files(sd1: Any, resolver: Resolver, tmp_path: Path) -> None:
    threads_before = set(threading.enumerate())
    worker = start_worker([loaded(sd1)], _settings(tmp_path, url_ttl=2.0), resolver)
    try:
        urls = []
        for seed in range(6):
            response = post(worker, [task(seed=seed, outputType="URL", steps=1)])
            assert response.status_code == 200
            urls.append(response.json()["data"][0]["imageURL"])
            assert httpx.get(urls[-1]).status_code == 200  # served while it is young
        for _ in range(3):  # failures too
            post(worker, [task(width=100)])
            post(worker, None, raw=b"[1]")
        images_dir = worker.worker.images.directory
        assert list(images_dir.iterdir())
        _wait(lambda: not any(images_dir.iterdir()), timeout=15)  # the sweep removed every expired file
        assert httpx.get(urls[-1]).status_code == 404
        gc.collect()
        # no conditioning tensors held by finished work (a Ticket holds its Job, the Job its tensors)
        assert not [obj for obj in gc.get_objects() if type(obj) in (Ticket, Job)]
        queue = next(iter(worker.worker.queues.values()))
        assert queue.depth() == 0
        metrics, model = worker.worker.metrics.registry, {"model": loaded(sd1).air}
        assert metrics.get_sample_value("pseudoword_worker_queue_depth", model) == 0
        assert metrics.get_sample_value("pseudoword_worker_pipeline_seconds_count", model) == 6
        assert metrics.get_sample_value("pseudoword_worker_queue_seconds_count", model) == 6
        assert metrics.get_sample_value("pseudoword_worker_tasks_total",
                                        {"task_type": "imageInference", "outcome": "error"}) == 3
    finally:
        worker.stop()
    assert not queue.alive  # the batch thread stopped with the app
    # The worker's own threads (batch, encode, server, the loop's executor) are gone; process-wide
    # singletons that libraries start on first use (tqdm's monitor) are not the worker's.
    left = [t.name for t in threading.enumerate()
            if t not in threads_before and t.name.startswith(("pseudoword-", "test-worker", "asyncio_"))]
    assert not left, left

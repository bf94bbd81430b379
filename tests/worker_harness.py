"""A live ``pseudoword worker`` for the tests: the real app under uvicorn on a loopback port, in a
thread of the test process (so tests can hand it small pipelines, a gated denoise or a resolver
of their own), or as a ``pseudoword worker`` subprocess (tests/integration)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pseudoword.runtime.generation import denoise
from pseudoword.runtime.worker.models import LoadedModel, ModelSpec
from pseudoword.runtime.worker.service import Worker
from pseudoword.runtime.worker.settings import WorkerSettings
from tests.integration.servers import free_port

SD1_AIR = "civitai:4384@128713"
SDXL_AIR = "runware:101@1"


def loaded(pipe: Any, air: str = SD1_AIR, architecture: str = "sd1", **defaults: Any) -> LoadedModel:
    spec = ModelSpec(air=air, path=Path("/nonexistent"), architecture=architecture, name=f"test {architecture}",
                     tags=("test",), defaults=defaults)
    return LoadedModel(spec, pipe)


@dataclass
class LiveWorker:
    url: str
    worker: Worker
    server: Any
    thread: threading.Thread

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:] + "/v1"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def start_worker(models: list[LoadedModel], settings: WorkerSettings, resolver: Any, *,
                 denoise_fn: Any = denoise) -> LiveWorker:
    import uvicorn

    from pseudoword.runtime.worker.app import create_app

    worker = Worker(models, settings, resolver, denoise_fn=denoise_fn)
    port = free_port()
    config = uvicorn.Config(create_app(worker), host="127.0.0.1", port=port, log_level="warning",
                            ws_max_size=settings.max_body_bytes, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-worker", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("worker did not start")
        time.sleep(0.02)
    return LiveWorker(f"http://127.0.0.1:{port}", worker, server, thread)


@dataclass
class WorkerProcess:
    """``pseudoword worker`` as a subprocess."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(repr=False)

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:] + "/v1"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


def start_worker_process(models_file: Path, data_dir: Path, registry: str, *, extra_env: dict[str, str] | None = None,
                         cache_dir: Path | None = None) -> WorkerProcess:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSEUDOWORD_WORKER_")}
    env.update({"OMP_NUM_THREADS": "1", "PSEUDOWORD_CACHE": str(cache_dir or data_dir / "cache")})
    env.update(extra_env or {})
    log = data_dir / f"worker-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "pseudoword", "worker", "--models", str(models_file), "--host", "127.0.0.1",
         "--port", str(port), "--registry", registry, "--data-dir", str(data_dir)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited {process.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return WorkerProcess(url, process, log, env)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError(f"worker did not answer: {log.read_text()[-3000:]}")

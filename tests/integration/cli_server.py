"""A real `pseudoword serve` on loopback with a temporary data directory, shared by the CLI and
resolver end-to-end tests (one server per test session), and a helper to run CLI commands.

Import the fixtures into a test module: ``from tests.integration.cli_server import live_registry, cli``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import require

#: Settings of the developer's environment that must not leak into the test server or CLI.
_SCRUB = ("PSEUDOWORD_DATABASE_URL", "PSEUDOWORD_STORAGE_URL", "PSEUDOWORD_S3_ACCESS_KEY", "PSEUDOWORD_S3_SECRET_KEY",
          "PSEUDOWORD_ADMIN_TOKEN_FILE", "PSEUDOWORD_PRESIGNED_DOWNLOADS", "PSEUDOWORD_REGISTRY", "PSEUDOWORD_TOKEN",
          "PSEUDOWORD_OFFLINE", "PSEUDOWORD_CACHE", "PSEUDOWORD_CONFIG", "PSEUDOWORD_DEBUG")


@dataclass
class LiveRegistry:
    url: str
    admin_token: str
    data_dir: Path
    home: Path  # XDG config/cache home for CLI runs, so the user's own config is never read
    process: subprocess.Popen[bytes]

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a CLI run against this registry (admin token unless overridden)."""
        env = {key: value for key, value in os.environ.items() if key not in _SCRUB}
        env.update(PSEUDOWORD_REGISTRY=self.url, PSEUDOWORD_TOKEN=self.admin_token,
                   XDG_CONFIG_HOME=str(self.home / "config"), PSEUDOWORD_CACHE=str(self.home / "cache"))
        env.update(extra)
        return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_SERVER: LiveRegistry | None = None


def _start() -> LiveRegistry:
    root = Path(tempfile.mkdtemp(prefix="pseudoword-e2e-"))
    data_dir, home = root / "data", root / "home"
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in _SCRUB}
    env["PSEUDOWORD_LOG_LEVEL"] = "WARNING"
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "pseudoword", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200 and (data_dir / "admin.token").is_file():
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        process.kill()
    if process.poll() is not None:
        output = (root / "server.log").read_text(errors="replace")[-3000:]
        shutil.rmtree(root, ignore_errors=True)
        require(False, f"`pseudoword serve` did not start (exit {process.returncode}): {output}")
    token = (data_dir / "admin.token").read_text().strip()
    server = LiveRegistry(url=url, admin_token=token, data_dir=data_dir, home=home, process=process)

    def stop() -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    return server


@pytest.fixture(scope="session")
def live_registry() -> LiveRegistry:
    """One `pseudoword serve` (SQLite + local blobs in a temporary data dir) for the session."""
    global _SERVER
    if _SERVER is None or _SERVER.process.poll() is not None:
        _SERVER = _start()
    return _SERVER


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    """Runs `pseudoword` commands in-process (fast) against the live registry."""

    def __init__(self, registry: LiveRegistry) -> None:
        self.registry = registry

    def __call__(self, *args: str | Path, env: dict[str, str] | None = None, input: str | None = None) -> CliResult:
        from pseudoword.cli.main import app

        full_env = self.registry.env(**(env or {}))
        # CliRunner only adds/overrides variables: clear the ones we scrub explicitly.
        overrides: dict[str, str | None] = {key: None for key in _SCRUB}
        overrides.update(full_env)
        result = CliRunner().invoke(app, [str(a) for a in args], env=overrides, input=input, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture(scope="session")
def cli(live_registry: LiveRegistry) -> Cli:
    return Cli(live_registry)


def run_cli_process(registry: LiveRegistry, *args: str | Path, env: dict[str, str] | None = None,
                    timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m pseudoword ...` as a real process (to see exactly what a user sees)."""
    return subprocess.run([sys.executable, "-m", "pseudoword", *map(str, args)], capture_output=True, text=True,
                          env=registry.env(**(env or {})), timeout=timeout)

"""The CLI's end-to-end fixtures: one `pseudoword serve` (SQLite + local blobs in a temporary data
directory) for the session, started by the suite's one server harness (``servers.start_server``),
and a helper to run CLI commands against it.

Import the fixtures into a test module: ``from tests.integration.cli_server import live_registry, cli``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.integration.servers import _SCRUB as _SERVER_SCRUB
from tests.integration.servers import Server, free_port, start_server

#: Settings of the developer's environment that must not leak into the CLI runs.
_SCRUB = tuple(dict.fromkeys((*_SERVER_SCRUB, "PSEUDOWORD_OFFLINE", "PSEUDOWORD_CACHE", "PSEUDOWORD_CONFIG",
                              "PSEUDOWORD_DEBUG")))

__all__ = ["Cli", "LiveRegistry", "cli", "free_port", "live_registry", "run_cli_process"]


@dataclass
class LiveRegistry:
    url: str
    admin_token: str
    data_dir: Path
    home: Path  # XDG config/cache home for CLI runs, so the user's own config is never read
    server: Server

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a CLI run against this registry (admin token unless overridden)."""
        env = {key: value for key, value in os.environ.items() if key not in _SCRUB}
        env.update(PSEUDOWORD_REGISTRY=self.url, PSEUDOWORD_TOKEN=self.admin_token,
                   XDG_CONFIG_HOME=str(self.home / "config"), PSEUDOWORD_CACHE=str(self.home / "cache"))
        env.update(extra)
        return env


_SERVER: LiveRegistry | None = None


def _start() -> LiveRegistry:
    root = Path(tempfile.mkdtemp(prefix="pseudoword-e2e-"))
    server = start_server(root / "data", {"PSEUDOWORD_LOG_LEVEL": "WARNING"})
    live = LiveRegistry(url=server.url, admin_token=server.admin_token, data_dir=server.data_dir,
                        home=root / "home", server=server)

    def stop() -> None:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    return live


@pytest.fixture(scope="session")
def live_registry() -> LiveRegistry:
    """One `pseudoword serve` (SQLite + local blobs in a temporary data dir) for the session."""
    global _SERVER
    if _SERVER is None or _SERVER.server.process.poll() is not None:
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

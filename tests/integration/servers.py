"""Real services for the integration suite: moto's S3 server on loopback, a fresh PostgreSQL
database, and `pseudoword serve` subprocesses on either backend."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PG_ADMIN_URL = os.environ.get("PSEUDOWORD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
S3_KEY, S3_SECRET = "test-access-key", "test-secret-key-0123456789"
_SCRUB = ("PSEUDOWORD_DATABASE_URL", "PSEUDOWORD_STORAGE_URL", "PSEUDOWORD_S3_ACCESS_KEY", "PSEUDOWORD_S3_SECRET_KEY",
          "PSEUDOWORD_ADMIN_TOKEN_FILE", "PSEUDOWORD_PRESIGNED_DOWNLOADS", "PSEUDOWORD_REGISTRY", "PSEUDOWORD_TOKEN",
          "PSEUDOWORD_DATA_DIR", "PSEUDOWORD_TEST_CRASH_AFTER_BLOB", "PSEUDOWORD_GC_GRACE_SECONDS",
          "PSEUDOWORD_STORAGE_TIMEOUT", "PSEUDOWORD_STORAGE_BREAKER_SECONDS", "PSEUDOWORD_MIN_FREE_BYTES",
          "PSEUDOWORD_DOWNLOAD_COUNT_INTERVAL", "PSEUDOWORD_RATE_LIMIT", "PSEUDOWORD_PUBLISH_RATE_LIMIT",
          "PSEUDOWORD_RATE_LIMIT_STORE", "PSEUDOWORD_READ_TIMEOUT")
#: Test servers: no rate limits (a test that wants one sets it), download counts written within
#: a fifth of a second (tests read them back), a short read timeout and storage deadline.
TEST_DEFAULTS = {"PSEUDOWORD_RATE_LIMIT": "off", "PSEUDOWORD_PUBLISH_RATE_LIMIT": "off",
                 "PSEUDOWORD_DOWNLOAD_COUNT_INTERVAL": "0.2", "PSEUDOWORD_READ_TIMEOUT": "5",
                 "PSEUDOWORD_STORAGE_TIMEOUT": "4", "PSEUDOWORD_STORAGE_BREAKER_SECONDS": "2"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001 - any failure: not available
        return False


def create_database() -> str:
    """A new empty database; returns its SQLAlchemy URL."""
    import psycopg

    name = f"pw_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"


def drop_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class MotoS3:
    """moto's standalone S3 server on a loopback port; can be stopped and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://{self.endpoint}/moto-api/", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("moto S3 server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def storage_url(self, bucket: str) -> str:
        return f"s3://{self.endpoint}/{bucket}?secure=false&region=us-east-1"


@dataclass
class Server:
    """A `pseudoword serve` process."""

    url: str
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    admin_token: str = field(default="", repr=False)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}


def start_server(data_dir: Path, extra_env: dict[str, str] | None = None, port: int | None = None,
                 wait: bool = True, args: tuple[str, ...] = ()) -> Server:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = {key: value for key, value in os.environ.items() if key not in _SCRUB}
    env.update({"PSEUDOWORD_DATA_DIR": str(data_dir), "PSEUDOWORD_LOG_LEVEL": "INFO", **TEST_DEFAULTS})
    env.update(extra_env or {})
    log = data_dir / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "pseudoword", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = Server(url=f"http://127.0.0.1:{port}", data_dir=data_dir, env=env, process=process, log=log)
    if wait:
        wait_ready(server)
    token_file = Path(env["PSEUDOWORD_ADMIN_TOKEN_FILE"]) if env.get("PSEUDOWORD_ADMIN_TOKEN_FILE") else data_dir / "admin.token"
    if token_file.is_file():
        server.admin_token = token_file.read_text().strip()
    return server


def wait_ready(server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited {server.process.returncode}: {server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server did not answer in {timeout}s: {server.log.read_text()[-3000:]}")

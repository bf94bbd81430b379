"""Fixtures for the suites that talk to a live registry (tests/integration, tests/security): each
runs once per backend, SQLite + local blobs and PostgreSQL + an S3 server (moto, on loopback)
reached through the minio client, on one `pseudoword serve` per backend for the whole session.
Loaded by the root conftest as a plugin, so every suite shares the same servers."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require
from tests.integration.servers import (
    S3_KEY,
    S3_SECRET,
    MotoS3,
    Server,
    create_database,
    drop_database,
    postgres_available,
    start_server,
)


@dataclass
class Backend:
    name: str
    env: dict[str, str]  # PSEUDOWORD_* settings that select it
    s3: MotoS3 | None = None


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    s3 = MotoS3()
    s3.start()
    yield s3
    s3.stop()


def postgres_s3_env(moto_s3: MotoS3, database_url: str, bucket: str) -> dict[str, str]:
    return {"PSEUDOWORD_DATABASE_URL": database_url, "PSEUDOWORD_STORAGE_URL": moto_s3.storage_url(bucket),
            "PSEUDOWORD_S3_ACCESS_KEY": S3_KEY, "PSEUDOWORD_S3_SECRET_KEY": S3_SECRET}


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", {})
        return
    require(postgres_available(), "PostgreSQL is not reachable at 127.0.0.1:5432 (database test)")
    s3: MotoS3 = request.getfixturevalue("moto_s3")
    url = create_database()
    try:
        yield Backend("postgres", postgres_s3_env(s3, url, f"pw-{secrets.token_hex(4)}"), s3)
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
def registry(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One live `pseudoword serve` per backend for the whole session."""
    server = start_server(tmp_path_factory.mktemp(f"registry-{backend.name}"), backend.env)
    yield server
    server.stop()


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    require(postgres_available(), "PostgreSQL is not reachable at 127.0.0.1:5432 (database test)")
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database for in-process tests of the service's modules, one per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pseudoword.db'}"
    return request.getfixturevalue("postgres_url")  # type: ignore[no-any-return]


@pytest.fixture()
def source() -> str:
    """A source name no other test uses, so tests share a server without seeing each other."""
    return f"t{secrets.token_hex(5)}"


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    return tmp_path

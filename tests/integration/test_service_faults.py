"""Races and faults: concurrent publishes, the object store going away, a crash mid-publish."""

from __future__ import annotations

import hashlib
import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import require
from tests.integration.api import error_code, eventually, get, publish, random_embedding, resolve
from tests.integration.servers import MotoS3, Server, create_database, drop_database, postgres_available, start_server
from tests.registry_servers import Backend, postgres_s3_env


def _blob_digests(server: Server) -> set[str]:
    if "PSEUDOWORD_STORAGE_URL" in server.env:
        from pseudoword.registry.service.storage import open_store

        store = open_store(server.env["PSEUDOWORD_STORAGE_URL"], server.env["PSEUDOWORD_S3_ACCESS_KEY"],
                           server.env["PSEUDOWORD_S3_SECRET_KEY"])
        return {blob.sha256 for blob in store.list_blobs()}
    return {p.name for p in (server.data_dir / "blobs").rglob("*") if p.is_file() and len(p.name) == 64}


def test_concurrent_publishes_of_the_same_id_and_content(registry: Server, source: str) -> None:
    data = random_embedding(seed=31)
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: publish(registry, data, f"{source}:race@1"), range(16)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 201} and statuses.count(201) == 1, [(r.status_code, r.text) for r in responses]
    digests = {r.json()["sha256"] for r in responses}
    assert len(digests) == 1
    model = get(registry, f"/api/v1/embeddings/{source}/race").json()
    assert len(model["versions"]) == 1
    assert digests <= _blob_digests(registry)


def test_concurrent_publishes_of_different_contents(registry: Server, source: str) -> None:
    payloads = [random_embedding(seed=40 + i) for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda d: publish(registry, d, f"{source}:fight@1"), payloads))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 15, statuses
    assert all(error_code(r) == "conflict" for r in responses if r.status_code == 409)
    winner = next(r.json() for r in responses if r.status_code == 201)
    assert resolve(registry, [f"{source}:fight@1"])[0]["record"]["sha256"] == winner["sha256"]


@pytest.fixture()
def s3_registry(tmp_path: Path) -> tuple[Server, MotoS3, str]:
    """A registry on PostgreSQL + its own S3 server, which the test may stop."""
    require(postgres_available(), "PostgreSQL is not reachable at 127.0.0.1:5432 (database test)")
    s3 = MotoS3()
    s3.start()
    url = create_database()
    server = start_server(tmp_path / "data", postgres_s3_env(s3, url, "faults"))
    yield server, s3, url
    server.stop()
    s3.stop()
    drop_database(url)


def test_storage_outage_answers_503_and_loses_nothing(s3_registry: tuple[Server, MotoS3, str]) -> None:
    server, s3, _ = s3_registry
    before = publish(server, random_embedding(seed=50), "studio:kept@1").json()
    s3.stop()
    try:
        failed = publish(server, random_embedding(seed=51), "studio:during@1")
        assert failed.status_code == 503 and error_code(failed) == "storage_unavailable"
        download = get(server, before["download_url"])
        assert download.status_code == 503 and error_code(download) == "storage_unavailable"
        assert get(server, "/api/v1/embeddings/studio/kept/1").json()["sha256"] == before["sha256"]
        assert resolve(server, ["studio:kept"])[0]["record"]["id"] == "studio:kept@1"
        ready = get(server, "/readyz")  # still in the load balancer: metadata reads go on
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["storage"].startswith("unavailable")
        assert get(server, "/api/v1/embeddings/studio/during/1").status_code == 404
    finally:
        s3.start()  # same port, fresh (empty) moto state: a restarted MinIO keeps its data, moto does not
    # moto forgets objects on restart; put back what a real MinIO would still hold
    from pseudoword.registry.service.storage import open_store

    store = open_store(server.env["PSEUDOWORD_STORAGE_URL"], server.env["PSEUDOWORD_S3_ACCESS_KEY"],
                       server.env["PSEUDOWORD_S3_SECRET_KEY"])
    from pseudoword.registry.core import canonical_bytes, read_embedding

    store.put(before["sha256"], canonical_bytes(read_embedding(random_embedding(seed=50))))
    # Ready again once the storage breaker's pause (PSEUDOWORD_STORAGE_BREAKER_SECONDS) is over.
    eventually(lambda: get(server, "/readyz").json()["status"] == "ready")
    assert hashlib.sha256(get(server, before["download_url"]).content).hexdigest() == before["sha256"]
    retried = publish(server, random_embedding(seed=51), "studio:during@1")
    assert retried.status_code == 201


def _gc(server: Server, *args: str) -> dict:
    """`pseudoword gc --json` against the server's database and store (in-process: fast)."""
    from typer.testing import CliRunner

    from pseudoword.cli.main import app

    keys = ("PSEUDOWORD_DATA_DIR", "PSEUDOWORD_DATABASE_URL", "PSEUDOWORD_STORAGE_URL",
            "PSEUDOWORD_S3_ACCESS_KEY", "PSEUDOWORD_S3_SECRET_KEY")
    env = {key: server.env.get(key) for key in keys}
    result = CliRunner().invoke(app, ["gc", "--json", *args], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow  # one of the slowest (a subprocess or a real pipeline); CI runs it
def test_crash_between_blob_write_and_row_commit(backend: Backend, tmp_path: Path) -> None:
    env = dict(backend.env)
    database = None
    if backend.name == "postgres":
        assert backend.s3 is not None
        database = create_database()
        env = postgres_s3_env(backend.s3, database, f"crash-{secrets.token_hex(3)}")
    try:
        data_dir = tmp_path / "data"
        crashing = start_server(data_dir, {**env, "PSEUDOWORD_TEST_CRASH_AFTER_BLOB": "1"})
        with pytest.raises(httpx.HTTPError):
            publish(crashing, random_embedding(seed=60), "studio:crashy@1")
        assert crashing.process.wait(timeout=15) == 17
        server = start_server(data_dir, env)
        server.admin_token = server.admin_token or crashing.admin_token
        try:
            assert get(server, "/api/v1/embeddings/studio/crashy/1").status_code == 404  # no row
            # the harmless orphans: the upload, the canonical file and its 3 exports (all written before the row)
            assert len(_blob_digests(server)) == 5
            gc = _gc(server, "--dry-run")
            assert len(gc["orphans"]) == 5 and gc["removed"] == []
            retried = publish(server, random_embedding(seed=60), "studio:crashy@1")
            assert retried.status_code == 201
            digest = retried.json()["sha256"]
            assert hashlib.sha256(get(server, retried.json()["download_url"]).content).hexdigest() == digest
            # an orphan of another publish that never finished is removed by gc; referenced blobs stay
            from pseudoword.registry.core import canonical_bytes, read_embedding

            orphan = canonical_bytes(read_embedding(random_embedding(seed=61)))
            if "PSEUDOWORD_STORAGE_URL" in env:
                from pseudoword.registry.service.storage import open_store

                open_store(env["PSEUDOWORD_STORAGE_URL"], env["PSEUDOWORD_S3_ACCESS_KEY"],
                           env["PSEUDOWORD_S3_SECRET_KEY"]).put(hashlib.sha256(orphan).hexdigest(), orphan)
            else:
                from pseudoword.registry.service.storage import LocalBlobStore

                LocalBlobStore(data_dir / "blobs").put(hashlib.sha256(orphan).hexdigest(), orphan)
            assert _gc(server)["removed"] == []  # younger than the grace period: a publish may be about to use it
            assert _gc(server, "--grace-seconds", "0")["removed"] == [hashlib.sha256(orphan).hexdigest()]
            assert _blob_digests(server) == {file["sha256"] for file in retried.json()["files"]}
            assert digest in _blob_digests(server)
        finally:
            server.stop()
    finally:
        if database:
            drop_database(database)


@pytest.mark.s3
def test_a_bucket_never_written_to_holds_no_blobs() -> None:
    """The bucket is made on the first upload; listing it before (gc, these tests) finds nothing."""
    from pseudoword.registry.service.storage import open_store
    from tests.integration.servers import S3_KEY, S3_SECRET

    s3 = MotoS3()
    s3.start()
    try:
        store = open_store(s3.storage_url("never-written"), S3_KEY, S3_SECRET)
        assert list(store.list_blobs()) == []
        digest = hashlib.sha256(b"blob").hexdigest()
        store.put(digest, b"blob")
        assert [blob.sha256 for blob in store.list_blobs()] == [digest]
    finally:
        s3.stop()

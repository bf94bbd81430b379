"""Scale-out without containers: three `pseudoword serve` replicas started at the same moment on one
PostgreSQL database and one S3 server (moto, on loopback), as deploy/ runs them behind a load
balancer. Replicas keep no state of their own: what one accepts, the others serve at once; a
replica that is stopped finishes its in-flight upload and loses nothing.

Replicas `a` and `b` stream blob bytes; `c` answers downloads with presigned redirects
(``PSEUDOWORD_PRESIGNED_DOWNLOADS=1``), so both download paths share the same store.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from pseudoword.registry.client import RegistryClient, VersionRecord
from pseudoword.registry.core import read_embedding
from tests.conftest import require
from tests.integration.api import eventually, random_embedding, sdxl_embedding
from tests.integration.servers import (
    S3_KEY,
    S3_SECRET,
    Server,
    create_database,
    drop_database,
    free_port,
    postgres_available,
    start_server,
    wait_ready,
)

pytestmark = [pytest.mark.postgres, pytest.mark.s3]

ADMIN_TOKEN = "pw_replicas-" + secrets.token_urlsafe(24)


@dataclass
class Cluster:
    replicas: dict[str, Server]
    database_url: str
    bucket: str
    s3_endpoint: str

    def client(self, name: str) -> RegistryClient:
        return RegistryClient(self.replicas[name].url, ADMIN_TOKEN)

    def live(self) -> list[str]:
        return [name for name, server in self.replicas.items() if server.process.poll() is None]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require(postgres_available(), "PostgreSQL is not reachable at 127.0.0.1:5432 (database test)")
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    root = tmp_path_factory.mktemp("replicas")
    token_file = root / "admin.token"  # as a Docker/Kubernetes secret would hand it over
    token_file.write_text(ADMIN_TOKEN + "\n")
    token_file.chmod(0o600)
    database_url = create_database()
    bucket = f"pw-replicas-{secrets.token_hex(4)}"
    shared = {
        "PSEUDOWORD_DATABASE_URL": database_url,
        "PSEUDOWORD_STORAGE_URL": f"s3://127.0.0.1:{port}/{bucket}?secure=false&region=us-east-1",
        "PSEUDOWORD_S3_ACCESS_KEY": S3_KEY,
        "PSEUDOWORD_S3_SECRET_KEY": S3_SECRET,
        "PSEUDOWORD_ADMIN_TOKEN_FILE": str(token_file),
        "PSEUDOWORD_LOG_FORMAT": "json",
    }
    presigned = {"a": "0", "b": "0", "c": "1"}
    replicas: dict[str, Server] = {}
    try:
        # All three at the same moment: each runs the migrations and the admin bootstrap on start.
        for name in "abc":
            replicas[name] = start_server(root / name, {**shared, "PSEUDOWORD_PRESIGNED_DOWNLOADS": presigned[name]},
                                          wait=False)
        for server in replicas.values():
            wait_ready(server, timeout=120)
            server.admin_token = ADMIN_TOKEN
        yield Cluster(replicas, database_url, bucket, f"127.0.0.1:{port}")
    finally:
        for server in replicas.values():
            server.stop(signal.SIGKILL)
        moto.stop()
        drop_database(database_url)


def publish(cluster: Cluster, replica: str, ref: str, data: bytes, **meta: Any) -> VersionRecord:
    with cluster.client(replica) as client:
        result = client.publish(data, id=ref, filename=f"{ref.split(':')[1].split('@')[0]}.safetensors", **meta)
    assert result.created
    return result.record


def search(cluster: Cluster, replica: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{cluster.replicas[replica].url}/api/v1/embeddings", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- start-up -----------------------------------------------------------------------------------

def test_replicas_started_together_migrate_and_bootstrap_exactly_once(cluster: Cluster) -> None:
    import psycopg

    for name, server in cluster.replicas.items():
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        assert ready.status_code == 200, f"replica {name}: {ready.text}"
        assert ready.json()["checks"] == {"database": "ok", "storage": "ok", "disk": "ok"}
        # The admin token from the secret file works on every replica.
        with cluster.client(name) as client:
            tokens = client.list_tokens()
        assert [(t["admin"], t["name"], t["revoked"]) for t in tokens] == [(True, "bootstrap", False)]
    with psycopg.connect(cluster.database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        assert len(versions) == 1, f"migrations collided: {versions}"
        assert conn.execute("SELECT count(*) FROM tokens").fetchone() == (1,)
    for name, server in cluster.replicas.items():
        assert "Traceback" not in server.log.read_text(), f"replica {name} logged an error on start"


# --- one catalogue, whichever replica answers ---------------------------------------------------

def test_a_publish_on_one_replica_is_resolvable_and_downloadable_on_the_others_at_once(cluster: Cluster) -> None:
    source = f"r{secrets.token_hex(4)}"
    data = random_embedding(rows=3, seed=11)
    record = publish(cluster, "a", f"{source}:hands@1", data, trigger="handsfix", tags=["hands"])
    for name in ("b", "c"):
        with cluster.client(name) as client:
            for result in client.resolve([f"{source}:hands", f"{source}:hands@1"]):
                assert result.record == replace(record, downloads=None, files=None), "resolve records carry no count, no files"
            assert client.get_version(f"{source}:hands@1").sha256 == record.sha256
            assert client.by_hash(record.autov2 or "").id == record.id
            downloaded = client.download(record.sha256)  # verifies the digest; c redirects
        assert sha256(downloaded) == record.sha256
        assert read_embedding(downloaded).vectors["emb_params"].shape == (3, 768)
    # The same publish again, through another replica: a no-op, never a second version.
    with cluster.client("b") as client:
        again = client.publish(data, id=f"{source}:hands@1", filename="hands.safetensors", trigger="handsfix",
                               tags=["hands"])
    assert not again.created and again.record.sha256 == record.sha256


def test_a_new_version_or_a_yank_on_one_replica_reaches_what_the_others_have_cached(cluster: Cluster) -> None:
    source = f"r{secrets.token_hex(4)}"
    ref = f"{source}:moving"

    def latest_on(name: str) -> str:
        with cluster.client(name) as client:
            (result,) = client.resolve([ref])
        return result["record"]["version"]

    def soon(name: str, version: str) -> bool:  # NOTIFY takes milliseconds; allow seconds on a busy machine
        deadline = time.monotonic() + 5
        while latest_on(name) != version and time.monotonic() < deadline:
            time.sleep(0.01)
        return latest_on(name) == version

    publish(cluster, "a", f"{ref}@1", random_embedding(rows=1, seed=21), trigger="moving")
    assert [latest_on(name) for name in ("b", "c", "b", "c")] == ["1"] * 4  # b and c now answer from memory
    publish(cluster, "a", f"{ref}@2", random_embedding(rows=1, seed=22), trigger="moving")
    assert soon("b", "2") and soon("c", "2")
    with cluster.client("c") as client:
        client.yank(f"{ref}@2", "broken")
    assert soon("b", "1") and soon("a", "1")
    with cluster.client("b") as client:
        (pinned,) = client.resolve([f"{ref}@2"])
    assert pinned["record"]["yanked"] is True


def test_a_search_on_any_replica_returns_the_same(cluster: Cluster) -> None:
    source = f"s{secrets.token_hex(4)}"
    for index in range(5):
        data = sdxl_embedding(seed=100 + index) if index % 2 else random_embedding(seed=100 + index)
        publish(cluster, "abc"[index % 3], f"{source}:style{index}@1", data, tags=["style"],
                title=f"Watercolour style {index}", description="soft watercolour washes")
    queries = [
        {"source": source},
        {"q": "watercolour", "source": source},
        {"source": source, "architecture": "sdxl"},
        {"tag": "style", "source": source, "sort": "newest"},
    ]
    for params in queries:
        answers = [search(cluster, name, **params) for name in "abc"]
        assert answers[0]["items"], f"nothing found for {params}"
        assert answers[0] == answers[1] == answers[2], f"replicas disagree on {params}"
    assert {item["model"] for item in search(cluster, "a", source=source)["items"]} == {f"style{i}" for i in range(5)}
    # Keyset cursors carry no server state: a page cursor from one replica works on another.
    first = search(cluster, "a", source=source, sort="newest", limit=2)
    assert first["next_cursor"]
    expected = search(cluster, "a", source=source, sort="newest", limit=2, cursor=first["next_cursor"])
    assert search(cluster, "b", source=source, sort="newest", limit=2, cursor=first["next_cursor"]) == expected
    assert not {item["id"] for item in expected["items"]} & {item["id"] for item in first["items"]}


# --- presigned downloads ------------------------------------------------------------------------

def test_a_presigned_redirect_fetches_exactly_the_canonical_bytes(cluster: Cluster) -> None:
    source = f"p{secrets.token_hex(4)}"
    record = publish(cluster, "b", f"{source}:neg@1", random_embedding(rows=2, seed=21), kind="negative")
    digest = record["sha256"]
    streamed = httpx.get(f"{cluster.replicas['a'].url}{record['download_url']}", timeout=30)
    assert streamed.status_code == 200 and sha256(streamed.content) == digest  # `a` streams the bytes

    redirect = httpx.get(f"{cluster.replicas['c'].url}{record['download_url']}", timeout=30)
    assert redirect.status_code == 307
    location = httpx.URL(redirect.headers["location"])
    assert f"{location.host}:{location.port}" == cluster.s3_endpoint  # the bytes come from S3, not `c`
    assert location.path.startswith(f"/{cluster.bucket}/") and location.path.endswith(digest)
    assert "X-Amz-Signature" in location.params
    fetched = httpx.get(location, timeout=30)  # no token: the signature is the permission
    assert fetched.status_code == 200
    assert fetched.content == streamed.content and sha256(fetched.content) == digest
    assert len(fetched.content) == record["size"]
    # The redirect counts as a download, on the shared catalogue (each replica writes its counts
    # in batches, a fifth of a second apart here).
    with cluster.client("a") as client:
        eventually(lambda: client.get_version(record["id"])["downloads"] == 2)


def test_a_bad_blob_request_is_refused_the_same_way_with_redirects_on(cluster: Cluster) -> None:
    for name in ("a", "c"):
        missing = httpx.get(f"{cluster.replicas[name].url}/api/v1/blobs/{'0' * 64}", timeout=30)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        malformed = httpx.get(f"{cluster.replicas[name].url}/api/v1/blobs/not-a-digest", timeout=30)
        assert malformed.status_code == 400 and "location" not in malformed.headers


# --- stopping a replica -------------------------------------------------------------------------

def _multipart(ref: str, data: bytes) -> tuple[bytes, str]:
    boundary = f"pw{secrets.token_hex(12)}"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n"
            f"{json.dumps({'id': ref})}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.safetensors\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _uploads_in_progress(server: Server) -> float:
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("pseudoword_requests_in_progress{") and 'method="POST"' in line
               and "/api/v1/embeddings" in line)


def _refuses_connections(server: Server) -> bool:
    try:
        httpx.get(f"{server.url}/healthz", timeout=2)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False
    return False


def _wait_for(condition, what: str, attempts: int = 600) -> None:  # type: ignore[no-untyped-def]
    for _ in range(attempts):
        if condition():
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"gave up waiting until {what}")


def test_stopping_a_replica_finishes_its_upload_and_loses_nothing(cluster: Cluster) -> None:
    source = f"k{secrets.token_hex(4)}"
    before = [publish(cluster, name, f"{source}:before{name}@1", random_embedding(seed=31 + i))
              for i, name in enumerate("abc")]
    victim = cluster.replicas["a"]
    data = random_embedding(rows=4, seed=41)
    body, content_type = _multipart(f"{source}:inflight@1", data)
    half_sent, release = threading.Event(), threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        half_sent.set()
        release.wait(60)
        yield body[len(body) // 2:]

    with ThreadPoolExecutor(1) as pool:
        upload = pool.submit(httpx.post, f"{victim.url}/api/v1/embeddings", content=slow_body(), timeout=60,
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": content_type,
                                      "Content-Length": str(len(body))})
        try:
            assert half_sent.wait(30), "the upload never started"
            _wait_for(lambda: _uploads_in_progress(victim) >= 1, "the replica is handling the upload")
            victim.process.send_signal(signal.SIGTERM)  # what `docker stop` / a rolling update sends
            _wait_for(lambda: _refuses_connections(victim), "the stopping replica refuses new connections")
        finally:
            release.set()  # the second half of the body goes out only now, after SIGTERM
        response = upload.result(timeout=60)
    assert response.status_code == 201, response.text
    inflight = response.json()
    assert inflight["sha256"] and inflight["vectors"] == 4
    # uvicorn exits by re-raising the SIGTERM once the requests in flight are done (exit 143 in a
    # container); it was never killed.
    assert victim.process.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Traceback" not in victim.log.read_text()

    # Nothing is lost: everything, the in-flight upload included, is served by the others.
    assert cluster.live() == ["b", "c"]
    refs = [record["id"] for record in [*before, inflight]]
    for name in ("b", "c"):
        with cluster.client(name) as client:
            results = client.resolve(refs)
            assert [result["record"]["sha256"] for result in results] == [r["sha256"] for r in [*before, inflight]]
            assert sha256(client.download(inflight["sha256"])) == inflight["sha256"]
    # ... and they keep accepting and serving new work.
    after = publish(cluster, "b", f"{source}:after@1", random_embedding(seed=51))
    with cluster.client("c") as client:
        assert client.get_version(after["id"])["sha256"] == after["sha256"]
    assert search(cluster, "b", source=source) == search(cluster, "c", source=source)
    assert len(search(cluster, "c", source=source)["items"]) == 5

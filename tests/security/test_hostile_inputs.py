"""Every hostile input gets a clear 4xx in our error shape, on both backends: no traceback in the
server's log, nothing stored, and the server's peak memory grows by less than 64 MB for any
upload within the size limit (measured in the server process: /proc/PID/status VmHWM, reset
through /proc/PID/clear_refs before each upload)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.integration.api import error_code, get, publish, random_embedding
from tests.integration.servers import Server
from tests.security.hostile import Raw, hostile_requests, hostile_uploads

#: The bound the issue sets on what one upload within the size limit may cost the server.
PEAK_GROWTH_LIMIT = 64 * 1024 * 1024


def _status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def _blob_digests(server: Server) -> set[str]:
    from pseudoword.registry.service.storage import open_store

    url = server.env.get("PSEUDOWORD_STORAGE_URL") or f"file://{server.data_dir / 'blobs'}"
    store = open_store(url, server.env.get("PSEUDOWORD_S3_ACCESS_KEY"), server.env.get("PSEUDOWORD_S3_SECRET_KEY"))
    return {blob.sha256 for blob in store.list_blobs()}


def _assert_error_shape(response: httpx.Response, status: int, code: str | None, name: str) -> None:
    assert response.status_code == status, (name, response.status_code, response.text[:300])
    if code is not None:
        body = response.json()
        assert set(body["error"]) == {"code", "message", "detail"}, (name, body)
        assert body["error"]["code"] == code, (name, body)
        assert body["error"]["message"], name


def test_hostile_uploads_are_refused_cheaply_and_store_nothing(registry: Server, source: str) -> None:
    log_start = registry.log.stat().st_size
    blobs_before = _blob_digests(registry)
    growth: dict[str, int] = {}
    with httpx.Client(base_url=registry.url, headers=registry.headers(), timeout=60) as client:
        client.get("/healthz")
        for case in hostile_uploads():
            metadata = case.raw_metadata or json.dumps({"id": f"{source}:case@1", **case.metadata})
            metadata = metadata.replace("{source}", source)
            before = _status(registry.process.pid)["VmRSS"]
            Path(f"/proc/{registry.process.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            response = client.post("/api/v1/embeddings", files={"file": (case.filename, case.data)},
                                   data={"metadata": metadata})
            growth[case.name] = _status(registry.process.pid)["VmHWM"] - before
            _assert_error_shape(response, case.status, case.code, case.name)
    worst = max(growth, key=growth.__getitem__)
    print("peak memory growth per upload (MB):", {k: round(v / 2**20, 1) for k, v in growth.items()})
    assert growth[worst] < PEAK_GROWTH_LIMIT, f"{worst}: peak grew by {growth[worst] / 2**20:.1f} MB"
    assert get(registry, "/api/v1/embeddings", params={"source": source}).json()["items"] == []
    assert _blob_digests(registry) == blobs_before, "a refused upload left a blob behind"
    new_log = registry.log.read_bytes()[log_start:].decode(errors="replace")
    assert "Traceback" not in new_log and " 500 " not in new_log, new_log[-3000:]


def test_hostile_requests_get_a_clear_answer(registry: Server, source: str) -> None:
    kept = publish(registry, random_embedding(seed=8), f"{source}:kept@1")
    assert kept.status_code == 201, kept.text
    log_start = registry.log.stat().st_size
    cases: list[Raw] = hostile_requests(source)
    with httpx.Client(base_url=registry.url, timeout=60) as client:
        for case in cases:
            headers = {**case.headers, **(registry.headers() if case.token else {})}
            response = client.request(case.method, case.path, headers=headers, content=case.body)
            _assert_error_shape(response, case.status, case.code, case.name)
    assert [v["version"] for v in get(registry, f"/api/v1/embeddings/{source}/kept").json()["versions"]] == ["1"]
    assert get(registry, f"/api/v1/embeddings/{source}/raw").status_code == 404
    new_log = registry.log.read_bytes()[log_start:].decode(errors="replace")
    assert "Traceback" not in new_log and " 500 " not in new_log, new_log[-3000:]


def test_disk_full_on_a_blob_write_is_507_and_stores_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while writing a blob: 507 insufficient_storage in the error shape, no row, no file."""
    import errno
    import os

    from litestar.testing import TestClient

    from pseudoword.registry.service.app import create_app
    from pseudoword.registry.service.auth import bootstrap_admin
    from pseudoword.registry.service.settings import Settings

    app = create_app(Settings(data_dir=tmp_path, rate_limit="off", publish_rate_limit="off"))
    secret = bootstrap_admin(app.state.catalogue.engine, tmp_path, None)
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with TestClient(app) as client:
        monkeypatch.setattr(os, "fsync", full_disk)
        response = client.post("/api/v1/embeddings", headers={"Authorization": f"Bearer {secret}"},
                               files={"file": ("e.safetensors", random_embedding(seed=9))},
                               data={"metadata": json.dumps({"id": "studio:full@1"})})
        monkeypatch.setattr(os, "fsync", real_fsync)
        assert response.status_code == 507 and error_code(response) == "insufficient_storage", response.text
        assert response.headers["retry-after"]
        assert client.get("/api/v1/embeddings/studio/full/1").status_code == 404
    assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_slow_client_gets_408_within_the_read_timeout(backend: object, registry: Server) -> None:
    """A body that never finishes arriving holds the server for PSEUDOWORD_READ_TIMEOUT at most."""
    import socket
    import time

    timeout = float(registry.env["PSEUDOWORD_READ_TIMEOUT"])
    host, port = registry.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout + 10) as sock:
        sock.sendall(b"POST /api/v1/resolve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"refs\": [")
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"request_timeout"' in answer
    assert timeout - 0.5 <= elapsed < timeout + 3, elapsed

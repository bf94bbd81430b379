"""Per-client rate limits: a client over its budget gets 429 ``too_many_requests`` with
Retry-After in our error shape while other clients are served; with two workers and a Redis store
the budget is one for the whole server (a per-process count would let twice as many through)."""

from __future__ import annotations

import secrets
import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import require
from tests.integration.api import publish, random_embedding
from tests.integration.servers import start_server

LIMIT = 12


def _redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2).ping())
    except Exception:  # noqa: BLE001 - any failure: not available
        return False


@pytest.mark.slow  # one of the slowest (a subprocess or a real pipeline); CI runs it
def test_a_client_over_its_limit_gets_429_while_others_are_served(tmp_path: Path) -> None:
    require(_redis_available(), "Redis is not reachable at 127.0.0.1:6379")
    db = secrets.randbelow(15) + 1  # a Redis database of its own, emptied first
    import redis

    redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()
    server = start_server(tmp_path / "data", {
        "PSEUDOWORD_RATE_LIMIT": f"{LIMIT}/minute", "PSEUDOWORD_PUBLISH_RATE_LIMIT": "2/minute",
        "PSEUDOWORD_RATE_LIMIT_STORE": f"redis://127.0.0.1:6379/{db}"}, args=("--workers", "2"))
    try:
        # uvicorn trusts X-Forwarded-For from 127.0.0.1 (a load balancer there): one address per client.
        busy, calm = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "203.0.113.8"}
        with httpx.Client(base_url=server.url, timeout=30) as http:
            answers = [http.get("/api/v1/embeddings", headers=busy) for _ in range(LIMIT + 3)]
            statuses = [r.status_code for r in answers]
            # Two workers share one count: exactly LIMIT requests pass, wherever they landed.
            assert statuses == [200] * LIMIT + [429] * 3, statuses
            refused = answers[-1]
            assert refused.json()["error"]["code"] == "too_many_requests"
            assert set(refused.json()["error"]) == {"code", "message", "detail"}
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            assert http.get("/api/v1/embeddings", headers=calm).status_code == 200  # another client is served
            assert http.get("/healthz", headers=busy).status_code == 200  # probes are never limited
            # Publishes have their own, smaller budget.
            for n in range(2):
                assert publish(server, random_embedding(seed=n), f"studio:limited@{n}").status_code == 201
            third = publish(server, random_embedding(seed=3), "studio:limited@3")
            assert third.status_code == 429 and third.headers["retry-after"]
    finally:
        server.stop(signal.SIGTERM)

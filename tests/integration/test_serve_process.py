"""`pseudoword serve` as a process: several workers, and JSON-lines logs from the first line on."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from tests.integration.api import publish, random_embedding, resolve
from tests.integration.servers import start_server


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.slow  # one of the slowest (a subprocess or a real pipeline); CI runs it
def test_workers_share_one_catalogue_and_log_json(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", {"PSEUDOWORD_LOG_FORMAT": "json"}, args=("--workers", "2"))
    try:
        # uvicorn's supervisor: its worker processes (plus, on some versions, a resource tracker).
        assert len(_children(server.process.pid)) >= 2
        created = publish(server, random_embedding(seed=5), "studio:workers@1")
        assert created.status_code == 201, created.text
        # Every worker answers from the same database: no request sees the model missing.
        for _ in range(20):
            (result,) = resolve(server, ["studio:workers"])
            assert result["record"]["sha256"] == created.json()["sha256"], result
    finally:
        server.stop(signal.SIGTERM)
    lines = [line for line in server.log.read_text().splitlines() if line.strip()]
    # The admin token announcement is the one plain-text message (stderr, shown once, never logged).
    logged = [line for line in lines if line.startswith("{")]
    assert logged and all(json.loads(line)["level"] for line in logged)
    startup = [json.loads(line) for line in logged if "pseudoword registry on" in line]
    assert len(startup) == 1 and "2 workers" in startup[0]["message"], startup
    assert server.admin_token and all(server.admin_token not in line for line in logged)


def test_two_servers_on_one_data_dir_never_answer_from_a_stale_cache(tmp_path: Path) -> None:
    """Each process caches resolves; SQLite's data_version tells it of the other's commits at once."""
    first, second = start_server(tmp_path / "data"), start_server(tmp_path / "data")
    second.admin_token = first.admin_token
    try:
        assert publish(first, random_embedding(seed=6), "studio:moving@1").status_code == 201
        for _ in range(3):  # the second server now answers from memory
            assert resolve(second, ["studio:moving"])[0]["record"]["version"] == "1"
        assert publish(first, random_embedding(seed=7), "studio:moving@2").status_code == 201
        assert resolve(second, ["studio:moving"])[0]["record"]["version"] == "2"
        yank = httpx.post(f"{first.url}/api/v1/embeddings/studio/moving/2/yank", headers=first.headers(),
                          json={"reason": "broken"})
        assert yank.status_code == 200
        latest, pinned = resolve(second, ["studio:moving", "studio:moving@2"])
        assert latest["record"]["version"] == "1" and pinned["record"]["yanked"] is True
    finally:
        first.stop(signal.SIGTERM)
        second.stop(signal.SIGTERM)


def test_resolve_cache_can_be_turned_off(tmp_path: Path) -> None:
    """PSEUDOWORD_RESOLVE_CACHE=0 (for replicas behind a transaction pooler): every resolve queries."""
    from pseudoword.registry.service.app import create_app
    from pseudoword.registry.service.settings import Settings

    for enabled in (True, False):
        settings = Settings(data_dir=tmp_path / str(enabled), resolve_cache=enabled)
        catalogue = create_app(settings).state.catalogue
        created = publish_in_process(catalogue, "studio:x@1")
        catalogue.resolve(["studio:x"])
        assert (catalogue.resolve_cached(["studio:x"]) is not None) is enabled
        assert catalogue.resolve(["studio:x"])[0].record.sha256 == created.sha256  # type: ignore[union-attr]
        catalogue.resolve_cache.close()
        catalogue.engine.dispose()


def publish_in_process(catalogue, ref: str):  # type: ignore[no-untyped-def]  # -> VersionRecord
    from pseudoword.registry.service.catalogue import parse_metadata

    record, created = catalogue.publish(parse_metadata(json.dumps({"id": ref}), catalogue.settings),
                                        random_embedding(seed=9), "x.safetensors")
    assert created
    return record

"""The resolve cache: repeated refs cost no query, and a change committed by anyone else (another
connection, process or replica) is never answered from it, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event

from pseudoword.registry.core.errors import PseudowordError
from pseudoword.registry.core.record import VersionRecord
from pseudoword.registry.core.refs import parse_model_ref
from pseudoword.registry.service.catalogue import Catalogue, parse_metadata
from pseudoword.registry.service.db import make_engine, migrate
from pseudoword.registry.service.resolve_cache import (
    CHANNEL,
    NoWatcher,
    PostgresWatcher,
    ResolveCache,
    watcher_for,
)
from pseudoword.registry.service.settings import Settings
from pseudoword.registry.service.storage import open_store
from tests.integration.api import random_embedding

#: How long another PostgreSQL replica may take to hear of a change (NOTIFY travels in about a millisecond).
NOTIFY_WAIT = 5.0


def _catalogue(url: str, tmp_path: Path, cached: bool) -> Catalogue:
    """A catalogue as one replica holds it; each call has its own engine, like another process."""
    settings = Settings(data_dir=tmp_path, database_url=url)
    engine = make_engine(url)
    migrate(engine)
    cache = ResolveCache(watcher_for(engine) if cached else NoWatcher())
    if isinstance(cache.watcher, PostgresWatcher):
        assert cache.watcher.wait_listening(10), "the change listener never connected"
    return Catalogue(engine, open_store(settings.effective_storage_url, None, None), settings, cache)


@pytest.fixture()
def replicas(database_url: str, tmp_path: Path) -> Iterator[tuple[Catalogue, Catalogue]]:
    """(reader, writer): the reader caches resolves, the writer changes the catalogue beside it."""
    reader, writer = _catalogue(database_url, tmp_path, True), _catalogue(database_url, tmp_path, False)
    yield reader, writer
    for catalogue in (reader, writer):
        catalogue.resolve_cache.close()
        catalogue.engine.dispose()


def _publish(catalogue: Catalogue, ref: str, seed: int) -> VersionRecord:
    meta = parse_metadata(json.dumps({"id": ref, "trigger": "word"}), catalogue.settings)
    record, created = catalogue.publish(meta, random_embedding(seed=seed), "emb.safetensors")
    assert created
    return record


def _heard(reader: Catalogue, change: Callable[[], Any]) -> Any:
    """Make a change and, on PostgreSQL, wait until the reader's listener has heard it, so what the
    reader caches next is not emptied a moment later by a notification still on its way."""
    watcher = reader.resolve_cache.watcher
    before = watcher.notifications if isinstance(watcher, PostgresWatcher) else 0
    result = change()
    if isinstance(watcher, PostgresWatcher):
        deadline = time.monotonic() + NOTIFY_WAIT
        while watcher.notifications == before and time.monotonic() < deadline:
            time.sleep(0.005)
        assert watcher.notifications > before, "the reader never heard of the change"
    return result


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def _eventually(check: Callable[[], bool], is_sqlite: bool) -> bool:
    """SQLite sees other connections' commits at once; PostgreSQL replicas once NOTIFY arrives."""
    deadline = time.monotonic() + (0 if is_sqlite else NOTIFY_WAIT)
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _latest_version(catalogue: Catalogue, ref: str) -> str | None:
    (result,) = catalogue.resolve([ref])
    return result.record.version if result.record else None


def test_a_repeated_resolve_runs_no_query_and_gives_the_same_answer(replicas: tuple[Catalogue, Catalogue]) -> None:
    reader, writer = replicas
    record = _heard(reader, lambda: _publish(writer, "studio:cached@1", seed=1))
    refs = ["studio:cached", "studio:cached@1", f"sha256:{record.sha256}", record.autov2]
    first = reader.resolve(refs)
    assert [r.record.id for r in first if r.record] == ["studio:cached@1"] * 4
    statements = _statements(reader.engine)
    assert reader.resolve_cached(refs) == first
    assert reader.resolve(refs) == first
    assert statements == []
    # An unknown ref is never cached: asked again it queries again (and a publish makes it appear).
    assert reader.resolve(["studio:other"])[0].error is not None
    assert len(statements) == 1
    assert reader.resolve_cached(["studio:cached", "studio:other"]) is None


def test_a_change_committed_elsewhere_is_never_answered_from_the_cache(
        replicas: tuple[Catalogue, Catalogue]) -> None:
    reader, writer = replicas
    is_sqlite = reader.engine.dialect.name == "sqlite"
    _heard(reader, lambda: _publish(writer, "studio:moving@1", seed=1))
    assert _latest_version(reader, "studio:moving") == "1"
    assert reader.resolve_cached(["studio:moving"]) is not None
    # A new version elsewhere: latest moves.
    _publish(writer, "studio:moving@2", seed=2)
    assert _eventually(lambda: _latest_version(reader, "studio:moving") == "2", is_sqlite)
    # A yank elsewhere: latest falls back, and the pinned record says yanked.
    assert reader.resolve(["studio:moving@2"])[0].record.yanked is False  # type: ignore[union-attr]
    writer.set_yanked(parse_model_ref("studio:moving@2"), True, "broken")
    assert _eventually(lambda: reader.resolve(["studio:moving@2"])[0].record.yanked is True, is_sqlite)
    assert _latest_version(reader, "studio:moving") == "1"


def test_a_download_leaves_every_resolve_cache_as_it_was(replicas: tuple[Catalogue, Catalogue]) -> None:
    """Download counts are no part of a resolved record: writing them runs no query in a reader."""
    reader, writer = replicas
    record = _heard(reader, lambda: _publish(writer, "studio:popular@1", seed=3))
    refs = ["studio:popular", "studio:popular@1"]
    first = reader.resolve(refs)
    assert all(r.record and r.record.downloads is None and "downloads" not in r.to_wire()["record"] for r in first)
    statements = _statements(reader.engine)
    for catalogue in (writer, reader):  # a download on another replica, and on this one
        for _ in range(3):
            catalogue.count_download(catalogue.version_row(parse_model_ref("studio:popular@1")))
        assert catalogue.downloads.flush()
    assert writer.get_version(parse_model_ref("studio:popular@1"))["downloads"] == 6
    time.sleep(0 if reader.engine.dialect.name == "sqlite" else 0.5)  # a notification would have arrived
    statements.clear()
    assert reader.resolve(refs) == first
    assert statements == [], "a download emptied the resolve cache"
    assert first[1].record and record.sha256 == first[1].record.sha256


def test_a_change_in_this_process_is_seen_by_its_next_resolve(database_url: str, tmp_path: Path) -> None:
    catalogue = _catalogue(database_url, tmp_path, True)
    try:
        _publish(catalogue, "studio:own@1", seed=1)
        assert _latest_version(catalogue, "studio:own") == "1"
        _publish(catalogue, "studio:own@2", seed=2)
        assert _latest_version(catalogue, "studio:own") == "2"  # no waiting, on either database
        catalogue.set_yanked(parse_model_ref("studio:own@2"), True, None)
        assert _latest_version(catalogue, "studio:own") == "1"
    finally:
        catalogue.resolve_cache.close()
        catalogue.engine.dispose()


def test_postgres_listener_lost_turns_the_cache_off_until_it_is_back(postgres_url: str, tmp_path: Path) -> None:
    catalogue = _catalogue(postgres_url, tmp_path, True)
    watcher = catalogue.resolve_cache.watcher
    assert isinstance(watcher, PostgresWatcher)
    watcher._retry = 0.2  # reconnect quickly for the test
    try:
        _heard(catalogue, lambda: _publish(catalogue, "studio:lost@1", seed=1))
        catalogue.resolve(["studio:lost"])
        assert catalogue.resolve_cached(["studio:lost"]) is not None
        conninfo = postgres_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, autocommit=True) as admin:
            killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND query = %s",
                                   (f"LISTEN {CHANNEL}",)).fetchall()
            assert killed == [(True,)]
            deadline = time.monotonic() + NOTIFY_WAIT
            while watcher.generation() is not None and time.monotonic() < deadline:
                time.sleep(0.01)
            # Changes made while nobody listens are not missed: the cache is off meanwhile...
            assert watcher.generation() is None and catalogue.resolve_cached(["studio:lost"]) is None
            admin.execute("UPDATE versions SET title = 'changed while deaf'")
        assert catalogue.resolve(["studio:lost"])[0].record.title == "changed while deaf"  # type: ignore[union-attr]
        # ...and on again once the listener is back.
        assert watcher.wait_listening(NOTIFY_WAIT)
        catalogue.resolve(["studio:lost"])
        assert catalogue.resolve_cached(["studio:lost"])[0].record.title == "changed while deaf"  # type: ignore[index,union-attr]
    finally:
        catalogue.resolve_cache.close()
        catalogue.engine.dispose()


# -- the cache itself ------------------------------------------------------------------------------


class _Counter:
    def __init__(self) -> None:
        self.value: int | None = 0

    def generation(self) -> int | None:
        return self.value

    def bump(self) -> None:
        assert self.value is not None
        self.value += 1

    def close(self) -> None:
        pass


def test_the_cache_is_bounded_and_refuses_records_read_before_a_change() -> None:
    watcher = _Counter()
    cache = ResolveCache(watcher, max_entries=3)
    generation = cache.current()
    for i in range(5):
        cache.put(f"s:m{i}", {"i": i}, generation)
    assert [cache.get(f"s:m{i}") for i in range(5)] == [None, None, {"i": 2}, {"i": 3}, {"i": 4}]
    stale = cache.current()
    cache.changed()  # a write between the read and the put
    cache.put("s:late", {"late": True}, stale)
    assert cache.get("s:late") is None and cache.get("s:m4") is None
    watcher.value = None  # the watcher cannot vouch: nothing is kept
    assert cache.current() is None
    cache.put("s:x", {}, None)
    assert cache.get("s:x") is None


def test_an_unreadable_ref_is_still_a_per_ref_error(replicas: tuple[Catalogue, Catalogue]) -> None:
    reader, _writer = replicas
    (result,) = reader.resolve(["not a ref"])
    assert result.error and result.error["code"] == "invalid_reference"
    assert reader.resolve_cached(["not a ref"]) is None
    with pytest.raises(PseudowordError, match="at most"):
        reader.resolve(["x:y"] * (reader.settings.max_resolve_refs + 1))
    assert reader.resolve_cached(["x:y"] * (reader.settings.max_resolve_refs + 1)) is None

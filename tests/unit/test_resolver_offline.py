"""Resolver offline (``PSEUDOWORD_OFFLINE=1``): cached refs are served with no network, others
are refused clearly; and several processes sharing one cache."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from pseudoword.registry.core.errors import IntegrityError, LocalNotFound
from pseudoword.runtime.resolver import Resolver
from tests.unit.resolver_fakes import FakeRegistry, make_embedding, sha256


def populated() -> FakeRegistry:
    fake = FakeRegistry()
    fake.add("acme:style@1", make_embedding(1), created_at="2026-01-01T00:00:00Z")
    fake.add("acme:style@2", make_embedding(2), created_at="2026-01-02T00:00:00Z")
    fake.add("acme:style@3", make_embedding(5), created_at="2026-01-03T00:00:00Z", yanked=True)
    fake.add("acme:other@1", make_embedding(3))
    return fake


@pytest.fixture
def warm_cache(tmp_path: Path) -> Path:
    """A cache holding acme:style@1, @2 and the yanked @3, filled online."""
    cache = tmp_path / "cache"
    with Resolver(populated().client(), cache_dir=cache, offline=False) as online:
        online.resolve(["acme:style@1", "acme:style@2", "acme:style@3"])
    return cache


@pytest.fixture
def offline(warm_cache: Path, monkeypatch) -> tuple[Resolver, FakeRegistry]:
    fake = populated()
    fake.down = True  # any request would fail loudly
    monkeypatch.setenv("PSEUDOWORD_OFFLINE", "1")
    return Resolver(fake.client(), cache_dir=warm_cache), fake


def test_offline_serves_cached_refs_without_any_request(offline):
    resolver, fake = offline
    assert resolver.offline is True  # from PSEUDOWORD_OFFLINE
    record = resolver.resolve(["acme:style@1"])[0].record
    got = resolver.resolve(["acme:style@1", "acme:style", f"sha256:{record['sha256']}", record["autov2"],
                            "acme:style@3"])
    assert [r.id for r in got] == ["acme:style@1", "acme:style@2", "acme:style@1", "acme:style@1", "acme:style@3"]
    assert got[1].embedding().num_vectors == 2
    assert got[4].record["yanked"] is True, "a yanked version still resolves when pinned exactly"
    assert fake.requests == []


def test_offline_refuses_uncached_refs_clearly(offline):
    resolver, fake = offline
    with pytest.raises(LocalNotFound, match=r"acme:other@1: not in the cache .*offline mode"):
        resolver.resolve(["acme:style@1", "acme:other@1"])
    with pytest.raises(LocalNotFound, match="acme:other"):
        resolver.resolve(["acme:other"])
    assert fake.requests == []


def test_offline_detects_a_corrupted_file_and_does_not_serve_it(offline, warm_cache):
    resolver, _ = offline
    path = resolver.resolve(["acme:style@1"])[0].path
    path.write_bytes(b"garbage")
    with pytest.raises(IntegrityError, match="acme:style@1: cached file .* is corrupted"):
        resolver.resolve(["acme:style@1"])
    assert path.read_bytes() == b"garbage", "offline, nothing is deleted or replaced"


def test_offline_blob_missing_but_record_cached_is_refused(offline):
    resolver, _ = offline
    path = resolver.resolve(["acme:style@2"])[0].path
    path.unlink()
    with pytest.raises(LocalNotFound, match="the file of acme:style@2 is not in the cache"):
        resolver.resolve(["acme:style"])


def _resolve_in_process(cache_dir: str, queue) -> None:  # runs in a child process
    fake = populated()
    fake.delay = 0.3  # a slow download, so the two processes overlap
    with Resolver(fake.client(), cache_dir=cache_dir, offline=False) as resolver:
        got = resolver.resolve(["acme:style@1", "acme:style@2", "acme:other@1"])
    queue.put(([r.sha256 for r in got], fake.downloads()))


@pytest.mark.slow  # one of the slowest (a subprocess or a real pipeline); CI runs it
def test_two_processes_resolving_the_same_refs_leave_one_intact_entry(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_resolve_in_process, args=(str(tmp_path), queue)) for _ in range(2)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    digests = results[0][0]
    assert results[1][0] == digests
    assert sum(count for _, count in results) == 3, "the file lock lets exactly one process download each blob"
    files = sorted(p for p in (tmp_path / "blobs").rglob("*") if p.is_file())
    assert [p.name for p in files] == sorted(digests)
    assert all(sha256(p.read_bytes()) == p.name for p in files)
    assert not list(tmp_path.rglob("*.tmp"))

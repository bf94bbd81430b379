"""Lockfiles: which refs a request names, the document written, and the resolver honouring it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pseudoword.registry.core.errors import IntegrityError, InvalidRequest
from pseudoword.runtime.lock import build_lock, default_lock_path, load_pins, refs_in_request
from pseudoword.runtime.resolver import Resolver
from tests.unit.resolver_fakes import FakeRegistry, make_embedding


@pytest.fixture
def registry() -> FakeRegistry:
    fake = FakeRegistry()
    fake.add("acme:style@1", make_embedding(1), created_at="2026-01-01T00:00:00Z")
    fake.add("acme:other@1", make_embedding(3))
    return fake


def test_refs_in_request_reads_single_batched_and_plain_forms():
    request = {"positivePrompt": "x", "embeddings": [{"model": "acme:style", "weight": 1},
                                                     {"path": "local.pt", "weight": -1},
                                                     {"model": "acme:other@1", "weight": 0.5}]}
    assert refs_in_request(request) == ["acme:style", "acme:other@1"]
    assert refs_in_request([request, {"embeddings": [{"model": "acme:style"}, {"model": "b:c"}]}]) == [
        "acme:style", "acme:other@1", "b:c"]
    assert refs_in_request({"refs": ["a:b@1"]}) == ["a:b@1"]
    assert refs_in_request({"positivePrompt": "no embeddings"}) == []
    assert default_lock_path(Path("/x/request.json")) == Path("/x/request.lock.json")


def test_lock_pins_the_latest_and_the_resolver_keeps_it_after_a_new_version(registry, tmp_path):
    with Resolver(registry.client(), cache_dir=tmp_path / "cache", offline=False) as resolver:
        records = resolver.lookup(["acme:style", "acme:other@1"])
    assert registry.downloads() == 0, "locking downloads nothing"
    lock = build_lock(zip(["acme:style", "acme:other@1"], records), "http://registry.test")
    assert lock["pins"]["acme:style"]["id"] == "acme:style@1"
    assert lock["pins"]["acme:style"]["sha256"] == registry.records["acme:style@1"]["sha256"]
    lock_path = tmp_path / "request.lock.json"
    lock_path.write_text(json.dumps(lock))

    registry.add("acme:style@2", make_embedding(2), created_at="2026-02-01T00:00:00Z")
    with Resolver(registry.client(), cache_dir=tmp_path / "cache", offline=False) as unlocked:
        assert unlocked.resolve(["acme:style"])[0].id == "acme:style@2"
    with Resolver(registry.client(), cache_dir=tmp_path / "cache", offline=False, lockfile=lock_path) as locked:
        got = locked.resolve(["acme:style", "acme:other@1"])
    assert [r.id for r in got] == ["acme:style@1", "acme:other@1"]
    assert got[0].ref == "acme:style"


def test_a_digest_other_than_the_pinned_one_is_refused(registry, tmp_path):
    lock = {"lockfile_version": 1, "pins": {"acme:style": {"id": "acme:style@1", "sha256": "ab" * 32}}}
    with Resolver(registry.client(), cache_dir=tmp_path, offline=False, lockfile=lock) as resolver:
        with pytest.raises(IntegrityError, match="lockfile pins acme:style@1 to sha256 abab"):
            resolver.resolve(["acme:style"])
    assert not (tmp_path / "blobs").exists(), "nothing downloaded for a refused pin"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"pins": []}, "no 'pins' object"),
        ({"lockfile_version": 99, "pins": {}}, "lockfile_version 99"),
        ({"pins": {"a:b": {"id": "a:b@1"}}}, "needs 'id' and 'sha256'"),
    ],
)
def test_malformed_lockfiles_are_clear_errors(document, message, tmp_path):
    with pytest.raises(InvalidRequest, match=message):
        load_pins(document)
    bad = tmp_path / "bad.lock.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        Resolver("http://registry.test", cache_dir=tmp_path, lockfile=bad)

"""Resolver online: one batch request, verified content-addressed cache, corruption repair,
typed errors naming the reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pseudoword.registry.core.errors import (
    ArchitectureMismatch,
    IntegrityError,
    InvalidReference,
    PseudowordError,
    RegistryUnreachable,
    RemoteNotFound,
)
from pseudoword.runtime.cache import Cache
from pseudoword.runtime.resolver import ResolvedEmbedding, Resolver
from tests.unit.resolver_fakes import FakeRegistry, make_embedding, sha256


@pytest.fixture
def registry() -> FakeRegistry:
    fake = FakeRegistry()
    fake.add("acme:style@1", make_embedding(1), trigger="acme-style", created_at="2026-01-01T00:00:00Z")
    fake.add("acme:style@2", make_embedding(2, n=3), trigger="acme-style", created_at="2026-01-02T00:00:00Z")
    fake.add("acme:xl@1", make_embedding(3, "sdxl"), trigger="xlword")
    fake.add("acme:neg@1", make_embedding(4, "sd2"), kind="negative")
    return fake


@pytest.fixture
def resolver(registry: FakeRegistry, tmp_path: Path) -> Resolver:
    return Resolver(registry.client(), cache_dir=tmp_path / "cache", offline=False)


def blob_files(cache_dir: Path) -> list[Path]:
    return sorted(p for p in (cache_dir / "blobs").rglob("*") if p.is_file())


def test_batch_resolution_downloads_each_blob_once_into_the_layout(registry, resolver, tmp_path):
    refs = ["acme:style@1", "acme:xl@1", "acme:style@1", "urn:air:sd2:embedding:acme:neg@1"]
    resolved = resolver.resolve(refs)

    assert [r.ref for r in resolved] == refs
    assert [r.id for r in resolved] == ["acme:style@1", "acme:xl@1", "acme:style@1", "acme:neg@1"]
    assert registry.count("POST /api/v1/resolve") == 1
    assert registry.downloads() == 3  # the repeated ref is fetched once
    for item in resolved:
        digest = item.record["sha256"]
        assert item.path == tmp_path / "cache" / "blobs" / "sha256" / digest[:2] / digest
        assert sha256(item.path.read_bytes()) == digest
    assert torch.equal(resolved[0].embedding().vectors["emb_params"], make_embedding(1).vectors["emb_params"])
    assert resolved[1].embedding().architecture == "sdxl"
    assert resolved[3].kind == "negative" and resolved[1].trigger == "xlword"
    assert not list((tmp_path / "cache").rglob("*.tmp")), "no temporary file is left behind"


def test_cached_exact_versions_need_no_network_but_unpinned_refs_ask(registry, resolver):
    resolver.resolve(["acme:style@1", "acme:xl@1"])
    registry.requests.clear()

    again = resolver.resolve(["acme:style@1", "acme:xl@1"])
    assert registry.requests == [], "exact versions in the cache are immutable: no request"
    assert [r.id for r in again] == ["acme:style@1", "acme:xl@1"]

    latest = resolver.resolve(["acme:style"])[0]
    assert latest.id == "acme:style@2", "unpinned means the newest non-yanked version"
    assert registry.count("POST /api/v1/resolve") == 1
    assert registry.downloads() == 1  # style@2 was not cached yet

    registry.requests.clear()
    resolver.resolve(["acme:style"])
    assert registry.requests == ["POST /api/v1/resolve"], "unpinned asks again, the blob is cached"


def test_hash_refs_resolve_and_are_served_from_cache_afterwards(registry, resolver):
    record = registry.records["acme:style@1"]
    by_hash = resolver.resolve([f"sha256:{record['sha256']}"])[0]
    assert by_hash.id == "acme:style@1"
    registry.requests.clear()
    for ref in (record["sha256"], record["autov2"], record["a1111_hash"], f"autov2:{record['autov2']}"):
        assert resolver.resolve([ref])[0].id == "acme:style@1"
    assert registry.requests == []


def test_corrupted_cache_file_is_detected_and_fetched_again(registry, resolver):
    first = resolver.resolve(["acme:style@1"])[0]
    good = first.path.read_bytes()
    first.path.write_bytes(good[:-8] + b"corrupt!")
    with pytest.raises(IntegrityError, match="changed since it was resolved"):
        first.embedding()  # reading re-checks the digest

    registry.requests.clear()
    again = resolver.resolve(["acme:style@1"])[0]
    assert registry.downloads() == 1, "the corrupt file was downloaded again"
    assert again.path.read_bytes() == good
    assert again.embedding().num_vectors == 2


def test_wrong_bytes_from_the_registry_are_refused_and_not_cached(registry, resolver, tmp_path):
    registry.corrupt = True
    with pytest.raises(IntegrityError, match="acme:style@1"):
        resolver.resolve(["acme:style@1"])
    assert blob_files(tmp_path / "cache") == []
    registry.corrupt = False
    assert resolver.resolve(["acme:style@1"])[0].embedding().num_vectors == 2


def test_unknown_ref_raises_not_found_naming_it_and_batch_mode_keeps_the_others(registry, resolver):
    with pytest.raises(RemoteNotFound, match=r"^acme:nope@1: "):
        resolver.resolve(["acme:style@1", "acme:nope@1"])

    results = resolver.resolve_many(["acme:style@1", "acme:nope@1", "acme:xl"], raise_errors=False)
    assert isinstance(results[0], ResolvedEmbedding) and results[0].id == "acme:style@1"
    assert isinstance(results[1], RemoteNotFound) and results[1].detail["ref"] == "acme:nope@1"
    assert isinstance(results[2], ResolvedEmbedding) and results[2].id == "acme:xl@1"


def test_air_with_the_wrong_architecture_is_an_error(registry, resolver, tmp_path):
    with pytest.raises(ArchitectureMismatch, match="urn:air:sd1:embedding:acme:xl@1"):
        resolver.resolve(["urn:air:sd1:embedding:acme:xl@1"])
    resolver.resolve(["acme:xl@1"])  # now cached: the check also holds without the registry
    registry.down = True
    with pytest.raises(ArchitectureMismatch, match="sdxl"):
        resolver.resolve(["urn:air:sd1:embedding:acme:xl@1"])


def test_invalid_reference_fails_before_any_request(registry, resolver, tmp_path):
    with pytest.raises(InvalidReference, match="Not A Ref"):
        resolver.resolve(["acme:style@1", "Not A Ref"])
    assert registry.requests == []
    assert not (tmp_path / "cache" / "blobs").exists()


def test_unreachable_registry_serves_cached_refs_and_names_the_others(registry, resolver):
    resolver.resolve(["acme:style@1", "acme:style"])
    registry.down = True
    got = resolver.resolve(["acme:style@1", "acme:style"])
    assert [r.id for r in got] == ["acme:style@1", "acme:style@2"]
    with pytest.raises(RegistryUnreachable, match=r"acme:xl@1: registry unreachable and nothing cached"):
        resolver.resolve(["acme:style@1", "acme:xl@1"])


def test_cache_refuses_bytes_that_do_not_match_and_unsafe_names(tmp_path):
    cache = Cache(tmp_path)
    with pytest.raises(IntegrityError):
        cache.put_blob("0" * 64, b"data")
    with pytest.raises(PseudowordError):
        cache.blob_path("../../etc/passwd")
    assert cache.get_record("..", "x", "1") is None
    assert not any(tmp_path.rglob("*"))

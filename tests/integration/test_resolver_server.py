"""The Resolver against a real `pseudoword serve`: batch resolution, a corrupted cache file
fetched again, offline mode from the cache, and two processes filling one cache at once."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from pseudoword.registry.core.errors import LocalNotFound, RegistryUnreachable
from pseudoword.runtime.resolver import Resolver
from tests.integration.cli_server import LiveRegistry, free_port, live_registry  # noqa: F401

FILES = {"rs:easy@1": "EasyNegative.safetensors", "rs:xl@1": "zPDXL.pt", "rs:nfixer@1": "nfixer.pt",
         "rs:hands@1": "bad-artist.pt"}  # not bad-hands-5: the CLI tests look that one up by hash


@pytest.fixture(scope="module")
def published(live_registry: LiveRegistry, embeddings_dir: Path) -> dict[str, dict]:
    from pseudoword.registry.client import RegistryClient

    with RegistryClient(live_registry.url, live_registry.admin_token) as client:
        return {ref: client.publish(embeddings_dir / name, id=ref, filename=name).record for ref, name in FILES.items()}


def test_resolve_downloads_verified_canonical_files(live_registry, published, tmp_path):
    with Resolver(live_registry.url, cache_dir=tmp_path, offline=False) as resolver:
        got = resolver.resolve(["rs:easy", "urn:air:sdxl:embedding:rs:xl@1", f"sha256:{published['rs:nfixer@1']['sha256']}"])
    assert [r.id for r in got[:2]] == ["rs:easy@1", "rs:xl@1"]
    assert got[2].sha256 == published["rs:nfixer@1"]["sha256"]  # (the corpus import may hold the same file)
    for item in got:
        assert hashlib.sha256(item.path.read_bytes()).hexdigest() == item.record["sha256"]
    assert got[1].embedding().architecture == "sdxl" and got[2].embedding().architecture == "sd2"


def test_corrupted_cache_file_is_fetched_again(live_registry, published, tmp_path):
    with Resolver(live_registry.url, cache_dir=tmp_path, offline=False) as resolver:
        path = resolver.resolve(["rs:hands@1"])[0].path
        path.write_bytes(b"corrupted")
        again = resolver.resolve(["rs:hands@1"])[0]
    assert again.path == path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == published["rs:hands@1"]["sha256"]
    assert again.embedding().num_vectors == 2


def test_offline_serves_cached_refs_and_refuses_others(live_registry, published, tmp_path):
    with Resolver(live_registry.url, cache_dir=tmp_path, offline=False) as online:
        online.resolve(["rs:easy@1", "rs:xl"])
    down = f"http://127.0.0.1:{free_port()}"
    with Resolver(down, cache_dir=tmp_path, offline=True) as offline:
        assert [r.id for r in offline.resolve(["rs:easy@1", "rs:xl"])] == ["rs:easy@1", "rs:xl@1"]
        with pytest.raises(LocalNotFound, match="rs:nfixer@1"):
            offline.resolve(["rs:nfixer@1"])
    with Resolver(down, cache_dir=tmp_path, offline=False) as unreachable:
        with pytest.raises(RegistryUnreachable, match="rs:nfixer@1: registry unreachable and nothing cached"):
            unreachable.resolve(["rs:easy@1", "rs:nfixer@1"])


_CHILD = """
import sys
from pseudoword.runtime.resolver import Resolver
with Resolver(sys.argv[1], cache_dir=sys.argv[2], offline=False) as resolver:
    for item in resolver.resolve(sys.argv[3:]):
        print(item.sha256, item.embedding().num_vectors)
"""


def test_two_processes_resolving_the_same_refs_leave_one_intact_cache_entry(live_registry, published, tmp_path):
    refs = list(FILES)
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, live_registry.url, str(tmp_path), *refs],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert outputs[0][0] == outputs[1][0]
    digests = {published[ref]["sha256"] for ref in refs}
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == sorted(digests), "one entry per digest"
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == p.name for p in files)
    assert not list(tmp_path.rglob("*.tmp"))

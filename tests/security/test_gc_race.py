"""gc running in a loop, with no grace period at all, while 8 clients publish for 10+ seconds:
every version the registry acknowledged downloads afterwards with its digest (0 lost), on SQLite +
local blobs and on PostgreSQL + S3. Without a grace period only the blob lock and the publish's
check after its commit stand between gc and an acknowledged blob, so this is their test; orphans
planted meanwhile show that gc really deleted things all along."""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pseudoword.registry.core import canonical_bytes, read_embedding
from pseudoword.registry.service.catalogue import Catalogue
from pseudoword.registry.service.db import make_engine
from pseudoword.registry.service.settings import Settings
from pseudoword.registry.service.storage import open_store
from tests.integration.api import random_embedding
from tests.integration.servers import Server

SECONDS = 10.0
CLIENTS = 8
#: Contents shared by many versions (and planted as orphans first), so publishes also meet blobs
#: that gc is deleting, not only new ones.
SHARED = [random_embedding(rows=1, seed=9000 + i) for i in range(4)]


def _gc_catalogue(server: Server, tmp_path: Path) -> Catalogue:
    url = server.env.get("PSEUDOWORD_DATABASE_URL") or f"sqlite:///{server.data_dir / 'pseudoword.db'}"
    storage = server.env.get("PSEUDOWORD_STORAGE_URL") or f"file://{server.data_dir / 'blobs'}"
    settings = Settings(data_dir=tmp_path, database_url=url, storage_url=storage)
    store = open_store(storage, server.env.get("PSEUDOWORD_S3_ACCESS_KEY"), server.env.get("PSEUDOWORD_S3_SECRET_KEY"))
    return Catalogue(make_engine(url), store, settings)


@pytest.mark.slow  # one of the slowest (a subprocess or a real pipeline); CI runs it
def test_gc_in_a_loop_never_loses_an_acknowledged_version(registry: Server, source: str, tmp_path: Path) -> None:
    catalogue = _gc_catalogue(registry, tmp_path)
    stop = threading.Event()
    acknowledged: list[dict] = []
    failures: list[str] = []
    planted: set[str] = set()
    removed: set[str] = set()
    runs = 0

    def plant(seed: int) -> None:
        data = canonical_bytes(read_embedding(SHARED[seed % len(SHARED)] if seed < 4 else random_embedding(seed=seed)))
        digest = hashlib.sha256(data).hexdigest()
        catalogue.store.put(digest, data)
        planted.add(digest)

    def collector() -> None:
        nonlocal runs
        seed = 0
        while not stop.is_set():
            plant(seed)
            seed += 1
            removed.update(catalogue.gc(grace_seconds=0).removed)
            runs += 1

    def client(index: int) -> None:
        with httpx.Client(base_url=registry.url, headers=registry.headers(), timeout=60) as http:
            n = 0
            while not stop.is_set():
                n += 1
                data = SHARED[n % len(SHARED)] if n % 2 else random_embedding(rows=1, seed=index * 100_000 + n)
                response = http.post("/api/v1/embeddings", files={"file": ("e.safetensors", data)},
                                     data={"metadata": f'{{"id": "{source}:c{index}@{n}"}}'})
                if response.status_code in (200, 201):
                    acknowledged.append(response.json())
                else:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    gc_thread = threading.Thread(target=collector)
    gc_thread.start()
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(client, i) for i in range(CLIENTS)]
        time.sleep(SECONDS)
        stop.set()
        for future in futures:
            future.result()
    gc_thread.join()
    catalogue.close()
    catalogue.engine.dispose()

    assert not failures, failures[:5]
    assert len(acknowledged) >= CLIENTS, "too few publishes to mean anything"
    assert runs >= 3 and removed & planted, f"gc ran {runs} times and removed {len(removed)} planted orphans"
    lost = []
    with httpx.Client(base_url=registry.url, timeout=60) as http:
        for record in acknowledged:
            response = http.get(record["download_url"])
            if response.status_code != 200 or hashlib.sha256(response.content).hexdigest() != record["sha256"]:
                lost.append((record["id"], response.status_code))
    print(f"{len(acknowledged)} publishes acknowledged, gc ran {runs} times and removed {len(removed)} blobs")
    assert lost == [], f"{len(lost)} of {len(acknowledged)} acknowledged versions lost: {lost[:5]}"

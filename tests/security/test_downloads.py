"""Downloads belong to the version asked for (name, trigger inside, count), are named per RFC 6266 /
5987, follow RFC 9110 (HEAD, conditional requests, ranges), and need no database write."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote

import httpx

from pseudoword.registry.core import read_embedding
from tests.integration.api import eventually, get, publish, random_embedding
from tests.integration.servers import Server

SUFFIXES = {"safetensors": ".safetensors", "a1111": ".pt", "diffusers": ".safetensors"}


def _filename_star(disposition: str) -> str:
    """The RFC 5987 ``filename*`` of a Content-Disposition, decoded."""
    (value,) = [part.strip() for part in disposition.split(";") if part.strip().startswith("filename*=")]
    charset, _, encoded = value.removeprefix("filename*=").partition("''")
    assert charset.upper() == "UTF-8"
    return unquote(encoded, encoding="utf-8", errors="strict")


def test_a_japanese_trigger_downloads_in_every_format_under_its_own_name(registry: Server, source: str) -> None:
    trigger = "日本語トリガー"
    record = publish(registry, random_embedding(seed=41), f"{source}:ja@1", trigger=trigger).json()
    for fmt, suffix in SUFFIXES.items():
        response = get(registry, record["download_url"], params={"format": fmt})
        assert response.status_code == 200, (fmt, response.text)
        disposition = response.headers["content-disposition"]
        assert disposition.isascii() and disposition.startswith("attachment; filename=\"")
        assert _filename_star(disposition) == trigger + suffix
        embedding = read_embedding(response.content)
        if fmt == "safetensors":
            assert hashlib.sha256(response.content).hexdigest() == record["sha256"]
        else:
            assert embedding.name == trigger, fmt  # the trigger inside the export is this version's


def test_same_bytes_under_two_models_download_each_under_its_own_name_and_count(registry: Server, source: str) -> None:
    data = random_embedding(seed=42)
    alpha = publish(registry, data, f"{source}:alpha@1", trigger="alpha").json()
    beta = publish(registry, data, f"{source}:beta@1", trigger="beta").json()
    assert alpha["sha256"] == beta["sha256"] and alpha["download_url"] != beta["download_url"]
    for record, trigger in ((alpha, "alpha"), (beta, "beta")):
        pt = get(registry, record["download_url"], params={"format": "a1111"})
        assert pt.headers["content-disposition"] == f'attachment; filename="{trigger}.pt"'
        assert read_embedding(pt.content).name == trigger
    for _ in range(2):
        assert get(registry, alpha["download_url"]).status_code == 200
    eventually(lambda: get(registry, f"/api/v1/embeddings/{source}/alpha/1").json()["downloads"] == 3)
    time.sleep(0.5)  # two more count batches: nothing reaches the other model
    assert get(registry, f"/api/v1/embeddings/{source}/beta/1").json()["downloads"] == 1
    assert get(registry, f"/api/v1/embeddings/{source}/alpha").json()["downloads"] == 3
    # By digest: the file's own name, no version's, and no version counts it.
    blob = get(registry, f"/api/v1/blobs/{alpha['sha256']}")
    assert blob.headers["content-disposition"] == f'attachment; filename="{alpha["sha256"]}.safetensors"'
    time.sleep(0.5)
    assert get(registry, f"/api/v1/embeddings/{source}/beta/1").json()["downloads"] == 1


def test_head_conditional_and_range_requests(registry: Server, source: str) -> None:
    record = publish(registry, random_embedding(rows=5, seed=43), f"{source}:http@1").json()
    url = f"{registry.url}{record['download_url']}"
    whole = httpx.get(url).content
    etag = f'"{record["sha256"]}"'
    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(whole) and head.headers["etag"] == etag
    for path in ("/api/v1/embeddings", f"/api/v1/embeddings/{source}/http", "/healthz", f"/models/{source}/http"):
        assert httpx.head(f"{registry.url}{path}").status_code == 200, path  # HEAD on every GET route
    for value in ("*", f'W/{etag}', f'"other", {etag}', etag):
        assert httpx.get(url, headers={"If-None-Match": value}).status_code == 304, value
    assert httpx.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert httpx.get(url, headers={"If-Match": '"other"'}).status_code == 412
    exported = httpx.get(url, params={"format": "a1111"})
    assert httpx.get(url, params={"format": "a1111"},
                     headers={"If-None-Match": exported.headers["etag"]}).status_code == 304
    # RFC 9110: a multi-range, another unit or a stale If-Range is ignored (the whole file, 200).
    for headers in ({"Range": "bytes=0-1,5-6"}, {"Range": "items=0-1"}, {"Range": "bytes=5-1"},
                    {"Range": "bytes=0-9", "If-Range": '"stale"'}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 200 and response.content == whole, headers
    part = httpx.get(url, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert part.status_code == 206 and part.content == whole[10:20]
    assert httpx.get(url, headers={"Range": f"bytes={len(whole)}-"}).status_code == 416
    # HEAD, 304, 416 and a first byte are no downloads; only the full GETs above count.
    full_gets = 1 + 4 + 1  # the first GET, the four ignored ranges, the If-None-Match miss
    eventually(lambda: get(registry, f"/api/v1/embeddings/{source}/http/1").json()["downloads"] >= full_gets)
    httpx.get(url, headers={"Range": "bytes=0-0"})
    time.sleep(0.6)
    assert get(registry, f"/api/v1/embeddings/{source}/http/1").json()["downloads"] == full_gets + 1  # + the export


@contextmanager
def _catalogue_write_locked(server: Server) -> Iterator[None]:
    """Nobody can write the catalogue meanwhile (a full disk, a locked or read-only database)."""
    url = server.env.get("PSEUDOWORD_DATABASE_URL")
    if url is None:
        connection = sqlite3.connect(server.data_dir / "pseudoword.db", isolation_level=None, timeout=30)
        connection.execute("BEGIN IMMEDIATE")  # holds SQLite's one write lock
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as connection:
        connection.execute("LOCK TABLE versions, models IN EXCLUSIVE MODE")  # reads go on, writes wait
        try:
            yield
        finally:
            connection.rollback()


def test_downloads_work_while_the_catalogue_cannot_be_written(registry: Server, source: str) -> None:
    record = publish(registry, random_embedding(seed=44), f"{source}:readonly@1").json()
    with _catalogue_write_locked(registry):
        started = time.monotonic()
        for fmt in ("safetensors", "a1111", "safetensors"):
            response = get(registry, record["download_url"], params={"format": fmt})
            assert response.status_code == 200, response.text
        assert hashlib.sha256(get(registry, record["download_url"]).content).hexdigest() == record["sha256"]
        assert time.monotonic() - started < 10, "downloads waited for the database"
        assert get(registry, f"/api/v1/embeddings/{source}/readonly/1").json()["downloads"] == 0
    # Best effort, not lost: the counts are written once the database takes writes again.
    eventually(lambda: get(registry, f"/api/v1/embeddings/{source}/readonly/1").json()["downloads"] == 4,
               timeout=40)

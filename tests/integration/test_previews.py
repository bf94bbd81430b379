"""Previews over HTTP on both backends: published with the file or later by the publisher, served
with their type and cache headers; hostile images refused with nothing stored; an A1111 embedding
image publishes like its `.pt`; `pull` writes NAME.preview.png beside the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from pseudoword.registry.core.png_embedding import embedding_png_chunk
from tests.images import HOSTILE, INFOTEXT, jpeg, png
from tests.integration.api import error_code, get, random_embedding, torch_file
from tests.integration.servers import Server
from tests.unit.test_png_embedding import a1111_dict, embedding_png, pixel_embedding_png


def publish_with(server: Server, id: str, previews: list[tuple[str, bytes]], seed: int = 1,
                 token: str | None = None) -> httpx.Response:
    files = [("file", ("emb.safetensors", random_embedding(seed=seed))), *[("preview", p) for p in previews]]
    return httpx.post(f"{server.url}/api/v1/embeddings", headers=server.headers(token), timeout=60, files=files,
                      data={"metadata": f'{{"id": "{id}"}}'})


def _store_blobs(server: Server) -> set[str]:
    """Every blob in the server's store (the local directory, or the S3 bucket)."""
    from tests.security.test_hostile_inputs import _blob_digests

    return _blob_digests(server)


def test_publish_with_previews_serves_them_with_type_cache_and_infotext(registry: Server, source: str) -> None:
    first, second = png(seed=1), jpeg()
    response = publish_with(registry, f"{source}:pics@1", [("a.png", first), ("b.jpg", second)])
    assert response.status_code == 201, response.text
    previews = response.json()["previews"]
    assert [p["format"] for p in previews] == ["png", "jpeg"]
    assert [p["sha256"] for p in previews] == [hashlib.sha256(first).hexdigest(), hashlib.sha256(second).hexdigest()]
    assert previews[0]["parameters"] == INFOTEXT and previews[1]["parameters"] == INFOTEXT
    image = get(registry, previews[0]["url"])
    assert image.status_code == 200 and image.content == first
    assert image.headers["content-type"] == "image/png"
    assert "immutable" in image.headers["cache-control"] and image.headers["etag"] == f'"{previews[0]["sha256"]}"'
    assert image.headers["x-content-type-options"] == "nosniff"
    assert get(registry, previews[0]["url"], headers={"If-None-Match": image.headers["etag"]}).status_code == 304
    head = httpx.head(registry.url + previews[0]["url"], timeout=30)
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(first))
    assert get(registry, "/api/v1/previews/" + "0" * 64).status_code == 404
    assert get(registry, "/api/v1/previews/not-a-digest").status_code == 400
    thumb = get(registry, previews[0]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    # The model, version and search answers carry them too.
    model = get(registry, f"/api/v1/embeddings/{source}/pics").json()
    assert [p["sha256"] for p in model["versions"][0]["previews"]] == [p["sha256"] for p in previews]
    version = get(registry, f"/api/v1/embeddings/{source}/pics/1").json()
    assert len(version["previews"]) == 2
    found = get(registry, "/api/v1/embeddings", params={"source": source}).json()["items"]
    assert len(found[0]["previews"]) == 2


def test_publisher_adds_previews_later_others_may_not(registry: Server, source: str) -> None:
    assert publish_with(registry, f"{source}:later@1", []).status_code == 201
    url = f"{registry.url}/api/v1/embeddings/{source}/later/1/previews"
    files = [("preview", ("c.png", png(seed=3)))]
    assert httpx.post(url, files=files, timeout=30).status_code == 401
    other = httpx.post(f"{registry.url}/api/v1/tokens", headers=registry.headers(), json={"source": "someone-else"}).json()
    denied = httpx.post(url, files=files, headers=registry.headers(other["token"]), timeout=30)
    assert denied.status_code == 403
    added = httpx.post(url, files=files, headers=registry.headers(), timeout=30)
    assert added.status_code == 200, added.text
    assert len(added.json()) == 1
    again = httpx.post(url, files=files, headers=registry.headers(), timeout=30)  # the same image: a no-op
    assert len(again.json()) == 1
    missing = httpx.post(f"{registry.url}/api/v1/embeddings/{source}/later/9/previews", files=files,
                         headers=registry.headers(), timeout=30)
    assert missing.status_code == 404


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_preview_is_refused_and_nothing_is_stored(registry: Server, source: str, name: str) -> None:
    make, code, words = HOSTILE[name]
    assert publish_with(registry, f"{source}:good@1", [], seed=6).status_code == 201  # the store exists
    before = _store_blobs(registry)
    response = publish_with(registry, f"{source}:bad@1", [("hostile.png", make())], seed=7)
    assert response.status_code in (413, 422), response.text
    assert error_code(response) == code and words in response.json()["error"]["message"]
    assert get(registry, f"/api/v1/embeddings/{source}/bad/1").status_code == 404  # no row
    assert _store_blobs(registry) == before  # not one blob: neither the embedding nor the image


def _with_thumbnail(image: bytes, seed: int) -> bytes:
    import base64

    import torch
    from safetensors.torch import save

    url = "data:image/png;base64," + base64.b64encode(image).decode()
    vectors = torch.randn(2, 768, generator=torch.Generator().manual_seed(seed))
    return save({"emb_params": vectors}, metadata={"modelspec.thumbnail": url})


def test_a_files_modelspec_thumbnail_is_its_preview_when_none_is_sent(registry: Server, source: str) -> None:
    image = png(seed=9)
    files = [("file", ("thumbed.safetensors", _with_thumbnail(image, seed=31)))]
    answer = httpx.post(f"{registry.url}/api/v1/embeddings", headers=registry.headers(), timeout=60, files=files,
                        data={"metadata": f'{{"id": "{source}:thumbed@1"}}'})
    assert answer.status_code == 201, answer.text
    record = answer.json()
    assert [p["sha256"] for p in record["previews"]] == [hashlib.sha256(image).hexdigest()]
    assert "modelspec.thumbnail" not in record["metadata"]  # an image, not text in every record
    assert get(registry, record["previews"][0]["url"]).content == image
    # A hostile thumbnail (a decompression bomb) is not used, and the file still publishes.
    make, _code, _words = HOSTILE["decompression bomb"]
    files = [("file", ("bombed.safetensors", _with_thumbnail(make(), seed=32)))]
    answer = httpx.post(f"{registry.url}/api/v1/embeddings", headers=registry.headers(), timeout=60, files=files,
                        data={"metadata": f'{{"id": "{source}:bombed@1"}}'})
    assert answer.status_code == 201 and answer.json().get("previews", []) == []


@pytest.mark.parametrize("where", ["text chunk", "pixels"])
def test_a1111_embedding_png_publishes_like_its_pt(registry: Server, source: str, where: str) -> None:
    data = a1111_dict(seed=11)
    image = embedding_png(embedding_png_chunk(data)) if where == "text chunk" else pixel_embedding_png(data)
    as_png = httpx.post(f"{registry.url}/api/v1/embeddings", headers=registry.headers(), timeout=60,
                        files={"file": ("glassy.png", image)},
                        data={"metadata": f'{{"id": "{source}:from-png@1"}}'})
    as_pt = httpx.post(f"{registry.url}/api/v1/embeddings", headers=registry.headers(), timeout=60,
                       files={"file": ("glassy.pt", torch_file(data))},
                       data={"metadata": f'{{"id": "{source}:from-pt@1"}}'})
    assert as_png.status_code == 201 and as_pt.status_code == 201, as_png.text
    png_record, pt_record = as_png.json(), as_pt.json()
    for key in ("sha256", "architecture", "vectors", "trigger", "metadata", "original_format"):
        assert png_record[key] == pt_record[key], key


def test_pull_writes_the_preview_beside_the_file(tmp_path: Path) -> None:
    from tests.integration.cli_server import Cli, _start

    registry = _start()
    try:
        cli = Cli(registry)
        image = tmp_path / "look.png"
        image.write_bytes(png(seed=4))
        emb = tmp_path / "shiny.safetensors"
        emb.write_bytes(random_embedding(seed=21))
        published = cli("publish", emb, "--id", "studio:shiny@1", "--preview", image, "--json")
        assert published.exit_code == 0, published.stderr
        assert len(published.json()["previews"]) == 1
        out = tmp_path / "embeddings"
        pulled = cli("pull", "studio:shiny", "--to", out, "--format", "a1111", "--json")
        assert pulled.exit_code == 0, pulled.stderr
        assert (out / "shiny.pt").is_file()
        assert (out / "shiny.preview.png").read_bytes() == image.read_bytes()
        assert pulled.json()["preview"] == str(out / "shiny.preview.png")
        plain = tmp_path / "plain.safetensors"
        plain.write_bytes(random_embedding(seed=22))
        assert cli("publish", plain, "--id", "studio:plain@1").exit_code == 0
        assert cli("pull", "studio:plain", "--to", out).exit_code == 0
        assert not (out / "plain.preview.png").exists()  # no preview: none written
    finally:
        registry.server.stop()


def test_concurrent_attaches_of_the_same_image_store_it_once(registry: Server, source: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    assert publish_with(registry, f"{source}:race@1", []).status_code == 201
    url = f"{registry.url}/api/v1/embeddings/{source}/race/1/previews"
    image = png(seed=9)

    def attach(_: int) -> int:
        return httpx.post(url, files=[("preview", ("r.png", image))], headers=registry.headers(), timeout=60).status_code

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(attach, range(4))) == {200}
    assert len(get(registry, f"/api/v1/embeddings/{source}/race/1").json()["previews"]) == 1


def test_publisher_removes_a_preview(registry: Server, source: str) -> None:
    image = png(seed=12)
    response = publish_with(registry, f"{source}:drop@1", [("d.png", image), ("e.jpg", jpeg())])
    digest = response.json()["previews"][0]["sha256"]
    url = f"{registry.url}/api/v1/embeddings/{source}/drop/1/previews/{digest}"
    assert httpx.delete(url, timeout=30).status_code == 401
    left = httpx.delete(url, headers=registry.headers(), timeout=30)
    assert left.status_code == 200 and [p["format"] for p in left.json()] == ["jpeg"]
    assert httpx.delete(url, headers=registry.headers(), timeout=30).status_code == 404
    assert get(registry, f"/api/v1/previews/{digest}").status_code == 404  # no row serves it any more


#: The keys of a version record on the wire (catalogue.record); get/publish/by-hash add ``files``,
#: version answers ``previews``, resolve answers drop ``downloads``.
RECORD_KEYS = {"id", "air", "version_id", "model_id", "source", "model", "version", "architecture", "vectors",
               "dtype", "kind", "trigger", "tags", "title", "description", "sha256", "size", "original_sha256",
               "original_size", "original_format", "autov2", "a1111_hash", "base_model", "license", "permissions",
               "publisher", "pickle_scan", "metadata", "yanked", "yanked_reason", "created_at", "downloads",
               "download_url"}


def test_every_answer_is_the_typed_record_s_json_exactly(registry: Server, source: str) -> None:
    """The service builds a VersionRecord and sends its to_wire(): the client's from_wire gives back
    the same JSON, key for key, with the service's fields typed (none left in ``extra``)."""
    from pseudoword.registry.core.record import ModelRecord, ResolveAnswer, VersionRecord

    published = publish_with(registry, f"{source}:typed@1", [("a.png", png(seed=2))])
    assert published.status_code == 201, published.text
    version = get(registry, f"/api/v1/embeddings/{source}/typed/1").json()
    assert set(version) == RECORD_KEYS | {"files", "previews"}
    assert set(published.json()) == RECORD_KEYS | {"files", "previews"}
    model = get(registry, f"/api/v1/embeddings/{source}/typed").json()
    by_hash = get(registry, f"/api/v1/by-hash/{version['sha256']}").json()
    items = get(registry, "/api/v1/embeddings", params={"source": source}).json()["items"]
    (answer,) = httpx.post(f"{registry.url}/api/v1/resolve", json={"refs": [f"{source}:typed"]}, timeout=30).json()["results"]
    assert set(answer["record"]) == RECORD_KEYS - {"downloads"}
    for wire in (published.json(), version, by_hash, *items, answer["record"]):
        record = VersionRecord.from_wire(wire)
        assert record.extra == {} and record.to_wire() == wire
    assert ModelRecord.from_wire(model).to_wire() == model and ModelRecord.from_wire(model).model_id is not None
    assert ResolveAnswer.from_wire(answer).to_wire() == answer
    typed = VersionRecord.from_wire(version)
    assert typed.files and typed.files[0].format == "original" and typed.previews and typed.previews[0].format == "png"
    assert typed.publisher == source and typed.pickle_scan["result"] and typed.version_id == version["version_id"]

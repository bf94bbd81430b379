"""Publish, find, resolve and download on both backends, with the real corpus."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pseudoword.registry.client import RegistryClient
from pseudoword.registry.core import read_embedding
from pseudoword.registry.core.errors import Conflict, RemoteNotFound
from tests.integration.api import eventually, get, publish, random_embedding, resolve, sdxl_embedding
from tests.integration.servers import Server


def _model_name(file: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in Path(file).stem).strip("-._")


@pytest.fixture(scope="session")
def corpus_published(registry: Server, manifest: list[dict[str, str]], embeddings_dir: Path) -> dict[str, dict]:
    """Every accepted corpus file published under source 'corpus', version 1."""
    records: dict[str, dict] = {}
    for row in manifest:
        data = (embeddings_dir / row["file"]).read_bytes()
        kind = "negative" if "neg" in row["file"].lower() or "bad" in row["file"].lower() else "positive"
        response = publish(registry, data, f"corpus:{_model_name(row['file'])}@1", filename=row["file"],
                           kind=kind, tags=["corpus", row["architecture"]])
        if row["architecture"] == "reject":
            assert response.status_code == 422, response.text
            assert response.json()["error"]["code"] == "shape_mismatch"
            assert "not a single embedding" in response.json()["error"]["message"]
            continue
        assert response.status_code in (200, 201), response.text
        records[row["file"]] = response.json()
    return records


def test_every_corpus_file_is_published_as_its_manifest_says(corpus_published: dict[str, dict],
                                                            manifest: list[dict[str, str]]) -> None:
    accepted = [row for row in manifest if row["architecture"] != "reject"]
    assert len(corpus_published) == len(accepted) == 28
    for row in accepted:
        record = corpus_published[row["file"]]
        assert record["architecture"] == row["architecture"] and record["vectors"] == int(row["vectors"])
        assert record["original_sha256"] == row["sha256"] and record["autov2"] == row["sha256"][:10]
        assert record["air"] == f"urn:air:{row['architecture']}:embedding:{record['id']}"
        assert {"id", "air", "architecture", "vectors", "kind", "trigger", "sha256", "size", "yanked"} <= set(record)


def test_find_each_by_trigger_tag_and_architecture(registry: Server, corpus_published: dict[str, dict]) -> None:
    for record in corpus_published.values():
        items = get(registry, "/api/v1/embeddings", params={"q": record["trigger"], "source": "corpus",
                                                             "limit": 100}).json()["items"]
        assert record["id"] in [item["id"] for item in items], record["trigger"]
    for arch in ("sd1", "sd2", "sdxl"):
        expected = {r["id"] for r in corpus_published.values() if r["architecture"] == arch}
        items = get(registry, "/api/v1/embeddings", params={"architecture": arch, "tag": "corpus",
                                                             "limit": 100}).json()["items"]
        assert {item["id"] for item in items} == expected
    items = get(registry, "/api/v1/embeddings", params={"tag": "sdxl", "source": "corpus", "limit": 100}).json()["items"]
    assert len(items) == 5


def test_resolve_in_every_reference_form(registry: Server, corpus_published: dict[str, dict]) -> None:
    for record in corpus_published.values():
        refs = [record["id"], f"corpus:{record['model']}", record["air"], f"sha256:{record['sha256']}",
                record["original_sha256"], record["autov2"], record["a1111_hash"]]
        for result in resolve(registry, refs):
            assert result.get("record", {}).get("id") == record["id"], result


def test_air_with_the_wrong_ecosystem_is_an_error(registry: Server, corpus_published: dict[str, dict]) -> None:
    record = corpus_published["EasyNegative.safetensors"]
    (result,) = resolve(registry, [f"urn:air:sdxl:embedding:{record['id']}"])
    assert result["error"]["code"] == "architecture_mismatch"
    assert "sdxl" in result["error"]["message"] and "sd1" in result["error"]["message"]


def test_download_gives_exactly_the_canonical_bytes(registry: Server, corpus_published: dict[str, dict],
                                                    embeddings_dir: Path) -> None:
    for file, record in corpus_published.items():
        response = get(registry, record["download_url"])
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == record["sha256"] == response.headers["etag"].strip('"')
        assert "immutable" in response.headers["cache-control"]
        original = read_embedding(embeddings_dir / file)
        stored = read_embedding(response.content)
        assert all(stored.vectors[k].equal(v) for k, v in original.vectors.items())


def test_range_and_conditional_requests(registry: Server, corpus_published: dict[str, dict]) -> None:
    record = corpus_published["zPDXL2.safetensors"]
    whole = get(registry, record["download_url"]).content
    part = get(registry, record["download_url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole)}"
    tail = get(registry, record["download_url"], headers={"Range": "bytes=-50"})
    assert tail.content == whole[-50:]
    assert get(registry, record["download_url"], headers={"Range": f"bytes={len(whole)}-"}).status_code == 416
    assert get(registry, record["download_url"], headers={"If-None-Match": f'"{record["sha256"]}"'}).status_code == 304


def test_exports_load(registry: Server, corpus_published: dict[str, dict]) -> None:
    record = corpus_published["bad-hands-5.pt"]
    a1111 = get(registry, record["download_url"], params={"format": "a1111"})
    assert a1111.status_code == 200 and read_embedding(a1111.content).num_vectors == 2
    diffusers = get(registry, record["download_url"], params={"format": "diffusers"})
    assert read_embedding(diffusers.content).name == record["trigger"]
    assert get(registry, record["download_url"], params={"format": "ckpt"}).json()["error"]["code"] == "invalid_request"


def test_by_hash(registry: Server, corpus_published: dict[str, dict]) -> None:
    record = corpus_published["EasyNegative.safetensors"]
    for digest in (record["original_sha256"], record["autov2"], record["a1111_hash"], record["sha256"]):
        assert get(registry, f"/api/v1/by-hash/{digest}").json()["id"] == record["id"]
    missing = get(registry, "/api/v1/by-hash/0000000000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert get(registry, "/api/v1/by-hash/xyz").json()["error"]["code"] == "invalid_reference"


def test_downloads_are_counted(registry: Server, source: str) -> None:
    record = publish(registry, random_embedding(seed=7), f"{source}:counted@1").json()
    for _ in range(3):
        get(registry, record["download_url"])
    eventually(lambda: get(registry, f"/api/v1/embeddings/{source}/counted/1").json()["downloads"] == 3)
    assert get(registry, f"/api/v1/embeddings/{source}/counted").json()["downloads"] == 3


def test_publish_is_idempotent_and_versions_immutable(registry: Server, source: str) -> None:
    data = random_embedding(seed=1)
    first = publish(registry, data, f"{source}:style@1")
    again = publish(registry, data, f"{source}:style@1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["sha256"] == again.json()["sha256"]
    other = publish(registry, random_embedding(seed=2), f"{source}:style@1")
    assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"
    model = get(registry, f"/api/v1/embeddings/{source}/style").json()
    assert [v["sha256"] for v in model["versions"]] == [first.json()["sha256"]]


def test_client_maps_error_codes_to_exceptions(registry: Server, source: str) -> None:
    with RegistryClient(registry.url, registry.admin_token) as client:
        result = client.publish(random_embedding(seed=3), id=f"{source}:c@1", filename="c.safetensors")
        assert result.created and result.record["id"] == f"{source}:c@1"
        assert client.publish(random_embedding(seed=3), id=f"{source}:c@1").created is False
        with pytest.raises(Conflict):
            client.publish(random_embedding(seed=4), id=f"{source}:c@1")
        with pytest.raises(RemoteNotFound):
            client.get_version(f"{source}:nothing@1")
        assert client.download(result.record["sha256"])[:8] == random_embedding(seed=3)[:0] + client.download(
            result.record["sha256"])[:8]
        assert hashlib.sha256(client.download(result.record["sha256"])).hexdigest() == result.record["sha256"]


def test_sdxl_and_kinds(registry: Server, source: str) -> None:
    record = publish(registry, sdxl_embedding(3), f"{source}:xl@1", kind="negative", trigger="xlneg",
                     title="An SDXL negative", description="keeps hands tidy").json()
    assert (record["architecture"], record["vectors"], record["kind"], record["trigger"]) == ("sdxl", 3, "negative", "xlneg")
    items = get(registry, "/api/v1/embeddings", params={"q": "tidy", "source": source, "kind": "negative"}).json()["items"]
    assert [i["id"] for i in items] == [f"{source}:xl@1"]
    assert get(registry, "/api/v1/embeddings", params={"q": "tidy", "source": source, "kind": "positive"}).json()["items"] == []

"""The registry as a Civitai endpoint: a third-party Civitai client from PyPI (civitai-hub, its base
URL pointed at the registry) parses every answer with its own models; the answers match Civitai's
documented examples field by field; and the AUTOMATIC1111 Civitai extension's by-hash flow (hash
in, version with trainedWords and downloadUrl out, download by that URL) works over HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest
import torch
from civitai_hub import CivitaiClient
from civitai_hub.errors import NotFoundError
from civitai_hub.models import Model, ModelVersion

from tests.integration import civitai_examples as docs
from tests.integration.api import error_code, publish, torch_file
from tests.integration.servers import Server


def a1111_file(seed: int, checkpoint: str = "v1-5-pruned-emaonly") -> bytes:
    vectors = torch.randn(2, 768, generator=torch.Generator().manual_seed(seed))
    return torch_file({"string_to_token": {"*": 265}, "string_to_param": {"*": vectors}, "name": "x", "step": 10,
                       "sd_checkpoint_name": checkpoint})


@pytest.fixture()
def civitai(registry: Server) -> Iterator[CivitaiClient]:
    client = CivitaiClient(max_retries=0)
    client.base_url = f"{registry.url}/api/v1"  # the client's base URL, pointed at the registry
    yield client
    client.close()


@pytest.fixture()
def published(registry: Server, source: str) -> dict[str, dict]:
    """Two versions of one model (an A1111 .pt upload) and a second model; ``uploads`` holds the
    bytes of each (files no other test publishes: the session's servers are shared)."""
    out: dict[str, dict] = {"uploads": {}}
    base = int(source[1:], 16) % 1_000_000 * 10
    for key, ref, seed, file in (("v1", f"{source}:CivNeg@1", 1, "civneg.pt"), ("v2", f"{source}:CivNeg@2", 2, "civneg.pt"),
                                 ("other", f"{source}:civother@1", 3, "civother.pt")):
        out["uploads"][key] = data = a1111_file(base + seed)
        response = publish(registry, data, ref, filename=file, kind="negative", tags=["civtest"],
                           description="a negative", publisher="Jane", license="CreativeML-OpenRAIL-M",
                           permissions={"allowNoCredit": True, "allowCommercialUse": ["Image"]})
        assert response.status_code == 201, response.text
        out[key] = response.json()
    return out


def test_civitai_hub_client_reads_versions_models_and_search(civitai: CivitaiClient, published: dict,
                                                            source: str) -> None:
    upload_sha = published["v2"]["original_sha256"]
    version = civitai.get_version_by_hash(upload_sha)
    assert isinstance(version, ModelVersion) and version.id == published["v2"]["version_id"]
    assert version.trained_words == ["civneg"] and version.base_model == "SD 1.5"
    assert version.primary_file is not None and version.primary_file.sha256 == upload_sha.upper()
    assert version.primary_file.pickle_scan_result == "Success" and version.primary_file.size_bytes == \
        published["v2"]["original_size"]
    assert civitai.get_version_by_hash(upload_sha[:10]).id == version.id  # AutoV2
    a1111 = next(f for f in published["v1"]["files"] if f["format"] == "a1111")
    assert civitai.get_version_by_hash(a1111["sha256"][:12]).id == published["v1"]["version_id"]  # A1111's short hash
    model = civitai.get_model(version.model_id)
    assert isinstance(model, Model) and model.name == "CivNeg" and model.type == "TextualInversion"
    assert [v.id for v in model.model_versions] == [published["v2"]["version_id"], published["v1"]["version_id"]]
    assert model.creator == {"username": "Jane", "image": None} and model.tags == ["civtest"]
    assert civitai.get_version(published["v1"]["version_id"]).name == "1"
    found = civitai.search_models(types="TextualInversion", query="civneg", limit=5)
    assert [m.id for m in found] == [model.id]
    both = civitai.search_models(types="TextualInversion", query=None, limit=50)
    assert {model.id, published["other"]["model_id"]} <= {m.id for m in both}
    assert civitai.search_models(types="Checkpoint", query="civneg") == []
    with pytest.raises(NotFoundError):
        civitai.get_version_by_hash("0" * 64)
    with pytest.raises(NotFoundError):
        civitai.get_model(2**62)


def test_answers_match_civitais_documented_shapes_field_by_field(registry: Server, published: dict,
                                                                source: str) -> None:
    version_id, model_id = published["v2"]["version_id"], published["v2"]["model_id"]
    for path in (f"/api/v1/model-versions/{version_id}",
                 f"/api/v1/model-versions/by-hash/{published['v2']['original_sha256']}"):
        doc = httpx.get(registry.url + path, timeout=30).json()
        docs.check(doc, docs.VERSION, path)
        docs.check(doc["stats"], docs.VERSION_STATS, f"{path}.stats")
        docs.check(doc["model"], docs.VERSION_MODEL, f"{path}.model")
        assert doc["model"]["type"] in docs.MODEL_TYPES and doc["id"] == version_id and doc["modelId"] == model_id
        assert doc["air"] == f"urn:air:sd1:embedding:{source}:CivNeg@2"
        assert doc["downloadUrl"] == f"{registry.url}/api/download/models/{version_id}"
        assert [f["primary"] for f in doc["files"]] == [True] + [False] * (len(doc["files"]) - 1)
        for file in doc["files"]:
            docs.check(file, docs.FILE, f"{path}.files")
            docs.check(file["metadata"], docs.FILE_METADATA, f"{path}.files.metadata")
            assert set(docs.HASH_KEYS) <= set(file["hashes"]) and file["pickleScanResult"] in docs.SCAN_RESULTS
            assert file["hashes"]["AutoV2"] == file["hashes"]["SHA256"][:10] == file["hashes"]["SHA256"][:10].upper()
            assert file["hashes"]["A1111"] == file["hashes"]["SHA256"][:12]
            assert file["metadata"]["format"] in ("SafeTensor", "PickleTensor")
    model = httpx.get(f"{registry.url}/api/v1/models/{model_id}", timeout=30).json()
    docs.check(model, docs.MODEL, "model")
    docs.check(model["stats"], docs.MODEL_STATS, "model.stats")
    docs.check(model["creator"], docs.CREATOR, "model.creator")
    assert (model["allowNoCredit"], model["allowCommercialUse"], model["allowDerivatives"]) == (True, ["Image"], False)
    for version in model["modelVersions"]:
        docs.check(version, {k: v for k, v in docs.VERSION.items() if k != "model"}, "model.modelVersions")
    listing = httpx.get(f"{registry.url}/api/v1/models", params={"types": "TextualInversion", "tag": "civtest",
                                                                 "username": source, "limit": 1}, timeout=30).json()
    docs.check(listing["metadata"], docs.LIST_METADATA, "models.metadata")
    assert len(listing["items"]) == 1 and listing["metadata"]["nextCursor"]
    second = httpx.get(f"{registry.url}/api/v1/models", params={"tag": "civtest", "username": source, "limit": 1,
                                                                "cursor": listing["metadata"]["nextCursor"]}, timeout=30).json()
    paged = httpx.get(f"{registry.url}/api/v1/models", params={"tag": "civtest", "username": source, "limit": 1,
                                                               "page": 2}, timeout=30).json()
    assert second["items"][0]["id"] == paged["items"][0]["id"] != listing["items"][0]["id"]
    bad = httpx.get(f"{registry.url}/api/v1/models", params={"sort": "Loudest"}, timeout=30)
    assert bad.status_code == 400 and error_code(bad) == "invalid_request"


def test_the_a1111_extensions_by_hash_flow(registry: Server, published: dict, tmp_path) -> None:
    """What sd_civitai_extension does: POST the SHA-256 of local files to /model-versions/by-hash,
    match files by hashes.SHA256, write the info (trainedWords), and fetch a missing file by
    hash through its primary file's downloadUrl."""
    local = tmp_path / "civneg.pt"
    local.write_bytes(published["uploads"]["v2"])  # the file the user has: the bytes of the v2 upload
    local_hash = hashlib.sha256(local.read_bytes()).hexdigest()
    api = f"{registry.url}/api/v1"
    results = httpx.post(f"{api}/model-versions/by-hash", json=[local_hash, "f" * 64, "not-a-hash"], timeout=30)
    assert results.status_code == 200, results.text
    (result,) = results.json()
    matches = [f for f in result["files"] if f["hashes"]["SHA256"].lower() == local_hash]
    assert len(matches) == 1 and "SD 1" in result["baseModel"]
    assert ", ".join(result["trainedWords"]) == "civneg" and result["description"] == "a negative"
    assert result["images"] == []  # no previews published
    # fetch_model_by_hash: the primary file, by its downloadUrl, under its name
    version = httpx.get(f"{api}/model-versions/by-hash/{local_hash}", timeout=30).json()
    primary = next(f for f in version["files"] if f["primary"])
    with httpx.stream("GET", primary["downloadUrl"], timeout=30) as response:
        assert response.status_code == 200
        body = response.read()
        total = int(response.headers["content-length"])
    assert total == len(body) and hashlib.sha256(body).hexdigest() == local_hash
    assert 'filename="civneg.pt"' in response.headers["content-disposition"] and primary["name"] == "civneg.pt"
    too_many = httpx.post(f"{api}/model-versions/by-hash", json=["a" * 64] * 101, timeout=30)
    assert too_many.status_code == 400


def test_download_route_head_range_and_formats(registry: Server, published: dict) -> None:
    version_id = published["v1"]["version_id"]
    url = f"{registry.url}/api/download/models/{version_id}"
    upload = published["uploads"]["v1"]
    head = httpx.head(url, timeout=30)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(upload))
    assert head.headers["etag"] == f'"{hashlib.sha256(upload).hexdigest()}"'
    part = httpx.get(url, headers={"Range": "bytes=5-14"}, timeout=30)
    assert part.status_code == 206 and part.content == upload[5:15]
    assert part.headers["content-range"] == f"bytes 5-14/{len(upload)}"
    safetensors = httpx.get(url, params={"type": "Model", "format": "SafeTensor"}, timeout=30)
    assert hashlib.sha256(safetensors.content).hexdigest() == published["v1"]["sha256"]
    assert 'filename="civneg.safetensors"' in safetensors.headers["content-disposition"]
    assert httpx.get(url, params={"format": "Diffusers2"}, timeout=30).status_code == 400
    missing = httpx.get(f"{registry.url}/api/download/models/{2**62}", timeout=30)
    assert missing.status_code == 404 and error_code(missing) == "not_found"

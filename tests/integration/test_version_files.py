"""Every file a version is served as (the upload, the canonical file, each export) is kept, listed
with its hashes, and finds the version by any of them; names compare case-insensitively; what the
file and the publisher say (base model, ModelSpec trigger and kind, licence, publisher) is kept and
searchable; picklescan's verdict is recorded. On both backends."""

from __future__ import annotations

import hashlib

import httpx
import torch
from safetensors.torch import save as save_safetensors

from tests.integration.api import error_code, get, publish, resolve, torch_file
from tests.integration.servers import Server


def a1111_file(seed: int, checkpoint: str = "v1-5-pruned-emaonly", width: int = 768) -> bytes:
    vectors = torch.randn(3, width, generator=torch.Generator().manual_seed(seed))
    return torch_file({"string_to_token": {"*": 265}, "string_to_param": {"*": vectors}, "name": "inner",
                       "step": 500, "sd_checkpoint": "abc", "sd_checkpoint_name": checkpoint})


def download(server: Server, record: dict, fmt: str) -> httpx.Response:
    return get(server, record["download_url"], params={"format": fmt})


def test_every_file_is_kept_listed_and_found_by_each_of_its_hashes(registry: Server, source: str) -> None:
    upload = a1111_file(1)
    response = publish(registry, upload, f"{source}:handsfix@1", filename="HandsFix.pt")
    assert response.status_code == 201, response.text
    record = response.json()
    files = {f["format"]: f for f in record["files"]}
    assert list(files) == ["original", "safetensors", "a1111", "diffusers", "diffusers-bin"]
    assert files["original"]["sha256"] == hashlib.sha256(upload).hexdigest() == record["original_sha256"]
    assert files["safetensors"]["sha256"] == record["sha256"]
    original = download(registry, record, "original")
    assert original.status_code == 200 and original.content == upload  # the bytes as uploaded
    assert 'filename="HandsFix.pt"' in original.headers["content-disposition"]
    for fmt, file in files.items():
        served = download(registry, record, fmt)
        assert served.status_code == 200, (fmt, served.text)
        digest = hashlib.sha256(served.content).hexdigest()
        assert digest == file["sha256"] and len(served.content) == file["size"], fmt
        assert served.headers["etag"] == f'"{digest}"'
        assert file["autov2"] == digest[:10] and file["a1111_hash"] == digest[:12]
        for text in (digest, digest[:10], digest[:12], f"sha256:{digest}", digest[:10].upper()):
            found = get(registry, f"/api/v1/by-hash/{text}")
            assert found.status_code == 200 and found.json()["id"] == record["id"], (fmt, text)
        assert resolve(registry, [digest[:12]])[0]["record"]["id"] == record["id"]
        items = get(registry, "/api/v1/embeddings", params={"q": digest[:12]}).json()["items"]
        assert [item["id"] for item in items] == [record["id"]], fmt  # the search box takes a hash
    assert get(registry, "/api/v1/by-hash/" + "0" * 64).status_code == 404
    ranged = get(registry, record["download_url"], params={"format": "original"}, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.content == upload[:10]
    bad = download(registry, record, "diffusers-clip_g")  # an sdxl layout, for an sd1 file
    assert bad.status_code == 400 and "diffusers-bin" in bad.json()["error"]["message"]


def test_sdxl_versions_serve_one_file_per_text_encoder(registry: Server, source: str) -> None:
    generator = torch.Generator().manual_seed(3)
    clip_l, clip_g = torch.randn(2, 768, generator=generator), torch.randn(2, 1280, generator=generator)
    record = publish(registry, save_safetensors({"clip_l": clip_l, "clip_g": clip_g}), f"{source}:xl@1",
                     filename="xlneg.safetensors").json()
    formats = [f["format"] for f in record["files"]]
    assert formats == ["original", "safetensors", "a1111", "diffusers", "diffusers-clip_l", "diffusers-clip_g"]
    from safetensors.torch import load
    for key, tensor in (("clip_l", clip_l), ("clip_g", clip_g)):
        loaded = load(download(registry, record, f"diffusers-{key}").content)
        assert list(loaded) == ["xlneg"] and torch.equal(loaded["xlneg"], tensor)


def test_model_names_compare_case_insensitively_keeping_the_first_spelling(registry: Server, source: str) -> None:
    first = publish(registry, a1111_file(4), f"{source}:EasyThing@1", filename="EasyThing.pt")
    assert first.status_code == 201, first.text
    second = publish(registry, a1111_file(5), f"{source}:easything@2", filename="easything.pt")
    assert second.status_code == 201, second.text
    assert second.json()["id"] == f"{source}:EasyThing@2"
    assert second.json()["model_id"] == first.json()["model_id"]
    model = get(registry, f"/api/v1/embeddings/{source}/EASYTHING").json()
    assert model["id"] == f"{source}:EasyThing" and [v["version"] for v in model["versions"]] == ["2", "1"]
    assert resolve(registry, [f"{source}:easyTHING@1"])[0]["record"]["id"] == f"{source}:EasyThing@1"
    # the same ID in another case is the same version: same content is a no-op, other content a conflict
    again = publish(registry, a1111_file(4), f"{source}:EASYTHING@1", filename="EasyThing.pt")
    assert again.status_code == 200 and again.json()["files"] == first.json()["files"]
    clash = publish(registry, a1111_file(6), f"{source}:easything@1", filename="x.pt")
    assert clash.status_code == 409 and error_code(clash) == "conflict"
    items = get(registry, "/api/v1/embeddings", params={"source": source}).json()["items"]
    assert [item["id"] for item in items] == [f"{source}:EasyThing@2"]


def test_base_model_from_the_file_and_the_publisher_is_a_search_filter(registry: Server, source: str) -> None:
    sd15 = publish(registry, a1111_file(7, "v1-5-pruned-emaonly"), f"{source}:basea@1", filename="basea.pt").json()
    assert sd15["base_model"] == "SD 1.5"
    unknown = publish(registry, a1111_file(8, "myMerge_v3"), f"{source}:baseb@1", filename="baseb.pt").json()
    assert unknown["base_model"] is None
    given = publish(registry, a1111_file(9, "myMerge_v3"), f"{source}:basec@1", filename="basec.pt",
                    base_model="sd 1.4").json()
    assert given["base_model"] == "SD 1.4"
    pony = save_safetensors({"clip_l": torch.zeros(1, 768), "clip_g": torch.ones(1, 1280)})
    xl = publish(registry, pony, f"{source}:based@1", filename="based.safetensors", base_model="Pony").json()
    assert xl["base_model"] == "Pony"
    for base, expected in (("SD 1.5", "basea"), ("SD 1.4", "basec"), ("Pony", "based")):
        items = get(registry, "/api/v1/embeddings", params={"source": source, "base_model": base}).json()["items"]
        assert [item["model"] for item in items] == [expected], base
    wrong = publish(registry, a1111_file(10), f"{source}:basee@1", filename="basee.pt", base_model="SDXL 1.0")
    assert wrong.status_code == 400 and "sdxl model but the file is sd1" in wrong.json()["error"]["message"]
    assert get(registry, f"/api/v1/embeddings/{source}/basee").status_code == 404  # nothing stored
    bad = get(registry, "/api/v1/embeddings", params={"base_model": "SD 9"})
    assert bad.status_code == 400 and "SD 1.5" in bad.json()["error"]["message"]


def test_modelspec_fills_trigger_and_kind_when_the_publisher_gives_none(registry: Server, source: str) -> None:
    spec = {"modelspec.architecture": "stable-diffusion-xl-v1-base/textual-inversion",
            "modelspec.trigger_phrase": "zqxneg", "modelspec.is_negative_embedding": "true",
            "modelspec.license": "CreativeML-OpenRAIL-M", "modelspec.title": "ZQX"}
    data = save_safetensors({"clip_l": torch.zeros(1, 768), "clip_g": torch.zeros(1, 1280)}, metadata=spec)
    record = publish(registry, data, f"{source}:spec@1", filename="whatever.safetensors").json()
    assert (record["trigger"], record["kind"], record["base_model"], record["license"]) == \
        ("zqxneg", "negative", "SDXL 1.0", "CreativeML-OpenRAIL-M")
    given = publish(registry, data, f"{source}:spec2@1", filename="w.safetensors", trigger="mine", kind="positive")
    assert (given.json()["trigger"], given.json()["kind"]) == ("mine", "positive")


def test_licence_permissions_and_publisher_are_kept_and_checked(registry: Server, source: str) -> None:
    meta = {"license": "Apache-2.0 OR MIT", "publisher": "Jane Doe",
            "permissions": {"allowNoCredit": True, "allowCommercialUse": ["Image", "Sell"], "allowDerivatives": False}}
    record = publish(registry, a1111_file(11), f"{source}:lic@1", filename="lic.pt", **meta).json()
    assert record["license"] == "Apache-2.0 OR MIT" and record["publisher"] == "Jane Doe"
    assert record["permissions"] == meta["permissions"]
    plain = publish(registry, a1111_file(12), f"{source}:lic2@1", filename="lic2.pt").json()
    assert plain["publisher"] == source and plain["license"] is None  # the source publishes it
    for bad, says in (({"license": "not a licence!"}, "SPDX"), ({"permissions": {"allowEverything": True}}, "unknown"),
                      ({"permissions": {"allowCommercialUse": ["Everything"]}}, "allowCommercialUse"),
                      ({"permissions": {"allowNoCredit": "yes"}}, "boolean")):
        response = publish(registry, a1111_file(13), f"{source}:lic3@1", filename="lic3.pt", **bad)
        assert response.status_code == 400 and says in response.json()["error"]["message"], bad
    assert get(registry, f"/api/v1/embeddings/{source}/lic3").status_code == 404


def test_picklescan_verdict_is_kept_per_version(registry: Server, source: str) -> None:
    pickled = publish(registry, a1111_file(14), f"{source}:scan@1", filename="scan.pt").json()
    assert pickled["pickle_scan"]["result"] == "Success"
    assert "torch._utils._rebuild_tensor_v2" in pickled["pickle_scan"]["message"]
    st = publish(registry, save_safetensors({"emb_params": torch.zeros(1, 768)}), f"{source}:scan2@1",
                 filename="scan2.safetensors").json()
    assert st["pickle_scan"] == {"result": "Success", "message": "No Pickle imports"}


def test_the_client_publishes_what_the_publisher_knows(registry: Server, source: str) -> None:
    from pseudoword.registry.client import RegistryClient

    with RegistryClient(registry.url, token=registry.admin_token) as client:
        result = client.publish(a1111_file(15), id=f"{source}:viaclient@1", filename="viaclient.pt",
                                base_model="SD 1.5", license="MIT", publisher="Studio X",
                                permissions={"allowDerivatives": True})
        assert result.created
        found = client.by_hash(result.record["files"][0]["sha256"][:12])
        assert (found["base_model"], found["license"], found["publisher"], found["permissions"]) == \
            ("SD 1.5", "MIT", "Studio X", {"allowDerivatives": True})
        assert [r["id"] for r in client.search(base_model="SD 1.5", source=source)["items"]] == [found["id"]]

"""The registry as a Hugging Face Hub endpoint for clients we did not write: huggingface_hub's
``hf_hub_download`` / ``HfApi.model_info`` and diffusers' ``load_textual_inversion("source/model")``
with ``HF_ENDPOINT`` pointed at a live registry (SD1 and SDXL), giving vectors equal to the file's."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from safetensors.torch import save as save_safetensors

from tests.conftest import ROOT
from tests.integration.api import get, publish
from tests.integration.servers import Server

_SCRUB = ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT", "HUGGING_FACE_HUB_TOKEN", "TRANSFORMERS_OFFLINE")


def run_client(server: Server, job: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    spec = tmp_path / f"job-{job['job']}.json"
    spec.write_text(json.dumps({"cache": str(tmp_path / "hf-cache"), **job}))
    env = {key: value for key, value in os.environ.items() if key not in _SCRUB}
    env.update(HF_ENDPOINT=server.url, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_XET="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "tests.integration.hub_client", str(spec)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def sd1_file(seed: int = 0) -> tuple[bytes, torch.Tensor]:
    vectors = torch.randn(2, 768, generator=torch.Generator().manual_seed(seed))
    return save_safetensors({"emb_params": vectors}), vectors


def test_hf_hub_download_and_model_info(registry: Server, source: str, tmp_path: Path) -> None:
    first, _ = sd1_file(1)
    second, _ = sd1_file(2)
    one = publish(registry, first, f"{source}:HubNeg@1", filename="hubneg.safetensors").json()
    two = publish(registry, second, f"{source}:HubNeg@2", filename="hubneg.safetensors").json()
    files = ["learned_embeds.safetensors", "learned_embeds.bin", "hubneg.safetensors", "hubneg.pt"]
    got = run_client(registry, {"job": "download", "repo": f"{source}/hubneg", "files": files}, tmp_path)
    by_format = {f["format"]: f["sha256"] for f in two["files"]}  # main = the newest version
    assert {name: f["sha256"] for name, f in got["files"].items()} == {
        "learned_embeds.safetensors": by_format["diffusers"], "learned_embeds.bin": by_format["diffusers-bin"],
        "hubneg.safetensors": by_format["safetensors"], "hubneg.pt": by_format["a1111"]}
    commit = got["info"]["sha"]
    assert len(commit) == 40 and {f["snapshot"] for f in got["files"].values()} == {commit}
    assert got["info"]["id"] == f"{source}/HubNeg" and sorted(got["info"]["siblings"]) == sorted(files)
    # huggingface_hub's own exceptions, from the X-Error-Code of each 404
    assert got["errors"]["entry"] in ("EntryNotFoundError", "RemoteEntryNotFoundError")
    assert (got["errors"]["revision"], got["errors"]["repo"]) == ("RevisionNotFoundError", "RepositoryNotFoundError")
    pinned = run_client(registry, {"job": "download", "repo": f"{source}/hubneg", "revision": "1",
                                   "files": ["learned_embeds.safetensors"]}, tmp_path)
    old = {f["format"]: f["sha256"] for f in one["files"]}
    assert pinned["files"]["learned_embeds.safetensors"]["sha256"] == old["diffusers"]
    assert pinned["info"]["sha"] != commit  # one commit per version, stable:
    again = run_client(registry, {"job": "download", "repo": f"{source}/hubneg", "revision": pinned["info"]["sha"],
                                  "files": ["learned_embeds.safetensors"]}, tmp_path)
    assert again["info"]["sha"] == pinned["info"]["sha"]


def test_resolve_headers_as_the_hub_sends_them(registry: Server, source: str) -> None:
    data, _ = sd1_file(3)
    record = publish(registry, data, f"{source}:heads@1", filename="heads.safetensors").json()
    url = f"{registry.url}/{source}/heads/resolve/main/learned_embeds.safetensors"
    head = httpx.head(url, timeout=30)
    diffusers_file = next(f for f in record["files"] if f["format"] == "diffusers")
    assert head.status_code == 200 and head.headers["x-linked-etag"] == f'"{diffusers_file["sha256"]}"'
    assert head.headers["etag"] == f'"{diffusers_file["sha256"]}"' and len(head.headers["x-repo-commit"]) == 40
    assert head.headers["content-length"] == head.headers["x-linked-size"] == str(diffusers_file["size"])
    body = httpx.get(url, timeout=30)
    assert hashlib.sha256(body.content).hexdigest() == diffusers_file["sha256"]
    missing = httpx.head(f"{registry.url}/{source}/heads/resolve/main/model.safetensors", timeout=30)
    assert missing.status_code == 404 and missing.headers["x-error-code"] == "EntryNotFound"
    body = get(registry, f"/{source}/heads/resolve/main/model.safetensors").json()
    assert body["error"]["code"] == "not_found" and "learned_embeds.safetensors" in body["error"]["message"]
    assert httpx.head(f"{registry.url}/{source}/nope/resolve/main/x", timeout=30).headers["x-error-code"] == "RepoNotFound"


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["sd1", "sdxl"])
def test_diffusers_load_textual_inversion_from_the_registry(registry: Server, source: str, tmp_path: Path,
                                                           corpus_dir: Path, architecture: str) -> None:
    generator = torch.Generator().manual_seed(4)
    if architecture == "sdxl":
        tensors = {"clip_l": torch.randn(2, 768, generator=generator), "clip_g": torch.randn(2, 1280, generator=generator)}
    else:
        tensors = {"emb_params": torch.randn(3, 768, generator=generator)}
    data = save_safetensors(tensors)
    response = publish(registry, data, f"{source}:tiload{architecture}@1", filename=f"tiload{architecture}.safetensors")
    assert response.status_code == 201, response.text
    expected = tmp_path / "expected.safetensors"
    expected.write_bytes(data)
    got = run_client(registry, {"job": "diffusers", "repo": f"{source}/tiload{architecture}", "architecture": architecture,
                                "trigger": f"tiload{architecture}", "expected": str(expected),
                                "tokenizer": str(corpus_dir / "clip-tokenizer"),
                                "tokenizer_2": str(corpus_dir / "clip-tokenizer-2")}, tmp_path)
    assert set(got) == set(tensors)
    for key, tensor in tensors.items():
        assert got[key] == {"equal": True, "rows": tensor.shape[0], "max_diff": 0.0}, key

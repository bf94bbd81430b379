"""An in-memory registry speaking the HTTP contract (resolve, blobs, by-hash), for resolver
unit tests through a real ``RegistryClient`` on an ``httpx.MockTransport``; files by digest or
by version (the route the resolver uses, so downloads count for the version).

It counts requests, so tests can assert "one batch request" and "no download", and it can be
told to serve corrupted bytes or to be unreachable.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import torch

from pseudoword.registry.core import Embedding, canonical_bytes, file_hashes

URL = "http://registry.test"


def make_embedding(seed: int, architecture: str = "sd1", n: int = 2) -> Embedding:
    gen = torch.Generator().manual_seed(seed)
    if architecture == "sdxl":
        vectors = {"clip_l": torch.randn(n, 768, generator=gen), "clip_g": torch.randn(n, 1280, generator=gen)}
    else:
        vectors = {"emb_params": torch.randn(n, 768 if architecture == "sd1" else 1024, generator=gen)}
    return Embedding(vectors=vectors, architecture=architecture, source_format="safetensors")  # type: ignore[arg-type]


@dataclass
class FakeRegistry:
    """Versions by ``source:model@version``; blobs by canonical sha256."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # "POST /api/v1/resolve", "GET /api/v1/embeddings/.../download"
    corrupt: bool = False  # serve wrong bytes for every blob
    down: bool = False  # every request fails to connect
    delay: float = 0.0  # seconds each blob download takes
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, ref: str, emb: Embedding, *, trigger: str | None = None, kind: str = "positive",
            yanked: bool = False, created_at: str | None = None) -> dict[str, Any]:
        head, version = ref.split("@")
        source, model = head.split(":")
        data = canonical_bytes(emb)
        hashes = file_hashes(data)
        record = {
            "id": ref, "air": f"urn:air:{emb.architecture}:embedding:{ref}", "source": source, "model": model,
            "version": version, "architecture": emb.architecture, "vectors": emb.num_vectors, "dtype": emb.dtype,
            "kind": kind, "trigger": trigger or model, "tags": [], "title": None, "description": None,
            "sha256": hashes.sha256, "size": len(data), "original_sha256": hashes.sha256, "original_size": len(data),
            "original_format": "safetensors", "autov2": hashes.autov2, "a1111_hash": hashes.a1111, "metadata": {},
            "yanked": yanked, "yanked_reason": "bad" if yanked else None,
            "created_at": created_at or f"2026-01-01T00:00:{len(self.records):02d}Z", "downloads": 0,
            "download_url": f"/api/v1/embeddings/{source}/{model}/{version}/download",
        }
        self.records[ref] = record
        self.blobs[hashes.sha256] = data
        return record

    def count(self, prefix: str) -> int:
        return sum(1 for r in self.requests if r.startswith(prefix))

    def downloads(self) -> int:
        """File downloads, by digest or by version."""
        return sum(1 for r in self.requests if r.startswith("GET /api/v1/blobs/") or r.endswith("/download"))

    # -- lookups -----------------------------------------------------------------------------

    def _lookup(self, ref: str) -> dict[str, Any]:
        match = re.fullmatch(r"(?:urn:air:(\w+):embedding:)?([a-z0-9_-]+):([\w.-]+?)(?:@([\w.-]+))?", ref)
        if ref.startswith("sha256:") or re.fullmatch(r"[0-9a-f]{10}|[0-9a-f]{12}|[0-9a-f]{64}", ref):
            value = ref.removeprefix("sha256:")
            for record in self.records.values():
                if record["sha256"].startswith(value) and len(value) in (10, 12, 64):
                    return {"ref": ref, "record": record}
            return {"ref": ref, "error": {"code": "not_found", "message": f"no embedding has hash {value}", "detail": {}}}
        if match is None:
            return {"ref": ref, "error": {"code": "invalid_reference", "message": f"bad ref {ref}", "detail": {}}}
        eco, source, model, version = match.groups()
        candidates = [r for r in self.records.values() if r["source"] == source and r["model"] == model]
        if version is not None:
            candidates = [r for r in candidates if r["version"] == version]
        else:
            candidates = sorted((r for r in candidates if not r["yanked"]), key=lambda r: r["created_at"])[-1:]
        if not candidates:
            return {"ref": ref, "error": {"code": "not_found", "message": f"{ref} not found", "detail": {}}}
        record = candidates[-1]
        if eco and eco != record["architecture"]:
            return {"ref": ref, "error": {"code": "architecture_mismatch",
                                          "message": f"{ref} is {record['architecture']}", "detail": {}}}
        return {"ref": ref, "record": record}

    # -- HTTP --------------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(f"{request.method} {request.url.path}")
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if request.method == "POST" and path == "/api/v1/resolve":
            refs = json.loads(request.content)["refs"]
            return httpx.Response(200, json={"results": [self._lookup(ref) for ref in refs]})
        version_download = re.fullmatch(r"/api/v1/embeddings/([^/]+)/([^/]+)/([^/]+)/download", path)
        if request.method == "GET" and (path.startswith("/api/v1/blobs/") or version_download):
            if version_download:
                record = self.records.get("{}:{}@{}".format(*version_download.groups()))
                digest = record["sha256"] if record else ""
            else:
                digest = path.rsplit("/", 1)[1]
            if digest not in self.blobs:
                return httpx.Response(404, json={"error": {"code": "not_found", "message": "no blob", "detail": {}}})
            time.sleep(self.delay)
            data = self.blobs[digest]
            if self.corrupt:
                data = data[:-4] + b"\0\0\0\0"
            return httpx.Response(200, content=data, headers={"ETag": f'"{digest}"'})
        if request.method == "GET" and path.startswith("/api/v1/by-hash/"):
            result = self._lookup(path.rsplit("/", 1)[1])
            if "record" in result:
                return httpx.Response(200, json=result["record"])
            return httpx.Response(404, json={"error": result["error"]})
        if path == "/healthz":
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": f"no route {path}", "detail": {}}})

    def client(self) -> Any:
        from pseudoword.registry.client import RegistryClient

        return RegistryClient(URL, transport=httpx.MockTransport(self.handler))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

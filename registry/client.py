"""The typed HTTP client for the registry (used by the CLI and the runtime).

The server answers errors as ``{"error": {"code", "message", "detail"}}``; the client raises the
class ``error_for_code`` names, so callers catch ``Conflict`` or ``RemoteNotFound`` rather than
parsing status codes (as huggingface_hub does). A connection that cannot be made at all is
``RegistryUnreachable``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from pseudoword.registry.core.errors import (
    IntegrityError,
    PseudowordError,
    RegistryUnreachable,
    RemoteNotFound,
    error_for_code,
    error_for_status,
)
from pseudoword.registry.core.refs import ModelRef, parse_model_ref

DEFAULT_REGISTRY = "http://127.0.0.1:8000"
API = "/api/v1"
Progress = Callable[[int, int], None]
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class PublishResult:
    record: dict[str, Any]
    created: bool  # False when the same ID and content were already published (a no-op)


def default_registry_url() -> str:
    return os.environ.get("PSEUDOWORD_REGISTRY") or DEFAULT_REGISTRY


class RegistryClient:
    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = (url or default_registry_url()).rstrip("/")
        token = token if token is not None else os.environ.get("PSEUDOWORD_TOKEN")
        headers = {"User-Agent": "pseudoword-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport,
                                  follow_redirects=True)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- catalogue --------------------------------------------------------------------------------

    def publish(self, file: Path | bytes, *, id: str, filename: str | None = None, trigger: str | None = None,
                kind: str | None = None, tags: tuple[str, ...] | list[str] = (), title: str | None = None,
                description: str | None = None, progress: Progress | None = None, base_model: str | None = None,
                license: str | None = None, permissions: dict[str, Any] | None = None,
                publisher: str | None = None) -> PublishResult:
        """Publish a file; ``base_model`` (e.g. "SD 1.5"), ``license`` (SPDX), ``permissions``
        (Civitai's allow* flags) and ``publisher`` are shown with the version."""
        data = file.read_bytes() if isinstance(file, Path) else bytes(file)
        name = filename or (file.name if isinstance(file, Path) else "embedding.safetensors")
        metadata = {"id": id, "trigger": trigger, "kind": kind, "tags": list(tags), "title": title,
                    "description": description, "base_model": base_model, "license": license,
                    "permissions": permissions, "publisher": publisher}
        metadata = {key: value for key, value in metadata.items() if value not in (None, [])}
        request = self._http.build_request(
            "POST", f"{API}/embeddings",
            files={"file": (name, data, "application/octet-stream")},
            data={"metadata": json.dumps(metadata)},
        )
        if progress is not None:
            request.stream = _ProgressStream(request.stream, int(request.headers.get("content-length", len(data))),
                                             progress)
        response = self._send(request)
        return PublishResult(record=response.json(), created=response.status_code == 201)

    def search(self, q: str | None = None, *, architecture: str | None = None, kind: str | None = None,
               tag: str | None = None, source: str | None = None, sort: str = "relevance", limit: int = 20,
               cursor: str | None = None, base_model: str | None = None) -> dict[str, Any]:
        params = {"q": q, "architecture": architecture, "kind": kind, "tag": tag, "source": source,
                  "sort": sort, "limit": limit, "cursor": cursor, "base_model": base_model}
        return self._json("GET", f"{API}/embeddings", params={k: v for k, v in params.items() if v is not None})

    def get_model(self, source: str, model: str) -> dict[str, Any]:
        return self._json("GET", f"{API}/embeddings/{_seg(source)}/{_seg(model)}")

    def get_version(self, ref: str) -> dict[str, Any]:
        parsed = parse_model_ref(ref, require_version=True)
        return self._json("GET", _version_path(parsed))

    def resolve(self, refs: list[str]) -> list[dict[str, Any]]:
        """One round trip for many refs: a ``{"ref", "record"}`` or ``{"ref", "error"}`` per ref."""
        return self._json("POST", f"{API}/resolve", json={"refs": list(refs)})["results"]

    def by_hash(self, digest: str) -> dict[str, Any]:
        return self._json("GET", f"{API}/by-hash/{_seg(digest)}")

    def yank(self, ref: str, reason: str) -> dict[str, Any]:
        parsed = parse_model_ref(ref, require_version=True)
        return self._json("POST", f"{_version_path(parsed)}/yank", json={"reason": reason})

    def unyank(self, ref: str) -> dict[str, Any]:
        parsed = parse_model_ref(ref, require_version=True)
        return self._json("DELETE", f"{_version_path(parsed)}/yank")

    # -- blobs ------------------------------------------------------------------------------------

    def download(self, sha256: str, *, version: str | None = None, format: str = "safetensors",
                 progress: Progress | None = None) -> bytes:
        """A file's bytes: the canonical blob by digest, or, with ``version`` (an ID), that version's
        download (counted for it; ``format`` a1111 or diffusers for an export with its trigger).
        The canonical form's SHA-256 is checked before returning."""
        return b"".join(self._download_chunks(sha256, version, format, progress))

    def download_to(self, sha256: str, path: Path, *, version: str | None = None, format: str = "safetensors",
                    progress: Progress | None = None) -> Path:
        tmp = path.with_name(f".{path.name}.part")
        try:
            with tmp.open("wb") as out:
                for chunk in self._download_chunks(sha256, version, format, progress):
                    out.write(chunk)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def _download_chunks(self, sha256: str, version: str | None, fmt: str,
                         progress: Progress | None) -> Iterator[bytes]:
        digest = hashlib.sha256()
        chunks: list[bytes] = []
        params = {} if fmt == "safetensors" else {"format": fmt}
        if version is not None:
            path = f"{_version_path(parse_model_ref(version, require_version=True))}/download"
        elif fmt != "safetensors":
            raise ValueError("an export carries a version's trigger: pass version=")
        else:
            path = f"{API}/blobs/{_seg(sha256)}"
        try:
            with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                total = int(response.headers.get("content-length") or 0)
                done = 0
                for chunk in response.iter_bytes(_CHUNK):
                    digest.update(chunk)
                    chunks.append(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        except httpx.TransportError as exc:
            raise RegistryUnreachable(f"registry {self.url} unreachable: {exc}") from None
        if fmt == "safetensors" and digest.hexdigest() != sha256.lower():
            raise IntegrityError(f"downloaded blob has SHA-256 {digest.hexdigest()}, expected {sha256}",
                                 {"expected": sha256, "actual": digest.hexdigest()})
        yield from chunks

    # -- tokens and health ------------------------------------------------------------------------

    def create_token(self, source: str | None = None, admin: bool = False, name: str = "") -> dict[str, Any]:
        return self._json("POST", f"{API}/tokens", json={"source": source, "admin": admin, "name": name})

    def list_tokens(self) -> list[dict[str, Any]]:
        return self._json("GET", f"{API}/tokens")

    def revoke_token(self, token_id: int | str) -> dict[str, Any]:
        return self._json("DELETE", f"{API}/tokens/{_seg(str(token_id))}")

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/healthz")

    # -- plumbing ---------------------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(self._http.build_request(method, path, **kwargs))
        if not response.content:
            return None
        return response.json()

    def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self._http.send(request)
        except httpx.TransportError as exc:
            raise RegistryUnreachable(f"registry {self.url} unreachable: {exc}") from None
        if response.status_code >= 400:
            self._raise_for(response)
        return response

    def _raise_for(self, response: httpx.Response) -> None:
        try:
            body = response.json()["error"]
            code, message, detail = body["code"], body["message"], body.get("detail") or {}
        except (ValueError, KeyError, TypeError):
            code = error_for_status(response.status_code).code
            message = f"registry answered HTTP {response.status_code}: {response.text[:200]}"
            detail = {}
        cls = error_for_code(code)
        error = cls(message, detail) if cls is not PseudowordError else PseudowordError(message, detail)
        if cls is PseudowordError:
            error.code = code  # type: ignore[misc] - keep an unknown server code visible
        raise error


class _ProgressStream(httpx.SyncByteStream):
    """Reports bytes as httpx sends the multipart body."""

    def __init__(self, inner: Any, total: int, progress: Progress) -> None:
        self._inner, self._total, self._progress = inner, total, progress

    def __iter__(self) -> Iterator[bytes]:
        done = 0
        for chunk in self._inner:
            done += len(chunk)
            self._progress(done, self._total)
            yield chunk


def _seg(value: str) -> str:
    return quote(value, safe="")


def _version_path(ref: ModelRef) -> str:
    return f"{API}/embeddings/{_seg(ref.source)}/{_seg(ref.model)}/{_seg(ref.version or '')}"


__all__ = ["PublishResult", "RegistryClient", "RemoteNotFound", "default_registry_url"]

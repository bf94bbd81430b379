"""The typed HTTP client for the registry (used by the CLI and the runtime).

The server answers errors as ``{"error": {"code", "message", "detail"}}``; the client raises the
class ``error_for_code`` names, so callers catch ``Conflict`` or ``RemoteNotFound`` rather than
parsing status codes (as huggingface_hub does). A connection that cannot be made at all is
``RegistryUnreachable``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from pseudoword.registry.core.env import DEFAULT_REGISTRY, registry_token, registry_url
from pseudoword.registry.core.errors import (
    ArchitectureMismatch,
    IntegrityError,
    InvalidResponse,
    PseudowordError,
    RegistryUnreachable,
    RemoteNotFound,
    error_for_code,
    error_for_status,
)
from pseudoword.registry.core.files import atomic_write
from pseudoword.registry.core.limits import MAX_RESOLVE_REFS, MAX_SEARCH_PAGE
from pseudoword.registry.core.record import ModelRecord, PreviewRecord, ResolveAnswer, VersionRecord
from pseudoword.registry.core.refs import HashRef, ModelRef, Ref, parse_model_ref, parse_ref
from pseudoword.registry.core.versions import latest_version, newest_first

API = "/api/v1"

Progress = Callable[[int, int], None]
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class PublishResult:
    record: VersionRecord
    created: bool  # False when the same ID and content were already published (a no-op)


def default_registry_url() -> str:
    """``PSEUDOWORD_REGISTRY``, else ``DEFAULT_REGISTRY`` (one rule: ``core/env.py``)."""
    return registry_url()


class RegistryClient:
    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = (url or default_registry_url()).rstrip("/")
        token = token if token is not None else registry_token()
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
                description: str | None = None, progress: Progress | None = None,
                previews: list[Path] | tuple[Path, ...] = (), base_model: str | None = None,
                license: str | None = None, permissions: dict[str, Any] | None = None,
                publisher: str | None = None) -> PublishResult:
        """Publish a file, with preview images (PNG/JPEG/WEBP) checked and stored beside it;
        ``base_model`` (e.g. "SD 1.5"), ``license`` (SPDX), ``permissions`` (Civitai's allow* flags)
        and ``publisher`` are shown with the version."""
        data = file.read_bytes() if isinstance(file, Path) else bytes(file)
        name = filename or (file.name if isinstance(file, Path) else "embedding.safetensors")
        metadata = {"id": id, "trigger": trigger, "kind": kind, "tags": list(tags), "title": title,
                    "description": description, "base_model": base_model, "license": license,
                    "permissions": permissions, "publisher": publisher}
        metadata = {key: value for key, value in metadata.items() if value not in (None, [])}
        request = self._http.build_request(
            "POST", f"{API}/embeddings",
            files=[("file", (name, data, "application/octet-stream")), *_preview_parts(previews)],
            data={"metadata": json.dumps(metadata)},
        )
        if progress is not None:
            request.stream = _ProgressStream(request.stream, int(request.headers.get("content-length", len(data))),
                                             progress)
        response = self._send(request)
        return PublishResult(record=VersionRecord.from_wire(response.json()), created=response.status_code == 201)

    def search(self, q: str | None = None, *, architecture: str | None = None, kind: str | None = None,
               tag: str | None = None, source: str | None = None, sort: str = "relevance", limit: int = 20,
               cursor: str | None = None, base_model: str | None = None) -> dict[str, Any]:
        params = {"q": q, "architecture": architecture, "kind": kind, "tag": tag, "source": source,
                  "sort": sort, "limit": limit, "cursor": cursor, "base_model": base_model}
        return self._json("GET", f"{API}/embeddings", params={k: v for k, v in params.items() if v is not None})

    def iter_search(self, q: str | None = None, *, limit: int | None = None, cursor: str | None = None,
                    page_size: int | None = None, **filters: Any) -> SearchPages:
        """Every result of a search (at most ``limit``), page after page; ``next_cursor`` on the
        returned iterator says where a later call would go on (None when the results ran out)."""
        return SearchPages(self, q, limit, cursor, page_size, filters)

    def get_model(self, source: str, model: str) -> ModelRecord:
        return ModelRecord.from_wire(self._json("GET", f"{API}/embeddings/{_seg(source)}/{_seg(model)}"))

    def get_version(self, ref: str) -> VersionRecord:
        parsed = parse_model_ref(ref, require_version=True)
        return VersionRecord.from_wire(self._json("GET", _version_path(parsed)))

    def version_meant(self, ref: str | Ref) -> tuple[ModelRecord, VersionRecord]:
        """Which version a reference means, with its model (all versions): a hash's version; a
        pinned version (yanked or not); else the newest not yanked (``core/versions.py``), or, when
        every version is yanked, the newest, marked yanked (to show, where resolve refuses)."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        if isinstance(parsed, HashRef):
            found = self.by_hash(str(parsed))
            return self.get_model(found.source, found.model), found
        model = self.get_model(parsed.source, parsed.model)
        versions = model.versions
        record: VersionRecord | None
        if parsed.version is not None:
            record = next((v for v in versions if v.version == parsed.version), None)
            if record is None:
                raise RemoteNotFound(f"{parsed} not found: {parsed.model_id} has no version {parsed.version!r}",
                                     {"ref": str(parsed), "versions": [v.version for v in versions]})
        else:
            record = latest_version(versions) or (max(versions, key=newest_first) if versions else None)
            if record is None:
                raise RemoteNotFound(f"{parsed} has no versions", {"ref": str(parsed)})
        if parsed.ecosystem and record.architecture != parsed.ecosystem:
            raise ArchitectureMismatch(f"{ref} asks for {parsed.ecosystem} but {record.id} is {record.architecture}",
                                       {"requested": parsed.ecosystem, "stored": record.architecture})
        return model, record

    def resolve(self, refs: Sequence[str]) -> list[ResolveAnswer]:
        """A record or an error per ref, in order: one round trip per ``MAX_RESOLVE_REFS`` refs
        (the most one request may carry)."""
        refs = list(refs)
        results: list[ResolveAnswer] = []
        for start in range(0, len(refs), MAX_RESOLVE_REFS):
            page = self._json("POST", f"{API}/resolve", json={"refs": refs[start : start + MAX_RESOLVE_REFS]})
            results += [ResolveAnswer.from_wire(item) for item in page["results"]]
        return results

    def by_hash(self, digest: str) -> VersionRecord:
        return VersionRecord.from_wire(self._json("GET", f"{API}/by-hash/{_seg(digest)}"))

    def add_previews(self, ref: str, previews: list[Path] | list[tuple[str, bytes]]) -> list[PreviewRecord]:
        """Attach preview images to a published version (its publisher's token); the version's previews."""
        parsed = parse_model_ref(ref, require_version=True)
        answer = self._json("POST", f"{_version_path(parsed)}/previews", files=_preview_parts(previews))
        if not isinstance(answer, list):
            raise InvalidResponse("the previews answer must be a list")
        return [PreviewRecord.from_wire(item) for item in answer]

    def preview_bytes(self, url: str) -> bytes:
        """A preview image by its URL (``previews[i].url`` of a version record)."""
        response = self._send(self._http.build_request("GET", url))
        return response.content

    def yank(self, ref: str, reason: str) -> VersionRecord:
        parsed = parse_model_ref(ref, require_version=True)
        return VersionRecord.from_wire(self._json("POST", f"{_version_path(parsed)}/yank", json={"reason": reason}))

    def unyank(self, ref: str) -> VersionRecord:
        parsed = parse_model_ref(ref, require_version=True)
        return VersionRecord.from_wire(self._json("DELETE", f"{_version_path(parsed)}/yank"))

    # -- blobs ------------------------------------------------------------------------------------

    def download(self, sha256: str, *, version: str | None = None, format: str = "safetensors",
                 progress: Progress | None = None) -> bytes:
        """A file's bytes: the canonical blob by digest, or, with ``version`` (an ID), that version's
        download (counted for it; ``format`` a1111 or diffusers for an export with its trigger).
        The canonical form's SHA-256 is checked before returning."""
        return b"".join(self._download_chunks(sha256, version, format, progress))

    def download_to(self, sha256: str, path: Path, *, version: str | None = None, format: str = "safetensors",
                    progress: Progress | None = None) -> Path:
        return atomic_write(path, self._download_chunks(sha256, version, format, progress))

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

    def whoami(self) -> dict[str, Any]:
        """The token's scope (``token_id``, ``source``, ``admin``); ``Unauthorized`` for a bad token."""
        return self._json("GET", f"{API}/whoami")

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
            error.code = code  # type: ignore[misc]  # keep an unknown server code visible
        raise error


class SearchPages:
    """Iterates search results across pages; ``next_cursor`` is where it stopped."""

    def __init__(self, client: RegistryClient, q: str | None, limit: int | None, cursor: str | None,
                 page_size: int | None, filters: dict[str, Any]) -> None:
        self._client, self._q, self._limit, self._filters = client, q, limit, filters
        self._page_size = max(1, min(page_size or MAX_SEARCH_PAGE, MAX_SEARCH_PAGE))
        self.next_cursor = cursor

    def __iter__(self) -> Iterator[VersionRecord]:
        given = 0
        while self._limit is None or given < self._limit:
            want = self._page_size if self._limit is None else min(self._page_size, self._limit - given)
            page = self._client.search(self._q, limit=want, cursor=self.next_cursor, **self._filters)
            items = page.get("items") or []
            self.next_cursor = page.get("next_cursor")
            yield from (VersionRecord.from_wire(item) for item in items)
            given += len(items)
            if not self.next_cursor or not items:
                return


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


def _preview_parts(previews: Any) -> list[tuple[str, tuple[str, bytes, str]]]:
    parts = []
    for item in previews:
        name, data = (item.name, item.read_bytes()) if isinstance(item, Path) else item
        parts.append(("preview", (name, data, "application/octet-stream")))
    return parts


def _seg(value: str) -> str:
    return quote(value, safe="")


def _version_path(ref: ModelRef) -> str:
    return f"{API}/embeddings/{_seg(ref.source)}/{_seg(ref.model)}/{_seg(ref.version or '')}"


__all__ = ["DEFAULT_REGISTRY", "ModelRecord", "PublishResult", "RegistryClient", "RemoteNotFound", "ResolveAnswer",
           "VersionRecord", "default_registry_url"]

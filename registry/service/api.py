"""HTTP controllers under /api/v1: thin over ``Catalogue`` and ``auth``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.concurrency import sync_to_thread
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from litestar.response import Redirect, Stream
from msgspec import Struct
from sqlmodel import Session

from pseudoword.registry.core import EXPORT_FORMATS, export_bytes, read_embedding
from pseudoword.registry.core.errors import InvalidRequest, NotFound, TooLarge
from pseudoword.registry.core.refs import ModelRef, parse_model_ref
from pseudoword.registry.service import auth
from pseudoword.registry.service.catalogue import Catalogue, parse_metadata
from pseudoword.registry.service.search import Query, search

_SHA256 = re.compile(r"[0-9a-f]{64}")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass
class PublishForm:
    file: UploadFile
    metadata: str


class ResolveBody(Struct):
    refs: list[str]


class YankBody(Struct):
    reason: str = ""


class TokenBody(Struct):
    source: str | None = None
    admin: bool = False
    name: str = ""


def catalogue_of(request: Request[Any, Any, Any]) -> Catalogue:
    return request.app.state.catalogue  # type: ignore[no-any-return]


def principal_of(request: Request[Any, Any, Any]) -> auth.Principal:
    with Session(catalogue_of(request).engine) as session:
        return auth.authenticate(session, request.headers.get("authorization"))


def _version_ref(source: str, model: str, version: str) -> ModelRef:
    return parse_model_ref(f"{source}:{model}@{version}", require_version=True)


_INLINE_RESOLVE_REFS = 16


class EmbeddingsController(Controller):
    path = "/api/v1"
    tags = ["embeddings"]

    @post("/embeddings", sync_to_thread=True, status_code=201, summary="Publish an embedding version")
    def publish(self, request: Request[Any, Any, Any],
                data: Annotated[PublishForm, Body(media_type=RequestEncodingType.MULTI_PART)]) -> Response[dict[str, Any]]:
        catalogue = catalogue_of(request)
        principal = principal_of(request)
        meta = parse_metadata(data.metadata, catalogue.settings)
        principal.require_source(parse_model_ref(meta.id).source)
        if not isinstance(data.file, UploadFile):
            raise InvalidRequest("'file' must be a file part")
        content = data.file.file.read(catalogue.settings.max_upload_bytes + 1)
        if len(content) > catalogue.settings.max_upload_bytes:
            raise TooLarge(f"file is larger than {catalogue.settings.max_upload_bytes} bytes",
                           {"limit": catalogue.settings.max_upload_bytes})
        result, created = catalogue.publish(meta, content, data.file.filename)
        return Response(result, status_code=201 if created else 200)

    @get("/embeddings", sync_to_thread=True, summary="Search the catalogue")
    def search(
        self, request: Request[Any, Any, Any],
        q: Annotated[str | None, Parameter(max_length=200)] = None,
        architecture: Annotated[str | None, Parameter(max_length=8)] = None,
        kind: Annotated[str | None, Parameter(max_length=16)] = None,
        tag: Annotated[str | None, Parameter(max_length=64)] = None,
        source: Annotated[str | None, Parameter(max_length=64)] = None,
        sort: Annotated[str, Parameter(max_length=16)] = "relevance",
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Parameter(max_length=512)] = None,
    ) -> dict[str, Any]:
        catalogue = catalogue_of(request)
        query = Query(q=q, architecture=architecture, kind=kind, tag=tag, source=source, sort=sort,
                      limit=limit, cursor=cursor)
        with catalogue.session() as session:
            ids, next_cursor = search(session, query)
        return {"items": catalogue.records_by_ids(ids), "next_cursor": next_cursor}

    @get("/embeddings/{source:str}/{model:str}", sync_to_thread=True, summary="A model and its versions")
    def get_model(self, request: Request[Any, Any, Any], source: str, model: str) -> dict[str, Any]:
        ref = parse_model_ref(f"{source}:{model}")
        return catalogue_of(request).get_model(ref.source, ref.model)

    @get("/embeddings/{source:str}/{model:str}/{version:str}", sync_to_thread=True, summary="One version")
    def get_version(self, request: Request[Any, Any, Any], source: str, model: str, version: str) -> dict[str, Any]:
        return catalogue_of(request).get_version(_version_ref(source, model, version))

    @post("/embeddings/{source:str}/{model:str}/{version:str}/yank", sync_to_thread=True, status_code=200,
          summary="Yank a version (PEP 592)")
    def yank(self, request: Request[Any, Any, Any], source: str, model: str, version: str,
             data: YankBody) -> dict[str, Any]:
        ref = _version_ref(source, model, version)
        principal_of(request).require_source(ref.source)
        if len(data.reason) > 1000:
            raise InvalidRequest("reason is longer than 1000 characters")
        return catalogue_of(request).set_yanked(ref, True, data.reason)

    @delete("/embeddings/{source:str}/{model:str}/{version:str}/yank", sync_to_thread=True, status_code=200,
            summary="Unyank a version")
    def unyank(self, request: Request[Any, Any, Any], source: str, model: str, version: str) -> dict[str, Any]:
        ref = _version_ref(source, model, version)
        principal_of(request).require_source(ref.source)
        return catalogue_of(request).set_yanked(ref, False, None)

    @post("/resolve", status_code=200, summary="Resolve many references in one round trip")
    async def resolve(self, request: Request[Any, Any, Any], data: ResolveBody) -> dict[str, Any]:
        catalogue = catalogue_of(request)
        cached = catalogue.resolve_cached(data.refs)
        if cached is not None:  # every ref answered from memory: no database work at all
            return {"results": cached}
        if catalogue.engine.dialect.name == "sqlite" and len(data.refs) <= _INLINE_RESOLVE_REFS:
            # Embedded database: a few indexed reads of a local file (in WAL mode readers do not
            # wait for the writer) take less time than the hand-over to a worker thread and back,
            # which cost this hot endpoint a third of its throughput under load (bench_registry).
            # Large batches still go to a thread so one request cannot hold the loop for long.
            return {"results": catalogue.resolve(data.refs)}
        # A database across the network: its round trips must not hold up the event loop.
        return {"results": await sync_to_thread(catalogue.resolve, data.refs)}

    @get("/by-hash/{digest:str}", sync_to_thread=True, summary="Find a version by file hash")
    def by_hash(self, request: Request[Any, Any, Any], digest: str) -> dict[str, Any]:
        return catalogue_of(request).by_hash(digest)


class BlobsController(Controller):
    path = "/api/v1/blobs"
    tags = ["blobs"]

    @get("/{sha256:str}", sync_to_thread=True, summary="Download a stored file by its SHA-256")
    def download(self, request: Request[Any, Any, Any], sha256: str,
                 format: Annotated[str, Parameter(max_length=16)] = "safetensors") -> Response[Any]:
        catalogue = catalogue_of(request)
        if not _SHA256.fullmatch(sha256):
            raise InvalidRequest("a blob is addressed by 64 lowercase hex digits")
        if format not in EXPORT_FORMATS:
            raise InvalidRequest(f"format must be one of {', '.join(EXPORT_FORMATS)}")
        versions = catalogue.blob_versions(sha256)
        if not versions:
            raise NotFound(f"no blob {sha256}")
        if format != "safetensors":
            return self._export(catalogue, sha256, format, versions[0].trigger)
        etag = f'"{sha256}"'
        cache = {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable", "Accept-Ranges": "bytes"}
        if request.headers.get("if-none-match") in (etag, sha256):
            return Response(None, status_code=304, headers=cache)
        if catalogue.settings.presigned_downloads:
            url = catalogue.store.presigned_url(sha256)
            if url:
                catalogue.count_download(sha256)
                return Redirect(url, status_code=307, headers={"Cache-Control": "no-store"})
        size = versions[0].size
        start, length, status = 0, size, 200
        range_header = request.headers.get("range")
        if range_header:
            span = _parse_range(range_header, size)
            if span is None:
                return Response(None, status_code=416, headers={**cache, "Content-Range": f"bytes */{size}"})
            start, length = span
            status = 206
            cache["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
        chunks = catalogue.store.open_range(sha256, start, length)
        if start == 0:
            catalogue.count_download(sha256)
        return Stream(_iterate(chunks), status_code=status, media_type="application/octet-stream",
                      headers={**cache, "Content-Length": str(length),
                               "Content-Disposition": f'attachment; filename="{versions[0].trigger}.safetensors"'})

    @staticmethod
    def _export(catalogue: Catalogue, sha256: str, fmt: str, trigger: str) -> Response[bytes]:
        emb = read_embedding(catalogue.store.get(sha256))
        data = export_bytes(emb, fmt, trigger)
        suffix = ".pt" if fmt == "a1111" else ".safetensors"
        catalogue.count_download(sha256)
        return Response(data, media_type="application/octet-stream", headers={
            "ETag": f'"{sha256}-{fmt}"', "Cache-Control": "public, max-age=86400",
            "Content-Disposition": f'attachment; filename="{trigger}{suffix}"'})


class TokensController(Controller):
    path = "/api/v1/tokens"
    tags = ["tokens"]

    @post("/", sync_to_thread=True, status_code=201, summary="Create a token (admin)")
    def create(self, request: Request[Any, Any, Any], data: TokenBody) -> dict[str, Any]:
        principal_of(request).require_admin()
        with catalogue_of(request).session() as session:
            token, secret = auth.create_token(session, source=data.source, admin=data.admin, name=data.name)
            return {**auth.token_view(token), "token": secret}

    @get("/", sync_to_thread=True, summary="List tokens (admin)")
    def list(self, request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
        principal_of(request).require_admin()
        from sqlalchemy import select

        from pseudoword.registry.service.models import Token

        with catalogue_of(request).session() as session:
            return [auth.token_view(t) for t in session.execute(select(Token).order_by(Token.id)).scalars().all()]

    @delete("/{token_id:int}", sync_to_thread=True, status_code=200, summary="Revoke a token (admin)")
    def revoke(self, request: Request[Any, Any, Any], token_id: int) -> dict[str, Any]:
        principal_of(request).require_admin()
        with catalogue_of(request).session() as session:
            return auth.token_view(auth.revoke_token(session, token_id))


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """A single ``bytes=a-b`` range as (start, length); None when it cannot be satisfied."""
    match = _RANGE.fullmatch(header.strip())
    if not match or (not match[1] and not match[2]):
        return None
    if not match[1]:  # suffix range: the last N bytes
        length = min(int(match[2]), size)
        return (size - length, length) if length > 0 else None
    start = int(match[1])
    end = min(int(match[2]), size - 1) if match[2] else size - 1
    if start >= size or end < start:
        return None
    return start, end - start + 1


def _iterate(chunks: Iterator[bytes]) -> Iterator[bytes]:
    yield from chunks

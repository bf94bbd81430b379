"""HTTP controllers under /api/v1: thin over ``Catalogue``, ``auth`` and ``downloads``."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.concurrency import sync_to_thread
from litestar.connection import ASGIConnection
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, FromPath, JSONBody, Parameter
from msgspec import Meta, Struct
from sqlmodel import Session

from pseudoword.registry.core.errors import InvalidRequest, NotFound, TooLarge
from pseudoword.registry.core.limits import MAX_SEARCH_PAGE
from pseudoword.registry.core.refs import MAX_REF_LENGTH, ModelRef, parse_model_ref
from pseudoword.registry.service import auth, ratelimit
from pseudoword.registry.service.catalogue import Catalogue, parse_metadata
from pseudoword.registry.service.downloads import _precondition, is_head, serve_blob, serve_version
from pseudoword.registry.service.previews import check_images, embedded_preview
from pseudoword.registry.service.search import Query

_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Largest id a database integer column holds (token ids are checked against it before a query).
MAX_ID = 2**63 - 1
_PRINCIPAL = "principal"


# -- bodies and the error shape, as the OpenAPI schema documents them ----------------------------


@dataclass
class PublishForm:
    file: UploadFile
    metadata: str
    # PNG/JPEG/WEBP images (previews.py): one part or several named 'preview' (msgspec cannot
    # take "a file or a list of files" as a type, so the parts are checked in _preview_files).
    preview: Any = None


@dataclass
class PreviewForm:
    preview: Any = None


class ResolveBody(Struct):
    refs: list[Annotated[str, Meta(max_length=MAX_REF_LENGTH)]]  # how many: Settings.max_resolve_refs


class YankBody(Struct):
    reason: Annotated[str, Meta(max_length=1000)] = ""


class TokenBody(Struct):
    source: Annotated[str, Meta(max_length=64)] | None = None
    admin: bool = False
    name: Annotated[str, Meta(max_length=128)] = ""


class ErrorDetail(Struct):
    code: str
    message: str
    detail: dict[str, Any]


class ErrorBody(Struct):
    """Every error answer: ``{"error": {"code", "message", "detail"}}`` (DESIGN)."""

    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Invalid request or reference", 401: "A token is needed, or it is invalid or revoked",
    403: "The token may not do this", 404: "Not found", 409: "Conflict: the ID holds other content",
    412: "Precondition failed (If-Match)", 413: "Too large", 416: "Range not satisfiable",
    422: "Not an embedding file we accept", 429: "Too many requests from this client (see Retry-After)",
    503: "The catalogue database or the blob store is unavailable (see Retry-After)",
    507: "No space left to store the file",
}


#: The other answers of a download (RFC 9110), besides 200 with the file.
DOWNLOAD_ANSWERS = {
    206: ResponseSpec(data_container=bytes, media_type="application/octet-stream", description="The byte range asked for"),
    304: ResponseSpec(data_container=None, description="Not modified (If-None-Match)"),
    307: ResponseSpec(data_container=None, description="Redirect to a presigned object URL"),
}


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI documentation of the error answers a route gives, in our error shape. Every route
    may answer 400 (bad parameters), 429 (rate limit) and 503 (a backing service is down)."""
    return {status: ResponseSpec(data_container=ErrorBody, description=_DESCRIPTIONS[status])
            for status in sorted({400, 429, 503, *statuses})}


# -- helpers ----------------------------------------------------------------------------------------


def catalogue_of(request: Request[Any, Any, Any] | ASGIConnection[Any, Any, Any, Any]) -> Catalogue:
    return request.app.state.catalogue  # type: ignore[no-any-return]


def _authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> auth.Principal:
    with Session(catalogue_of(connection).engine) as session:
        return auth.authenticate(session, connection.headers.get("authorization"))


async def require_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: writes need a valid token, checked before the request body is read at all."""
    connection.state[_PRINCIPAL] = await sync_to_thread(_authenticate, connection)


async def require_admin(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    await require_token(connection, handler)
    principal_of(connection).require_admin()


def principal_of(request: Request[Any, Any, Any] | ASGIConnection[Any, Any, Any, Any]) -> auth.Principal:
    return request.state[_PRINCIPAL]  # type: ignore[no-any-return]


def _version_ref(source: FromPath[str], model: FromPath[str], version: FromPath[str]) -> ModelRef:
    return parse_model_ref(f"{source}:{model}@{version}", require_version=True)


def _preview_files(parts: Any, catalogue: Catalogue) -> list[tuple[str | None, bytes]]:
    """The uploaded preview images' bytes, each read only up to its limit."""
    items = [] if parts is None else parts if isinstance(parts, list) else [parts]
    if len(items) > catalogue.settings.max_previews_per_request:
        raise InvalidRequest(f"{len(items)} preview images; at most {catalogue.settings.max_previews_per_request} "
                             "per request")
    files = []
    for part in items:
        if not isinstance(part, UploadFile):
            raise InvalidRequest("each 'preview' part must be a file (with a filename)")
        data = part.file.read(catalogue.settings.max_preview_bytes + 1)
        if len(data) > catalogue.settings.max_preview_bytes:
            raise TooLarge(f"preview {part.filename!r} is larger than {catalogue.settings.max_preview_bytes} bytes",
                           {"limit": catalogue.settings.max_preview_bytes})
        files.append((part.filename, data))
    return files


_INLINE_RESOLVE_REFS = 16
_FORMAT = Annotated[str, Parameter(max_length=16, description="original (the file as uploaded), safetensors (canonical), a1111 (.pt), diffusers, or the Hub layouts diffusers-bin, diffusers-clip_l, diffusers-clip_g")]


class EmbeddingsController(Controller):
    path = "/api/v1"
    tags = ["embeddings"]

    @post("/embeddings", sync_to_thread=True, status_code=201, summary="Publish an embedding version",
          guards=[require_token], opt={ratelimit.OPT: "publish"},
          responses={**errors(401, 403, 409, 413, 422, 507), 200: ResponseSpec(
              data_container=dict[str, Any], description="Already published with this content: nothing changed")})
    def publish(self, request: Request[Any, Any, Any],
                data: Annotated[PublishForm, Body(media_type=RequestEncodingType.MULTI_PART)]) -> Response[dict[str, Any]]:
        catalogue = catalogue_of(request)
        if not isinstance(data.file, UploadFile) or not isinstance(data.metadata, str):
            raise InvalidRequest("expected a multipart form with a 'file' part (with a filename) and a 'metadata' field")
        meta = parse_metadata(data.metadata, catalogue.settings)
        principal_of(request).require_source(parse_model_ref(meta.id).source)
        content = data.file.file.read(catalogue.settings.max_upload_bytes + 1)
        if len(content) > catalogue.settings.max_upload_bytes:
            raise TooLarge(f"file is larger than {catalogue.settings.max_upload_bytes} bytes",
                           {"limit": catalogue.settings.max_upload_bytes})
        images = check_images(_preview_files(data.preview, catalogue), catalogue.settings)  # before anything is stored
        images = images or embedded_preview(content, catalogue.settings)  # else the file's ModelSpec thumbnail
        result, created = catalogue.publish(meta, content, data.file.filename)
        if images:
            version_id = catalogue.previews.version_id(result.source, result.model, result.version)
            result = replace(result, previews=tuple(catalogue.previews.attach(version_id, images)))
        return Response(result.to_wire(), status_code=201 if created else 200)

    @post("/embeddings/{source:str}/{model:str}/{version:str}/previews", sync_to_thread=True, status_code=200,
          summary="Add preview images to a version (its publisher)", guards=[require_token],
          opt={ratelimit.OPT: "publish"}, responses=errors(401, 403, 404, 413, 422))
    def add_previews(self, request: Request[Any, Any, Any], source: FromPath[str], model: FromPath[str], version: FromPath[str],
                     data: Annotated[PreviewForm, Body(media_type=RequestEncodingType.MULTI_PART)]) -> list[dict[str, Any]]:
        ref = _version_ref(source, model, version)
        principal_of(request).require_source(ref.source)
        catalogue = catalogue_of(request)
        version_id = catalogue.previews.version_id(ref.source, ref.model, ref.version or "")
        images = check_images(_preview_files(data.preview, catalogue), catalogue.settings)
        if not images:
            raise InvalidRequest("send one or more 'preview' image parts")
        return [preview.to_wire() for preview in catalogue.previews.attach(version_id, images)]

    @delete("/embeddings/{source:str}/{model:str}/{version:str}/previews/{sha256:str}", sync_to_thread=True,
            status_code=200, summary="Remove a preview image from a version (its publisher)", guards=[require_token],
            responses=errors(401, 403, 404))
    def remove_preview(self, request: Request[Any, Any, Any], source: FromPath[str], model: FromPath[str],
                       version: FromPath[str], sha256: FromPath[str]) -> list[dict[str, Any]]:
        ref = _version_ref(source, model, version)
        principal_of(request).require_source(ref.source)
        if not _SHA256.fullmatch(sha256):
            raise InvalidRequest("a preview is addressed by 64 lowercase hex digits")
        catalogue = catalogue_of(request)
        version_id = catalogue.previews.version_id(ref.source, ref.model, ref.version or "")
        return [preview.to_wire() for preview in catalogue.previews.remove(version_id, sha256)]

    @get("/embeddings", sync_to_thread=True, summary="Search the catalogue", responses=errors())
    def search(
        self, request: Request[Any, Any, Any],
        q: Annotated[str | None, Parameter(max_length=200)] = None,
        architecture: Annotated[str | None, Parameter(max_length=8)] = None,
        kind: Annotated[str | None, Parameter(max_length=16)] = None,
        tag: Annotated[str | None, Parameter(max_length=64)] = None,
        source: Annotated[str | None, Parameter(max_length=64)] = None,
        sort: Annotated[str, Parameter(max_length=16)] = "relevance",
        limit: Annotated[int, Parameter(ge=1, le=MAX_SEARCH_PAGE)] = 20,
        cursor: Annotated[str | None, Parameter(max_length=512)] = None,
        base_model: Annotated[str | None, Parameter(max_length=32, description="e.g. SD 1.5, SDXL 1.0, Pony")] = None,
    ) -> dict[str, Any]:
        catalogue = catalogue_of(request)
        query = Query(q=q, architecture=architecture, kind=kind, tag=tag, source=source, sort=sort,
                      limit=limit, cursor=cursor, base_model=base_model)
        items, next_cursor = catalogue.search_page(query)
        return {"items": [item.to_wire() for item in items], "next_cursor": next_cursor}

    @get("/embeddings/{source:str}/{model:str}", sync_to_thread=True, summary="A model and its versions",
         responses=errors(404))
    def get_model(self, request: Request[Any, Any, Any], source: FromPath[str], model: FromPath[str]) -> dict[str, Any]:
        ref = parse_model_ref(f"{source}:{model}")
        catalogue = catalogue_of(request)
        found = catalogue.get_model(ref.source, ref.model)
        return replace(found, versions=tuple(catalogue.previews.add_to_records(found.versions))).to_wire()

    @get("/embeddings/{source:str}/{model:str}/{version:str}", sync_to_thread=True, summary="One version",
         responses=errors(404))
    def get_version(self, request: Request[Any, Any, Any], source: FromPath[str], model: FromPath[str], version: FromPath[str]) -> dict[str, Any]:
        catalogue = catalogue_of(request)
        found = catalogue.get_version(_version_ref(source, model, version))
        return catalogue.previews.add_to_records([found])[0].to_wire()

    @get("/embeddings/{source:str}/{model:str}/{version:str}/download", summary="Download one version's file",
         description="The canonical safetensors file, or an export carrying this version's trigger. "
                     "HEAD, Range, If-None-Match / If-Match / If-Range; counted once the file was sent.",
         responses={**errors(404, 412, 416), **DOWNLOAD_ANSWERS}, media_type="application/octet-stream")
    async def download(self, request: Request[Any, Any, Any], source: FromPath[str], model: FromPath[str], version: FromPath[str],
                       format: _FORMAT = "safetensors") -> Response[bytes]:
        catalogue = catalogue_of(request)
        row = await sync_to_thread(catalogue.version_row, _version_ref(source, model, version))
        return await serve_version(request, catalogue, row, format)

    @post("/embeddings/{source:str}/{model:str}/{version:str}/yank", sync_to_thread=True, status_code=200,
          summary="Yank a version (PEP 592)", guards=[require_token], responses=errors(401, 403, 404))
    def yank(self, request: Request[Any, Any, Any], source: FromPath[str], model: FromPath[str], version: FromPath[str],
             data: JSONBody[YankBody]) -> dict[str, Any]:
        ref = _version_ref(source, model, version)
        principal_of(request).require_source(ref.source)
        return catalogue_of(request).set_yanked(ref, True, data.reason).to_wire()

    @delete("/embeddings/{source:str}/{model:str}/{version:str}/yank", sync_to_thread=True, status_code=200,
            summary="Unyank a version", guards=[require_token], responses=errors(401, 403, 404))
    def unyank(self, request: Request[Any, Any, Any], source: FromPath[str], model: FromPath[str], version: FromPath[str]) -> dict[str, Any]:
        ref = _version_ref(source, model, version)
        principal_of(request).require_source(ref.source)
        return catalogue_of(request).set_yanked(ref, False, None).to_wire()

    @post("/resolve", status_code=200, summary="Resolve many references in one round trip", responses=errors())
    async def resolve(self, request: Request[Any, Any, Any], data: JSONBody[ResolveBody]) -> dict[str, Any]:
        catalogue = catalogue_of(request)
        cached = catalogue.resolve_cached(data.refs)
        if cached is not None:  # every ref answered from memory: no database work at all
            return {"results": [answer.to_wire() for answer in cached]}
        if catalogue.engine.dialect.name == "sqlite" and len(data.refs) <= _INLINE_RESOLVE_REFS:
            # Embedded database: a few indexed reads of a local file (in WAL mode readers do not
            # wait for the writer) take less time than the hand-over to a worker thread and back,
            # which cost this hot endpoint a third of its throughput under load (bench_registry).
            # Large batches still go to a thread so one request cannot hold the loop for long.
            return {"results": [answer.to_wire() for answer in catalogue.resolve(data.refs)]}
        # A database across the network: its round trips must not hold up the event loop.
        return {"results": [answer.to_wire() for answer in await sync_to_thread(catalogue.resolve, data.refs)]}

    @get("/by-hash/{digest:str}", sync_to_thread=True, summary="Find a version by file hash", responses=errors(404))
    def by_hash(self, request: Request[Any, Any, Any], digest: Annotated[str, Parameter(max_length=80)]) -> dict[str, Any]:
        return catalogue_of(request).by_hash(digest).to_wire()


class BlobsController(Controller):
    path = "/api/v1/blobs"
    tags = ["blobs"]

    @get("/{sha256:str}", summary="Download a stored canonical file by its SHA-256",
         description="Named by its digest and not counted: a version's own file is at "
                     "/api/v1/embeddings/{source}/{model}/{version}/download.",
         responses={**errors(404, 412, 416), **DOWNLOAD_ANSWERS}, media_type="application/octet-stream")
    async def download(self, request: Request[Any, Any, Any], sha256: FromPath[str],
                       format: _FORMAT = "safetensors") -> Response[bytes]:
        catalogue = catalogue_of(request)
        if not _SHA256.fullmatch(sha256):
            raise InvalidRequest("a blob is addressed by 64 lowercase hex digits")
        if format != "safetensors":
            raise InvalidRequest("a blob is served as stored (safetensors); exports carry a version's trigger: "
                                 "use /api/v1/embeddings/{source}/{model}/{version}/download?format=" + format[:16])
        size = await sync_to_thread(catalogue.blob_size, sha256)
        if size is None:
            raise NotFound(f"no blob {sha256}")
        return await serve_blob(request, catalogue, sha256, size)


class PreviewsController(Controller):
    path = "/api/v1/previews"
    tags = ["previews"]

    @get("/{sha256:str}", summary="A preview image or its thumbnail, by SHA-256",
         description="Immutable: ETag is the digest. Content type from the checked image (thumbnails are WEBP).",
         responses={**errors(404), 304: ResponseSpec(data_container=None, description="Not modified")},
         media_type="image/png")
    async def image(self, request: Request[Any, Any, Any], sha256: FromPath[str]) -> Response[bytes]:
        catalogue = catalogue_of(request)
        if not _SHA256.fullmatch(sha256):
            raise InvalidRequest("a preview is addressed by 64 lowercase hex digits")
        found = await sync_to_thread(catalogue.previews.blob, sha256)
        if found is None:
            raise NotFound(f"no preview {sha256}")
        media_type, size = found
        headers = {"ETag": f'"{sha256}"', "Cache-Control": "public, max-age=31536000, immutable",
                   "Content-Security-Policy": "default-src 'none'; sandbox", "Content-Disposition": "inline"}
        condition = _precondition(request, headers["ETag"])  # RFC 9110's rules, as for downloads
        if condition is not None:
            return Response(b"", status_code=condition, media_type=media_type, headers=headers)
        if is_head(request):
            return Response(b"", media_type=media_type, headers={**headers, "Content-Length": str(size)})
        return Response(await catalogue.store.aget(sha256), media_type=media_type, headers=headers)


class TokensController(Controller):
    path = "/api/v1/tokens"
    tags = ["tokens"]
    guards = [require_admin]

    @post("/", sync_to_thread=True, status_code=201, summary="Create a token (admin)", responses=errors(401, 403))
    def create(self, request: Request[Any, Any, Any], data: JSONBody[TokenBody]) -> dict[str, Any]:
        with catalogue_of(request).session() as session:
            token, secret = auth.create_token(session, source=data.source, admin=data.admin, name=data.name)
            return {**auth.token_view(token), "token": secret}

    @get("/", sync_to_thread=True, summary="List tokens (admin)", responses=errors(401, 403))
    def list(self, request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
        with catalogue_of(request).session() as session:
            return auth.list_tokens(session)

    @delete("/{token_id:int}", sync_to_thread=True, status_code=200, summary="Revoke a token (admin)",
            responses=errors(401, 403, 404))
    def revoke(self, request: Request[Any, Any, Any],
               token_id: Annotated[int, Parameter(ge=1, le=MAX_ID)]) -> dict[str, Any]:
        with catalogue_of(request).session() as session:
            return auth.token_view(auth.revoke_token(session, token_id))

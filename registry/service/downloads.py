"""Serving a version's file: the one download function every route calls (the native API, and
the Hugging Face and Civitai compatible routes).

A download is addressed by version, so its file name, the trigger inside an export and the count
belong to that version, even when other versions (of any source) share the stored bytes. HTTP per
RFC 9110: HEAD, strong ETags with If-None-Match / If-Match / If-Range, one byte range (a
multi-range or another unit is ignored: the whole file is sent), and RFC 6266 / 5987
``Content-Disposition`` names. Bytes come from the blob store on its guarded pool (a store that
does not answer gives 503 within the deadline and holds no API thread). The count is taken after
the body went out, only for a GET that delivered the file's last byte.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.background_tasks import BackgroundTask
from litestar.concurrency import sync_to_thread
from litestar.enums import MediaType
from litestar.response import Redirect

from pseudoword.registry.core import export_bytes, read_embedding
from pseudoword.registry.core.errors import InvalidRequest, NotFound
from pseudoword.registry.core.writing import EXPORT_SUFFIXES, safe_filename, served_formats
from pseudoword.registry.service.catalogue import Catalogue

#: A marker the HEAD rewrite (app.py) leaves in the scope: HEAD is served as GET without a body.
HEAD_MARK = "pseudoword.head"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
#: Larger numbers than this many digits are past any file's end (and past int parsing limits).
_MAX_DIGITS = 18
_IMMUTABLE = "public, max-age=31536000, immutable"
_EXPORT_CACHE = "public, max-age=86400"


@dataclass(frozen=True)
class _File:
    etag: str  # quoted, strong
    size: int
    filename: str
    cache_control: str


def is_head(request: Request[Any, Any, Any]) -> bool:
    return bool(request.scope.get(HEAD_MARK))  # type: ignore[call-overload]


async def serve_version(request: Request[Any, Any, Any], catalogue: Catalogue, version: Any,
                        fmt: str = "safetensors", headers: dict[str, str] | None = None,
                        filename: str | None = None) -> Response[Any]:
    """Answer a download of ``version`` (a versions row) in ``fmt``: original (the file as
    uploaded), safetensors (the canonical bytes) or an export carrying this version's trigger.
    ``headers`` are added to the answer (the Hub's), ``filename`` replaces the usual name."""
    formats = ("original", *served_formats(version.architecture))
    if fmt not in formats:
        raise InvalidRequest(f"format must be one of {', '.join(formats)}, not {fmt[:20]!r}")
    count = BackgroundTask(catalogue.count_download, version)
    stored = await sync_to_thread(catalogue.version_file, version.id, fmt)
    if stored is not None and stored.stored:  # every file of a version published since 0005a
        name = filename or (stored.filename if fmt == "original" else safe_filename(version.trigger) + EXPORT_SUFFIXES[fmt])
        file = _File(f'"{stored.sha256}"', stored.size, name, _IMMUTABLE)
        return await _serve(request, catalogue, stored.sha256, file, count, extra=headers)
    if fmt == "original":
        raise NotFound("the file as uploaded was not kept for this version (published before uploads were kept); "
                       "its hash still finds it", {"original_sha256": version.original_sha256})
    filename = filename or safe_filename(version.trigger) + EXPORT_SUFFIXES[fmt]
    if fmt == "safetensors":
        file = _File(f'"{version.sha256}"', version.size, filename, _IMMUTABLE)
        return await _serve(request, catalogue, version.sha256, file, count, extra=headers)
    canonical = await catalogue.store.aget(version.sha256)
    data = await sync_to_thread(_export, canonical, fmt, version.trigger)
    file = _File(f'"{hashlib.sha256(data).hexdigest()}"', len(data), filename, _EXPORT_CACHE)
    return await _serve(request, catalogue, version.sha256, file, count, data, extra=headers)


async def serve_blob(request: Request[Any, Any, Any], catalogue: Catalogue, sha256: str, size: int) -> Response[Any]:
    """A stored canonical file by digest: named by its digest (no version's name), not counted."""
    file = _File(f'"{sha256}"', size, f"{sha256}.safetensors", _IMMUTABLE)
    return await _serve(request, catalogue, sha256, file, None)


def _export(canonical: bytes, fmt: str, trigger: str) -> bytes:
    return export_bytes(read_embedding(canonical), fmt, trigger)


async def _serve(request: Request[Any, Any, Any], catalogue: Catalogue, sha256: str, file: _File,
                 count: BackgroundTask | None, data: bytes | None = None,
                 extra: dict[str, str] | None = None) -> Response[Any]:
    headers = {"ETag": file.etag, "Cache-Control": file.cache_control, "Accept-Ranges": "bytes",
               "Content-Disposition": content_disposition(file.filename), **(extra or {})}
    condition = _precondition(request, file.etag)
    if condition is not None:
        return Response(b"", status_code=condition, media_type="application/octet-stream", headers=headers)
    span = None
    if "if-range" not in request.headers or _matches(request.headers["if-range"], file.etag, weak=False):
        span = parse_range(request.headers.get("range"), file.size)
    if span == "unsatisfiable":
        return Response(b"", status_code=416, media_type="application/octet-stream",
                        headers={**headers, "Content-Range": f"bytes */{file.size}"})
    head = is_head(request)
    start, length = span if isinstance(span, tuple) else (0, file.size)
    delivers_end = start + length == file.size
    background = count if count is not None and not head and delivers_end else None
    if data is None and span is None and not head and catalogue.settings.presigned_downloads:
        url = await catalogue.store.apresigned_url(sha256)
        if url:
            return Redirect(url, status_code=307, headers={"Cache-Control": "no-store"}, background=background,
                            media_type=MediaType.TEXT)
    status = 200
    if isinstance(span, tuple):
        status = 206
        headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{file.size}"
    if head:
        # uvicorn sends no body for HEAD; the length is the one a GET would send.
        return Response(b"", status_code=status, media_type="application/octet-stream",
                        headers={**headers, "Content-Length": str(length)})
    if data is None:
        data = await catalogue.store.aget(sha256)
    return Response(data[start:start + length], status_code=status, media_type="application/octet-stream",
                    headers=headers, background=background)


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name as RFC 5987 UTF-8."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in filename)
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=a-b`` range as (start, length); None to send the whole file (no range, another
    unit, several ranges or a malformed one: RFC 9110 lets a server ignore those);
    ``"unsatisfiable"`` for a well-formed range past the end."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if not match or (not match[1] and not match[2]):
        return None

    def number(digits: str) -> int:
        return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS

    if not match[1]:  # suffix range: the last N bytes
        length = min(number(match[2]), size)
        return (size - length, length) if length > 0 else "unsatisfiable"
    start = number(match[1])
    end = min(number(match[2]), size - 1) if match[2] else size - 1
    if match[2] and number(match[2]) < start:
        return None  # invalid (last < first): ignored
    if start >= size:
        return "unsatisfiable"
    return start, end - start + 1


def _precondition(request: Request[Any, Any, Any], etag: str) -> int | None:
    """304 or 412 when a conditional header says so (RFC 9110 section 13.2.2 order)."""
    if_match = request.headers.get("if-match")
    if if_match is not None and not _matches(if_match, etag, weak=False):
        return 412
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and _matches(if_none_match, etag, weak=True):
        return 304
    return None


def _matches(header: str, etag: str, *, weak: bool) -> bool:
    """Whether an If-* list (``*``, ``W/"x"``, ``"a", "b"``) names ``etag``."""
    header = header.strip()
    if header == "*":
        return True
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            if not weak:
                continue
            candidate = candidate[2:]
        if candidate == etag or (weak and candidate == etag.strip('"')):
            return True
    return False

"""Civitai compatible routes: the REST subset Civitai clients use for textual inversions, over the
same catalogue (numeric ids are the catalogue's own model and version ids).

- ``GET /api/v1/models`` (``types``, ``query``, ``tag``, ``username``, ``baseModels``, ``sort``,
  ``limit``, ``page`` or ``cursor``), ``GET /api/v1/models/{id}``,
  ``GET /api/v1/model-versions/{id}``, ``GET /api/v1/model-versions/by-hash/{hash}`` and
  ``POST /api/v1/model-versions/by-hash`` (a JSON list of hashes, at most 100, what the A1111
  extension sends), ``GET|HEAD /api/download/models/{versionId}`` (``serve_version``: Range,
  ``Content-Disposition``; ``?format=`` picks another file of the version).
- A version's files: the upload first (``primary``, what the download route sends by default),
  then the canonical safetensors and each export; ``hashes`` holds SHA256, AutoV2 and the A1111
  short hash (key ``A1111``: the first 12 hex digits of the SHA-256, what A1111 writes into
  ``TI hashes``) of that very file, so a by-hash lookup of any file the user has finds it.
- Decisions where Civitai's meaning has no counterpart here: ``username`` is the source (the
  namespace a token publishes to) and ``creator.username`` the publisher as given at publish
  (else the source); ``baseModel`` is "Other" when neither file nor publisher named one; licence
  flags the publisher did not grant are answered as not granted; ``virusScanResult`` is "Pending"
  (the registry runs no virus scanner; ``pickleScanResult`` is picklescan's); a yanked version is
  still listed and found by hash, with ``yanked: true``; ``images`` are the version's previews.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.concurrency import sync_to_thread
from litestar.params import Parameter, QueryParameter
from msgspec import Meta
from sqlalchemy import Row

from pseudoword.registry.core.errors import InvalidRequest, NotFound, PseudowordError
from pseudoword.registry.core.versions import newest_first
from pseudoword.registry.core.writing import served_formats
from pseudoword.registry.service.api import DOWNLOAD_ANSWERS, MAX_ID, catalogue_of, errors
from pseudoword.registry.service.catalogue import FILE_ORDER, Catalogue
from pseudoword.registry.service.compat_hf import zulu_time
from pseudoword.registry.service.downloads import serve_version
from pseudoword.registry.service.search import Query, search

#: Hashes one bulk by-hash request may carry (the A1111 extension sends batches of 100).
MAX_BULK_HASHES = 100
MODEL_TYPE = "TextualInversion"
#: Civitai's sort names -> the catalogue's sorts ("Highest Rated": relevance with a query).
_SORTS = {"Most Downloaded": "downloads", "Newest": "newest", "Highest Rated": "relevance",
          "Most Liked": "downloads", "Most Discussed": "downloads", "Most Collected": "downloads"}
#: Civitai's ``format`` query values -> our formats (the native names are accepted too).
_FORMATS = {"SafeTensor": "safetensors", "PickleTensor": "a1111"}
_FILE_FORMATS = {"original": None, "safetensors": "SafeTensor", "a1111": "PickleTensor", "diffusers": "SafeTensor",
                 "diffusers-bin": "PickleTensor", "diffusers-clip_l": "SafeTensor", "diffusers-clip_g": "SafeTensor"}
#: What a licence flag means when the publisher did not set it: not granted.
_NOT_GRANTED = {"allowNoCredit": False, "allowCommercialUse": ["None"], "allowDerivatives": False,
                "allowDifferentLicense": False}
_MAX_PAGE = 100
_ID = Annotated[int, Parameter(ge=1, le=MAX_ID)]
#: Ids are 32-bit integer columns: a larger id names nothing (and never reaches the database).
_LARGEST_ID = 2**31 - 1


def _existing_id(value: int, what: str) -> int:
    if value > _LARGEST_ID:
        raise NotFound(f"no {what} with id {value}")
    return value


def version_images(catalogue: Catalogue, base: str, version_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each version's preview images (previews.py) in Civitai's ``images[]`` shape: ``url``,
    ``nsfw``/``nsfwLevel`` (nothing is rated here: safe), ``width``, ``height``, ``hash`` (Civitai's is
    a BlurHash placeholder, which we do not compute: null), ``type``, ``meta`` (the A1111 settings
    the image carried, under Civitai's names)."""
    found = catalogue.previews.for_version_ids(version_ids)
    return {version_id: [{"url": base + image.url, "nsfw": False, "nsfwLevel": 1,
                          "width": image.width, "height": image.height, "hash": None, "type": "image",
                          "meta": infotext_meta(image.parameters) or None}
                         for image in found.get(version_id, [])]
            for version_id in version_ids}


#: A1111's infotext keys (its last line, "Steps: 20, Sampler: Euler a, ...") as Civitai's meta names them.
_META_KEYS = {"Steps": "steps", "Sampler": "sampler", "CFG scale": "cfgScale", "Seed": "seed", "Size": "Size",
              "Model": "Model", "Model hash": "Model hash", "Clip skip": "Clip skip"}


def infotext_meta(text: str) -> dict[str, Any]:
    """Civitai's ``meta`` from an image's A1111 ``parameters``: the prompt, the negative prompt and
    the settings line; keys Civitai does not name are left out."""
    if not text.strip():
        return {}
    lines = text.strip().split("\n")
    settings = lines.pop() if len(lines) > 1 and lines[-1].startswith("Steps: ") else ""
    negative = next((i for i, line in enumerate(lines) if line.startswith("Negative prompt: ")), len(lines))
    meta: dict[str, Any] = {"prompt": "\n".join(lines[:negative]).strip()}
    if negative < len(lines):
        meta["negativePrompt"] = "\n".join(lines[negative:])[len("Negative prompt: "):].strip()
    for item in settings.split(", "):
        key, _, value = item.partition(": ")
        if key in _META_KEYS and value:
            meta[_META_KEYS[key]] = int(value) if value.isdigit() else float(value) if _is_float(value) else value
    return meta


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _base(request: Request[Any, Any, Any]) -> str:
    return str(request.base_url).rstrip("/")


def download_url(base: str, version_id: int, fmt: str | None = None) -> str:
    return f"{base}/api/download/models/{version_id}" + (f"?format={fmt}" if fmt else "")


def file_doc(base: str, version: Row[Any], file: Row[Any]) -> dict[str, Any]:
    primary = file.format == "original"
    kind = _FILE_FORMATS.get(file.format) or ("SafeTensor" if file.filename.endswith(".safetensors") else "PickleTensor")
    return {
        "id": version.id * 16 + (FILE_ORDER.index(file.format) if file.format in FILE_ORDER else 15),
        "name": file.filename, "type": "Model", "sizeKB": file.size / 1024,
        "metadata": {"format": kind, "size": None, "fp": "fp16" if version.dtype == "float16" else "fp32"},
        "pickleScanResult": version.pickle_scan_result if primary else "Success",
        "pickleScanMessage": version.pickle_scan_message if primary else "written by the registry",
        "virusScanResult": "Pending", "virusScanMessage": "this registry runs no virus scanner",
        "scannedAt": zulu_time(version.created_at),
        "hashes": {"AutoV2": file.sha256[:10].upper(), "SHA256": file.sha256.upper(), "A1111": file.sha256[:12].upper()},
        "downloadUrl": download_url(base, version.id, None if primary else file.format),
        "primary": primary,
        "stored": bool(file.stored),
    }


def version_doc(base: str, model: Row[Any], version: Row[Any], files: list[Row[Any]],
                images: list[dict[str, Any]], *, with_model: bool = True) -> dict[str, Any]:
    """A model version as ``/api/v1/model-versions/{id}`` answers it."""
    ref = f"{version.source}:{model.name}@{version.version}"
    doc: dict[str, Any] = {
        "id": version.id, "modelId": model.id, "name": version.version,
        "description": version.description or None,
        "baseModel": version.base_model or "Other", "baseModelType": "Standard",
        "air": f"urn:air:{version.architecture}:embedding:{ref}",
        "status": "Published", "availability": "Public", "nsfwLevel": 1,
        "createdAt": zulu_time(version.created_at), "updatedAt": zulu_time(version.created_at),
        "publishedAt": zulu_time(version.created_at), "uploadType": "Created", "usageControl": "Download",
        "trainedWords": [version.trigger], "earlyAccessConfig": None, "earlyAccessEndsAt": None,
        "trainingStatus": None, "trainingDetails": None,
        "stats": {"downloadCount": version.downloads, "thumbsUpCount": 0, "thumbsDownCount": 0},
        "files": [file_doc(base, version, f) for f in files if f.stored],
        "images": images,
        "downloadUrl": download_url(base, version.id),
        "yanked": bool(version.yanked), "yankedReason": version.yanked_reason,
    }
    if with_model:
        doc["model"] = {"name": model.name, "type": MODEL_TYPE, "nsfw": False, "poi": False, "minor": False}
    return doc


def model_doc(base: str, model: Row[Any], versions: list[Row[Any]], files: dict[int, list[Row[Any]]],
              images: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """A model as ``/api/v1/models/{id}`` (and each item of the list) answers it."""
    # The catalogue's latest; with every version yanked, the newest speaks for the model.
    latest = next((v for v in versions if v.id == model.latest_version_id),
                  max(versions, key=newest_first) if versions else None)
    permissions = {**_NOT_GRANTED, **json.loads(latest.permissions or "{}")} if latest else dict(_NOT_GRANTED)
    return {
        "id": model.id, "name": model.name, "description": (latest.description or None) if latest else None,
        "type": MODEL_TYPE, "poi": False, "nsfw": False, "nsfwLevel": 1, "minor": False, **permissions,
        "license": latest.license if latest else None,
        "stats": {"downloadCount": model.downloads, "favoriteCount": 0, "thumbsUpCount": 0, "thumbsDownCount": 0,
                  "commentCount": 0, "ratingCount": 0, "rating": 0, "tippedAmountCount": 0},
        "creator": {"username": (latest.publisher if latest and latest.publisher else model.source), "image": None},
        "tags": json.loads(latest.tags or "[]") if latest else [],
        "modelVersions": [version_doc(base, model, v, files.get(v.id, []), images.get(v.id, []), with_model=False)
                          for v in versions],
    }


def _models(catalogue: Catalogue, base: str, model_ids: list[int]) -> list[dict[str, Any]]:
    models, versions, files = catalogue.models_by_ids(model_ids)
    images = version_images(catalogue, base, [v.id for rows in versions.values() for v in rows])
    return [model_doc(base, models[i], versions.get(i, []), files, images) for i in model_ids if i in models]


def _version(catalogue: Catalogue, base: str, version: Row[Any]) -> dict[str, Any]:
    models, _versions, files = catalogue.models_by_ids([version.model_id])
    images = version_images(catalogue, base, [version.id])
    return version_doc(base, models[version.model_id], version, files.get(version.id, []), images[version.id])


def list_models(catalogue: Catalogue, base: str, *, limit: int, page: int | None, cursor: str | None,
                query: str | None, tag: str | None, username: str | None, types: list[str],
                base_models: str | None, sort: str | None) -> dict[str, Any]:
    if types and MODEL_TYPE not in types:  # this registry holds textual inversions only
        return {"items": [], "metadata": {"totalItems": 0, "currentPage": page or 1, "pageSize": limit}}
    if sort is not None and sort not in _SORTS:
        raise InvalidRequest(f"sort must be one of {', '.join(_SORTS)}")
    bases = [b.strip() for b in (base_models or "").split(",") if b.strip()]
    if len(bases) > 1:
        raise InvalidRequest("baseModels: one base model at a time")
    order = _SORTS.get(sort or "Highest Rated", "relevance")
    if order == "relevance" and not query:
        order = "downloads"
    if page is not None and cursor is not None:
        raise InvalidRequest("pass page or cursor, not both")
    if page is not None and page > _MAX_PAGE:
        raise InvalidRequest(f"page is at most {_MAX_PAGE}; use cursor to go further")
    params = dict(q=query, tag=tag, source=username.lower() if username else None,
                  base_model=bases[0] if bases else None, sort=order, limit=limit)
    with catalogue.session() as session:
        ids, next_cursor = search(session, Query(**params, cursor=cursor))
        for _ in range((page or 1) - 1):  # a page number walks the keyset cursors from the start
            if next_cursor is None:
                ids = []
                break
            ids, next_cursor = search(session, Query(**params, cursor=next_cursor))
    records = catalogue.records_by_ids(ids)
    model_ids = list(dict.fromkeys(r.model_id for r in records if r.model_id is not None))
    metadata: dict[str, Any] = {"pageSize": limit, "currentPage": page or 1}
    if next_cursor:
        metadata["nextCursor"] = next_cursor
        metadata["nextPage"] = f"{base}/api/v1/models?limit={limit}&cursor={next_cursor}"
    return {"items": _models(catalogue, base, model_ids), "metadata": metadata}


class CivitaiController(Controller):
    tags = ["civitai compatible"]

    @get("/api/v1/models", sync_to_thread=True, summary="Search models (Civitai shape)", responses=errors())
    def models(
        self, request: Request[Any, Any, Any],
        limit: Annotated[int, Parameter(ge=1, le=100)] = 100,
        page: Annotated[int | None, Parameter(ge=1)] = None,
        cursor: Annotated[str | None, Parameter(max_length=512)] = None,
        text: Annotated[str | None, QueryParameter(name="query", max_length=200)] = None,  # Litestar reserves `query`
        tag: Annotated[str | None, Parameter(max_length=64)] = None,
        username: Annotated[str | None, Parameter(max_length=64)] = None,
        types: Annotated[list[str] | None, Parameter(max_items=16)] = None,
        base_models: Annotated[str | None, QueryParameter(name="baseModels", max_length=200)] = None,
        sort: Annotated[str | None, Parameter(max_length=32)] = None,
    ) -> dict[str, Any]:
        wanted = [t.strip() for value in types or [] for t in value.split(",") if t.strip()]
        return list_models(catalogue_of(request), _base(request), limit=limit, page=page, cursor=cursor,
                           query=text, tag=tag, username=username, types=wanted, base_models=base_models, sort=sort)

    @get("/api/v1/models/{model_id:int}", sync_to_thread=True, summary="A model (Civitai shape)",
         responses=errors(404))
    def model(self, request: Request[Any, Any, Any], model_id: _ID) -> dict[str, Any]:
        found = _models(catalogue_of(request), _base(request), [_existing_id(model_id, "model")])
        if not found:
            raise NotFound(f"no model with id {model_id}")
        return found[0]

    @get("/api/v1/model-versions/{version_id:int}", sync_to_thread=True, summary="A model version (Civitai shape)",
         responses=errors(404))
    def version(self, request: Request[Any, Any, Any], version_id: _ID) -> dict[str, Any]:
        catalogue = catalogue_of(request)
        return _version(catalogue, _base(request), catalogue.version_by_id(_existing_id(version_id, "version")))

    @get("/api/v1/model-versions/by-hash/{digest:str}", sync_to_thread=True,
         summary="The version with a file of this hash (SHA256, AutoV2 or the A1111 short hash)", responses=errors(404))
    def by_hash(self, request: Request[Any, Any, Any],
                digest: Annotated[str, Parameter(max_length=80)]) -> dict[str, Any]:
        catalogue = catalogue_of(request)
        return _version(catalogue, _base(request), catalogue.by_hash_row(digest.lower()))

    @post("/api/v1/model-versions/by-hash", sync_to_thread=True, status_code=200,
          summary="The versions with files of these hashes (at most 100; unknown ones are left out)",
          responses=errors())
    def by_hashes(self, request: Request[Any, Any, Any],
                  data: Annotated[list[Annotated[str, Meta(max_length=80)]], Meta(max_length=MAX_BULK_HASHES)]
                  ) -> list[dict[str, Any]]:
        if len(data) > MAX_BULK_HASHES:
            raise InvalidRequest(f"{len(data)} hashes; at most {MAX_BULK_HASHES} per request")
        catalogue = catalogue_of(request)
        base, found, seen = _base(request), [], set()
        for digest in data:
            try:
                version = catalogue.by_hash_row(digest.lower())
            except PseudowordError:  # not a hash, or no such file: Civitai leaves it out
                continue
            if version.id not in seen:
                seen.add(version.id)
                found.append(_version(catalogue, base, version))
        return found

    @get("/api/download/models/{version_id:int}", summary="Download a version's file (Civitai's download route)",
         description="The file as uploaded by default; format=SafeTensor (the canonical file), PickleTensor "
                     "(AUTOMATIC1111's .pt) or any format the native download takes. HEAD, Range, "
                     "Content-Disposition; counted like every download.",
         responses={**errors(404, 412, 416), **DOWNLOAD_ANSWERS}, media_type="application/octet-stream")
    async def download(self, request: Request[Any, Any, Any], version_id: _ID,
                       format: Annotated[str | None, Parameter(max_length=16)] = None,
                       type: Annotated[str | None, Parameter(max_length=32)] = None) -> Response[Any]:
        catalogue = catalogue_of(request)
        version = await sync_to_thread(catalogue.version_by_id, _existing_id(version_id, "version"))
        fmt = _FORMATS.get(format or "", format or "original")
        if fmt not in ("original", *served_formats(version.architecture)):
            raise InvalidRequest(f"format must be SafeTensor, PickleTensor or one of "
                                 f"{', '.join(('original', *served_formats(version.architecture)))}")
        return await serve_version(request, catalogue, version, fmt)

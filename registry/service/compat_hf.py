"""Hugging Face Hub compatible routes, so `huggingface_hub.hf_hub_download` and diffusers'
``load_textual_inversion("source/model")`` work with ``HF_ENDPOINT`` pointed at the registry.

Mapping (decided here, documented in the README):

- repo ``{source}/{model}``: the namespace is the source, the repository name the model (names
  compare case-insensitively, as on the Hub).
- revision: ``main`` is the newest version that is not yanked; a version name (``1``, ``v2``)
  pins that version (a yanked one too, as a pinned reference does); so does the 40-hex commit the
  registry gives each version (``X-Repo-Commit``): a hash of the version's numeric id and its
  canonical file, so it never changes and two versions never share it.
- files: ``learned_embeds.safetensors`` ``{<trigger>: [n, d]}`` and ``learned_embeds.bin`` (the
  same as a torch pickle) for sd1/sd2: what ``load_textual_inversion(repo)`` asks for. For sdxl,
  one file per text encoder, ``learned_embeds.safetensors`` (clip_l, for ``text_encoder``) and
  ``learned_embeds_2.safetensors`` (clip_g, for ``text_encoder_2``, via ``weight_name=``), and
  ``{trigger}.safetensors``, the ``{clip_l, clip_g}`` file diffusers' SDXL guide loads by hand.
  ``{trigger}.pt`` is the AUTOMATIC1111 file. Every one is a stored file of the version (served by
  ``serve_version``), so its ``ETag``/``X-Linked-Etag`` is its SHA-256 and its hash finds it.

Errors are the error table's JSON, plus the Hub's ``X-Error-Code`` (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``) that huggingface_hub turns into its own exceptions.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.concurrency import sync_to_thread
from litestar.params import Parameter
from sqlalchemy import Row

from pseudoword.registry.core.errors import InvalidReference, NotFound
from pseudoword.registry.core.refs import parse_model_ref
from pseudoword.registry.core.writing import safe_filename
from pseudoword.registry.service.api import DOWNLOAD_ANSWERS, catalogue_of, errors
from pseudoword.registry.service.catalogue import Catalogue
from pseudoword.registry.service.downloads import serve_version

#: What the error table adds as ``X-Error-Code`` (errors.py reads this detail key).
HF_ERROR_DETAIL = "hf_error_code"
_SEGMENT = Annotated[str, Parameter(max_length=128)]


def repo_files(version: Any) -> dict[str, str]:
    """File name in the repository -> the version's stored format."""
    stem = safe_filename(version.trigger)
    if version.architecture == "sdxl":
        return {"learned_embeds.safetensors": "diffusers-clip_l", "learned_embeds_2.safetensors": "diffusers-clip_g",
                f"{stem}.safetensors": "safetensors", f"{stem}.pt": "a1111"}
    return {"learned_embeds.safetensors": "diffusers", "learned_embeds.bin": "diffusers-bin",
            f"{stem}.safetensors": "safetensors", f"{stem}.pt": "a1111"}


def commit_of(version: Any) -> str:
    """The version's stable 40-hex commit id (``X-Repo-Commit``, the model-info ``sha``)."""
    return hashlib.sha1(f"pseudoword:{version.id}:{version.sha256}".encode()).hexdigest()


def _not_found(message: str, code: str, **detail: Any) -> NotFound:
    return NotFound(message, {**detail, HF_ERROR_DETAIL: code})


def find_revision(catalogue: Catalogue, namespace: str, name: str, revision: str) -> tuple[Row[Any], Row[Any]]:
    """(model row, version row) a repo and revision name; the Hub's not-found kinds otherwise."""
    try:
        ref = parse_model_ref(f"{namespace}:{name}")
        model, versions = catalogue.model_rows(ref.source, ref.model)
    except (InvalidReference, NotFound) as exc:  # an invalid name is a repository that does not exist, as on the Hub
        raise _not_found(f"repository {namespace[:64]}/{name[:128]} not found", "RepoNotFound",
                         reason=exc.message[:200]) from None
    if revision == "main":
        latest = next((v for v in versions if v.id == model.latest_version_id), None)
        if latest is None:
            raise _not_found(f"{namespace}/{name} has no version that is not yanked; pin one as the revision",
                             "RevisionNotFound", revision=revision)
        return model, latest
    for version in versions:
        if version.version == revision or commit_of(version) == revision.lower():
            return model, version
    raise _not_found(f"revision {revision[:128]!r} not found in {namespace}/{name}: use main, a version "
                     f"({', '.join(v.version for v in versions[:10])}) or its commit", "RevisionNotFound",
                     revision=revision[:128])


def zulu_time(value: datetime | None) -> str | None:
    """A timestamp as the Hub and Civitai write it (``2024-01-02T03:04:05.000Z``; huggingface_hub
    parses no other)."""
    if value is None:
        return None
    value = value.astimezone(UTC) if value.tzinfo else value  # SQLite's are UTC without a zone
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def model_info(model: Row[Any], version: Row[Any]) -> dict[str, Any]:
    """The Hub's model-info document (what ``HfApi.model_info`` parses)."""
    repo = f"{model.source}/{model.name}"
    tags = json.loads(version.tags or "[]")
    card: dict[str, Any] = {"tags": ["textual_inversion", *tags]}
    if version.license:
        card["license"] = version.license.lower()
    if version.base_model:
        card["base_model"] = version.base_model
    return {
        "_id": hashlib.sha1(f"model:{model.id}".encode()).hexdigest()[:24],
        "id": repo, "modelId": repo, "author": model.source, "sha": commit_of(version),
        "lastModified": zulu_time(version.created_at), "createdAt": zulu_time(model.created_at),
        "private": False, "disabled": False, "gated": False, "downloads": model.downloads, "likes": 0,
        "library_name": "diffusers", "pipeline_tag": "text-to-image",
        "tags": ["diffusers", "textual_inversion", "text-to-image", f"pseudoword:{version.architecture}", *tags],
        "cardData": card,
        "siblings": [{"rfilename": filename} for filename in repo_files(version)],
        "spaces": [],
    }


class HubController(Controller):
    """The Hub's file and model-info routes over the catalogue."""

    tags = ["hugging face compatible"]

    @get("/{namespace:str}/{name:str}/resolve/{revision:str}/{filename:str}",
         summary="Download a file as the Hugging Face Hub serves it (HEAD too)",
         description="What hf_hub_download and diffusers' load_textual_inversion call with HF_ENDPOINT set: "
                     "X-Repo-Commit, ETag / X-Linked-Etag (the file's SHA-256), X-Linked-Size; a missing file "
                     "is 404 with X-Error-Code: EntryNotFound.",
         responses={**errors(404, 412, 416), **DOWNLOAD_ANSWERS}, media_type="application/octet-stream")
    async def resolve(self, request: Request[Any, Any, Any], namespace: _SEGMENT, name: _SEGMENT,
                      revision: _SEGMENT, filename: Annotated[str, Parameter(max_length=300)]) -> Response[Any]:
        catalogue = catalogue_of(request)
        _model, version = await sync_to_thread(find_revision, catalogue, namespace, name, revision)
        files = repo_files(version)
        if filename not in files:
            raise _not_found(f"{filename[:300]} is not a file of {namespace}/{name}@{version.version}; files: "
                             f"{', '.join(files)}", "EntryNotFound", files=list(files))
        fmt = files[filename]
        stored = await sync_to_thread(catalogue.version_file, version.id, fmt)
        headers = {"X-Repo-Commit": commit_of(version)}
        if stored is not None:
            headers.update({"X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(stored.size)})
        return await serve_version(request, catalogue, version, fmt, headers=headers, filename=filename)

    @get("/api/models/{namespace:str}/{name:str}", sync_to_thread=True, summary="Model info (Hub shape)",
         responses=errors(404))
    def model_info(self, request: Request[Any, Any, Any], namespace: _SEGMENT, name: _SEGMENT) -> dict[str, Any]:
        model, version = find_revision(catalogue_of(request), namespace, name, "main")
        return model_info(model, version)

    @get("/api/models/{namespace:str}/{name:str}/revision/{revision:str}", sync_to_thread=True,
         summary="Model info at a revision (Hub shape)", responses=errors(404))
    def model_info_at(self, request: Request[Any, Any, Any], namespace: _SEGMENT, name: _SEGMENT,
                      revision: _SEGMENT) -> dict[str, Any]:
        model, version = find_revision(catalogue_of(request), namespace, name, revision)
        return model_info(model, version)

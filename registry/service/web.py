"""The web catalogue: a search page of cards, a model page and a page per version, rendered on the
server (usable without JavaScript; a small script only adds copy buttons), styled with Pico CSS
served by the registry itself, like the API browser's assets, so every page works offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import nh3
from litestar import Controller, Request, get
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath, Parameter
from litestar.response import Template
from litestar.static_files import create_static_files_router
from markdown_it import MarkdownIt

from pseudoword.registry.core import HashRef, parse_ref
from pseudoword.registry.core.embedding import ARCHITECTURES
from pseudoword.registry.core.errors import InvalidReference, InvalidRequest, NotFound, PseudowordError
from pseudoword.registry.core.record import VersionRecord
from pseudoword.registry.core.refs import parse_model_ref
from pseudoword.registry.core.versions import latest_version, newest_first
from pseudoword.registry.core.writing import EXPORT_SUFFIXES, safe_filename
from pseudoword.registry.service.http import PAGE_HEADERS
from pseudoword.registry.service.search import KINDS, SORTS, Query

STATIC = Path(__file__).parent / "static"
PAGE_SIZE = 24
#: What a published description may contain once rendered (Markdown's own output, no raw HTML).
_ALLOWED_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "code", "pre", "blockquote",
                 "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td", "del", "s"}
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])
#: Example subject an A1111/ComfyUI/Runware snippet puts around the trigger.
_SUBJECT = "a portrait, detailed"


def render_markdown(text: str) -> str:
    """A description as HTML: Markdown without raw HTML, then sanitised (links get rel=nofollow)."""
    if not text:
        return ""
    return nh3.clean(_MARKDOWN.render(text), tags=_ALLOWED_TAGS, attributes={"a": {"href", "title"}},
                     url_schemes={"http", "https", "mailto"}, link_rel="nofollow noopener noreferrer")


def usage(record: VersionRecord, registry_url: str) -> dict[str, str]:
    """How to use one version in each tool, as its users write it."""
    trigger, ref = record.call_word, record.id
    negative = record.kind == "negative"
    weight = -1 if negative else 1
    a1111 = (f"Prompt: {_SUBJECT}\nNegative prompt: {trigger}" if negative else f"Prompt: {_SUBJECT}, {trigger}")
    comfy = f"embedding:{trigger}"
    diffusers = (
        f"# pseudoword pull {ref} --format diffusers   (writes {trigger}.diffusers.safetensors)\n"
        f"pipe.load_textual_inversion(\"./{trigger}.diffusers.safetensors\", token=\"{trigger}\")\n"
        + (f"image = pipe(\"{_SUBJECT}\", negative_prompt=\"{trigger}\").images[0]" if negative
           else f"image = pipe(\"{_SUBJECT}, {trigger}\").images[0]"))
    runware = json.dumps([{"taskType": "imageInference", "taskUUID": "00000000-0000-4000-8000-000000000000",
                           "positivePrompt": _SUBJECT, "width": 512, "height": 512,
                           "embeddings": [{"model": ref, "weight": weight}]}], indent=2)
    commands = (f"pseudoword pull {ref} --to ./embeddings --format a1111\n"
                f"pseudoword show {ref} --registry {registry_url}")
    request = json.dumps({"embeddings": [{"model": ref, "weight": weight}]})
    return {"a1111": a1111, "comfyui": comfy, "diffusers": diffusers, "runware": runware, "pseudoword": commands,
            "request": request}


#: What each download format is for, in the order the page lists them.
_FORMATS = {"safetensors": "canonical (A1111, ComfyUI, Forge)", "a1111": "AUTOMATIC1111 .pt",
             "diffusers": "diffusers load_textual_inversion"}


def files(record: VersionRecord) -> list[dict[str, str]]:
    """A version's downloads: one per format, named as the download names them (downloads.py)."""
    return [{"format": fmt, "what": what, "name": safe_filename(record.call_word) + EXPORT_SUFFIXES[fmt],
             "url": (record.download_url or "") + ("" if fmt == "safetensors" else f"?format={fmt}")}
            for fmt, what in _FORMATS.items()]


def _hash_lookup(catalogue: Any, q: str) -> list[VersionRecord] | None:
    """A hash typed in the search box (sha256, AutoV2, A1111's short hash): the catalogue's own
    by-hash lookup. None when ``q`` is not a hash; [] when no file has it."""
    try:
        ref = parse_ref(q)
    except InvalidReference:
        return None
    if not isinstance(ref, HashRef):
        return None
    try:
        return [catalogue.by_hash(q.strip())]
    except NotFound:
        return []


class Cataloguepages(Controller):
    include_in_schema = False
    response_headers = PAGE_HEADERS

    @get("/", sync_to_thread=True)
    def index(self, request: Request[Any, Any, Any],
              q: Annotated[str | None, Parameter(max_length=200)] = None,
              architecture: Annotated[str | None, Parameter(max_length=8)] = None,
              kind: Annotated[str | None, Parameter(max_length=16)] = None,
              tag: Annotated[str | None, Parameter(max_length=64)] = None,
              source: Annotated[str | None, Parameter(max_length=64)] = None,
              sort: Annotated[str, Parameter(max_length=16)] = "relevance",
              cursor: Annotated[str | None, Parameter(max_length=512)] = None) -> Template:
        catalogue = request.app.state.catalogue
        filters = {"q": q or "", "architecture": architecture or "", "kind": kind or "", "tag": tag or "",
                   "source": source or "", "sort": sort or "relevance"}
        error, next_cursor, by_hash = None, None, False
        items: list[VersionRecord] = []
        try:
            found = _hash_lookup(catalogue, q) if q and not cursor else None
            if found is not None:
                items, by_hash = catalogue.previews.add_to_records(found), True
            else:
                query = Query(q=q or None, architecture=architecture or None, kind=kind or None, tag=tag or None,
                              source=source or None, sort=filters["sort"], limit=PAGE_SIZE, cursor=cursor)
                items, next_cursor = catalogue.search_page(query)
        except InvalidRequest as exc:
            error = exc.message
        next_params = {key: value for key, value in filters.items() if value} | {"cursor": next_cursor or ""}
        return Template("index.html", context={
            "items": items, "filters": filters, "next_cursor": next_cursor, "next_params": next_params,
            "error": error, "by_hash": by_hash, "architectures": ARCHITECTURES, "kinds": KINDS, "sorts": SORTS})

    @get("/models/{source:str}/{model:str}", sync_to_thread=True)
    def model(self, request: Request[Any, Any, Any], source: FromPath[str], model: FromPath[str]) -> Template:
        return self._page(request, source, model, None)

    @get("/models/{source:str}/{model:str}/{version:str}", sync_to_thread=True)
    def version(self, request: Request[Any, Any, Any], source: FromPath[str], model: FromPath[str], version: FromPath[str]) -> Template:
        return self._page(request, source, model, version)

    def _page(self, request: Request[Any, Any, Any], source: str, model: str, version: str | None) -> Template:
        catalogue = request.app.state.catalogue
        try:
            ref = parse_model_ref(f"{source}:{model}" + (f"@{version}" if version is not None else ""))
            detail = catalogue.get_model(ref.source, ref.model)
        except PseudowordError as exc:
            return missing(exc.message)
        versions = catalogue.previews.add_to_records(detail.versions)
        # The "use it" snippet names what an unpinned reference means (core/versions.py's rule).
        latest = latest_version(versions)
        if version is None:
            shown = latest or max(versions, key=newest_first)  # every version yanked: the newest, marked
        else:
            shown = next((v for v in versions if v.version == version), None)
            if shown is None:
                return missing(f"{detail.id} has no version {version}")
        base = str(request.base_url).rstrip("/")
        return Template("model.html", context={
            "model": detail, "versions": versions, "shown": shown, "latest": latest, "pinned": version is not None,
            "description": render_markdown(shown.description or ""),
            "usage": usage(latest, base) if latest else None,
            "files": files(shown), "base_url": base})


def missing(message: str) -> Template:
    """The friendly 404 page: what was not found, and a way on."""
    return Template("missing.html", context={"message": message}, status_code=404, headers=PAGE_HEADERS)


def static_routers() -> list[Any]:
    """The catalogue's CSS and script, and Swagger UI's assets (from the swagger-ui-py package)."""
    import swagger_ui

    cache = CacheControlHeader(max_age=86400, public=True)
    return [
        create_static_files_router(path="/static", directories=[STATIC], include_in_schema=False,
                                   cache_control=cache, name="static"),
        create_static_files_router(path="/static/swagger-ui", directories=[Path(swagger_ui.__file__).parent / "static"],
                                   include_in_schema=False, cache_control=cache, name="swagger-ui"),
    ]


def api_browser() -> SwaggerRenderPlugin:
    """Swagger UI at /schema (and /schema/swagger), every asset served by the registry: it works offline."""
    root = "/static/swagger-ui"
    return SwaggerRenderPlugin(js_url=f"{root}/swagger-ui-bundle.js", css_url=f"{root}/swagger-ui.css",
                               standalone_preset_js_url=f"{root}/swagger-ui-standalone-preset.js",
                               favicon=f"<link rel='icon' type='image/png' href='{root}/favicon-32x32.png'>",
                               path=["/", "/swagger"])

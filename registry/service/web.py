"""The web catalogue: a search page and a model page, rendered on the server (no JavaScript)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import FromPath, Parameter
from litestar.response import Template

from pseudoword.registry.core.errors import InvalidRequest, PseudowordError
from pseudoword.registry.core.refs import parse_model_ref
from pseudoword.registry.core.versions import latest_version
from pseudoword.registry.service.http import PAGE_HEADERS
from pseudoword.registry.service.search import Query, search


class Cataloguepages(Controller):
    include_in_schema = False
    response_headers = PAGE_HEADERS

    @get("/", sync_to_thread=True)
    def index(self, request: Request[Any, Any, Any],
              q: Annotated[str | None, Parameter(max_length=200)] = None,
              architecture: Annotated[str | None, Parameter(max_length=8)] = None,
              kind: Annotated[str | None, Parameter(max_length=16)] = None,
              tag: Annotated[str | None, Parameter(max_length=64)] = None,
              sort: Annotated[str, Parameter(max_length=16)] = "relevance",
              cursor: Annotated[str | None, Parameter(max_length=512)] = None) -> Template:
        catalogue = request.app.state.catalogue
        error = None
        items: list[dict[str, Any]] = []
        next_cursor = None
        try:
            query = Query(q=q or None, architecture=architecture or None, kind=kind or None, tag=tag or None,
                          sort=sort, limit=50, cursor=cursor)
            with catalogue.session() as session:
                ids, next_cursor = search(session, query)
            items = catalogue.records_by_ids(ids)
        except InvalidRequest as exc:
            error = exc.message
        return Template("index.html", context={
            "items": items, "q": q or "", "architecture": architecture or "", "kind": kind or "", "tag": tag or "",
            "sort": sort, "next_cursor": next_cursor, "error": error})

    @get("/models/{source:str}/{model:str}", sync_to_thread=True)
    def model(self, request: Request[Any, Any, Any], source: FromPath[str], model: FromPath[str]) -> Template:
        try:
            ref = parse_model_ref(f"{source}:{model}")
            detail = request.app.state.catalogue.get_model(ref.source, ref.model)
        except PseudowordError as exc:
            return Template("missing.html", context={"message": exc.message}, status_code=404)
        # The "use it" snippet names what an unpinned reference means (core/versions.py's rule).
        return Template("model.html", context={"model": detail, "latest": latest_version(detail["versions"])})

"""The Litestar application: wiring of settings, database, blob store, controllers and probes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.template import TemplateConfig
from sqlalchemy import text

from pseudoword.registry.core.errors import PseudowordError
from pseudoword.registry.service import ratelimit
from pseudoword.registry.service.api import BlobsController, EmbeddingsController, PreviewsController, TokensController
from pseudoword.registry.service.catalogue import Catalogue
from pseudoword.registry.service.compat_civitai import CivitaiController
from pseudoword.registry.service.compat_hf import HubController
from pseudoword.registry.service.db import make_engine, migrate
from pseudoword.registry.service.errors import EXCEPTION_HANDLERS
from pseudoword.registry.service.http import ALL_HEADERS, RegistryApp, read_timeout_middleware
from pseudoword.registry.service.identity import whoami
from pseudoword.registry.service.observability import configure_logging, request_id_middleware
from pseudoword.registry.service.resolve_cache import ResolveCache, watcher_for
from pseudoword.registry.service.settings import Settings
from pseudoword.registry.service.storage import open_store
from pseudoword.registry.service.web import Cataloguepages, api_browser, static_routers

TEMPLATES = Path(__file__).parent / "templates"
#: Multipart framing and the metadata field on top of the file itself.
_BODY_OVERHEAD = 128 * 1024


@get("/healthz", include_in_schema=True, tags=["probes"], sync_to_thread=False)
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@get("/readyz", tags=["probes"], sync_to_thread=True,
     responses={503: ResponseSpec(data_container=dict[str, Any], description="Not ready: see the failing check")})
def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Readiness: the database answers and the data directory's disk has room (else 503). The blob
    store is reported too, but a replica without it stays ready ("degraded"): every replica shares
    the one store, so dropping them all from the load balancer would take search, model pages and
    resolve down with it, while downloads already answer 503 on their own."""
    catalogue: Catalogue = request.app.state.catalogue
    checks: dict[str, str] = {}
    free = shutil.disk_usage(catalogue.settings.data_dir).free
    minimum = catalogue.settings.min_free_bytes
    checks["disk"] = "ok" if free >= minimum else f"low: {free} bytes free, at least {minimum} needed"
    try:
        with catalogue.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        catalogue.store.check()
        checks["storage"] = "ok"
    except PseudowordError as exc:
        checks["storage"] = f"unavailable: {exc.message}"
    ready = checks["database"] == "ok" and checks["disk"] == "ok"
    status = "unavailable" if not ready else "ready" if checks["storage"] == "ok" else "degraded"
    return Response({"status": status, "checks": checks, "disk_free_bytes": free}, status_code=200 if ready else 503)


class MetricsController(PrometheusController):
    path = "/metrics"
    include_in_schema = False


def create_app(settings: Settings | None = None, *, run_migrations: bool = True) -> Litestar:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    engine = make_engine(settings.effective_database_url)
    if run_migrations:
        migrate(engine)
    store = open_store(settings.effective_storage_url, settings.s3_access_key, settings.s3_secret_key,
                       timeout=settings.storage_timeout)
    catalogue = Catalogue(engine, store, settings,
                          ResolveCache(watcher_for(engine)) if settings.resolve_cache else None)
    prometheus = PrometheusConfig(app_name="pseudoword", prefix="pseudoword", group_path=True,
                                  exclude=["/metrics"])
    app = RegistryApp(
        route_handlers=[healthz, readyz, EmbeddingsController, BlobsController, PreviewsController, TokensController,
                        whoami, Cataloguepages, MetricsController, HubController, CivitaiController,
                        *static_routers()],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[request_id_middleware, prometheus.middleware, *ratelimit.middleware(settings),
                    read_timeout_middleware(settings.read_timeout)],
        stores={ratelimit.STORE_NAME: ratelimit.open_store(settings.rate_limit_store)},
        response_headers=ALL_HEADERS,
        openapi_config=OpenAPIConfig(title="pseudoword registry", version="1.0.0",
                                     description="A registry for textual-inversion embeddings.",
                                     render_plugins=[api_browser()]),
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine),
        # Publish with previews: the file plus up to max_previews_per_request images.
        request_max_body_size=settings.max_upload_bytes + _BODY_OVERHEAD
        + settings.max_previews_per_request * settings.max_preview_bytes,
        multipart_form_part_limit=8 + settings.max_previews_per_request,
        on_shutdown=[catalogue.close, engine.dispose],
        debug=False,
    )
    app.state.catalogue = catalogue
    app.state.settings = settings
    return app

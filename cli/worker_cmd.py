"""``pseudoword worker``: the Runware-compatible inference service (needs the ``[worker]`` extra;
imported lazily, so the CLI works without it and the command names the extra when it is missing)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pseudoword.cli import config
from pseudoword.cli.main import app
from pseudoword.cli.output import err_console, fail, handle_errors


def _need_extra() -> None:
    missing = []
    for module in ("litestar", "uvicorn", "prometheus_client", "diffusers", "transformers"):
        try:
            __import__(module)
        except ModuleNotFoundError:
            missing.append(module)
    if missing:
        raise fail(f"pseudoword worker needs the worker extra ({', '.join(missing)} not installed): "
                   "pip install 'pseudoword[worker]'", "missing_extra")


@app.command()
@handle_errors
def worker(
    models: Annotated[Path, typer.Option("--models", help="models.toml: checkpoint AIRs -> local diffusers "
                                                          "pipeline directories, architecture, defaults.",
                                         show_default=False)],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8100,
    registry: Annotated[str | None, typer.Option(
        "--registry", help="Registry URL for embeddings (else PSEUDOWORD_REGISTRY, http://127.0.0.1:8000).",
        show_default=False)] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Where URL images are kept (else "
                                                  "PSEUDOWORD_WORKER_DATA_DIR or ./worker-data).",
                                                  show_default=False)] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Resolver cache (else PSEUDOWORD_CACHE "
                                                   "or ~/.cache/pseudoword).", show_default=False)] = None,
) -> None:
    """Serve Runware's task protocol (REST POST /v1, WebSocket /v1) on the pipelines of a models
    file, with embeddings resolved from the registry per request. API keys:
    PSEUDOWORD_WORKER_API_KEYS (comma-separated) or PSEUDOWORD_WORKER_API_KEYS_FILE."""
    _need_extra()
    import uvicorn

    from pseudoword.cli.runtime_cmd import _quiet_libraries
    from pseudoword.runtime.resolver import Resolver
    from pseudoword.runtime.worker import logs
    from pseudoword.runtime.worker.app import create_app
    from pseudoword.runtime.worker.models import load_model, load_models_file
    from pseudoword.runtime.worker.service import Worker
    from pseudoword.runtime.worker.settings import WorkerSettings

    specs = load_models_file(models)  # a bad file fails before any pipeline loads
    overrides = {"data_dir": data_dir} if data_dir is not None else {}
    settings = WorkerSettings.from_env(**overrides)
    logs.configure()
    log = logging.getLogger("pseudoword.worker")
    _quiet_libraries()
    loaded = []
    for spec in specs:
        log.info("loading %s from %s", spec.air, spec.path)
        loaded.append(load_model(spec))
    if not settings.api_keys:
        log.warning("no API keys configured (PSEUDOWORD_WORKER_API_KEYS): any key is accepted")
    resolver = Resolver(config.registry_url(registry), cache_dir=cache_dir)
    service = Worker(loaded, settings, resolver)
    err_console.print(f"pseudoword worker on http://{host}:{port}/v1 serving {', '.join(service.models)}",
                      markup=False, highlight=False)
    uvicorn.run(create_app(service), host=host, port=port, ws_max_size=settings.max_body_bytes,
                timeout_graceful_shutdown=int(settings.shutdown_grace), log_level="warning")
    resolver.close()

"""Runtime commands: ``generate`` (a request on a local diffusers pipeline directory)."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated

import typer

from pseudoword.cli import config
from pseudoword.cli.main import app
from pseudoword.cli.output import console, err_console, handle_errors, print_json
from pseudoword.registry.core.errors import InvalidRequest

#: A request file is a few kilobytes; refuse anything far bigger before parsing it.
MAX_REQUEST_BYTES = 1024 * 1024


def _quiet_libraries() -> None:
    """No progress bars or load chatter from diffusers/transformers on the user's terminal."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def read_request(path: Path) -> dict:
    size = path.stat().st_size
    if size > MAX_REQUEST_BYTES:
        raise InvalidRequest(f"{path} is {size} bytes; a request is at most {MAX_REQUEST_BYTES}")
    try:
        document = jsonlib.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRequest(f"{path} must hold a JSON object (the request), not {type(document).__name__}")
    return document


@app.command()
@handle_errors
def generate(
    request: Annotated[Path, typer.Argument(help="Request JSON: positivePrompt, negativePrompt, width, height, "
                                                 "steps, CFGScale, seed, scheduler, clipSkip, embeddings.",
                                            show_default=False)],
    pipeline: Annotated[Path, typer.Option("--pipeline", help="A local diffusers pipeline directory "
                                                              "(SD 1.x, SD 2.x or SDXL).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Where to write the PNG.", show_default=False)],
    registry: Annotated[str | None, typer.Option(
        "--registry", help="Registry URL for embedding references (else PSEUDOWORD_REGISTRY, the login default, "
                           "http://127.0.0.1:8000).", show_default=False)] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Resolve from the local cache only "
                                                            "(also PSEUDOWORD_OFFLINE=1).")] = False,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Resolver cache (else PSEUDOWORD_CACHE or "
                                                   "~/.cache/pseudoword).", show_default=False)] = None,
    lockfile: Annotated[Path | None, typer.Option("--lock", help="Lockfile pinning the references (default: "
                                                  "REQUEST.lock.json beside the request, when it exists).",
                                                  show_default=False)] = None,
    device: Annotated[str | None, typer.Option("--device", help="torch device (default: cuda when available, "
                                               "else cpu).", show_default=False)] = None,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Generate an image from a request on a local pipeline; the PNG records the request and
    the digests of the embeddings used (same request and seed -> the same bytes)."""
    from pseudoword.runtime.cache import atomic_write
    from pseudoword.runtime.generation import generate as run_generate
    from pseudoword.runtime.generation import parse_request
    from pseudoword.runtime.lock import default_lock_path
    from pseudoword.runtime.resolver import Resolver

    parsed = parse_request(read_request(request))  # a bad request fails before the pipeline loads
    if lockfile is None and default_lock_path(request).is_file():
        lockfile = default_lock_path(request)
        if not json:
            err_console.print(f"using lockfile {lockfile}", markup=False, highlight=False)
    _quiet_libraries()
    with Resolver(config.registry_url(registry), cache_dir=cache_dir, offline=True if offline else None,
                  lockfile=lockfile) as resolver:
        result = run_generate(parsed, pipeline, resolver=resolver, device=device)
    atomic_write(out, result.png)
    if json:
        print_json({"path": str(out), "size": len(result.png), "request": result.request,
                    "embeddings": [item.to_dict() for item in result.applied]})
        return
    console.print(f"wrote {out} ({result.request['width']}x{result.request['height']}, "
                  f"seed {result.request['seed']}, {len(result.applied)} embedding(s))",
                  markup=False, highlight=False)

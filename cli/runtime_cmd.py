"""Runtime commands: ``generate`` (a request on a local diffusers pipeline directory) and
``demo-pipeline`` (a small random-weight pipeline to try it on, no download needed)."""

from __future__ import annotations

import json as jsonlib
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from pseudoword.cli import config
from pseudoword.cli.main import app
from pseudoword.cli.output import console, err_console, handle_errors, print_json
from pseudoword.registry.core.errors import InvalidRequest

#: A request file is a few kilobytes; refuse anything far bigger before parsing it.
MAX_REQUEST_BYTES = 1024 * 1024
#: File suffix -> outputFormat, when the request names none.
_SUFFIX_FORMATS = {".png": "PNG", ".jpg": "JPG", ".jpeg": "JPG", ".webp": "WEBP"}


def _quiet_libraries() -> None:
    """No progress bars or load chatter from diffusers/transformers on the user's terminal
    (transformers first: importing diffusers already makes it warn)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()


def read_request(path: Path) -> dict[str, Any]:
    """The request in ``path``: a JSON object, or a Runware task list (``[{...}]``, as sent to
    Runware's REST endpoint) holding one ``imageInference`` task. An ``authentication`` task
    beside it is skipped (its key is never read)."""
    size = path.stat().st_size
    if size > MAX_REQUEST_BYTES:
        raise InvalidRequest(f"{path} is {size} bytes; a request is at most {MAX_REQUEST_BYTES}")
    try:
        document = jsonlib.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path} is not valid JSON: {exc}") from None
    if isinstance(document, list):
        tasks = [t for t in document if not (isinstance(t, dict) and t.get("taskType") == "authentication")]
        if len(tasks) != 1:
            raise InvalidRequest(f"{path} holds {len(tasks)} tasks besides authentication; generate runs one "
                                 "imageInference task")
        document = tasks[0]
    if not isinstance(document, dict):
        raise InvalidRequest(f"{path} must hold a JSON object (the request), not {type(document).__name__}")
    return document


def _output_format(requested: str | None, out: Path) -> str:
    by_suffix = _SUFFIX_FORMATS.get(out.suffix.lower())
    if requested and by_suffix and requested != by_suffix:
        raise InvalidRequest(f"the request asks for outputFormat {requested} but --out {out.name} is {by_suffix}; "
                             "make them agree", {"outputFormat": requested, "out": str(out)})
    return requested or by_suffix or "PNG"


def output_paths(out: Path, count: int) -> list[Path]:
    """``out`` for the first image; ``NAME-2.png``, ``NAME-3.png``... for the others."""
    return [out if i == 0 else out.with_name(f"{out.stem}-{i + 1}{out.suffix}") for i in range(count)]


def _describe(item: Any) -> str:
    """One line per embedding: what was asked, what it resolved to, where it went."""
    asked = item.ref or item.path or item.label
    resolved = f" -> {item.id}" if item.id and item.id != asked else ""
    digest = f" sha256:{item.sha256[:12]}" if item.sha256 else ""
    place = item.placement
    where = []
    if place is not None:
        if place.prompt:
            where.append("prompt")
        if place.negative:
            where.append("negative prompt")
        if place.appended:
            where.append(f"appended to the {place.appended}")
        if place.moved:
            where.append("moved out of the prompt")
    return (f"  {asked}{resolved}{digest}, trigger {item.trigger!r}, weight {item.weight:g}"
            + (f": {', '.join(where)}" if where else ""))


@app.command()
@handle_errors
def generate(
    request: Annotated[Path, typer.Argument(help="Request JSON: positivePrompt, negativePrompt, width, height, "
                                                 "steps, CFGScale, seed, scheduler, clipSkip, embeddings; or a "
                                                 "Runware imageInference task as Runware clients send it.",
                                            show_default=False)],
    pipeline: Annotated[Path, typer.Option("--pipeline", help="A local diffusers pipeline directory "
                                                              "(SD 1.x, SD 2.x or SDXL; try `pseudoword demo-pipeline`).",
                                           show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Where to write the image (more images: NAME-2.png...).",
                                      show_default=False)],
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
    """Generate images from a request on a local pipeline; each file records the request and
    the digests of the embeddings used (same request and seed -> the same bytes)."""
    import dataclasses

    from pseudoword.registry.core.files import atomic_write
    from pseudoword.runtime.generation import generate as run_generate
    from pseudoword.runtime.generation import parse_request
    from pseudoword.runtime.lock import default_lock_path
    from pseudoword.runtime.resolver import Resolver

    parsed = parse_request(read_request(request))  # a bad request fails before the pipeline loads
    parsed = dataclasses.replace(parsed, output_format=_output_format(parsed.output_format, out))
    if lockfile is None and default_lock_path(request).is_file():
        lockfile = default_lock_path(request)
        if not json:
            err_console.print(f"using lockfile {lockfile}", markup=False, highlight=False)
    _quiet_libraries()
    with Resolver(config.registry_url(registry), cache_dir=cache_dir, offline=True if offline else None,
                  lockfile=lockfile) as resolver, _StepProgress(enabled=not json, steps=parsed.steps) as progress:
        results = run_generate(parsed, pipeline, resolver=resolver, device=device, progress=progress)
    paths = output_paths(out, len(results))
    for path, result in zip(paths, results, strict=True):
        atomic_write(path, result.data)
    if json:
        print_json({"paths": [str(p) for p in paths], "path": str(paths[0]), "size": len(results[0].data),
                    "format": results[0].format, "seeds": [r.seed for r in results], "request": results[0].request,
                    "embeddings": [item.to_dict() for item in results[0].applied]})
        return
    first = results[0]
    for path, result in zip(paths, results, strict=True):
        console.print(f"wrote {path} ({first.request['width']}x{first.request['height']}, seed {result.seed}, "
                      f"{len(first.applied)} embedding(s))", markup=False, highlight=False)
    for item in first.applied:
        console.print(_describe(item), markup=False, highlight=False)


class _StepProgress:
    """A progress bar over the denoising steps on a terminal (stderr); nothing otherwise."""

    def __init__(self, *, enabled: bool, steps: int) -> None:
        self.bar = None
        if enabled and err_console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("denoising"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                console=err_console, transient=True)
            self.task = self.bar.add_task("denoising", total=steps)

    def __enter__(self) -> Any:
        if self.bar is None:
            return None
        self.bar.start()
        return lambda step, total: self.bar.update(self.task, completed=step, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


class Architecture(str, Enum):
    sd1 = "sd1"
    sd2 = "sd2"
    sdxl = "sdxl"


@app.command("demo-pipeline")
@handle_errors
def demo_pipeline(
    directory: Annotated[Path, typer.Argument(help="Where to write the pipeline (a new or empty directory).",
                                              show_default=False)],
    arch: Annotated[Architecture, typer.Option("--arch", help="Which Stable Diffusion shape.")] = Architecture.sd1,
    tokenizer: Annotated[Path | None, typer.Option(
        "--tokenizer", help="A directory with CLIP's tokenizer files (vocab.json, merges.txt); default: "
                            "PSEUDOWORD_CLIP_TOKENIZER, else openai/clip-vit-large-patch14 in the Hugging Face "
                            "cache.", show_default=False)] = None,
    layers: Annotated[int, typer.Option("--layers", min=1, max=32, help="Text-encoder layers.")] = 2,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Write a small random-weight pipeline (real text-encoder widths, tiny UNet and VAE) to try
    `generate` on without downloading a model. Its images are noise; its native size is 64x64."""
    from pseudoword.runtime.demo_pipeline import build

    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InvalidRequest(f"{directory} exists and is not an empty directory; give a new one",
                             {"path": str(directory)})
    _quiet_libraries()
    pipe = build(arch.value, tokenizer_dir=tokenizer, layers=layers)
    pipe.save_pretrained(directory, safe_serialization=True)
    versions = _versions()
    if json:
        print_json({"path": str(directory), "architecture": arch.value, "layers": layers, "size": 64,
                    "pipeline": type(pipe).__name__, "versions": versions})
        return
    console.print(f"wrote a random-weight {arch.value} pipeline ({type(pipe).__name__}, {layers}-layer text "
                  f"encoder(s), native size 64x64) to {directory}", markup=False, highlight=False)
    console.print(", ".join(f"{name} {version}" for name, version in versions.items()), markup=False,
                  highlight=False)
    example = {"positivePrompt": "a lighthouse at dusk, (detailed:1.2)", "negativePrompt": "blurry",
               "width": 64, "height": 64, "steps": 4, "seed": 1, "scheduler": "DPM++ 2M Karras"}
    console.print(f"try: echo '{jsonlib.dumps(example)}' > request.json && pseudoword generate request.json "
                  f"--pipeline {directory} --out out.png", markup=False, highlight=False)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("pseudoword", "torch", "diffusers", "transformers"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found

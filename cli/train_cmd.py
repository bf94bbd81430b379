"""``pseudoword train``: teach a pipeline a new word from a few images, optionally publish it."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from pseudoword.cli import config
from pseudoword.cli.main import app
from pseudoword.cli.output import console, err_console, fail, handle_errors, print_json


class Kind(str, Enum):
    object = "object"
    style = "style"


@app.command()
@handle_errors
def train(
    images: Annotated[Path, typer.Argument(help="A folder of 3-5 images of the concept (png, jpg, webp); "
                                                "NAME.txt beside NAME.png is its caption.", show_default=False)],
    pipeline: Annotated[Path, typer.Option("--pipeline", help="A local diffusers pipeline directory (SD 1.x, "
                                                              "SD 2.x or SDXL).", show_default=False)],
    trigger: Annotated[str, typer.Option("--trigger", help="The new word (not already a word of CLIP's "
                                                           "vocabulary).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="The embedding file to write (.safetensors); the loss "
                                                    "CSV/PNG, checkpoints and samples go beside it.",
                                      show_default=False)],
    init_word: Annotated[str | None, typer.Option("--init-word", help="One-token word the vectors start from "
                                                  "(default: object or style).", show_default=False)] = None,
    vectors: Annotated[int, typer.Option("--vectors", help="Vectors per encoder (1-75).")] = 1,
    kind: Annotated[Kind, typer.Option("--kind", help="What is learned: an object or a style.")] = Kind.object,
    steps: Annotated[int, typer.Option("--steps")] = 2000,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate (constant).")] = 5e-3,
    batch: Annotated[int, typer.Option("--batch")] = 1,
    resolution: Annotated[int | None, typer.Option("--resolution", help="Training size (default: the "
                                                   "pipeline's native size).", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="Steps between checkpoints "
                                                  "(0: none).")] = 500,
    sample_every: Annotated[int, typer.Option("--sample-every", help="Steps between sample images (0: "
                                              "none).")] = 500,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint.")] = False,
    publish: Annotated[str | None, typer.Option("--publish", help="Publish the result as SOURCE:MODEL@VERSION.",
                                                show_default=False)] = None,
    registry: Annotated[str | None, typer.Option("--registry", help="Registry URL (else PSEUDOWORD_REGISTRY).",
                                                 show_default=False)] = None,
    token: Annotated[str | None, typer.Option("--token", help="Bearer token (else PSEUDOWORD_TOKEN).",
                                              show_default=False)] = None,
    device: Annotated[str | None, typer.Option("--device", help="torch device (default: cuda when available).",
                                               show_default=False)] = None,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Learn a new word's vectors from a few images (textual inversion); the pipeline's weights
    and tokenizer are only read."""
    from pseudoword.cli.runtime_cmd import _quiet_libraries
    from pseudoword.registry.core.refs import ModelRef, parse_ref
    from pseudoword.runtime.training import TrainOptions
    from pseudoword.runtime.training import train as run_train

    ref = None
    if publish is not None:  # a bad reference fails before hours of training
        parsed = parse_ref(publish)
        if not isinstance(parsed, ModelRef) or parsed.version is None:
            raise fail(f"--publish needs SOURCE:MODEL@VERSION, got {publish!r}", "invalid_reference", 2)
        ref = str(parsed)
    options = TrainOptions(images=images, trigger=trigger, out=out, init_word=init_word, vectors=vectors,
                           kind=kind.value, steps=steps, lr=lr, batch=batch, resolution=resolution, seed=seed,
                           checkpoint_every=checkpoint_every, sample_every=sample_every, resume=resume)
    _quiet_libraries()
    with _LossProgress(enabled=not json, steps=steps) as progress:
        result = run_train(options, pipeline, progress=progress, device=device)
    published = None
    if ref is not None:
        from pseudoword.registry.client import RegistryClient
        from pseudoword.runtime.training.publishing import publish_result

        url = config.registry_url(registry)
        with RegistryClient(url, config.registry_token(token, url) or "") as client:
            published = publish_result(client, result, ref)
    document: dict[str, Any] = {
        "path": str(result.path), "architecture": result.embedding.architecture,
        "vectors": result.embedding.num_vectors, "trigger": trigger, "steps": steps,
        "resumed_from": result.resumed_from, "held_loss": [result.held_loss_start, result.held_loss_end],
        "final_loss": result.losses[-1] if result.losses else None, "loss_csv": str(result.loss_csv),
        "loss_png": str(result.loss_png), "samples": [str(p) for p in result.samples],
        "checkpoints": [str(p) for p in result.checkpoints], "precision": result.precision,
        "attention": result.attention,
    }
    if published is not None:
        document["published"] = {**published.record.to_wire(), "created": published.created,
                                 "preview": published.preview_sent}
    if json:
        print_json(document)
        return
    say = lambda text: console.print(text, markup=False, highlight=False)  # noqa: E731
    say(f"wrote {result.path} ({result.embedding.architecture}, {result.embedding.num_vectors} vector(s), "
        f"trigger {trigger!r}, {steps} steps, {result.precision})")
    if result.held_loss_start is not None:
        say(f"loss on a fixed batch: {result.held_loss_start:.5f} -> {result.held_loss_end:.5f}")
    say(f"loss curve: {result.loss_csv}, {result.loss_png}")
    if result.samples:
        say(f"samples: {result.samples[-1].parent} ({len(result.samples)})")
    if published is not None:
        note = " with its final sample as the preview" if published.preview_sent else " (no sample was made: no preview)"
        say(f"published {published.record.id}{note}")


class _LossProgress:
    """A progress bar with the current loss on a terminal (stderr); nothing otherwise."""

    def __init__(self, *, enabled: bool, steps: int) -> None:
        self.bar = None
        if enabled and err_console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), console=err_console,
                                transient=True)
            self.task = self.bar.add_task("training", total=steps, loss="-")

    def __enter__(self) -> Any:
        if self.bar is None:
            return None
        self.bar.start()
        return lambda report: self.bar.update(self.task, completed=report.step, loss=f"{report.loss:.4f}")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

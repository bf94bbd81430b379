"""Local file commands: `inspect` and `convert` (no server needed)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from pseudoword.cli.main import app
from pseudoword.cli.output import console, handle_errors, print_json
from pseudoword.registry.core import default_trigger, file_hashes

if TYPE_CHECKING:
    from pseudoword.registry.core.embedding import Embedding


class ExportFormat(str, Enum):
    safetensors = "safetensors"
    a1111 = "a1111"
    diffusers = "diffusers"


def describe_file(path: Path) -> tuple[Embedding, dict[str, Any]]:
    """Read a local file and summarise it in the `inspect --json` shape."""
    from pseudoword.registry.core.reading import read_embedding  # torch: imported when a file is read, not for --help

    data = path.read_bytes()
    emb = read_embedding(data, filename=path.name)
    hashes = file_hashes(data)
    summary = {
        "file": str(path),
        "format": emb.source_format,
        "architecture": emb.architecture,
        "vectors": emb.num_vectors,
        "dtype": emb.dtype,
        "shapes": {key: list(value.shape) for key, value in emb.vectors.items()},
        "trigger": default_trigger(emb, path.name),
        "name": emb.name,
        "metadata": emb.metadata,
        "size": len(data),
        "sha256": hashes.sha256,
        "autov2": hashes.autov2,
        "a1111_hash": hashes.a1111,
    }
    return emb, summary


@app.command()
@handle_errors
def inspect(
    file: Annotated[Path, typer.Argument(help="An embedding file (.safetensors, .pt, .bin).")],
    json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Read an embedding file and say exactly what it is (nothing in it is executed)."""
    _, summary = describe_file(file)
    if json:
        print_json(summary)
        return
    table = Table(show_header=False, box=None)
    for key in ("file", "format", "architecture", "vectors", "dtype", "shapes", "trigger", "metadata",
                "size", "sha256", "autov2", "a1111_hash"):
        value = summary[key]
        if key == "metadata" and not value:
            continue
        table.add_row(f"[bold]{key}[/bold]", str(value))
    console.print(table)


@app.command()
@handle_errors
def convert(
    file: Annotated[Path, typer.Argument(help="An embedding file.")],
    to: Annotated[ExportFormat, typer.Option("--to", help="safetensors (canonical), a1111 (.pt) or diffusers.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the converted file.")],
    trigger: Annotated[str | None, typer.Option(help="Trigger word written into the file.")] = None,
) -> None:
    """Convert an embedding to the canonical safetensors form, A1111 `.pt`, or diffusers' format."""
    from pseudoword.registry.core.reading import read_embedding
    from pseudoword.registry.core.writing import export_bytes

    emb = read_embedding(file, filename=file.name)
    data = export_bytes(emb, to.value, trigger or default_trigger(emb, file.name))
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    console.print(f"wrote {out} ({to.value}, {emb.architecture}, {emb.num_vectors} vectors, sha256 {file_hashes(data).sha256})",
                  markup=False, highlight=False)

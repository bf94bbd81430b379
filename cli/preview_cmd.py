"""Preview images from the command line: ``pseudoword preview`` renders a comparison and attaches
it; ``pull`` writes a version's first preview beside the file (``NAME.preview.png``, where
AUTOMATIC1111's Extra Networks and ComfyUI's model browsers look for it)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pseudoword.cli.main import app
from pseudoword.cli.output import console, handle_errors, print_json
from pseudoword.registry.core import parse_model_ref

if TYPE_CHECKING:
    from pseudoword.registry.client import RegistryClient
    from pseudoword.registry.core.record import VersionRecord

#: Extension A1111 / ComfyUI expect for each preview format (A1111 also reads .jpg and .webp).
PREVIEW_SUFFIXES = {"png": ".preview.png", "jpeg": ".preview.jpg", "webp": ".preview.webp"}


def preview_path(file: Path, fmt: str) -> Path:
    """``NAME.preview.png`` beside ``NAME.safetensors`` / ``NAME.pt`` (the file's stem, its last
    suffix dropped, as A1111's Extra Networks and ComfyUI name previews)."""
    stem = file.name.removesuffix(".diffusers.safetensors") if file.name.endswith(".diffusers.safetensors") else file.stem
    return file.with_name(stem + PREVIEW_SUFFIXES.get(fmt, ".preview.png"))


def write_preview(client: RegistryClient, version_id: str, file: Path) -> Path | None:
    """Write the first preview of ``version_id`` beside ``file``; None when it has none, or when
    the registry cannot be asked (an offline pull from the cache still succeeds, without one)."""
    from pseudoword.registry.core.errors import PseudowordError
    from pseudoword.registry.core.files import atomic_write

    try:
        previews = client.get_version(version_id).previews or ()
        if not previews:
            return None
        first = previews[0]
        data = client.preview_bytes(first.url)
    except PseudowordError:
        return None
    target = preview_path(file, first.format or "png")
    atomic_write(target, data)
    return target


# -- the comparison ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One row of the comparison: a prompt pair, rendered without and with the embedding."""

    prompt: str
    negative_prompt: str


#: Prompts by what the embedding is: a style applies to any subject, an object (or character) is
#: the subject, a negative embedding is judged on ordinary pictures it should clean up.
PROMPTS = {
    "style": (Comparison("a lighthouse on a cliff", ""), Comparison("a portrait of a woman", ""),
              Comparison("a bowl of fruit on a table", "")),
    "object": (Comparison("a photo", ""), Comparison("on a beach at sunset", ""),
               Comparison("in a forest, detailed", "")),
    "negative": (Comparison("a portrait of a woman, hands", "blurry"), Comparison("a city street", "blurry"),
                 Comparison("a cat on a sofa", "blurry")),
}


def prompt_kind(record: Mapping[str, Any] | VersionRecord) -> str:
    if record.get("kind") == "negative":
        return "negative"
    words = {str(tag).lower() for tag in record.get("tags") or []} | set(str(record.get("title") or "").lower().split())
    return "style" if words & {"style", "art style", "artstyle", "aesthetic"} else "object"


def render_comparison(pipe: Any, record: Mapping[str, Any] | VersionRecord, resolver: Any, *, seed: int,
                      steps: int, size: int,
                      kind: str | None = None) -> tuple[bytes, str]:
    """A grid: one row per prompt, the image without the embedding beside the one with it (same
    seed), through the runtime's ``generate``. Returns PNG bytes and the text stored in them."""
    from PIL import Image, ImageDraw
    from PIL.PngImagePlugin import PngInfo

    from pseudoword.runtime.generation import generate

    kind = kind or prompt_kind(record)
    weight = -1 if kind == "negative" else 1
    rows = []
    for row in PROMPTS[kind]:
        base = {"positivePrompt": row.prompt, "negativePrompt": row.negative_prompt, "width": size, "height": size,
                "steps": steps, "seed": seed}
        without = generate({**base, "embeddings": []}, pipe, resolver=resolver)[0].image
        with_it = generate({**base, "embeddings": [{"model": record["id"], "weight": weight}]}, pipe,
                           resolver=resolver)[0].image
        rows.append((without, with_it))
    label = 12
    width, height = rows[0][0].size
    sheet = Image.new("RGB", (2 * width + 3, label + len(rows) * (height + 1)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((2, 0), "without", fill="black")
    draw.text((width + 5, 0), f"with {weight:+d}", fill="black")
    for i, (left, right) in enumerate(rows):
        top = label + i * (height + 1)
        sheet.paste(left.convert("RGB"), (0, top))
        sheet.paste(right.convert("RGB"), (width + 3, top))
    parameters = (f"pseudoword preview of {record['id']} ({kind}): left without, right with weight {weight}; "
                  f"seed {seed}, steps {steps}, {size}x{size}\n"
                  + "\n".join(f"prompt: {row.prompt} | negative: {row.negative_prompt}" for row in PROMPTS[kind]))
    info = PngInfo()
    info.add_text("parameters", parameters)
    out = io.BytesIO()
    sheet.save(out, format="PNG", pnginfo=info)
    return out.getvalue(), parameters


@app.command()
@handle_errors
def preview(
    ref: Annotated[str, typer.Argument(help="SOURCE:MODEL[@VERSION] of a published embedding.", show_default=False)],
    pipeline: Annotated[Path, typer.Option("--pipeline", help="A local diffusers pipeline directory of the "
                                                              "embedding's architecture.", show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", help="Also write the comparison image here.",
                                             show_default=False)] = None,
    attach: Annotated[bool, typer.Option("--attach/--no-attach", help="Attach it to the version as a preview "
                                                                      "(needs a token for its source).")] = True,
    seed: Annotated[int, typer.Option("--seed", help="The seed of every image (same for without and with).")] = 1,
    steps: Annotated[int, typer.Option("--steps", min=1, max=150, help="Denoising steps.")] = 20,
    size: Annotated[int | None, typer.Option("--size", min=64, max=2048, help="Image side in pixels (default: "
                                             "the pipeline's native size).", show_default=False)] = None,
    kind: Annotated[str | None, typer.Option("--prompts", help="style, object or negative (default: from the "
                                             "version's kind and tags).", show_default=False)] = None,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
    registry: Annotated[str | None, typer.Option("--registry", help="Registry URL.", show_default=False)] = None,
    token: Annotated[str | None, typer.Option("--token", help="Bearer token.", show_default=False)] = None,
) -> None:
    """Render the embedding's effect (same seed, without and with it, a few prompts chosen by its
    kind) on a local pipeline into one image, and attach it to the version as a preview."""
    from pseudoword.cli.registry_cmd import open_client
    from pseudoword.cli.runtime_cmd import _quiet_libraries
    from pseudoword.registry.core.errors import InvalidRequest
    from pseudoword.registry.core.files import atomic_write
    from pseudoword.runtime.generation import image_size, load_pipeline, parse_request
    from pseudoword.runtime.resolver import Resolver

    if kind is not None and kind not in PROMPTS:
        raise InvalidRequest(f"--prompts must be one of {', '.join(PROMPTS)}, not {kind!r}")
    parse_model_ref(ref)
    _quiet_libraries()
    with open_client(registry, token) as client, Resolver(client) as resolver:
        record = resolver.resolve([ref])[0].record
        pipe = load_pipeline(pipeline)
        side = size or image_size(pipe, parse_request({"positivePrompt": "x"}))[0]
        data, parameters = render_comparison(pipe, record, resolver, seed=seed, steps=steps, size=side, kind=kind)
        if out is not None:
            atomic_write(out, data)
        previews = client.add_previews(record["id"], [("comparison.png", data)]) if attach else []
    summary = {"id": record["id"], "attached": attach, "size": len(data), "path": str(out) if out else None,
               "previews": [preview.to_wire() for preview in previews], "parameters": parameters}
    if json:
        print_json(summary)
        return
    where = f" and wrote {out}" if out else ""
    verb = f"attached a comparison to {record['id']}" if attach else f"rendered a comparison of {record['id']}"
    console.print(f"{verb}{where} ({len(data)} bytes)", markup=False, highlight=False)


__all__ = ["preview", "preview_path", "render_comparison", "write_preview"]

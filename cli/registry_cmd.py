"""Registry commands: publish, import, search, show, pull, yank, unyank, login, logout, lock.

Thin over ``RegistryClient`` and the runtime's ``Resolver``. Every command takes ``--registry``
and ``--token`` (else ``PSEUDOWORD_REGISTRY`` / ``PSEUDOWORD_TOKEN``, else what ``login``
saved), prints a readable summary or, with ``--json``, one JSON document on stdout, and fails
with one line ``error [code]: message``: exit 1 for what the user must act on, 2 for usage.
"""

from __future__ import annotations

import json as jsonlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from pseudoword.cli import config
from pseudoword.cli.main import app
from pseudoword.cli.output import EXIT_USAGE, console, err_console, fail, handle_errors, print_json
from pseudoword.registry.core import HashRef, ModelRef, parse_ref
from pseudoword.registry.core.errors import InvalidReference, InvalidRequest

if TYPE_CHECKING:
    from pseudoword.registry.client import RegistryClient
    from pseudoword.registry.core.record import VersionRecord
    from pseudoword.registry.importing import ImportReport


class Kind(str, Enum):
    positive = "positive"
    negative = "negative"


class Arch(str, Enum):
    sd1 = "sd1"
    sd2 = "sd2"
    sdxl = "sdxl"


class Sort(str, Enum):
    relevance = "relevance"
    newest = "newest"
    downloads = "downloads"


class PullFormat(str, Enum):
    safetensors = "safetensors"
    a1111 = "a1111"
    diffusers = "diffusers"


#: Widest table printed into a pipe or a file.
PIPE_WIDTH = 160

RegistryOpt = Annotated[
    str | None,
    typer.Option("--registry", help="Registry URL (else PSEUDOWORD_REGISTRY, the login default, http://127.0.0.1:8000).",
                 show_default=False),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", help="Bearer token (else PSEUDOWORD_TOKEN, else the one `pseudoword login` saved).",
                 show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


# -- helpers ---------------------------------------------------------------------------------


def usage_error(message: str, code: str = InvalidRequest.code) -> typer.Exit:
    return fail(message, code, EXIT_USAGE)


def parse_cli_ref(text: str, *, require_version: bool = False, model_only: bool = False) -> ModelRef | HashRef:
    """Parse a reference given on the command line; a bad one is a usage error (exit 2)."""
    try:
        ref = parse_ref(text)
    except InvalidReference as exc:
        raise usage_error(exc.message, exc.code) from None
    if model_only and not isinstance(ref, ModelRef):
        raise usage_error(f"expected SOURCE:MODEL@VERSION here, got the hash reference {text!r}", InvalidReference.code)
    if require_version and (not isinstance(ref, ModelRef) or ref.version is None):
        raise usage_error(f"reference {text!r} needs a version: SOURCE:MODEL@VERSION", InvalidReference.code)
    return ref


@contextmanager
def open_client(registry: str | None, token: str | None) -> Iterator[RegistryClient]:
    from pseudoword.registry.client import RegistryClient

    url = config.registry_url(registry)
    with RegistryClient(url, config.registry_token(token, url) or "") as client:
        yield client


@contextmanager
def transfer_progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr when it is a terminal; None (no output) otherwise."""
    if not err_console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=err_console, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None)

        yield update


@contextmanager
def count_progress(label: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar of items done on stderr when it is a terminal; None otherwise."""
    if not (enabled and err_console.is_terminal):
        yield None
        return
    from rich.progress import Progress

    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def record_table(record: VersionRecord) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows = [
        ("id", record.id),
        ("air", record.air),
        ("title", record.title),
        ("architecture", record.architecture),
        ("vectors", f"{record.vectors} ({record.dtype})"),
        ("kind", record.kind),
        ("trigger", record.trigger),
        ("tags", ", ".join(record.tags) or None),
        ("sha256", record.sha256),
        ("size", record.size),
        ("original", f"{record.original_format}, {record.original_size} bytes, sha256 {record.original_sha256}"),
        ("autov2", record.autov2),
        ("a1111 hash", record.a1111_hash),
        ("downloads", record.downloads),
        ("created", record.created_at),
        ("yanked", f"yes: {record.yanked_reason or 'no reason given'}" if record.yanked else "no"),
    ]
    for key, value in rows:
        if value not in (None, ""):
            table.add_row(key, Text(str(value)))  # Text: user strings are not rich markup
    return table


def print_table(table: Table) -> None:
    """Print a table; into a pipe or a file up to 160 columns wide (not the 80 rich assumes), so
    rows stay one line each; ID columns fold rather than being cut short."""
    if console.is_terminal:
        console.print(table)
        return
    from rich.measure import Measurement

    width = Measurement.get(console, console.options.update(width=PIPE_WIDTH), table).maximum
    Console(width=max(width, 20), highlight=False).print(table)  # console.print caps width at its own


def plain(text: str) -> None:
    console.print(text, markup=False, highlight=False)


# -- publish -----------------------------------------------------------------------------------


@app.command()
@handle_errors
def publish(
    file: Annotated[Path, typer.Argument(help="The embedding file (.safetensors, .pt, .bin).", show_default=False)],
    id: Annotated[str, typer.Option("--id", help="SOURCE:MODEL@VERSION to publish under.", show_default=False)],
    trigger: Annotated[str | None, typer.Option(help="Trigger word (default: the name in the file, else its stem).")] = None,
    kind: Annotated[Kind | None, typer.Option(help="positive, or negative for embeddings meant for the negative prompt "
                                                   "(default: what the file says, else positive).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    title: Annotated[str | None, typer.Option(help="Display title.")] = None,
    description: Annotated[str | None, typer.Option(help="Longer description.")] = None,
    preview: Annotated[list[Path] | None, typer.Option("--preview", help="A preview image, PNG/JPEG/WEBP (repeatable).")] = None,
    base_model: Annotated[str | None, typer.Option("--base-model", help="The model it was made for, as Civitai names "
                                                   "it (SD 1.5, SDXL 1.0, Pony, ...; default: what the file says).")] = None,
    license: Annotated[str | None, typer.Option("--license", help="Its licence, an SPDX expression (e.g. CC-BY-4.0).")] = None,
    publisher: Annotated[str | None, typer.Option("--publisher", help="Who made it, shown as the creator.")] = None,
    json: JsonOpt = False,
    registry: RegistryOpt = None,
    token: TokenOpt = None,
) -> None:
    """Validate an embedding file locally, then publish it under an ID."""
    from pseudoword.registry.core.reading import read_embedding, read_file_bytes  # torch: not for --help

    ref = parse_cli_ref(id, require_version=True, model_only=True)
    data = read_file_bytes(file)
    read_embedding(data, filename=file.name)  # refuses a bad file before any upload
    with open_client(registry, token) as client, transfer_progress(f"uploading {file.name}") as progress:
        result = client.publish(data, id=str(ref), filename=file.name, trigger=trigger,
                                kind=kind.value if kind else None, tags=tuple(tag or ()), title=title,
                                description=description, progress=progress, previews=tuple(preview or ()),
                                base_model=base_model, license=license, publisher=publisher)
    if json:
        print_json({**result.record.to_wire(), "created": result.created})
        return
    verb = "published" if result.created else "already published (unchanged)"
    plain(f"{verb}: {result.record.id}")
    print_table(record_table(result.record))


# -- import ------------------------------------------------------------------------------------


@app.command("import")
@handle_errors
def import_(
    directory: Annotated[Path, typer.Argument(help="An AUTOMATIC1111 / ComfyUI embeddings folder.", show_default=False)],
    source: Annotated[str, typer.Option("--source", help="Source to publish under (your namespace).", show_default=False)],
    version: Annotated[str, typer.Option("--version", help="Version given to every model.")] = "1",
    kind: Annotated[Kind, typer.Option(help="Kind of every file (see --kind-from-name).")] = Kind.positive,
    kind_from_name: Annotated[bool, typer.Option("--kind-from-name",
                                                 help="Mark files named *-neg* or *negative* as negative.")] = False,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag for every file (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and compare with the registry; upload nothing.")] = False,
    json: JsonOpt = False,
    registry: RegistryOpt = None,
    token: TokenOpt = None,
) -> None:
    """Publish every embedding of a folder: model name and trigger from each file name.

    Files already published under the same ID with the same content are skipped, so a rerun
    after an interruption finishes the job. Exits 1 when any file was refused."""
    from pseudoword.registry.importing import ImportPlan, import_folder

    if not directory.is_dir():
        raise usage_error(f"not a folder: {directory}")
    try:
        parse_ref(f"{source}:x@1")
        parse_ref(f"{source}:m@{version}")
    except InvalidReference as exc:
        raise usage_error(f"invalid --source or --version: {exc.message}", exc.code) from None
    plan = ImportPlan(directory=directory, source=source, version=version, kind=kind.value,
                      kind_from_name=kind_from_name, tags=tuple(tag or ()), dry_run=dry_run)
    with open_client(registry, token) as client, count_progress("publishing", enabled=not json) as progress:
        report = import_folder(plan, client, progress=progress,
                               warn=lambda msg: err_console.print(f"warning: {msg}", markup=False, highlight=False))
    if json:
        print_json(report.to_dict())
    else:
        print_table(import_table(report))
        plain(report.counts_line())
    if report.aborted is not None:
        raise fail(report.aborted.message, report.aborted.code)
    if report.refused:
        raise typer.Exit(1)


def import_table(report: ImportReport) -> Table:
    table = Table(Column("File", overflow="fold"), Column("ID", overflow="fold"), "Result",
                  Column("Detail", overflow="fold", ratio=1))
    verb = "would publish" if report.dry_run else "published"
    rows = [(r, Text(verb, "green"), f"{r['architecture']}, {r['vectors']} vector{'s' if r['vectors'] != 1 else ''}, "
                                     f"trigger {r['trigger']!r}") for r in report.published]
    rows += [(r, Text("skipped", "yellow"), r.get("reason", "")) for r in report.skipped]
    rows += [(r, Text("refused", "red"), f"{r['code']}: {r['message']}") for r in report.refused]
    rows += [({"file": name}, Text("not done"), "") for name in report.not_done]
    for row, result, detail in rows:  # Text cells: file names may hold [brackets]
        table.add_row(Text(row["file"]), Text(row.get("id") or ""), result, Text(detail))
    return table


# -- search ------------------------------------------------------------------------------------


@app.command()
@handle_errors
def search(
    query: Annotated[str | None, typer.Argument(help="Words to look for (name, title, description, tags, trigger).")] = None,
    arch: Annotated[Arch | None, typer.Option("--arch", help="Only this architecture.")] = None,
    kind: Annotated[Kind | None, typer.Option(help="Only positive or negative embeddings.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only models with this tag.")] = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    sort: Annotated[Sort, typer.Option(help="relevance, newest or downloads.")] = Sort.relevance,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many results (pages through the registry).")] = 20,
    cursor: Annotated[str | None, typer.Option(help="Continue from a previous --json answer's next_cursor.")] = None,
    json: JsonOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Search the catalogue: one row per model, its newest version that is not yanked."""
    with open_client(registry, None) as client:
        pages = client.iter_search(query or None, limit=limit, cursor=cursor, architecture=arch.value if arch else None,
                                   kind=kind.value if kind else None, tag=tag, source=source, sort=sort.value)
        items = list(pages)
        cursor = pages.next_cursor
    if json:
        print_json({"items": [item.to_wire() for item in items], "next_cursor": cursor})
        return
    if not items:
        plain("no embeddings match")
        return
    table = Table(Column("ID", overflow="fold"), "Architecture", "Vectors", "Kind", Column("Trigger", overflow="fold"),
                  "Downloads")
    for item in items:
        name = item.id + (" (yanked)" if item.yanked else "")
        table.add_row(*(Text(str(value)) for value in (
            name, item.architecture, item.vectors, item.kind, item.trigger or "", item.downloads or 0)))
    print_table(table)
    if cursor:
        plain(f"more results: --cursor {cursor}")


# -- show --------------------------------------------------------------------------------------


def usage_snippet(record: VersionRecord) -> dict[str, Any]:
    """How to use a version: the request's `embeddings` entry and the diffusers calls."""
    from pseudoword.runtime.pull import pulled_file_name

    trigger = record.call_word
    negative = record.kind == "negative"
    entry = {"model": record.id, "weight": -1.0 if negative else 1.0}
    where = f'prompt="a photo", negative_prompt="{trigger}"' if negative else f'prompt="a photo, {trigger}"'
    diffusers_file = pulled_file_name(trigger, "diffusers")
    if record.architecture == "sdxl":
        diffusers = (
            f"# pseudoword pull {record.id} --format diffusers\n"
            "from safetensors.torch import load_file\n"
            f'state = load_file("{diffusers_file}")\n'
            f'pipe.load_textual_inversion(state["clip_l"], token="{trigger}", '
            "text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)\n"
            f'pipe.load_textual_inversion(state["clip_g"], token="{trigger}", '
            "text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)\n"
            f"image = pipe({where}).images[0]"
        )
    else:
        diffusers = (
            f"# pseudoword pull {record.id} --format diffusers\n"
            f'pipe.load_textual_inversion("{diffusers_file}", token="{trigger}")\n'
            f"image = pipe({where}).images[0]"
        )
    return {"embeddings": [entry], "pull": f"pseudoword pull {record.id}", "diffusers": diffusers}


@app.command()
@handle_errors
def show(
    ref: Annotated[str, typer.Argument(help="SOURCE:MODEL[@VERSION], an AIR, or a hash.", show_default=False)],
    json: JsonOpt = False,
    registry: RegistryOpt = None,
) -> None:
    """Show a model: the version asked for (else the latest), all versions, hashes, usage."""
    parsed = parse_cli_ref(ref)
    with open_client(registry, None) as client:
        model, record = client.version_meant(parsed)
    usage = usage_snippet(record)
    if json:
        print_json({**record.to_wire(), "versions": [v.to_wire() for v in model.versions], "usage": usage})
        return
    plain(model.id + (f" — {record.title}" if record.title else ""))
    if record.description:
        plain(record.description)
    print_table(record_table(record))
    table = Table("Version", "Created", "Kind", "sha256", "Downloads", "Yanked", title="Versions", title_justify="left")
    for item in model.versions:
        yanked = f"yes: {item.yanked_reason or ''}".strip() if item.yanked else ""
        mark = " *" if item.id == record.id else ""
        table.add_row(*(Text(str(value)) for value in (
            f"{item.version}{mark}", item.created_at or "", item.kind, item.sha256[:16], item.downloads or 0, yanked)))
    print_table(table)
    plain("\nUse in a request's embeddings:")
    plain(jsonlib.dumps(usage["embeddings"][0]))
    plain("\nWith diffusers:")
    plain(usage["diffusers"])


# -- pull --------------------------------------------------------------------------------------


@app.command()
@handle_errors
def pull(
    ref: Annotated[str, typer.Argument(help="SOURCE:MODEL[@VERSION], an AIR, or a hash.", show_default=False)],
    to: Annotated[Path, typer.Option("--to", help="Folder to write into (e.g. A1111's or ComfyUI's embeddings folder).")] = Path("."),
    format: Annotated[PullFormat, typer.Option("--format", help="safetensors (canonical), a1111 (.pt) or diffusers.")] = PullFormat.safetensors,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Resolver cache (else PSEUDOWORD_CACHE or ~/.cache/pseudoword).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a different file of the same name.")] = False,
    json: JsonOpt = False,
    registry: RegistryOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download an embedding through the verified cache, named for A1111 and ComfyUI.

    Writes <trigger>.safetensors (canonical), <trigger>.pt (a1111) or
    <trigger>.diffusers.safetensors (diffusers, for load_textual_inversion). The same file already
    there is left alone; a different file of that name is kept unless --force."""
    from pseudoword.runtime.pull import pull as pull_into
    from pseudoword.runtime.resolver import Resolver

    parse_cli_ref(ref)
    with open_client(registry, token) as client, Resolver(client, cache_dir=cache_dir) as resolver:
        pulled = pull_into(resolver, ref, to, format=format.value, force=force)
    with open_client(registry, token) as client:  # NAME.preview.png beside it, as A1111 and ComfyUI look for
        from pseudoword.cli.preview_cmd import write_preview

        preview_file = write_preview(client, pulled.id, pulled.path)
    if json:
        print_json({**pulled.to_dict(), "preview": str(preview_file) if preview_file else None})
        return
    if pulled.yanked:
        err_console.print(f"warning: {pulled.id} is yanked: {pulled.yanked_reason or 'no reason given'}",
                          markup=False, highlight=False)
    verb = {"written": "pulled", "replaced": "pulled (replaced)", "unchanged": "already there"}[pulled.action]
    plain(f"{verb} {pulled.id} -> {pulled.path} ({pulled.format}, {pulled.size} bytes, verified sha256 "
          f"{pulled.canonical_sha256})")


# -- yank / unyank -----------------------------------------------------------------------------


def _yank_output(record: VersionRecord | None, ref: str, json: bool, done: str) -> None:
    if json:
        print_json(record.to_wire() if record else {"id": ref})
    else:
        plain(f"{done} {record.id if record else ref}")


@app.command()
@handle_errors
def yank(
    ref: Annotated[str, typer.Argument(help="SOURCE:MODEL@VERSION to yank.", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Why (shown to everyone who resolves it).", show_default=False)],
    json: JsonOpt = False,
    registry: RegistryOpt = None,
    token: TokenOpt = None,
) -> None:
    """Yank a version: it still resolves when pinned exactly, but never as the latest."""
    parsed = parse_cli_ref(ref, require_version=True, model_only=True)
    with open_client(registry, token) as client:
        record = client.yank(str(parsed), reason)
    _yank_output(record, str(parsed), json, "yanked")


@app.command()
@handle_errors
def unyank(
    ref: Annotated[str, typer.Argument(help="SOURCE:MODEL@VERSION to restore.", show_default=False)],
    json: JsonOpt = False,
    registry: RegistryOpt = None,
    token: TokenOpt = None,
) -> None:
    """Undo a yank."""
    parsed = parse_cli_ref(ref, require_version=True, model_only=True)
    with open_client(registry, token) as client:
        record = client.unyank(str(parsed))
    _yank_output(record, str(parsed), json, "unyanked")


# -- login / logout ----------------------------------------------------------------------------


@app.command()
@handle_errors
def login(
    registry: RegistryOpt = None,
    token: Annotated[str | None, typer.Option("--token", help="The token (else prompted for, or read from stdin).",
                                              show_default=False)] = None,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Ask the registry whether the token works "
                                                                   "before saving it.")] = True,
) -> None:
    """Check a token against a registry, save it in the user's config (mode 0600) and make that
    registry the default."""
    url = config.registry_url(registry)
    if token is None:
        if sys.stdin.isatty():
            token = typer.prompt(f"Token for {url}", hide_input=True)
        else:
            token = sys.stdin.readline()
    token = (token or "").strip()
    if not token:
        raise usage_error("no token given")
    scope = ""
    if check:
        with open_client(url, token) as client:
            who = client.whoami()  # RegistryUnreachable / Unauthorized: one line, nothing saved
        scope = " (admin)" if who.get("admin") else f" (may publish to {who.get('source')})"
    path = config.save_login(url, token)
    plain(f"saved the token for {url}{scope} in {path}")


@app.command()
@handle_errors
def logout(registry: RegistryOpt = None) -> None:
    """Forget the token saved for a registry; the default registry goes back to
    PSEUDOWORD_REGISTRY or http://127.0.0.1:8000 when it was this one."""
    url = config.registry_url(registry)
    removed = config.remove_login(url)
    plain(f"logged out of {url}; the default registry is now {config.registry_url()}" if removed
          else f"no token saved for {url}")


# -- lock --------------------------------------------------------------------------------------


@app.command()
@handle_errors
def lock(
    request: Annotated[Path, typer.Argument(help="A generation request (JSON) naming embeddings.", show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", help="Lockfile path (default: REQUEST.lock.json beside it).")] = None,
    json: JsonOpt = False,
    registry: RegistryOpt = None,
    token: TokenOpt = None,
) -> None:
    """Pin every embedding reference of a request to an exact version and SHA-256."""
    from pseudoword.registry.core.files import atomic_write
    from pseudoword.runtime.lock import build_lock, default_lock_path, refs_in_request
    from pseudoword.runtime.resolver import Resolver

    try:
        document = jsonlib.loads(request.read_text())
    except ValueError as exc:
        raise InvalidRequest(f"{request} is not valid JSON: {exc}") from None
    refs = refs_in_request(document)
    if not refs:
        raise InvalidRequest(f"{request} names no embeddings (no 'embeddings' entries with a 'model')")
    url = config.registry_url(registry)
    with open_client(registry, token) as client, Resolver(client) as resolver:
        records = resolver.lookup(refs)
    lockdoc = build_lock(zip(refs, records), url)  # type: ignore[arg-type]
    target = out or default_lock_path(request)
    atomic_write(target, (jsonlib.dumps(lockdoc, indent=2) + "\n").encode())
    if json:
        print_json({**lockdoc, "path": str(target)})
        return
    table = Table(Column("Reference", overflow="fold"), Column("Pinned to", overflow="fold"), "sha256")
    for ref, pin in lockdoc["pins"].items():
        table.add_row(Text(ref), Text(pin["id"]), pin["sha256"][:16])
    print_table(table)
    plain(f"wrote {target}")

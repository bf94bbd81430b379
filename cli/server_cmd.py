"""Server-side commands: `serve`, `migrate`, `token`, `gc`, on the database of the data directory the server
uses (`token` also over a registry's HTTP API with `--registry`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pseudoword.cli.main import app
from pseudoword.cli.output import console, handle_errors, print_json
from pseudoword.registry.core.errors import MissingCatalogue

DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="Data directory (else PSEUDOWORD_DATA_DIR, else ~/.local/share/pseudoword; the same for "
                       "serve, token, gc and migrate).", show_default=False)]
token_app = typer.Typer(help="Create, list and revoke API tokens: in the database of --data-dir, or over the HTTP "
                             "API of --registry with an admin token.", no_args_is_help=True)
RemoteOpt = Annotated[str | None, typer.Option(
    "--registry", help="Manage the tokens of this registry over its HTTP API (with an admin --token, "
                       "PSEUDOWORD_TOKEN or the login's), instead of a local database.", show_default=False)]
AdminTokenOpt = Annotated[str | None, typer.Option("--token", help="Admin token for --registry.", show_default=False)]
app.add_typer(token_app, name="token")


def _settings(data_dir: Path | None):  # type: ignore[no-untyped-def]
    from pseudoword.registry.service.settings import Settings

    return Settings.from_env(data_dir=data_dir.expanduser().resolve() if data_dir else None)


def _catalogue(data_dir: Path | None, *, create: bool = False):  # type: ignore[no-untyped-def]
    """The catalogue the server uses; only `serve` and `migrate --create` make a new one, so a
    command pointed at the wrong place says so instead of answering from an empty database."""
    from pseudoword.registry.service.catalogue import Catalogue
    from pseudoword.registry.service.db import make_engine, migrate
    from pseudoword.registry.service.storage import open_store

    settings = _settings(data_dir)
    _require_catalogue(settings, create)
    engine = make_engine(settings.effective_database_url)
    if not create and not _has_schema(engine):
        engine.dispose()
        raise MissingCatalogue(f"{_where(settings)} holds no pseudoword catalogue; start `pseudoword serve` "
                               "there first, or run `pseudoword migrate --create`")
    migrate(engine)
    store = open_store(settings.effective_storage_url, settings.s3_access_key, settings.s3_secret_key)
    return Catalogue(engine, store, settings)


def _remote(registry: str, token: str | None):  # type: ignore[no-untyped-def]
    from pseudoword.cli.registry_cmd import open_client

    return open_client(registry, token)


def _where(settings) -> str:  # type: ignore[no-untyped-def]
    from sqlalchemy.engine import make_url

    url = make_url(settings.effective_database_url)
    return f"the database {url.render_as_string(hide_password=True)}" if not settings.is_embedded \
        else f"the data directory {settings.data_dir}"


def _require_catalogue(settings, create: bool) -> None:  # type: ignore[no-untyped-def]
    """A SQLite catalogue must exist already unless this command creates it."""
    from sqlalchemy.engine import make_url

    database = make_url(settings.effective_database_url).database
    if create or not settings.is_embedded or not database or database == ":memory:":
        return
    if not Path(database).is_file():
        raise MissingCatalogue(f"no catalogue at {database} ({_where(settings)}): start `pseudoword serve "
                               f"--data-dir {settings.data_dir}` first, pass the --data-dir the server uses, "
                               "or run `pseudoword migrate --create`")


def _has_schema(engine) -> bool:  # type: ignore[no-untyped-def]
    from sqlalchemy import inspect

    return inspect(engine).has_table("alembic_version")


@app.command()
@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: DataDirOpt = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
) -> None:
    """Run the registry (migrations run first; safe when several replicas start at once)."""
    import logging
    import os

    import uvicorn

    from pseudoword.registry.service.auth import announce_admin_token, bootstrap_admin
    from pseudoword.registry.service.observability import configure_logging

    settings = _settings(data_dir)
    # Workers build their app from the environment (uvicorn's factory form is the only one that
    # runs several), so the flag is handed over there.
    os.environ["PSEUDOWORD_DATA_DIR"] = str(settings.data_dir)
    configure_logging(settings.log_format, settings.log_level)
    catalogue = _catalogue(data_dir, create=True)  # the first start makes the catalogue
    secret = bootstrap_admin(catalogue.engine, settings.data_dir, settings.admin_token_file)
    catalogue.engine.dispose()
    if secret:
        announce_admin_token(settings.data_dir / "admin.token")
    logging.getLogger("pseudoword.server").info(
        "pseudoword registry on http://%s:%s (database %s, storage %s, %d worker%s)", host, port,
        settings.effective_database_url.split("://")[0], settings.effective_storage_url.split("://")[0],
        workers, "" if workers == 1 else "s")
    # In-flight requests get up to 30 s to finish on SIGTERM (rolling updates, scale-down).
    uvicorn.run("pseudoword.registry.service.app:create_app", factory=True, host=host, port=port,
                log_level="warning", timeout_graceful_shutdown=30, proxy_headers=True, server_header=False,
                workers=workers)


@app.command()
@handle_errors
def migrate(data_dir: DataDirOpt = None,
            create: Annotated[bool, typer.Option("--create", help="Create the catalogue when there is none.")] = False,
            ) -> None:
    """Apply database migrations and exit (a one-shot job before replicas start). A PostgreSQL
    database gets its tables; a SQLite file is made only with --create."""
    from pseudoword.registry.service.db import make_engine
    from pseudoword.registry.service.db import migrate as run_migrations

    settings = _settings(data_dir)
    _require_catalogue(settings, create)
    run_migrations(make_engine(settings.effective_database_url))
    console.print("database is at the newest schema", markup=False)


@token_app.command("create")
@handle_errors
def token_create(
    source: Annotated[str | None, typer.Option(help="The source this token may publish to.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="An admin token (may do everything).")] = False,
    name: Annotated[str, typer.Option(help="A label for the token.")] = "",
    data_dir: DataDirOpt = None,
    registry: RemoteOpt = None,
    token: AdminTokenOpt = None,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a token; its secret is printed once and only its hash is stored."""
    if registry is not None:
        with _remote(registry, token) as client:
            view = client.create_token(source=source, admin=admin, name=name)
    else:
        from sqlmodel import Session

        from pseudoword.registry.service.auth import create_token, token_view

        catalogue = _catalogue(data_dir)
        with Session(catalogue.engine) as session:
            created, secret = create_token(session, source=source, admin=admin, name=name)
        view = {**token_view(created), "token": secret}
    if json:
        print_json(view)
    else:
        console.print(view["token"], markup=False, highlight=False)


@token_app.command("list")
@handle_errors
def token_list(data_dir: DataDirOpt = None, registry: RemoteOpt = None, token: AdminTokenOpt = None,
               json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List tokens (never their secrets)."""
    if registry is not None:
        with _remote(registry, token) as client:
            rows = client.list_tokens()
    else:
        from sqlmodel import Session

        from pseudoword.registry.service.auth import list_tokens

        catalogue = _catalogue(data_dir)
        with Session(catalogue.engine) as session:
            rows = list_tokens(session)
    if json:
        print_json(rows)
        return
    table = Table("id", "name", "source", "admin", "created", "revoked")
    for row in rows:
        table.add_row(*(str(row[k]) for k in ("id", "name", "source", "admin", "created_at", "revoked")))
    console.print(table)


@token_app.command("revoke")
@handle_errors
def token_revoke(token_id: Annotated[int, typer.Argument(help="Token id (see `token list`).")],
                 data_dir: DataDirOpt = None, registry: RemoteOpt = None, token: AdminTokenOpt = None) -> None:
    """Revoke a token: it stops working at once on every replica."""
    if registry is not None:
        with _remote(registry, token) as client:
            client.revoke_token(token_id)
    else:
        from sqlmodel import Session

        from pseudoword.registry.service.auth import revoke_token

        catalogue = _catalogue(data_dir)
        with Session(catalogue.engine) as session:
            revoke_token(session, token_id)
    console.print(f"revoked token {token_id}", markup=False)


@app.command()
@handle_errors
def gc(dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
       grace_seconds: Annotated[float | None, typer.Option(
           "--grace-seconds", min=0, help="Keep orphans younger than this (else PSEUDOWORD_GC_GRACE_SECONDS, 3600).")] = None,
       data_dir: DataDirOpt = None, json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Remove blobs that no version refers to (left by interrupted publishes), once older than the
    grace period, and partial writes a crash left behind. Reports exactly what it deleted. On
    SQLite it also compacts the search index (run it now and then: searches stay fast)."""
    from dataclasses import asdict

    report = _catalogue(data_dir).gc(dry_run=dry_run, grace_seconds=grace_seconds)
    if json:
        print_json(asdict(report))
        return
    old = [d for d in report.orphans if d not in report.young]
    if dry_run:
        console.print(f"would remove {len(old)} orphan blob(s)", markup=False)
    else:
        console.print(f"removed {len(report.removed)} orphan blob(s) and {len(report.temporaries_removed)} "
                      "partial write(s)", markup=False)
    for digest in old if dry_run else report.removed:
        console.print(f"  {digest}", markup=False)
    if report.young:
        console.print(f"kept {len(report.young)} orphan(s) younger than {report.grace_seconds:g} s "
                      "(a publish may be about to use them)", markup=False)
    if report.search_index_compacted:
        console.print("compacted the search index", markup=False)

"""The `pseudoword` Typer app. Commands live in one module per area and register on `app`.

Each command module is imported lazily-safe: a worker without the server extra still gets the
file and runtime commands (a missing extra turns into a one-line error when the command runs).
"""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(
    name="pseudoword",
    help="A registry and runtime for textual-inversion embeddings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"pseudoword {version('pseudoword')}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the installed version and exit."),
) -> None:
    """A registry and runtime for textual-inversion embeddings."""
    if debug:
        os.environ["PSEUDOWORD_DEBUG"] = "1"


# Importing the modules registers their commands on `app`.
from pseudoword.cli import files_cmd  # noqa: E402,F401

for _module in ("server_cmd", "registry_cmd", "runtime_cmd", "preview_cmd", "worker_cmd", "train_cmd"):
    try:
        __import__(f"pseudoword.cli.{_module}")
    except ModuleNotFoundError as exc:  # a module not written yet, or an extra not installed
        if not exc.name or not exc.name.startswith("pseudoword.cli."):
            print(f"pseudoword: {_module} unavailable ({exc.name} not installed)", file=sys.stderr)


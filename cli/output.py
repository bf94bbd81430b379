"""How every command reports: one JSON document with --json, rich text otherwise, and one line
naming the problem and its code on failure (a traceback only with --debug)."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from pseudoword.registry.core.errors import PseudowordError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

#: Exit codes: 0 ok, 1 a failure the user must act on, 2 usage errors.
EXIT_FAILURE = 1
EXIT_USAGE = 2


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def fail(message: str, code: str = "error", exit_code: int = EXIT_FAILURE) -> typer.Exit:
    err_console.print(f"error [{code}]: {message}", markup=False, highlight=False)
    return typer.Exit(exit_code)


def debug_enabled() -> bool:
    return os.environ.get("PSEUDOWORD_DEBUG", "") not in ("", "0") or "--debug" in sys.argv


def handle_errors(func: F) -> F:
    """Turn our typed errors (and file-system errors) into one line and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except PseudowordError as exc:
            if debug_enabled():
                raise
            raise fail(exc.message, exc.code) from None
        except OSError as exc:
            if debug_enabled():
                raise
            raise fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), "os_error") from None

    return wrapper  # type: ignore[return-value]

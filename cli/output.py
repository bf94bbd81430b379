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


def _jsonable(value: Any) -> Any:
    """Typed records print as the JSON the registry sends (``to_wire``); paths and the like as text."""
    return value.to_wire() if hasattr(value, "to_wire") else str(value)


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=_jsonable) + "\n")


def fail(message: str, code: str = "error", exit_code: int = EXIT_FAILURE) -> typer.Exit:
    err_console.print(f"error [{code}]: {message}", markup=False, highlight=False)
    return typer.Exit(exit_code)


def debug_enabled() -> bool:
    return os.environ.get("PSEUDOWORD_DEBUG", "") not in ("", "0") or "--debug" in sys.argv


#: The extra a command module needs, for a missing module no requirement of pyproject names
#: (``PIL`` is pillow's, ``multipart`` python-multipart's).
_MODULE_EXTRAS = {"pseudoword.cli.server_cmd": "server", "pseudoword.cli.runtime_cmd": "runtime"}


def missing_extra(exc: ModuleNotFoundError, command_module: str) -> str | None:
    """The extra of ours that provides the module ``exc`` misses, or None (then it is a bug)."""
    import re
    from importlib import metadata

    name = (exc.name or "").split(".")[0]
    if not name or name == "pseudoword":
        return None
    wanted = re.sub(r"[-_.]+", "-", name).lower()
    try:
        requirements = metadata.requires("pseudoword") or []
    except metadata.PackageNotFoundError:
        requirements = []
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*).*extra\s*==\s*[\"'](\w+)[\"']", requirement)
        if match and re.sub(r"[-_.]+", "-", match[1]).lower() == wanted and match[2] != "dev":
            return match[2]
    return _MODULE_EXTRAS.get(command_module)


def handle_errors(func: F) -> F:
    """Turn our typed errors (and file-system errors) into one line and exit code 1; a module an
    extra provides that is not installed is one line naming the extra to install."""

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
        except ModuleNotFoundError as exc:
            extra = missing_extra(exc, func.__module__)
            if extra is None or debug_enabled():
                raise
            command = func.__name__.rstrip("_").replace("_", " ")
            raise fail(f"`pseudoword {command}` needs the [{extra}] extra ({exc.name} is not installed): "
                       f"pip install 'pseudoword[{extra}]'", "missing_extra") from None
        except OSError as exc:
            if debug_enabled():
                raise
            raise fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), "os_error") from None

    return wrapper  # type: ignore[return-value]

"""How every ``PSEUDOWORD_*`` setting is read from the environment, on both sides (the service's
``registry/service/settings.py``, the client's and runtime's ``runtime/settings.py``): when it is
used, never at import; a value that does not parse is ``InvalidSetting`` naming the variable;
``PSEUDOWORD_<NAME>_FILE`` (a Docker/Kubernetes secret file) stands for ``PSEUDOWORD_<NAME>``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pseudoword.registry.core.errors import InvalidSetting

#: Where clients look for a registry when nothing else names one.
DEFAULT_REGISTRY = "http://127.0.0.1:8000"
#: The spellings of a yes/no setting (anything else is refused, never read as "no").
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})
#: A secret file is a few lines; refuse to read anything far bigger.
MAX_SECRET_FILE_BYTES = 64 * 1024


def env_text(name: str, default: str | None = None) -> str | None:
    """``$name``, else the content of the file ``$name_FILE`` names (trailing newline dropped), else
    ``default``; an empty value counts as unset."""
    value = os.environ.get(name, "")
    file = os.environ.get(f"{name}_FILE", "")
    if value.strip() and file.strip():
        raise InvalidSetting(f"set {name} or {name}_FILE, not both")
    if file.strip():
        path = Path(file).expanduser()
        try:
            if path.stat().st_size > MAX_SECRET_FILE_BYTES:
                raise InvalidSetting(f"{name}_FILE names {path}, which is over {MAX_SECRET_FILE_BYTES} bytes")
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidSetting(f"{name}_FILE names {path}, which cannot be read ({exc.__class__.__name__})") from None
    return value.strip() or default


def truthy(value: str, name: str = "a yes/no setting") -> bool:
    """The one reading of yes/no text: 1/true/yes/on or 0/false/no/off, any case."""
    text = value.strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise InvalidSetting(f"{name} must be one of 1/true/yes/on or 0/false/no/off, not {value!r}")


def env_flag(name: str, default: bool = False) -> bool:
    value = env_text(name)
    return default if value is None else truthy(value, name)


def env_int(name: str, default: int, *, minimum: int | None = 0) -> int:
    value = env_text(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidSetting(f"{name} must be a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise InvalidSetting(f"{name} must be at least {minimum}, not {number}")
    return number


def env_float(name: str, default: float, *, minimum: float | None = 0.0) -> float:
    value = env_text(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise InvalidSetting(f"{name} must be a number, not {value!r}") from None
    if number != number or (minimum is not None and number < minimum):
        raise InvalidSetting(f"{name} must be a number of at least {minimum}, not {value!r}")
    return number


def env_path(name: str) -> Path | None:
    value = env_text(name)
    return Path(value).expanduser() if value else None


def registry_url() -> str:
    """``PSEUDOWORD_REGISTRY``, else the default (the CLI puts its flag and login file first)."""
    return (env_text("PSEUDOWORD_REGISTRY") or DEFAULT_REGISTRY).rstrip("/")


def registry_token() -> str | None:
    """``PSEUDOWORD_TOKEN`` (or the file ``PSEUDOWORD_TOKEN_FILE`` names)."""
    return env_text("PSEUDOWORD_TOKEN")

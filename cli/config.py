"""Where the CLI finds the registry URL and the token: flag, then environment, then the file
`pseudoword login` writes, then the default.

The file is ``$PSEUDOWORD_CONFIG``, else ``$XDG_CONFIG_HOME/pseudoword/config.toml``, else
``~/.config/pseudoword/config.toml``, written with mode 0600 (its folder 0700)::

    registry = "https://registry.example"

    [tokens]
    "https://registry.example" = "pw_..."

Tokens are kept per registry URL, so a token saved for one registry is never sent to another.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pseudoword.registry.core.env import DEFAULT_REGISTRY, env_text
from pseudoword.registry.core.files import atomic_write


def config_path() -> Path:
    if env := os.environ.get("PSEUDOWORD_CONFIG"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "pseudoword" / "config.toml"


def normalize_url(url: str) -> str:
    return url.strip().rstrip("/")


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The parsed config file, or {} when there is none (or it cannot be read)."""
    path = path or config_path()
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _toml_string(value: str) -> str:
    # JSON string escapes (\", \\, \n, \uXXXX, ...) are all valid TOML basic-string escapes.
    return json.dumps(value, ensure_ascii=True)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, atomically."""
    atomic_write(path, text.encode(), mode=0o600, prefix=".config.", dir_mode=0o700)


def save_config(config: dict[str, Any], path: Path | None = None) -> Path:
    path = path or config_path()
    lines = ["# Written by `pseudoword login`. Holds secrets: keep it private (mode 0600).", ""]
    if config.get("registry"):
        lines += [f"registry = {_toml_string(str(config['registry']))}", ""]
    tokens = config.get("tokens") or {}
    if tokens:
        lines.append("[tokens]")
        lines += [f"{_toml_string(url)} = {_toml_string(str(tok))}" for url, tok in sorted(tokens.items())]
        lines.append("")
    _write_private(path, "\n".join(lines))
    return path


def save_login(registry: str, token: str, *, make_default: bool = True, path: Path | None = None) -> Path:
    """Remember ``token`` for ``registry`` (and make it the default registry)."""
    config = load_config(path)
    url = normalize_url(registry)
    config.setdefault("tokens", {})[url] = token
    if make_default:
        config["registry"] = url
    return save_config(config, path)


def remove_login(registry: str, path: Path | None = None) -> bool:
    """Forget the token of ``registry``, and ``registry`` as the default when it is (so the next
    command goes back to ``PSEUDOWORD_REGISTRY`` or the local default); True if anything changed."""
    config = load_config(path)
    url = normalize_url(registry)
    removed = config.get("tokens", {}).pop(url, None) is not None
    if config.get("registry") and normalize_url(str(config["registry"])) == url:
        del config["registry"]
        removed = True
    if removed:
        save_config(config, path)
    return removed


def registry_url(flag: str | None = None) -> str:
    """``--registry``, else ``PSEUDOWORD_REGISTRY``, else the logged-in default, else local."""
    for candidate in (flag, env_text("PSEUDOWORD_REGISTRY"), load_config().get("registry")):
        if candidate and str(candidate).strip():
            return normalize_url(str(candidate))
    return DEFAULT_REGISTRY


def registry_token(flag: str | None, registry: str) -> str | None:
    """``--token``, else ``PSEUDOWORD_TOKEN``, else the token saved for this registry."""
    for candidate in (flag, env_text("PSEUDOWORD_TOKEN")):
        if candidate and candidate.strip():
            return candidate.strip()
    saved = (load_config().get("tokens") or {}).get(normalize_url(registry))
    return saved if isinstance(saved, str) and saved else None

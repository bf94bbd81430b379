"""The client's and runtime's settings, from ``PSEUDOWORD_*`` environment variables, read when a
``Resolver``, cache or encoder is made (never at import) through the core's one reader
(``registry/core/env.py``: a value that does not parse is ``InvalidSetting`` naming it). The CLI
puts its flags and the `login` file in front (``cli/config.py``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pseudoword.registry.core.env import env_flag, env_int, env_path, registry_token, registry_url

#: Device-side vectors kept per process (entries) and encoded prompt sides (MiB; 0 turns it off).
DEFAULT_VECTOR_CACHE = 64
DEFAULT_CONDITIONING_CACHE_MIB = 64


def default_cache_dir() -> Path:
    """``PSEUDOWORD_CACHE``, else ``$XDG_CACHE_HOME/pseudoword``, else ``~/.cache/pseudoword``."""
    if path := env_path("PSEUDOWORD_CACHE"):
        return path
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "pseudoword"


@dataclass(frozen=True)
class RuntimeSettings:
    registry: str
    token: str | None
    offline: bool
    cache_dir: Path
    vector_cache: int
    conditioning_cache_mib: int

    @classmethod
    def from_env(cls) -> RuntimeSettings:
        return cls(
            registry=registry_url(),
            token=registry_token(),
            offline=env_flag("PSEUDOWORD_OFFLINE"),
            cache_dir=default_cache_dir(),
            vector_cache=env_int("PSEUDOWORD_VECTOR_CACHE", DEFAULT_VECTOR_CACHE, minimum=1),
            conditioning_cache_mib=env_int("PSEUDOWORD_CONDITIONING_CACHE", DEFAULT_CONDITIONING_CACHE_MIB),
        )


def clip_tokenizer_dir() -> Path | None:
    """``PSEUDOWORD_CLIP_TOKENIZER``: a directory with CLIP's tokenizer files (demo pipelines)."""
    return env_path("PSEUDOWORD_CLIP_TOKENIZER")


def offline() -> bool:
    """``PSEUDOWORD_OFFLINE``: resolve only from the cache."""
    return env_flag("PSEUDOWORD_OFFLINE")


def vector_cache_entries() -> int:
    return env_int("PSEUDOWORD_VECTOR_CACHE", DEFAULT_VECTOR_CACHE, minimum=1)


def conditioning_cache_mib() -> int:
    return env_int("PSEUDOWORD_CONDITIONING_CACHE", DEFAULT_CONDITIONING_CACHE_MIB)

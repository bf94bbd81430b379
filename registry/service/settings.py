"""Service settings, from ``PSEUDOWORD_*`` environment variables (flags of `serve` override), read
when ``from_env`` is called (never at import) through the core's one reader (``core/env.py``):
a value that does not parse is ``InvalidSetting`` naming it, and every setting may come from a
file instead (``PSEUDOWORD_DATABASE_URL_FILE=/run/secrets/...``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from pseudoword.registry.core.env import env_flag, env_float, env_int, env_path, env_text
from pseudoword.registry.core.errors import InvalidSetting
from pseudoword.registry.core.limits import MAX_RESOLVE_REFS

MiB = 1024 * 1024


def _choice(name: str, choices: tuple[str, ...]) -> str:
    value = (env_text(name) or choices[0]).lower()
    if value not in choices:
        raise InvalidSetting(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def default_data_dir() -> Path:
    """The one default for `serve`, `token`, `gc` and `migrate`: ``$XDG_DATA_HOME/pseudoword``
    (``~/.local/share/pseudoword``); ``PSEUDOWORD_DATA_DIR`` or ``--data-dir`` name another."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pseudoword"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None  # default: sqlite:///<data_dir>/pseudoword.db
    storage_url: str | None = None  # default: file://<data_dir>/blobs
    s3_access_key: str | None = field(default=None, repr=False)
    s3_secret_key: str | None = field(default=None, repr=False)
    presigned_downloads: bool = False
    resolve_cache: bool = True
    admin_token_file: Path | None = None
    max_upload_bytes: int = 8 * MiB
    max_metadata_bytes: int = 64 * 1024
    max_tags: int = 32
    max_tag_length: int = 64
    max_title_length: int = 200
    max_description_length: int = 10_000
    max_trigger_length: int = 100
    max_resolve_refs: int = MAX_RESOLVE_REFS
    #: Text a record carries in all (title, description, tags, trigger, the file's metadata): every
    #: resolve and search answer repeats it, so its size is bounded as a whole too.
    max_record_chars: int = 16 * 1024
    max_yank_reason_length: int = 1000
    max_token_name_length: int = 128
    #: Preview images (previews.py): bytes per image, its longest side and pixel count (a
    #: decompression bomb is a small file that claims many pixels), images per version and per
    #: request, and the thumbnail's longest side.
    max_preview_bytes: int = 5 * MiB
    max_preview_side: int = 8192
    max_preview_pixels: int = 4096 * 4096
    max_previews: int = 12
    max_previews_per_request: int = 4
    preview_thumbnail_side: int = 512
    log_format: str = "text"
    log_level: str = "INFO"
    #: gc leaves blobs younger than this (seconds, by mtime / S3 LastModified): a publish writes
    #: its blob before its row commits, so a young unreferenced blob may be about to be referenced.
    gc_grace_seconds: float = 3600.0
    #: Every blob store call (and its retries) must finish within this many seconds; after
    #: ``storage_breaker_failures`` timeouts or failures in a row, calls answer 503 at once for
    #: ``storage_breaker_seconds``, then one call tries again.
    storage_timeout: float = 10.0
    storage_threads: int = 16
    storage_breaker_failures: int = 3
    storage_breaker_seconds: float = 10.0
    #: /readyz reports not ready when the data directory's disk has less free space than this.
    min_free_bytes: int = 64 * MiB
    #: Downloads are counted in memory and written to the catalogue this often (seconds).
    download_count_interval: float = 2.0
    #: Per-client rate limits, "N/second|minute|hour|day" or "off": reads on the public API,
    #: publishes. The store is shared by workers and replicas: memory (one process), a
    #: ``redis://`` URL or a ``file://`` directory.
    rate_limit: str = "100/second"
    publish_rate_limit: str = "60/minute"
    rate_limit_store: str = "memory"
    #: A client must send its whole request body within this many seconds (slow clients).
    read_timeout: float = 60.0

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        base = cls()  # the defaults
        settings = cls(
            data_dir=env_path("PSEUDOWORD_DATA_DIR") or default_data_dir(),
            database_url=env_text("PSEUDOWORD_DATABASE_URL"),
            storage_url=env_text("PSEUDOWORD_STORAGE_URL"),
            s3_access_key=env_text("PSEUDOWORD_S3_ACCESS_KEY"),
            s3_secret_key=env_text("PSEUDOWORD_S3_SECRET_KEY"),
            presigned_downloads=env_flag("PSEUDOWORD_PRESIGNED_DOWNLOADS"),
            resolve_cache=env_flag("PSEUDOWORD_RESOLVE_CACHE", default=True),
            # A path the server reads itself (the admin token to install), not a secret's _FILE form.
            admin_token_file=Path(os.environ["PSEUDOWORD_ADMIN_TOKEN_FILE"]).expanduser()
            if os.environ.get("PSEUDOWORD_ADMIN_TOKEN_FILE", "").strip() else None,
            max_upload_bytes=env_int("PSEUDOWORD_MAX_UPLOAD_BYTES", base.max_upload_bytes, minimum=1),
            log_format=_choice("PSEUDOWORD_LOG_FORMAT", ("text", "json")),
            log_level=(env_text("PSEUDOWORD_LOG_LEVEL") or "INFO").upper(),
            gc_grace_seconds=env_float("PSEUDOWORD_GC_GRACE_SECONDS", base.gc_grace_seconds),
            storage_timeout=env_float("PSEUDOWORD_STORAGE_TIMEOUT", base.storage_timeout),
            storage_breaker_seconds=env_float("PSEUDOWORD_STORAGE_BREAKER_SECONDS",
                                              base.storage_breaker_seconds),
            min_free_bytes=env_int("PSEUDOWORD_MIN_FREE_BYTES", base.min_free_bytes),
            download_count_interval=env_float("PSEUDOWORD_DOWNLOAD_COUNT_INTERVAL",
                                              base.download_count_interval),
            rate_limit=env_text("PSEUDOWORD_RATE_LIMIT") or base.rate_limit,
            publish_rate_limit=env_text("PSEUDOWORD_PUBLISH_RATE_LIMIT") or base.publish_rate_limit,
            rate_limit_store=env_text("PSEUDOWORD_RATE_LIMIT_STORE") or base.rate_limit_store,
            read_timeout=env_float("PSEUDOWORD_READ_TIMEOUT", base.read_timeout),
        )
        overrides = {key: value for key, value in overrides.items() if value is not None}
        return replace(settings, **overrides)  # type: ignore[arg-type]

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'pseudoword.db'}"

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or f"file://{self.data_dir / 'blobs'}"

    @property
    def is_embedded(self) -> bool:
        """True when the database is a local SQLite file under the data directory."""
        return self.effective_database_url.startswith("sqlite")

"""Service settings, from ``PSEUDOWORD_*`` environment variables (flags of `serve` override)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

MiB = 1024 * 1024


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return default if value is None or not value.strip() else float(value)


def default_data_dir() -> Path:
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
    max_resolve_refs: int = 256
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
        env = os.environ
        settings = cls(
            data_dir=Path(env["PSEUDOWORD_DATA_DIR"]).expanduser() if env.get("PSEUDOWORD_DATA_DIR") else default_data_dir(),
            database_url=env.get("PSEUDOWORD_DATABASE_URL") or None,
            storage_url=env.get("PSEUDOWORD_STORAGE_URL") or None,
            s3_access_key=env.get("PSEUDOWORD_S3_ACCESS_KEY") or None,
            s3_secret_key=env.get("PSEUDOWORD_S3_SECRET_KEY") or None,
            presigned_downloads=_env_bool("PSEUDOWORD_PRESIGNED_DOWNLOADS"),
            resolve_cache=_env_bool("PSEUDOWORD_RESOLVE_CACHE", default=True),
            admin_token_file=Path(env["PSEUDOWORD_ADMIN_TOKEN_FILE"]) if env.get("PSEUDOWORD_ADMIN_TOKEN_FILE") else None,
            max_upload_bytes=int(env.get("PSEUDOWORD_MAX_UPLOAD_BYTES") or 8 * MiB),
            log_format=env.get("PSEUDOWORD_LOG_FORMAT") or "text",
            log_level=env.get("PSEUDOWORD_LOG_LEVEL") or "INFO",
            gc_grace_seconds=_env_float("PSEUDOWORD_GC_GRACE_SECONDS", 3600.0),
            storage_timeout=_env_float("PSEUDOWORD_STORAGE_TIMEOUT", 10.0),
            storage_breaker_seconds=_env_float("PSEUDOWORD_STORAGE_BREAKER_SECONDS", 10.0),
            min_free_bytes=int(env.get("PSEUDOWORD_MIN_FREE_BYTES") or 64 * MiB),
            download_count_interval=_env_float("PSEUDOWORD_DOWNLOAD_COUNT_INTERVAL", 2.0),
            rate_limit=env.get("PSEUDOWORD_RATE_LIMIT") or "100/second",
            publish_rate_limit=env.get("PSEUDOWORD_PUBLISH_RATE_LIMIT") or "60/minute",
            rate_limit_store=env.get("PSEUDOWORD_RATE_LIMIT_STORE") or "memory",
            read_timeout=_env_float("PSEUDOWORD_READ_TIMEOUT", 60.0),
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

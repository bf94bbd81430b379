"""Service settings, from ``PSEUDOWORD_*`` environment variables (flags of `serve` override)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

MiB = 1024 * 1024


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


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
    log_format: str = "text"
    log_level: str = "INFO"

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

"""SQLModel tables. The migrations in ``migrations/versions`` create exactly these (plus the
full-text index, which is dialect-specific and lives in ``search.py``)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Index, Text, UniqueConstraint, func
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kwargs: object) -> Column:  # type: ignore[type-arg]
    return Column(DateTime(timezone=True), **kwargs)  # type: ignore[arg-type]


class Source(SQLModel, table=True):
    __tablename__ = "sources"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class Model(SQLModel, table=True):
    """A model and, denormalised, what search shows of it: its newest version that is not yanked."""

    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("source", "name", name="uq_models_source_name"),
        Index("ix_models_latest_created", "latest_created_at", "id"),
        Index("ix_models_downloads", "downloads", "id"),
        # Names compare case-insensitively within a source; the first spelling is kept for display.
        Index("uq_models_source_lower_name", "source", func.lower(Column("name")), unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="sources.id")
    source: str = Field(max_length=64)
    name: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    downloads: int = 0
    latest_version_id: int | None = Field(default=None)
    latest_created_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    architecture: str | None = Field(default=None, max_length=8, index=True)
    kind: str | None = Field(default=None, max_length=16, index=True)
    base_model: str | None = Field(default=None, max_length=32, index=True)


class Version(SQLModel, table=True):
    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_versions_model_version"),)

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="models.id", index=True)
    source: str = Field(max_length=64)
    model: str = Field(max_length=128)
    version: str = Field(max_length=128)
    architecture: str = Field(max_length=8)
    vectors: int
    dtype: str = Field(max_length=16)
    kind: str = Field(max_length=16)
    trigger: str = Field(max_length=128)
    tags: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))  # JSON list
    title: str = Field(default="", max_length=256)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    sha256: str = Field(max_length=64, index=True)  # canonical stored file
    size: int
    original_sha256: str = Field(max_length=64, index=True)
    original_size: int
    original_format: str = Field(max_length=32)
    training_metadata: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))  # JSON
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    yanked: bool = False
    yanked_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    downloads: int = 0
    base_model: str | None = Field(default=None, max_length=32)
    license: str | None = Field(default=None, max_length=128)  # an SPDX expression
    permissions: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))  # JSON: Civitai's flags
    publisher: str = Field(default="", max_length=128)
    pickle_scan_result: str = Field(default="Pending", max_length=16)  # Civitai's pickleScanResult
    pickle_scan_message: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class VersionFile(SQLModel, table=True):
    """Every file a version is served as (the upload, the canonical file, each export), each
    stored as a content-addressed blob at publish, so any of their hashes finds the version."""

    __tablename__ = "version_files"

    version_id: int = Field(foreign_key="versions.id", primary_key=True)
    format: str = Field(max_length=32, primary_key=True)  # original, safetensors, a1111, diffusers, ...
    filename: str = Field(max_length=300)
    sha256: str = Field(max_length=64, index=True)
    size: int
    stored: bool = True  # False: only the hash is known (an upload from before files were kept)


class Preview(SQLModel, table=True):
    """A preview image of a version: the checked upload and its thumbnail, both blobs by digest."""

    __tablename__ = "previews"
    __table_args__ = (UniqueConstraint("version_id", "sha256", name="uq_previews_version_sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="versions.id", index=True)
    position: int = 0
    sha256: str = Field(max_length=64, index=True)
    size: int
    format: str = Field(max_length=8)  # png, jpeg, webp
    width: int
    height: int
    thumb_sha256: str = Field(max_length=64, index=True)
    thumb_size: int
    parameters: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))  # A1111 infotext
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))


class ModelTag(SQLModel, table=True):
    """Tags of each model's latest version, for the tag filter."""

    __tablename__ = "model_tags"

    model_id: int = Field(foreign_key="models.id", primary_key=True)
    tag: str = Field(max_length=64, primary_key=True, index=True)


class Token(SQLModel, table=True):
    """An API token; only the SHA-256 of its secret is stored."""

    __tablename__ = "tokens"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(default="", max_length=128)
    token_hash: str = Field(max_length=64, unique=True)
    source: str | None = Field(default=None, max_length=64)
    admin: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))

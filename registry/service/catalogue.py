"""The catalogue's service layer: publish, look up, resolve, yank, gc. Controllers stay thin over it.

Publish order (DESIGN): validate, write the blob (content-addressed, idempotent), then commit the
row. A crash between the two leaves an orphan blob, which is harmless and `gc` removes.

Publish and gc cannot lose an acknowledged blob: gc leaves blobs younger than its grace period
(a blob written or rewritten by a publish is young), and deletes each orphan only while it holds
the blob lock against committing publishes, after checking again that no row refers to it; a
publish checks after its commit that its blob is still there and writes it again if not. The
same check heals a version whose blob went missing when its ID and content are published again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from pseudoword.registry.core import (
    HashRef,
    ModelRef,
    canonical_bytes,
    default_trigger,
    file_hashes,
    parse_model_ref,
    parse_ref,
    read_embedding,
)
from pseudoword.registry.core.errors import (
    ArchitectureMismatch,
    Conflict,
    InvalidRequest,
    NotFound,
    PseudowordError,
    TooLarge,
)
from pseudoword.registry.core.hashes import HASH_LENGTHS, a1111_hash, autov2
from pseudoword.registry.core.limits import Limits
from pseudoword.registry.core.modelspec import canonical_base_model, file_hints
from pseudoword.registry.core.pickle_scan import scan_file
from pseudoword.registry.core.record import FileRecord, ModelRecord, PreviewRecord, ResolveAnswer, VersionRecord
from pseudoword.registry.core.text import check_text
from pseudoword.registry.core.writing import EXPORT_SUFFIXES, all_exports, safe_filename
from pseudoword.registry.service.download_counts import DownloadCounter
from pseudoword.registry.service.models import Model, Preview, Source, Version, VersionFile, utcnow
from pseudoword.registry.service.previews import Previews
from pseudoword.registry.service.resolve_cache import NoWatcher, ResolveCache
from pseudoword.registry.service.search import KINDS, TAG, Query, compact_index, index_model, search
from pseudoword.registry.service.settings import Settings
from pseudoword.registry.service.storage import BlobStore
from pseudoword.registry.service.storage_guard import GuardedStore

_V, _M, _F = Version.__table__, Model.__table__, VersionFile.__table__  # type: ignore[attr-defined]
# Read statements, built once and run with Core on a plain connection: resolve is on the path of
# every generation request, and building ORM statements and loading ORM objects was most of its cost.
_Q_VERSION = (select(_V).join(_M, _M.c.id == _V.c.model_id)  # through two unique indexes
              .where(_M.c.source == bindparam("source"), func.lower(_M.c.name) == bindparam("model"),
                     _V.c.version == bindparam("version")).limit(1))
_Q_LATEST = (select(_M.c.latest_version_id.label("latest_id"), _V)
             .select_from(_M.outerjoin(_V, _V.c.id == _M.c.latest_version_id))
             .where(_M.c.source == bindparam("source"), func.lower(_M.c.name) == bindparam("model")).limit(1))
_HASH_ORDER = (_V.c.yanked, _V.c.created_at, _V.c.id)
# Any file a version is served as: the upload, the canonical file, every export (version_files).
_Q_HASH = (select(_V).where(_V.c.id.in_(select(_F.c.version_id).where(_F.c.sha256 == bindparam("digest"))))
           .order_by(*_HASH_ORDER).limit(1))
_Q_HASH_PREFIX = (select(_V).where(_V.c.id.in_(  # a range, so the index serves the prefix match
    select(_F.c.version_id).where((_F.c.sha256 >= bindparam("low")) & (_F.c.sha256 < bindparam("high")))))
    .order_by(*_HASH_ORDER).limit(1))
_Q_FILES = select(_F).where(_F.c.version_id.in_(bindparam("ids", expanding=True))).order_by(_F.c.version_id)
_Q_FILE = select(_F).where(_F.c.version_id == bindparam("id"), _F.c.format == bindparam("format"))
#: The order files are listed in (the upload first: what Civitai calls the primary file).
FILE_ORDER = ("original", "safetensors", "a1111", "diffusers", "diffusers-bin", "diffusers-clip_l", "diffusers-clip_g")
_SPDX = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*(?:\s+(?:AND|OR|WITH)\s+[A-Za-z0-9][A-Za-z0-9.+-]*)*")
#: Civitai's licence flags (a model's ``allow*`` fields) and the values each takes.
PERMISSION_FLAGS = {"allowNoCredit": bool, "allowDerivatives": bool, "allowDifferentLicense": bool,
                    "allowCommercialUse": list}
COMMERCIAL_USES = ("None", "Image", "RentCivit", "Rent", "Sell")
_Q_BY_IDS = select(_V).where(_V.c.id.in_(bindparam("ids", expanding=True)))
_Q_BLOB = select(_V.c.size).where(_V.c.sha256 == bindparam("digest")).limit(1)
#: Key of the PostgreSQL advisory lock between gc's deletions (exclusive) and publishes' commits (shared).
_BLOB_LOCK_KEY = 0x70776263  # "pwbc"
#: Test hook: stop the process between blob write and row commit (crash-safety test).
CRASH_HOOK = "PSEUDOWORD_TEST_CRASH_AFTER_BLOB"


@dataclass(frozen=True)
class PublishRequest:
    id: str
    trigger: str | None = None
    kind: str | None = None  # None: the file's ModelSpec says, else positive
    tags: tuple[str, ...] = ()
    title: str = ""
    description: str = ""
    ecosystem: str | None = None  # the architecture a full AIR asked for; the file must match
    base_model: str | None = None  # checked against the file's architecture at publish
    license: str | None = None  # an SPDX expression
    permissions: dict[str, Any] = field(default_factory=dict)  # Civitai's allow* flags
    publisher: str = ""


def parse_metadata(raw: str | bytes | None, settings: Settings) -> PublishRequest:
    """The ``metadata`` form field: JSON with id, trigger, kind, tags, title, description."""
    if raw is None or raw == "" or raw == b"":
        raise InvalidRequest("missing 'metadata' form field: JSON with at least an 'id'")
    if len(raw) > settings.max_metadata_bytes:
        raise InvalidRequest(f"metadata is {len(raw)} bytes; at most {settings.max_metadata_bytes} allowed")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise InvalidRequest("metadata is nested too deeply") from None
    except ValueError as exc:  # not JSON, not UTF-8, or a number past Python's digit limit
        raise InvalidRequest(f"metadata is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("metadata must be a JSON object")
    unknown = set(data) - {"id", "trigger", "kind", "tags", "title", "description", "base_model", "license",
                           "permissions", "publisher"}
    if unknown:
        raise InvalidRequest(f"unknown metadata fields: {', '.join(sorted(unknown))}")

    def text_field(name: str, limit: int) -> str:
        value = data.get(name) or ""
        if not isinstance(value, str):
            raise InvalidRequest(f"metadata '{name}' must be a string")
        if len(value) > limit:
            raise InvalidRequest(f"metadata '{name}' is {len(value)} characters; at most {limit} allowed")
        return check_text(value.strip(), f"metadata '{name}'", multiline=name == "description")

    ref_text = data.get("id")
    if not isinstance(ref_text, str):
        raise InvalidRequest("metadata 'id' is required: SOURCE:MODEL@VERSION")
    ref = parse_model_ref(ref_text, require_version=True)
    kind = data.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise InvalidRequest(f"metadata 'kind' must be 'positive' or 'negative', not {kind!r}")
    tags = data.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidRequest("metadata 'tags' must be a list of strings")
    if len(tags) > settings.max_tags:
        raise InvalidRequest(f"{len(tags)} tags; at most {settings.max_tags} allowed")
    clean_tags = []
    for tag in tags:
        tag = check_text(tag.strip().lower(), "metadata 'tags'")
        if not tag or len(tag) > settings.max_tag_length or not TAG.fullmatch(tag):
            raise InvalidRequest(f"invalid tag {tag[:80]!r}: letters, digits, space, '.', '_', '+', '-'; "
                                 f"at most {settings.max_tag_length} characters")
        clean_tags.append(tag)
    trigger = text_field("trigger", settings.max_trigger_length) or None
    if trigger is not None and (any(c.isspace() for c in trigger) or "," in trigger):
        raise InvalidRequest(f"trigger {trigger!r} must be one word (no spaces or commas)")
    base_model = text_field("base_model", 64) or None
    if base_model is not None:
        base_model = canonical_base_model(base_model)  # its architecture is checked against the file's
    license_text = text_field("license", 128) or None
    if license_text is not None and not _SPDX.fullmatch(license_text):
        raise InvalidRequest(f"metadata 'license' must be an SPDX licence expression (e.g. CreativeML-OpenRAIL-M, "
                             f"MIT, Apache-2.0 OR MIT), not {license_text[:80]!r}")
    return PublishRequest(
        id=str(ref), trigger=trigger, kind=kind, tags=tuple(dict.fromkeys(clean_tags)),
        title=text_field("title", settings.max_title_length),
        description=text_field("description", settings.max_description_length),
        ecosystem=ref.ecosystem, base_model=base_model, license=license_text,
        permissions=_permissions(data.get("permissions")), publisher=text_field("publisher", 128),
    )


def _permissions(value: Any) -> dict[str, Any]:
    """Civitai's licence flags as given at publish, checked: only known flags, each of its type."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("metadata 'permissions' must be an object of Civitai's flags: "
                             + ", ".join(PERMISSION_FLAGS))
    unknown = set(value) - set(PERMISSION_FLAGS)
    if unknown:
        raise InvalidRequest(f"unknown permissions {', '.join(sorted(unknown))[:200]}; expected "
                             + ", ".join(PERMISSION_FLAGS))
    for key, kind in PERMISSION_FLAGS.items():
        if key in value and not isinstance(value[key], kind):
            raise InvalidRequest(f"permissions {key!r} must be a {'list' if kind is list else 'boolean'}")
    uses = value.get("allowCommercialUse", [])
    if not all(isinstance(use, str) and use in COMMERCIAL_USES for use in uses) or len(uses) > len(COMMERCIAL_USES):
        raise InvalidRequest(f"permissions 'allowCommercialUse' takes a list of {', '.join(COMMERCIAL_USES)}")
    return {key: value[key] for key in PERMISSION_FLAGS if key in value}


def record(version: Version | Row[Any], previews: tuple[PreviewRecord, ...] | None = None) -> VersionRecord:
    """The version record every API answer and the client share (from an ORM object or a row);
    the one place the service builds it. Its ``to_wire()`` is the JSON the API sends."""
    ref = f"{version.source}:{version.model}@{version.version}"
    hashes_source = version.original_sha256
    return VersionRecord(
        id=ref,
        air=f"urn:air:{version.architecture}:embedding:{ref}",
        version_id=version.id,
        model_id=version.model_id,
        source=version.source,
        model=version.model,
        version=version.version,
        architecture=version.architecture,
        vectors=version.vectors,
        dtype=version.dtype,
        kind=version.kind,
        trigger=version.trigger,
        tags=tuple(json.loads(version.tags or "[]")),
        title=version.title,
        description=version.description,
        sha256=version.sha256,
        size=version.size,
        original_sha256=version.original_sha256,
        original_size=version.original_size,
        original_format=version.original_format,
        autov2=autov2(hashes_source),
        a1111_hash=a1111_hash(hashes_source),
        base_model=version.base_model,
        license=version.license,
        permissions=json.loads(version.permissions or "{}"),
        publisher=version.publisher or version.source,
        pickle_scan={"result": version.pickle_scan_result, "message": version.pickle_scan_message},
        metadata=json.loads(version.training_metadata or "{}"),
        yanked=version.yanked,
        yanked_reason=version.yanked_reason,
        created_at=_iso(version.created_at),
        downloads=version.downloads,
        download_url=download_path(version.source, version.model, version.version),
        previews=previews,
    )


def file_record(file: VersionFile | Row[Any]) -> FileRecord:
    """One file of a version with every hash people name it by (AutoV2 = first 10 hex of the
    SHA-256; A1111's short hash = first 12 of the SHA-256 of the file A1111 loads, which is this one)."""
    return FileRecord(format=file.format, filename=file.filename, size=file.size, sha256=file.sha256,
                      autov2=autov2(file.sha256), a1111_hash=a1111_hash(file.sha256), stored=file.stored)


def resolved_record(version: Version | Row[Any]) -> VersionRecord:
    """What resolve answers (and its cache holds): the record without the download counter, which
    moves with every download and is not part of what a ref resolves to."""
    return replace(record(version), downloads=None)


def download_path(source: str, model: str, version: str) -> str:
    """The per-version download route: file name, trigger inside and count belong to this version."""
    return f"/api/v1/embeddings/{source}/{model}/{version}/download"


@dataclass
class GcReport:
    """What one gc run found and did: ``removed`` is exactly what it deleted."""

    orphans: list[str] = field(default_factory=list)  # blobs no version refers to
    removed: list[str] = field(default_factory=list)
    young: list[str] = field(default_factory=list)  # orphans kept: younger than the grace period
    temporaries_removed: list[str] = field(default_factory=list)
    grace_seconds: float = 0.0
    dry_run: bool = False
    search_index_compacted: bool = False  # SQLite's text index merged into one segment (search.compact_index)


class Catalogue:
    def __init__(self, engine: Engine, store: BlobStore, settings: Settings,
                 resolve_cache: ResolveCache | None = None) -> None:
        self.engine, self.settings = engine, settings
        self.store = store if isinstance(store, GuardedStore) else GuardedStore(
            store, threads=settings.storage_threads, timeout=settings.storage_timeout,
            failures=settings.storage_breaker_failures, cooldown=settings.storage_breaker_seconds)
        self.limits = Limits(max_file_bytes=settings.max_upload_bytes)
        self.resolve_cache = resolve_cache or ResolveCache(NoWatcher())
        self.downloads = DownloadCounter(engine, settings.download_count_interval)
        self.previews = Previews(self)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def reader(self) -> Connection:
        """A connection for reads that each stand alone. On PostgreSQL in autocommit, which spares
        the BEGIN and ROLLBACK round trips around them (READ COMMITTED gave them no common snapshot
        anyway); SQLite's driver opens no transaction for reads, and switching costs a PRAGMA."""
        connection = self.engine.connect()
        if self.engine.dialect.name == "sqlite":
            return connection
        return connection.execution_options(isolation_level="AUTOCOMMIT")

    # -- publish ----------------------------------------------------------------------------------

    def publish(self, request: PublishRequest, data: bytes, filename: str | None) -> tuple[VersionRecord, bool]:
        """Publish a version; returns (record, created). Same ID + same content is a no-op (that
        also writes the blob again if it went missing)."""
        ref = parse_model_ref(request.id, require_version=True)
        emb = read_embedding(data, filename=filename, limits=self.limits)
        if request.ecosystem is not None and request.ecosystem != emb.architecture:
            raise ArchitectureMismatch(
                f"the ID asks for {request.ecosystem} (urn:air:{request.ecosystem}:...) but the file is {emb.architecture}",
                {"requested": request.ecosystem, "found": emb.architecture})
        if request.base_model is not None:
            canonical_base_model(request.base_model, emb.architecture)
        canonical = canonical_bytes(emb)
        stored, original = file_hashes(canonical), file_hashes(data)
        with self.session() as session:
            existing = self._find_version(session, ref)
            if existing is not None:
                return self.with_files(self._same_or_conflict(existing, stored.sha256, canonical))[0], False
        hints = file_hints(emb.metadata, emb.architecture)
        trigger = (request.trigger or (hints.trigger and check_text(hints.trigger, "modelspec.trigger_phrase"))
                   or check_text(default_trigger(emb, filename), "the file name"))
        kind = request.kind or ("negative" if hints.negative else "positive")
        training_metadata = json.dumps(emb.metadata, sort_keys=True)
        carried = sum(map(len, (trigger, request.title, request.description, training_metadata, *request.tags)))
        if carried > self.settings.max_record_chars:
            raise TooLarge(f"the record would carry {carried} characters of text; at most "
                           f"{self.settings.max_record_chars} allowed", {"characters": carried})
        files = self._served_files(emb, trigger, data, filename)
        self.store.put(stored.sha256, canonical)
        for blob_digest, blob in {f.sha256: content for f, content in files}.items():
            if blob_digest != stored.sha256:
                self.store.put(blob_digest, blob)
        if os.environ.get(CRASH_HOOK) == "1":
            os._exit(17)
        scan = scan_file(data)
        version = Version(
            model_id=0, source=ref.source, model=ref.model, version=ref.version or "",
            architecture=emb.architecture, vectors=emb.num_vectors, dtype=emb.dtype, kind=kind,
            trigger=trigger,
            tags=json.dumps(list(request.tags)), title=request.title, description=request.description,
            sha256=stored.sha256, size=len(canonical), original_sha256=original.sha256, original_size=len(data),
            original_format=emb.source_format, training_metadata=training_metadata,
            base_model=request.base_model or hints.base_model, license=request.license or _spdx(hints.license),
            permissions=json.dumps(request.permissions, sort_keys=True), publisher=request.publisher,
            pickle_scan_result=scan.result, pickle_scan_message=scan.message,
        )
        for _attempt in range(3):
            with self.session() as session:
                try:
                    model = self._model_for(session, ref)
                    version.model_id = model.id or 0
                    version.model = model.name  # the first spelling published
                    session.add(version)
                    session.flush()
                    for file, _content in files:
                        session.add(VersionFile.model_validate({**file.model_dump(), "version_id": version.id}))
                    self._refresh_latest(session, model)
                    self._lock_blobs(session, exclusive=False)
                    session.commit()
                    self.resolve_cache.changed()
                    self._ensure_blob(stored.sha256, canonical)
                    for file, content in files:
                        self._ensure_blob(file.sha256, content)
                    return self.with_files(record(version))[0], True
                except IntegrityError:
                    session.rollback()
                    existing = self._find_version(session, ref)
                    if existing is not None:  # a concurrent publish of the same ID won the race
                        return self.with_files(self._same_or_conflict(existing, stored.sha256, canonical))[0], False
                    version = Version.model_validate(version.model_dump(exclude={"id"}))
        raise Conflict(f"could not publish {ref}: concurrent changes kept conflicting; try again")

    @staticmethod
    def _served_files(emb: Any, trigger: str, data: bytes, filename: str | None) -> list[tuple[VersionFile, bytes]]:
        """The upload and every file derived from it, each with the name it is downloaded as."""
        exports = all_exports(emb, trigger)
        stem = safe_filename(trigger)
        upload_suffix = PurePath(filename or "").suffix.lower()
        if upload_suffix not in (".safetensors", ".pt", ".bin", ".ckpt"):
            upload_suffix = ".safetensors" if data[8:9] == b"{" else ".pt"
        files = [("original", stem + upload_suffix, data)]
        files += [(fmt, stem + EXPORT_SUFFIXES[fmt], content) for fmt, content in exports.items()]
        return [(VersionFile(version_id=0, format=fmt, filename=name, sha256=hashlib.sha256(content).hexdigest(),
                             size=len(content), stored=True), content) for fmt, name, content in files]

    def _ensure_blob(self, sha256: str, canonical: bytes) -> None:
        """After a commit: the row's blob is there (a gc deletion that raced the commit is undone)."""
        if self.store.size(sha256) != len(canonical):
            self.store.put(sha256, canonical)

    def _lock_blobs(self, session: Session, *, exclusive: bool) -> None:
        """Order gc's deletions against publishes' commits. PostgreSQL: an advisory lock, shared by
        publishes, exclusive for gc. SQLite: commits take the database's one write lock anyway, so
        gc takes it (BEGIN IMMEDIATE) and publishes need nothing more."""
        if self.engine.dialect.name == "postgresql":
            lock = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
            session.execute(select(lock(_BLOB_LOCK_KEY)))
        elif exclusive:
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")

    def _same_or_conflict(self, existing: Version, sha256: str, canonical: bytes) -> VersionRecord:
        if existing.sha256 != sha256:
            ref = f"{existing.source}:{existing.model}@{existing.version}"
            raise Conflict(
                f"{ref} is already published with other content (sha256 {existing.sha256}); "
                "published versions are immutable: publish a new version",
                {"id": ref, "sha256": existing.sha256},
            )
        self._ensure_blob(sha256, canonical)
        return record(existing)

    def _model_for(self, session: Session, ref: ModelRef) -> Model:
        model = session.execute(select(Model).where(
            Model.source == ref.source, func.lower(Model.name) == ref.model.lower())).scalars().first()
        if model is not None:
            return model
        source = session.execute(select(Source).where(Source.name == ref.source)).scalars().first()
        if source is None:
            source = Source(name=ref.source)
            session.add(source)
            session.flush()
        model = Model(source_id=source.id or 0, source=ref.source, name=ref.model)
        session.add(model)
        session.flush()
        return model

    def _refresh_latest(self, session: Session, model: Model) -> None:
        """Point the model at its newest unyanked version and refresh its search entry.

        Under the model's row lock (PostgreSQL; SQLite's writers already hold the one write lock
        here, after their first write), so concurrent publishes and yanks of one model take turns
        and the last to commit computes ``latest`` with every other's change visible."""
        if self.engine.dialect.name == "postgresql":
            # NO KEY UPDATE: it does not conflict with the KEY SHARE lock each writer's version row
            # already holds on the model through its foreign key (FOR UPDATE would deadlock there).
            session.execute(select(Model.id).where(Model.id == model.id).with_for_update(key_share=True))  # type: ignore[arg-type]
        latest = session.execute(
            select(Version).where(Version.model_id == model.id, Version.yanked.is_(False))  # type: ignore[attr-defined]
            .order_by(Version.created_at.desc(), Version.id.desc()).limit(1)  # type: ignore[union-attr,attr-defined]
        ).scalars().first()
        model.latest_version_id = latest.id if latest else None
        model.latest_created_at = latest.created_at if latest else None
        model.architecture = latest.architecture if latest else None
        model.kind = latest.kind if latest else None
        model.base_model = latest.base_model if latest else None
        session.add(model)
        session.flush()
        index_model(session, model, latest)

    # -- lookups ----------------------------------------------------------------------------------

    @staticmethod
    def _find_version(session: Session, ref: ModelRef) -> Version | None:
        # Through models' unique (source, name) and versions' unique (model_id, version): both
        # indexed, where versions' own source/model copies are not (that was a full scan).
        return session.execute(
            select(Version).join(Model, Model.id == Version.model_id)  # type: ignore[arg-type]
            .where(Model.source == ref.source, func.lower(Model.name) == ref.model.lower(),
                   Version.version == ref.version).limit(1)
        ).scalars().first()

    def get_model(self, source: str, name: str) -> ModelRecord:
        with self.session() as session:
            model = session.execute(select(Model).where(
                Model.source == source, func.lower(Model.name) == name.lower())).scalars().first()
            if model is None:
                raise NotFound(f"no model {source}:{name}")
            versions = session.execute(
                select(Version).where(Version.model_id == model.id)
                .order_by(Version.created_at.desc(), Version.id.desc())  # type: ignore[union-attr,attr-defined]
            ).scalars().all()
            latest = next((v for v in versions if v.id == model.latest_version_id), None)
            return ModelRecord(
                id=f"{source}:{model.name}", source=source, model=model.name, model_id=model.id,
                downloads=model.downloads, created_at=_iso(model.created_at),
                latest=latest.version if latest else None,
                versions=tuple(self.with_files(*[record(v) for v in versions])),
            )

    def with_files(self, *records: VersionRecord) -> list[VersionRecord]:
        """Records with their ``files`` (the upload first), read in one query."""
        if not records:
            return []
        by_version: dict[int | None, list[FileRecord]] = {}
        with self.reader() as connection:
            for row in connection.execute(_Q_FILES, {"ids": [r.version_id for r in records]}):
                by_version.setdefault(row.version_id, []).append(file_record(row))
        return [replace(rec, files=tuple(sorted(by_version.get(rec.version_id, []), key=_file_order))) for rec in records]

    def model_rows(self, source: str, name: str) -> tuple[Row[Any], list[Row[Any]]]:
        """A model's row and its versions' rows, newest first (the compatible routes' view of it)."""
        with self.reader() as connection:
            model = connection.execute(select(_M).where(_M.c.source == source, func.lower(_M.c.name) == name.lower())
                                       .limit(1)).first()
            if model is None:
                raise NotFound(f"no model {source}:{name}")
            versions = connection.execute(select(_V).where(_V.c.model_id == model.id)
                                          .order_by(_V.c.created_at.desc(), _V.c.id.desc())).all()
        return model, list(versions)

    def models_by_ids(self, model_ids: list[int]) -> tuple[dict[int, Row[Any]], dict[int, list[Row[Any]]],
                                                          dict[int, list[Row[Any]]]]:
        """Models by id, their versions (newest first) and each version's files, in three queries."""
        if not model_ids:
            return {}, {}, {}
        with self.reader() as connection:
            models = {row.id: row for row in connection.execute(select(_M).where(_M.c.id.in_(model_ids)))}
            versions: dict[int, list[Row[Any]]] = {}
            for row in connection.execute(select(_V).where(_V.c.model_id.in_(model_ids))
                                          .order_by(_V.c.created_at.desc(), _V.c.id.desc())):
                versions.setdefault(row.model_id, []).append(row)
            files: dict[int, list[Row[Any]]] = {}
            ids = [v.id for rows in versions.values() for v in rows]
            for row in connection.execute(_Q_FILES, {"ids": ids}) if ids else []:
                files.setdefault(row.version_id, []).append(row)
        for rows in files.values():
            rows.sort(key=_file_order)
        return models, versions, files

    def version_by_id(self, version_id: int) -> Row[Any]:
        """One version by its numeric id (Civitai's modelVersionId)."""
        with self.reader() as connection:
            version = connection.execute(select(_V).where(_V.c.id == version_id)).first()
        if version is None:
            raise NotFound(f"no version with id {version_id}")
        return version

    def by_hash_row(self, text_: str) -> Row[Any]:
        """The versions row a hash finds (see ``by_hash``)."""
        ref = parse_ref(text_)
        if not isinstance(ref, HashRef):
            raise InvalidRequest(f"{text_!r} is not a hash: expected 64, 12 or 10 hex digits")
        with self.reader() as connection:
            return self._by_hash(connection, ref)

    def version_file(self, version_id: int, fmt: str) -> Row[Any] | None:
        """One served file of a version (None: that format is not stored for it)."""
        with self.reader() as connection:
            return connection.execute(_Q_FILE, {"id": version_id, "format": fmt}).first()

    def get_version(self, ref: ModelRef) -> VersionRecord:
        with self.reader() as connection:
            version = connection.execute(_Q_VERSION, _ref_params(ref)).first()
        if version is None:
            raise NotFound(f"no version {ref}")
        return self.with_files(record(version))[0]

    def resolve_one(self, connection: Connection, text: str) -> VersionRecord:
        ref = parse_ref(text)
        if isinstance(ref, HashRef):
            return resolved_record(self._by_hash(connection, ref))
        if ref.version is not None:
            version = connection.execute(_Q_VERSION, _ref_params(ref)).first()
            if version is None:
                raise NotFound(f"no version {ref}")
        else:
            version = connection.execute(_Q_LATEST, _ref_params(ref)).first()
            if version is None:
                raise NotFound(f"no model {ref}")
            if version.latest_id is None:
                raise NotFound(f"every version of {ref} is yanked; pin one explicitly to use it",
                               {"ref": str(ref), "all_yanked": True})
        if ref.ecosystem is not None and ref.ecosystem != version.architecture:
            raise ArchitectureMismatch(
                f"{text} asks for {ref.ecosystem} but {ref.source}:{ref.model}@{version.version} is {version.architecture}",
                {"requested": ref.ecosystem, "stored": version.architecture},
            )
        return resolved_record(version)

    def resolve_cached(self, refs: list[str]) -> list[ResolveAnswer] | None:
        """The answer from the resolve cache alone, or None when any ref needs the database."""
        if len(refs) > self.settings.max_resolve_refs or self.resolve_cache.current() is None:
            return None
        results = []
        for text in refs:
            cached = self.resolve_cache.get(text)
            if cached is None:
                return None
            results.append(ResolveAnswer(text, cached))
        return results

    def resolve(self, refs: list[str]) -> list[ResolveAnswer]:
        if len(refs) > self.settings.max_resolve_refs:
            raise InvalidRequest(f"{len(refs)} refs; at most {self.settings.max_resolve_refs} per request")
        generation = self.resolve_cache.current()  # before any query, so a later change drops what we add
        results: list[ResolveAnswer] = []
        with self.reader() as connection:
            for text in refs:
                found = self.resolve_cache.get(text)
                try:
                    if found is None:
                        found = self.resolve_one(connection, text)
                        self.resolve_cache.put(text, found, generation)
                    results.append(ResolveAnswer(text, found))
                except PseudowordError as exc:
                    results.append(ResolveAnswer(text, None, exc.to_dict()))
        return results

    def by_hash(self, text: str) -> VersionRecord:
        ref = parse_ref(text)
        if not isinstance(ref, HashRef):
            raise InvalidRequest(f"{text!r} is not a hash: expected 64, 12 or 10 hex digits")
        with self.reader() as connection:
            found = record(self._by_hash(connection, ref))
        return self.with_files(found)[0]

    @staticmethod
    def _by_hash(connection: Connection, ref: HashRef) -> Row[Any]:
        """Match the SHA-256 of the canonical or the uploaded file; short hashes are prefixes."""
        if len(ref.value) == HASH_LENGTHS["sha256"]:
            version = connection.execute(_Q_HASH, {"digest": ref.value}).first()
        else:
            version = connection.execute(_Q_HASH_PREFIX, {"low": ref.value, "high": ref.value + "g"}).first()
        if version is None:
            raise NotFound(f"no embedding with {ref.algo} hash {ref.value}")
        return version

    def records_by_ids(self, version_ids: list[int]) -> list[VersionRecord]:
        with self.reader() as connection:
            return self._records_by_ids(connection, version_ids, with_previews=False)

    def search_page(self, query: Query) -> tuple[list[VersionRecord], str | None]:
        """A page of matches (records with their previews) and the next page's cursor, read on one
        connection: one checkout, and on PostgreSQL one liveness ping and no BEGIN or ROLLBACK,
        where a session for the search and a connection each for records and previews paid three
        (a third of a one-match page's time)."""
        with self.reader() as connection:
            with Session(bind=connection) as session:
                ids, next_cursor = search(session, query)
            return self._records_by_ids(connection, ids, with_previews=True), next_cursor

    def _records_by_ids(self, connection: Connection, version_ids: list[int], with_previews: bool) -> list[VersionRecord]:
        if not version_ids:
            return []
        by_id = {row.id: row for row in connection.execute(_Q_BY_IDS, {"ids": version_ids})}
        previews = self.previews.for_version_ids(version_ids, connection) if with_previews else None
        return [record(by_id[i], None if previews is None else tuple(previews.get(i, ())))
                for i in version_ids if i in by_id]

    # -- yank -------------------------------------------------------------------------------------

    def set_yanked(self, ref: ModelRef, yanked: bool, reason: str | None) -> VersionRecord:
        reason = (reason or "").strip()
        if len(reason) > self.settings.max_yank_reason_length:
            raise InvalidRequest(f"reason is {len(reason)} characters; at most {self.settings.max_yank_reason_length} allowed")
        check_text(reason, "reason")
        with self.session() as session:
            version = self._find_version(session, ref)
            if version is None:
                raise NotFound(f"no version {ref}")
            version.yanked = yanked
            version.yanked_reason = reason or None if yanked else None
            session.add(version)
            session.flush()
            model = session.get(Model, version.model_id)
            assert model is not None
            self._refresh_latest(session, model)
            session.commit()
            self.resolve_cache.changed()
            return record(version)

    # -- downloads and gc -------------------------------------------------------------------------

    def version_row(self, ref: ModelRef) -> Row[Any]:
        """The row of one version (what a download needs: digest, size, trigger, ids)."""
        with self.reader() as connection:
            version = connection.execute(_Q_VERSION, _ref_params(ref)).first()
        if version is None:
            raise NotFound(f"no version {ref}")
        return version

    def blob_size(self, sha256: str) -> int | None:
        """The size of a blob some version refers to (only such blobs are served), else None."""
        with self.reader() as connection:
            return connection.execute(_Q_BLOB, {"digest": sha256}).scalar()

    def count_download(self, version: Version | Row[Any]) -> None:
        """Count one finished download of ``version``: in memory now, in the catalogue within
        ``download_count_interval`` seconds (download_counts.py)."""
        self.downloads.add(version.id, version.model_id)

    def gc(self, dry_run: bool = False, grace_seconds: float | None = None) -> GcReport:
        """Delete blobs no version refers to (orphans from interrupted publishes) once they are
        older than the grace period, and partial writes a crash left behind; on SQLite, compact
        the text index too."""
        grace = self.settings.gc_grace_seconds if grace_seconds is None else grace_seconds
        report = GcReport(grace_seconds=grace, dry_run=dry_run)
        with self.session() as session:
            referenced = set(session.execute(select(Version.sha256).distinct()).scalars().all())
            referenced |= _preview_digests(session)
            referenced |= set(session.execute(select(VersionFile.sha256).distinct()).scalars().all())
        cutoff = time.time() - grace
        for blob in sorted(self.store.list_blobs(), key=lambda b: b.sha256):
            if blob.sha256 in referenced:
                continue
            report.orphans.append(blob.sha256)
            if blob.modified > cutoff:
                report.young.append(blob.sha256)
            elif not dry_run and self._delete_orphan(blob.sha256, grace):
                report.removed.append(blob.sha256)
        if not dry_run:
            report.temporaries_removed = self.store.remove_stale_temporaries(cutoff)
            with self.session() as session:
                report.search_index_compacted = compact_index(session)
        return report

    def _delete_orphan(self, sha256: str, grace: float) -> bool:
        """Delete one blob if, under the blob lock, no row refers to it and it is still old."""
        with self.session() as session:
            self._lock_blobs(session, exclusive=True)
            if (session.execute(select(Version.id).where(Version.sha256 == sha256).limit(1)).first()
                    or session.execute(select(VersionFile.version_id).where(VersionFile.sha256 == sha256).limit(1)).first()):
                return False  # a publish committed meanwhile
            if sha256 in _preview_digests(session, sha256):
                return False  # a preview (image or thumbnail) refers to it
            modified = self.store.modified(sha256)
            if modified is None or modified > time.time() - grace:
                return False  # rewritten meanwhile by a publish that has not committed yet
            self.store.delete(sha256)
            session.commit()
        return True

    def close(self) -> None:
        self.downloads.close()
        self.resolve_cache.close()
        self.store.close()


def _preview_digests(session: Session, only: str | None = None) -> set[str]:
    """Blobs preview rows refer to (images and thumbnails, previews.py): gc keeps them."""
    images, thumbs = select(Preview.sha256), select(Preview.thumb_sha256)
    if only is not None:
        images, thumbs = images.where(Preview.sha256 == only), thumbs.where(Preview.thumb_sha256 == only)
    return set(session.execute(images.union(thumbs)).scalars().all())


def _ref_params(ref: ModelRef) -> dict[str, str | None]:
    return {"source": ref.source, "model": ref.model.lower(), "version": ref.version}


def _spdx(text: str | None) -> str | None:
    """A licence a file names (ModelSpec), kept when it is an SPDX expression."""
    return text if text and len(text) <= 128 and _SPDX.fullmatch(text) else None


def _file_order(file: FileRecord | Row[Any]) -> int:
    """Files in ``FILE_ORDER`` (the upload first), unknown formats last."""
    return FILE_ORDER.index(file.format) if file.format in FILE_ORDER else 99


def _iso(value: datetime | None) -> str | None:
    """SQLite hands timestamps back without their zone; they are all UTC."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


__all__ = ["Catalogue", "GcReport", "PublishRequest", "download_path", "parse_metadata", "record", "utcnow"]

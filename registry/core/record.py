"""The version record: what the registry says about one published version (DESIGN: at least
``id``, ``air``, ``architecture``, ``vectors``, ``kind``, ``trigger``, ``sha256``, ``size``,
``yanked``), as one typed value. ``RegistryClient`` returns it, the resolver and its cache hold
it, the CLI prints it; ``from_wire`` is its one constructor from the JSON the service sends and
``to_wire`` gives that JSON back (fields a newer server adds ride along in ``extra``). The service
builds it too (``catalogue.record``) and sends ``to_wire()``: one shape on both sides of the wire."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from pseudoword.registry.core.errors import InvalidResponse

_REQUIRED_TEXT = ("id", "source", "model", "version", "architecture", "sha256")
# Fields the wire leaves out rather than sending null: resolve answers carry no download count,
# files and previews come only with some answers, row ids only from this service.
_ABSENT_WHEN_NONE = frozenset({"downloads", "version_id", "model_id", "files", "previews"})


def _text(data: Mapping[str, Any], key: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise InvalidResponse(f"a version record's {key!r} is {value!r}; expected text", {"field": key})
    return value


def _int(data: Mapping[str, Any], key: str, required: bool = False) -> int | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidResponse(f"a version record's {key!r} is {value!r}; expected a whole number", {"field": key})
    return value


def _mapping(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise InvalidResponse(f"a version record's {key!r} must be an object", {"field": key})
    return dict(value)


@dataclass(frozen=True)
class FileRecord:
    """One served file of a version, with every hash people name it by (AutoV2 = first 10 hex of
    the SHA-256; A1111's short hash = first 12)."""

    format: str  # original, safetensors, a1111, diffusers, ...
    filename: str
    size: int
    sha256: str
    autov2: str
    a1111_hash: str
    stored: bool = True

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> FileRecord:
        if not isinstance(data, Mapping):
            raise InvalidResponse(f"a file record must be a JSON object, not {type(data).__name__}")
        sha256 = _text(data, "sha256", True) or ""
        return cls(format=_text(data, "format", True) or "", filename=_text(data, "filename", True) or "",
                   size=_int(data, "size", True) or 0, sha256=sha256,
                   autov2=_text(data, "autov2") or sha256[:10], a1111_hash=_text(data, "a1111_hash") or sha256[:12],
                   stored=bool(data.get("stored", True)))

    def to_wire(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class PreviewRecord:
    """One preview image of a version: where it and its thumbnail are served, its digest, format
    and size, and the A1111 settings text it carried (``parameters``)."""

    url: str
    thumbnail_url: str | None = None
    sha256: str | None = None
    format: str | None = None  # png, jpeg, webp
    media_type: str | None = None
    width: int | None = None
    height: int | None = None
    size: int | None = None
    parameters: str | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> PreviewRecord:
        if not isinstance(data, Mapping):
            raise InvalidResponse(f"a preview must be a JSON object, not {type(data).__name__}", {"field": "previews"})
        return cls(url=_text(data, "url", True) or "", thumbnail_url=_text(data, "thumbnail_url"),
                   sha256=_text(data, "sha256"), format=_text(data, "format"), media_type=_text(data, "media_type"),
                   width=_int(data, "width"), height=_int(data, "height"), size=_int(data, "size"),
                   parameters=_text(data, "parameters"))

    def to_wire(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class VersionRecord:
    id: str  # source:model@version
    air: str
    source: str
    model: str
    version: str
    architecture: str
    vectors: int
    kind: str
    trigger: str | None
    sha256: str  # of the canonical file
    size: int
    yanked: bool = False
    yanked_reason: str | None = None
    dtype: str | None = None
    tags: tuple[str, ...] = ()
    title: str | None = None
    description: str | None = None
    original_sha256: str | None = None  # of the file as uploaded
    original_size: int | None = None
    original_format: str | None = None
    autov2: str | None = None
    a1111_hash: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)
    created_at: str | None = None  # ISO 8601, UTC
    downloads: int | None = None  # absent from resolve answers (it moves with every download)
    download_url: str | None = None
    # What the catalogue adds about the listing (sent by the service; a client reads them too).
    base_model: str | None = None  # e.g. "SD 1.5"
    license: str | None = None  # SPDX id
    permissions: Mapping[str, Any] = field(default_factory=dict, hash=False)
    publisher: str | None = None
    pickle_scan: Mapping[str, Any] = field(default_factory=dict, hash=False)  # {"result", "message"}
    # Present only where the service sends them (None: absent from the wire).
    version_id: int | None = None  # the catalogue's row ids (Civitai's modelVersionId / modelId)
    model_id: int | None = None
    files: tuple[FileRecord, ...] | None = None  # the upload first (get/publish/by-hash answers)
    previews: tuple[PreviewRecord, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def call_word(self) -> str:
        """The word a prompt calls it by: its trigger, else its model name."""
        return self.trigger or self.model

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> VersionRecord:
        """The record from the service's JSON; ``InvalidResponse`` names a field that is missing
        or of the wrong type (a proxy's page, another server)."""
        if not isinstance(data, Mapping):
            raise InvalidResponse(f"a version record must be a JSON object, not {type(data).__name__}")
        text = {key: _text(data, key, required=True) for key in _REQUIRED_TEXT}
        tags = data.get("tags") or ()
        metadata = data.get("metadata") or {}
        if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
            raise InvalidResponse(f"a version record's 'tags' is {tags!r}; expected a list of text", {"field": "tags"})
        if not isinstance(metadata, Mapping):
            raise InvalidResponse("a version record's 'metadata' must be an object", {"field": "metadata"})
        files = data.get("files")
        previews = data.get("previews")
        if files is not None and not isinstance(files, list | tuple):
            raise InvalidResponse(f"a version record's 'files' is {files!r}; expected a list", {"field": "files"})
        if previews is not None and not isinstance(previews, list | tuple):
            raise InvalidResponse("a version record's 'previews' must be a list of objects", {"field": "previews"})
        known = {f.name for f in fields(cls)}
        return cls(
            id=text["id"], source=text["source"], model=text["model"], version=text["version"],  # type: ignore[arg-type]
            architecture=text["architecture"], sha256=text["sha256"].lower(),  # type: ignore[union-attr,arg-type]
            air=_text(data, "air") or f"urn:air:{text['architecture']}:embedding:{text['id']}",
            vectors=_int(data, "vectors", required=True),  # type: ignore[arg-type]
            size=_int(data, "size", required=True),  # type: ignore[arg-type]
            kind=_text(data, "kind") or "positive", trigger=_text(data, "trigger"),
            yanked=bool(data.get("yanked")), yanked_reason=_text(data, "yanked_reason"), dtype=_text(data, "dtype"),
            tags=tuple(tags), title=_text(data, "title"), description=_text(data, "description"),
            original_sha256=_text(data, "original_sha256"), original_size=_int(data, "original_size"),
            original_format=_text(data, "original_format"), autov2=_text(data, "autov2"),
            a1111_hash=_text(data, "a1111_hash"), metadata=dict(metadata), created_at=_text(data, "created_at"),
            downloads=_int(data, "downloads"), download_url=_text(data, "download_url"),
            base_model=_text(data, "base_model"), license=_text(data, "license"),
            permissions=_mapping(data, "permissions"), publisher=_text(data, "publisher"),
            pickle_scan=_mapping(data, "pickle_scan"),
            version_id=_int(data, "version_id"), model_id=_int(data, "model_id"),
            files=None if files is None else tuple(FileRecord.from_wire(f) for f in files),
            previews=None if previews is None else tuple(PreviewRecord.from_wire(p) for p in previews),
            extra={key: value for key, value in data.items() if key not in known},
        )

    def to_wire(self) -> dict[str, Any]:
        """The JSON object the service sends (``--json`` prints it)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (value is None and f.name in _ABSENT_WHEN_NONE):
                continue
            if f.name == "files":
                value = [file.to_wire() for file in value]
            elif f.name == "previews":
                value = [preview.to_wire() for preview in value]
            elif f.name == "tags":
                value = list(value)
            elif f.name in ("metadata", "permissions", "pickle_scan"):
                value = dict(value)
            out[f.name] = value
        out.update(self.extra)
        return out

    # Mapping-style reads, for callers not moved to attributes yet: runtime/embedding_entries.py
    # (its test FakeResolver hands it dicts), cli/preview_cmd.py's prompt_kind/render_comparison
    # (take a dict or a record), tests that read records by key, and other branches in flight.
    # The service reads attributes only.
    def __getitem__(self, key: str) -> Any:
        return self.to_wire()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_wire().get(key, default)


@dataclass(frozen=True)
class ModelRecord:
    """A model with every version, newest first (``GET /embeddings/{source}/{model}``)."""

    id: str
    source: str
    model: str
    downloads: int
    created_at: str | None
    latest: str | None  # the version an unpinned reference means, by the catalogue
    versions: tuple[VersionRecord, ...]
    model_id: int | None = None  # the catalogue's row id (sent by this service)
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ModelRecord:
        if not isinstance(data, Mapping) or not isinstance(data.get("versions", []), list):
            raise InvalidResponse("a model record must be a JSON object with a list of versions")
        known = {f.name for f in fields(cls)}
        return cls(id=_text(data, "id", True), source=_text(data, "source", True),  # type: ignore[arg-type]
                   model=_text(data, "model", True), downloads=_int(data, "downloads") or 0,  # type: ignore[arg-type]
                   created_at=_text(data, "created_at"), latest=_text(data, "latest"),
                   model_id=_int(data, "model_id"), versions=tuple(VersionRecord.from_wire(v) for v in data.get("versions") or []),
                   extra={key: value for key, value in data.items() if key not in known})

    def to_wire(self) -> dict[str, Any]:
        ids = {} if self.model_id is None else {"model_id": self.model_id}
        return {"id": self.id, "source": self.source, "model": self.model, **ids, "downloads": self.downloads,
                "created_at": self.created_at, "latest": self.latest,
                "versions": [v.to_wire() for v in self.versions], **self.extra}

    def __getitem__(self, key: str) -> Any:
        return {**self.to_wire(), "versions": list(self.versions)}[key]

    def get(self, key: str, default: Any = None) -> Any:
        return {**self.to_wire(), "versions": list(self.versions)}.get(key, default)


@dataclass(frozen=True)
class ResolveAnswer:
    """One reference of a batch resolve: its record, or the error the registry gave for it."""

    ref: str
    record: VersionRecord | None
    error: Mapping[str, Any] | None = None  # {"code", "message", "detail"}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ResolveAnswer:
        record = data.get("record")
        error = data.get("error")
        return cls(ref=str(data.get("ref", "")), record=VersionRecord.from_wire(record) if record else None,
                   error=error if isinstance(error, Mapping) else ({"code": "error"} if record is None else None))

    def to_wire(self) -> dict[str, Any]:
        """``{"ref", "record"}`` or ``{"ref", "error"}``, as ``POST /resolve`` sends each answer."""
        if self.record is not None:
            return {"ref": self.ref, "record": self.record.to_wire()}
        return {"ref": self.ref, "error": dict(self.error or {})}

    # Mapping-style reads ({"ref", "record", "error"}), for callers not moved to attributes yet.
    def __getitem__(self, key: str) -> Any:
        return {"ref": self.ref, "record": self.record, "error": self.error}[key]

    def get(self, key: str, default: Any = None) -> Any:
        return {"ref": self.ref, "record": self.record, "error": self.error}.get(key, default)

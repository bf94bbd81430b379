"""The version record: what the registry says about one published version (DESIGN: at least
``id``, ``air``, ``architecture``, ``vectors``, ``kind``, ``trigger``, ``sha256``, ``size``,
``yanked``), as one typed value. ``RegistryClient`` returns it, the resolver and its cache hold
it, the CLI prints it; ``from_wire`` is its one constructor from the JSON the service sends and
``to_wire`` gives that JSON back (fields a newer server adds ride along in ``extra``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from pseudoword.registry.core.errors import InvalidResponse

_REQUIRED_TEXT = ("id", "source", "model", "version", "architecture", "sha256")


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
            extra={key: value for key, value in data.items() if key not in known},
        )

    def to_wire(self) -> dict[str, Any]:
        """The JSON object the service sends (``--json`` prints it)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra" or (f.name == "downloads" and self.downloads is None):
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if f.name == "tags" else dict(value) if f.name == "metadata" else value
        out.update(self.extra)
        return out

    # Mapping-style reads, for callers not moved to attributes yet (other branches in flight).
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
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ModelRecord:
        if not isinstance(data, Mapping) or not isinstance(data.get("versions", []), list):
            raise InvalidResponse("a model record must be a JSON object with a list of versions")
        known = {f.name for f in fields(cls)}
        return cls(id=_text(data, "id", True), source=_text(data, "source", True),  # type: ignore[arg-type]
                   model=_text(data, "model", True), downloads=_int(data, "downloads") or 0,  # type: ignore[arg-type]
                   created_at=_text(data, "created_at"), latest=_text(data, "latest"),
                   versions=tuple(VersionRecord.from_wire(v) for v in data.get("versions") or []),
                   extra={key: value for key, value in data.items() if key not in known})

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "model": self.model, "downloads": self.downloads,
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

    # Mapping-style reads ({"ref", "record", "error"}), for callers not moved to attributes yet.
    def __getitem__(self, key: str) -> Any:
        return {"ref": self.ref, "record": self.record, "error": self.error}[key]

    def get(self, key: str, default: Any = None) -> Any:
        return {"ref": self.ref, "record": self.record, "error": self.error}.get(key, default)

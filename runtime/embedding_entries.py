"""A request's ``embeddings`` list: validation, resolution, and vectors on the right device.

Each entry is ``{"model": REF, "weight": W}`` (resolved through the registry) or
``{"path": FILE, "trigger": T, "weight": W}`` (a local file, no registry). ``trigger`` may be
given for a reference too, to use another word than the published one. ``weight`` defaults to
-1 for a version published as ``kind: negative`` and to 1 otherwise. Everything is checked
before any tensor is touched, so a bad request changes nothing and costs little.

Triggers follow the core's one rule (``registry.core.triggers``): a local file answers to its
file name (stem, trimmed) unless the entry names a trigger, a registry version to its published
trigger; the name stored inside the file is an alias that also matches (it travels in the
canonical file's metadata, so a registry version has it too once its vectors are loaded).
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from pseudoword.registry.core import DEFAULT_LIMITS, read_embedding
from pseudoword.registry.core.errors import InvalidRequest, InvalidWeight, LocalNotFound, TooLarge
from pseudoword.registry.core.hashes import a1111_hash
from pseudoword.registry.core.triggers import MAX_TRIGGER_CHARS, aliases_for, triggers_from
from pseudoword.runtime.placement import Placement
from pseudoword.runtime.text_stack import ARCH_DESCRIPTIONS, TextStack
from pseudoword.runtime.vector_cache import DeviceVectors, VectorCache, to_device

MAX_WEIGHT = 4.0
#: Embeddings in one request (each also takes prompt positions, so real requests use a few).
MAX_ENTRIES = 32
_KEYS = {"model", "path", "trigger", "weight"}


class ResolverLike(Protocol):
    def resolve(self, refs: list[str]) -> list[Any]: ...


@dataclass(frozen=True)
class EmbeddingEntry:
    """One validated entry of the request."""

    model: str | None
    path: str | None
    trigger: str | None
    weight: float | None  # None: the default for the embedding's kind

    @property
    def label(self) -> str:
        return self.model if self.model is not None else str(self.path)


@dataclass(frozen=True)
class AppliedEmbedding:
    """What was applied for one entry: enough to reproduce the request (PNG metadata, logs)."""

    label: str
    trigger: str
    weight: float
    architecture: str
    num_vectors: int
    ref: str | None = None  # the reference as asked
    id: str | None = None  # the resolved source:model@version
    sha256: str | None = None  # canonical digest (registry) or file digest (local path)
    a1111_hash: str | None = None  # the short hash A1111 / Civitai know the file by
    path: str | None = None
    kind: str | None = None
    placement: Placement | None = None  # where it went (set once the prompts are laid out)

    def to_dict(self) -> dict[str, Any]:
        out = {key: value for key, value in self.__dict__.items() if value is not None}
        if self.placement is not None:
            out["placement"] = self.placement.to_dict()
        return out


@dataclass(frozen=True)
class LoadedEmbedding:
    applied: AppliedEmbedding
    vectors: DeviceVectors
    aliases: tuple[str, ...] = ()  # other words that call it (the name stored in the file...)

    @property
    def trigger(self) -> str:
        return self.applied.trigger

    @property
    def weight(self) -> float:
        return self.applied.weight


def parse_weight(value: Any, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidWeight(f"weight of {label} must be a number from -4 to 4 (not 0), got {value!r}",
                            {"embedding": label, "weight": repr(value)})
    weight = float(value)
    if not math.isfinite(weight) or weight == 0 or abs(weight) > MAX_WEIGHT:
        raise InvalidWeight(
            f"weight {value} of {label} is out of range: weights go from -4 to 4 and are not 0 "
            "(the sign picks the prompt side, the size the strength)",
            {"embedding": label, "weight": weight, "min": -MAX_WEIGHT, "max": MAX_WEIGHT},
        )
    return weight


def parse_entries(embeddings: Sequence[Any] | None) -> list[EmbeddingEntry]:
    """Validate the request's list (shape, keys, weights, triggers); raise on the first problem."""
    if embeddings is None:
        return []
    if isinstance(embeddings, (str, bytes)) or not isinstance(embeddings, Sequence):
        raise InvalidRequest(f"embeddings must be a list of objects, got {type(embeddings).__name__}")
    if len(embeddings) > MAX_ENTRIES:
        raise InvalidRequest(f"{len(embeddings)} embeddings in one request; at most {MAX_ENTRIES}",
                             {"count": len(embeddings), "limit": MAX_ENTRIES})
    entries = []
    for position, raw in enumerate(embeddings):
        where = f"embeddings[{position}]"
        if not isinstance(raw, dict):
            raise InvalidRequest(f"{where} must be an object with model or path, got {type(raw).__name__}")
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise InvalidRequest(f"{where} has unknown keys {unknown}; expected model or path, "
                                 "weight, trigger", {"index": position, "unknown": unknown})
        model, path = raw.get("model"), raw.get("path")
        if (model is None) == (path is None):
            raise InvalidRequest(f"{where} needs exactly one of model (a registry reference) or path "
                                 "(a local file)", {"index": position})
        for name, value in (("model", model), ("path", path)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InvalidRequest(f"{where}.{name} must be a non-empty string", {"index": position})
        label = str(model if model is not None else path)
        trigger = raw.get("trigger")
        if trigger is not None:
            if not isinstance(trigger, str) or not trigger.strip() or len(trigger) > MAX_TRIGGER_CHARS:
                raise InvalidRequest(f"{where}.trigger must be a non-empty string of at most "
                                     f"{MAX_TRIGGER_CHARS} characters", {"index": position})
            trigger = trigger.strip()
        weight = parse_weight(raw["weight"], label) if "weight" in raw else None
        entries.append(EmbeddingEntry(model=model.strip() if model else None, path=path,
                                      trigger=trigger, weight=weight))
    return entries


def _default_weight(entry: EmbeddingEntry, kind: str | None) -> float:
    if entry.weight is not None:
        return entry.weight
    return -1.0 if kind == "negative" else 1.0


def _describe(architecture: str) -> str:
    return ARCH_DESCRIPTIONS.get(architecture, architecture)


_default_resolver: Any = None
_default_lock = threading.Lock()


def default_resolver() -> ResolverLike:
    """One process-wide ``Resolver`` from the environment, for callers that pass none."""
    global _default_resolver
    with _default_lock:
        if _default_resolver is None:
            from pseudoword.runtime.resolver import Resolver

            _default_resolver = Resolver()
        return _default_resolver


def load_entries(entries: list[EmbeddingEntry], stack: TextStack, *, resolver: ResolverLike | None,
                 cache: VectorCache) -> list[LoadedEmbedding]:
    """Resolve the references (one batched call), check architectures, and fetch vectors
    through ``cache`` on the stack's device/dtype."""
    device, dtype = stack.device, stack.dtype
    refs = list(dict.fromkeys(e.model for e in entries if e.model is not None))
    resolved: dict[str, Any] = {}
    if refs:
        resolver = resolver if resolver is not None else default_resolver()
        for ref, item in zip(refs, resolver.resolve(refs), strict=True):
            resolved[ref] = item
    # What can be checked without reading a file is checked first: a refused request loads nothing.
    known: list[tuple[str, str]] = []
    for entry in entries:
        if entry.model is not None:
            record = resolved[entry.model].record
            stack.check_architecture(_label(entry, record), record.get("architecture", "?"),
                                     _describe(record.get("architecture", "?")))
            known.append((entry.trigger or _record_trigger(record, entry), entry.label))
        elif entry.trigger is not None:
            known.append((entry.trigger, entry.label))
    _check_triggers(known)
    loaded = []
    for entry in entries:
        if entry.model is not None:
            loaded.append(_from_registry(entry, resolved[entry.model], stack, cache, device, dtype))
        else:
            loaded.append(_from_path(entry, stack, cache, device, dtype))
    _check_triggers([(item.trigger, item.applied.label) for item in loaded])
    return loaded


def _label(entry: EmbeddingEntry, record: dict[str, Any]) -> str:
    label = entry.model or ""
    name = record.get("id") or label
    return label if name == label else f"{label} ({name})"


def _record_trigger(record: dict[str, Any], entry: EmbeddingEntry) -> str:
    return record.get("trigger") or record.get("model") or entry.label


def _from_registry(entry: EmbeddingEntry, item: Any, stack: TextStack, cache: VectorCache,
                   device: torch.device, dtype: torch.dtype) -> LoadedEmbedding:
    record: dict[str, Any] = item.record
    label = entry.model or ""
    described = _label(entry, record)
    digest = record["sha256"]

    def load() -> DeviceVectors:
        emb = item.embedding()
        stack.check_architecture(described, emb.architecture, _describe(emb.architecture))
        return DeviceVectors(to_device(emb.vectors, device, dtype), emb.architecture, emb.num_vectors, emb.name)

    vectors = cache.get_or_load(("sha256", digest, str(device), dtype), load)
    trigger = entry.trigger or _record_trigger(record, entry)
    applied = AppliedEmbedding(
        label=label, trigger=trigger, weight=_default_weight(entry, record.get("kind")),
        architecture=vectors.architecture, num_vectors=vectors.num_vectors, ref=label,
        id=record.get("id"), sha256=digest, a1111_hash=record.get("a1111_hash"), kind=record.get("kind"),
    )
    return LoadedEmbedding(applied, vectors)


def _from_path(entry: EmbeddingEntry, stack: TextStack, cache: VectorCache,
               device: torch.device, dtype: torch.dtype) -> LoadedEmbedding:
    path = Path(entry.path or "").expanduser()
    try:
        stat = path.stat()
    except OSError:
        raise LocalNotFound(f"embedding file {entry.path} not found", {"path": entry.path}) from None
    if not path.is_file():
        raise LocalNotFound(f"embedding path {entry.path} is not a file", {"path": entry.path})
    key = ("path", os.path.realpath(path), stat.st_mtime_ns, stat.st_size, str(device), dtype)

    def load() -> DeviceVectors:
        if stat.st_size > DEFAULT_LIMITS.max_file_bytes:
            raise TooLarge(f"{path.name} is {stat.st_size} bytes; at most {DEFAULT_LIMITS.max_file_bytes} allowed",
                           {"size": stat.st_size, "limit": DEFAULT_LIMITS.max_file_bytes})
        data = path.read_bytes()
        emb = read_embedding(data, filename=path.name)
        stack.check_architecture(str(entry.path), emb.architecture, _describe(emb.architecture))
        return DeviceVectors(to_device(emb.vectors, device, dtype), emb.architecture, emb.num_vectors,
                             emb.name, hashlib.sha256(data).hexdigest())

    vectors = cache.get_or_load(key, load)
    stack.check_architecture(str(entry.path), vectors.architecture, _describe(vectors.architecture))  # cached
    if entry.trigger:
        trigger, aliases = entry.trigger, aliases_for(entry.trigger, vectors.name or "")
    else:
        named = triggers_from(path.name, vectors.name)
        trigger, aliases = named.trigger, named.aliases
    applied = AppliedEmbedding(
        label=str(entry.path), trigger=trigger, weight=_default_weight(entry, None),
        architecture=vectors.architecture, num_vectors=vectors.num_vectors, path=str(entry.path),
        sha256=vectors.sha256, a1111_hash=a1111_hash(vectors.sha256) if vectors.sha256 else None,
    )
    return LoadedEmbedding(applied, vectors, aliases)


def _check_triggers(triggers: list[tuple[str, str]]) -> None:
    """Two embeddings answering to one word would be ambiguous: refuse, naming both."""
    seen: dict[str, str] = {}
    for trigger, label in triggers:
        key = trigger.lower()
        if key in seen:
            raise InvalidRequest(
                f"embeddings {seen[key]} and {label} share the trigger {trigger!r}; "
                "give one of them another trigger",
                {"trigger": trigger},
            )
        seen[key] = label

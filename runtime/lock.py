"""Lockfiles: a request's embedding references pinned to exact versions and digests.

``pseudoword lock REQUEST.json`` writes ``REQUEST.lock.json``::

    {
      "lockfile_version": 1,
      "registry": "https://registry.example",
      "pins": {
        "civitai:7808": {"id": "civitai:7808@9208", "sha256": "<64 hex>", "architecture": "sd1",
                         "trigger": "easynegative", "air": "urn:air:sd1:embedding:civitai:7808@9208"}
      }
    }

A pin's key is the reference exactly as the request wrote it. A Resolver given the lockfile
resolves that reference to the pinned ``id`` and refuses any file whose SHA-256 differs from
the pinned one, so a run is reproducible even after new versions are published.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.registry.core.record import VersionRecord

LOCKFILE_VERSION = 1


@dataclass(frozen=True)
class Pin:
    """One locked reference."""

    id: str  # source:model@version
    sha256: str  # digest of the canonical file
    architecture: str | None = None
    trigger: str | None = None
    air: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def refs_in_request(request: Any) -> list[str]:
    """The registry references a request names, in order, without duplicates.

    Accepts one request (``{"embeddings": [{"model": REF, "weight": W}, ...], ...}``), a list of
    them (the seeds' task list), or ``{"refs": [...]}``. Entries with a local ``path`` are skipped.
    """
    found: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
        elif isinstance(node, dict):
            for entry in node.get("embeddings") or []:
                if isinstance(entry, dict) and isinstance(entry.get("model"), str):
                    found.append(entry["model"])
                elif isinstance(entry, str):
                    found.append(entry)
            for ref in node.get("refs") or []:
                if isinstance(ref, str):
                    found.append(ref)

    visit(request)
    return list(dict.fromkeys(found))


def default_lock_path(request_path: Path) -> Path:
    """``foo.json`` -> ``foo.lock.json`` (next to the request)."""
    return request_path.with_name(f"{request_path.stem}.lock.json")


def build_lock(records: Iterable[tuple[str, VersionRecord]], registry: str | None) -> dict[str, Any]:
    """The lockfile document for ``(ref as written, version record)`` pairs."""
    pins = {
        ref: Pin(
            id=record.id,
            sha256=record.sha256,
            architecture=record.architecture,
            trigger=record.trigger,
            air=record.air,
        ).to_dict()
        for ref, record in records
    }
    return {"lockfile_version": LOCKFILE_VERSION, "registry": registry, "pins": pins}


def load_pins(lockfile: Path | dict[str, Any]) -> dict[str, Pin]:
    """Read a lockfile (path or parsed document) into ``{ref: Pin}``; a malformed one is an
    InvalidRequest naming what is wrong."""
    where = str(lockfile) if isinstance(lockfile, Path) else "lockfile"
    if isinstance(lockfile, Path):
        try:
            document = json.loads(lockfile.read_text())
        except ValueError as exc:
            raise InvalidRequest(f"{where} is not valid JSON: {exc}", {"path": where}) from None
    else:
        document = lockfile
    if not isinstance(document, dict) or not isinstance(document.get("pins"), dict):
        raise InvalidRequest(f"{where} has no 'pins' object", {"path": where})
    if document.get("lockfile_version", LOCKFILE_VERSION) != LOCKFILE_VERSION:
        raise InvalidRequest(
            f"{where} has lockfile_version {document.get('lockfile_version')!r}; this version reads {LOCKFILE_VERSION}",
            {"path": where},
        )
    pins: dict[str, Pin] = {}
    for ref, entry in document["pins"].items():
        if not (isinstance(entry, dict) and isinstance(entry.get("id"), str) and isinstance(entry.get("sha256"), str)):
            raise InvalidRequest(f"{where}: pin for {ref!r} needs 'id' and 'sha256'", {"path": where, "ref": ref})
        pins[ref] = Pin(
            id=entry["id"],
            sha256=entry["sha256"].lower(),
            architecture=entry.get("architecture"),
            trigger=entry.get("trigger"),
            air=entry.get("air"),
        )
    return pins

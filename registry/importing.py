"""Publish a whole AUTOMATIC1111 / ComfyUI embeddings folder (`pseudoword import` is a thin command
over ``import_folder``; call it from Python with a ``RegistryClient``).

Both UIs call an embedding by its file name, so each file becomes ``SOURCE:<slug>@VERSION``
with the file stem as trigger and, as model name, the stem slugged to the ID grammar (accents
dropped, whitespace runs -> ``-``, other characters outside ``[A-Za-z0-9._-]`` -> ``_``). A
trigger is one prompt word, so in the trigger too whitespace and commas become ``-``: a file
``Low_Quality2xx_ By_Stable_Yogi-neg.pt`` is called by ``Low_Quality2xx_-By_Stable_Yogi-neg``,
the same as its model name.

Order of work, so that a rerun after an interruption finishes the job without duplicates:
every file is validated locally first; one batch ``POST /resolve`` then tells which IDs
already exist (same content -> skipped, other content -> refused as a conflict) without
uploading anything; the rest are uploaded one by one (the server's own idempotence covers a
race with another importer).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pseudoword.registry.core import canonical_bytes, parse_ref, read_embedding, read_file_bytes, trigger_from_stem
from pseudoword.registry.core.errors import (
    Conflict,
    Forbidden,
    InvalidReference,
    PseudowordError,
    RegistryUnreachable,
    StorageUnavailable,
    Unauthorized,
)
from pseudoword.registry.core.record import VersionRecord

#: File suffixes A1111 and ComfyUI load as embeddings.
EMBEDDING_SUFFIXES = (".pt", ".bin", ".safetensors")
#: Errors that stop the whole import (every further upload would fail the same way).
FATAL = (Unauthorized, Forbidden, RegistryUnreachable, StorageUnavailable)
_NEGATIVE = re.compile(r"(?i)negative|(?:^|[-_ .])neg(?:$|[-_ .])")


def model_slug(stem: str) -> str:
    """A file stem as a MODEL name (``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``); '' if nothing is left."""
    folded = "".join(ch for ch in unicodedata.normalize("NFKD", stem) if not unicodedata.combining(ch))
    slug = re.sub(r"\s+", "-", folded.strip())
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", slug)
    slug = re.sub(r"^[^A-Za-z0-9]+", "", slug)
    return slug[:128]


def is_negative_name(stem: str) -> bool:
    """``-neg`` (or ``_neg``, `` neg``) as a word, or ``negative`` anywhere, case-insensitive."""
    return bool(_NEGATIVE.search(stem))


def embedding_files(directory: Path) -> list[Path]:
    """Embedding files under ``directory`` (subfolders too, as both UIs do), hidden ones skipped."""
    found = []
    for path in directory.rglob("*"):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in EMBEDDING_SUFFIXES:
            found.append(path)
    return sorted(found, key=lambda p: str(p.relative_to(directory)).lower())


@dataclass(frozen=True)
class ImportPlan:
    directory: Path
    source: str
    version: str = "1"
    kind: str = "positive"
    kind_from_name: bool = False
    tags: tuple[str, ...] = ()
    dry_run: bool = False


@dataclass
class _Item:
    file: str  # relative to the folder
    path: Path
    id: str | None = None
    trigger: str | None = None
    kind: str = "positive"
    data: bytes = b""
    sha256: str = ""
    canonical_sha256: str = ""
    architecture: str | None = None
    vectors: int | None = None

    def summary(self, **extra: Any) -> dict[str, Any]:
        return {"file": self.file, "id": self.id, "architecture": self.architecture, "vectors": self.vectors,
                "kind": self.kind, "trigger": self.trigger, "sha256": self.sha256, **extra}


@dataclass
class ImportReport:
    published: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False
    aborted: PseudowordError | None = None  # the error that stopped the run, if any
    not_done: list[str] = field(default_factory=list)  # files left when it stopped

    def refuse(self, item: _Item, code: str, message: str) -> None:
        self.refused.append({"file": item.file, "id": item.id, "code": code, "message": message})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"published": self.published, "skipped": self.skipped, "refused": self.refused,
                               "dry_run": self.dry_run}
        if self.aborted is not None:
            out["error"] = self.aborted.to_dict()
            out["not_done"] = self.not_done
        return out

    def counts_line(self) -> str:
        verb = "would publish" if self.dry_run else "published"
        line = f"{verb} {len(self.published)}, skipped {len(self.skipped)}, refused {len(self.refused)}"
        if self.not_done:
            line += f", not done {len(self.not_done)} (stopped: run again to finish)"
        return line


def _prepare(path: Path, plan: ImportPlan, report: ImportReport) -> _Item | None:
    """Read and validate one file locally; a refusal goes into the report."""
    item = _Item(file=str(path.relative_to(plan.directory)), path=path)
    stem = path.stem
    item.trigger = trigger_from_stem(stem)
    item.kind = "negative" if plan.kind_from_name and is_negative_name(stem) else plan.kind
    slug = model_slug(stem)
    try:
        if not slug or not item.trigger:
            raise InvalidReference(f"no usable model name in the file name {path.name!r}")
        item.id = str(parse_ref(f"{plan.source}:{slug}@{plan.version}"))
        item.data = read_file_bytes(path)
        emb = read_embedding(item.data, filename=path.name)
    except PseudowordError as exc:
        report.refuse(item, exc.code, exc.message)
        return None
    except OSError as exc:
        report.refuse(item, "os_error", str(exc.strerror or exc))
        return None
    item.sha256 = hashlib.sha256(item.data).hexdigest()
    item.canonical_sha256 = hashlib.sha256(canonical_bytes(emb)).hexdigest()
    item.architecture, item.vectors = emb.architecture, emb.num_vectors
    return item


def _existing(client: Any, ids: list[str]) -> dict[str, VersionRecord]:
    """Records of the IDs the registry already has (the client batches the requests)."""
    return {ref: result.record for ref, result in zip(ids, client.resolve(ids), strict=True)
            if result.record is not None}


def import_folder(plan: ImportPlan, client: Any, *, progress: Callable[[int, int], None] | None = None,
                  warn: Callable[[str], None] = lambda _msg: None) -> ImportReport:
    """Run an import; never raises for a single file (it is refused), returns the report with
    ``aborted`` set when an error stopped the whole run (server down, bad token). ``progress``
    hears (files uploaded, files to upload) after each upload."""
    report = ImportReport(dry_run=plan.dry_run)
    items: list[_Item] = []
    claimed: dict[str, _Item] = {}
    for path in embedding_files(plan.directory):
        item = _prepare(path, plan, report)
        if item is None:
            continue
        assert item.id is not None
        first = claimed.get(item.id)
        if first is not None:
            if first.sha256 == item.sha256:
                report.skipped.append(item.summary(reason=f"same file as {first.file}"))
            else:
                report.refuse(item, Conflict.code, f"{first.file} in this folder is imported as the same ID {item.id}")
            continue
        claimed[item.id] = item
        items.append(item)
    if not items and not report.refused:
        warn(f"no embedding files ({', '.join(EMBEDDING_SUFFIXES)}) in {plan.directory}")

    try:
        existing = _existing(client, [item.id for item in items]) if items else {}  # type: ignore[misc]
    except RegistryUnreachable as exc:
        if not plan.dry_run:
            report.aborted, report.not_done = exc, [item.file for item in items]
            return report
        warn(f"{exc.message}; the dry run only validated the files")
        existing = {}
    to_upload = []
    for item in items:
        record = existing.get(item.id)  # type: ignore[arg-type]
        if record is None:
            to_upload.append(item)
        elif item.sha256 in (record.original_sha256, record.sha256) or item.canonical_sha256 == record.sha256:
            report.skipped.append(item.summary(reason="already published"))
        else:
            report.refuse(item, Conflict.code,
                          f"{item.id} is already published with other content (sha256 {record.original_sha256 or record.sha256})")
    if plan.dry_run:
        report.published.extend(item.summary() for item in to_upload)
        return report
    _upload(to_upload, plan, client, report, progress)
    return report


def _upload(items: list[_Item], plan: ImportPlan, client: Any, report: ImportReport,
            progress: Callable[[int, int], None] | None) -> None:
    for index, item in enumerate(items):
        try:
            result = client.publish(item.data, id=item.id, filename=item.path.name, trigger=item.trigger,
                                    kind=item.kind, tags=plan.tags)
        except FATAL as exc:
            report.aborted, report.not_done = exc, [i.file for i in items[index:]]
            return
        except PseudowordError as exc:
            report.refuse(item, exc.code, exc.message)
        else:
            record = result.record
            if result.created:
                report.published.append(item.summary(canonical_sha256=record.sha256))
            else:
                report.skipped.append(item.summary(reason="already published"))
        if progress is not None:
            progress(index + 1, len(items))

"""Resolve embedding references to verified local files, online or from the cache.

``Resolver.resolve(refs)`` turns ``["civitai:7808@9208", "sha256:…", "acme:style"]`` into
``ResolvedEmbedding`` values whose ``path`` is a canonical file in the local cache whose
SHA-256 was checked on this call. Online, all references go to the registry in one
``POST /resolve`` (chunks of 256), then only the blobs not yet cached are downloaded.

What is served without asking the registry:

- exact versions (``source:model@version``, or a full AIR) and hash references whose record and
  blob are cached: both are immutable, so a warm worker resolves them with no network at all;
- offline (``offline=True`` or ``PSEUDOWORD_OFFLINE=1``), everything comes from the cache. An
  unpinned ``source:model`` then means the newest cached version that is not yanked (newest by
  the record's ``created_at``), which may be older than the registry's latest;
- when the registry cannot be reached, references that are cached are served as offline; the
  others fail with ``RegistryUnreachable`` naming them.

A lockfile (see ``pseudoword.runtime.lock``) maps references to exact versions and digests;
references it does not list resolve normally.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pseudoword.registry.core.errors import (
    ArchitectureMismatch,
    IntegrityError,
    InvalidReference,
    LocalNotFound,
    PseudowordError,
    RegistryUnreachable,
    error_for_code,
)
from pseudoword.registry.core.record import ResolveAnswer, VersionRecord
from pseudoword.registry.core.versions import latest_version
from pseudoword.runtime import settings
from pseudoword.runtime.cache import Cache
from pseudoword.runtime.lock import Pin, load_pins

T = TypeVar("T")

if TYPE_CHECKING:
    from pseudoword.registry.client import RegistryClient
    from pseudoword.registry.core.embedding import Embedding

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ResolvedEmbedding:
    """A reference resolved to a version record and its verified canonical file in the cache."""

    ref: str  # the reference as asked
    record: VersionRecord = field(repr=False)
    path: Path

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def sha256(self) -> str:
        return self.record.sha256

    @property
    def trigger(self) -> str:
        return self.record.call_word

    @property
    def architecture(self) -> str:
        return self.record.architecture

    @property
    def kind(self) -> str:
        return self.record.kind

    def read_bytes(self) -> bytes:
        """The file's bytes, checked again against the record's SHA-256 (the cache may have been
        changed since resolution)."""
        data = self.path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != self.sha256:
            raise IntegrityError(
                f"{self.ref}: cached file {self.path} changed since it was resolved (sha256 {actual})",
                {"ref": self.ref, "path": str(self.path), "expected": self.sha256, "actual": actual},
            )
        return data

    def embedding(self) -> Embedding:
        """The embedding itself, read from the verified file by the core's safe reader."""
        from pseudoword.registry.core import read_embedding

        return read_embedding(self.read_bytes(), filename=f"{self.sha256}.safetensors")


@dataclass
class _Job:
    """One requested reference on its way through resolution."""

    ref: str
    target: str  # what is looked up: the pinned id when a lockfile pins ``ref``
    parsed: Any  # ModelRef | HashRef of target
    ecosystem: str | None  # the architecture an AIR asked for
    pin: Pin | None
    record: VersionRecord | None = None
    from_registry: bool = False  # the record is fresh from the registry (worth caching)
    path: Path | None = None
    error: PseudowordError | None = None


def _outcomes(jobs: list[_Job], raise_errors: bool, value: Callable[[_Job], T]) -> list[T | PseudowordError]:
    """Each job's value in order, or its error (raised at the first one when ``raise_errors``)."""
    out: list[T | PseudowordError] = []
    for job in jobs:
        if job.error is not None:
            if raise_errors:
                raise job.error
            out.append(job.error)
        else:
            out.append(value(job))
    return out


def _resolved(job: _Job) -> ResolvedEmbedding:
    assert job.record is not None and job.path is not None
    return ResolvedEmbedding(ref=job.ref, record=job.record, path=job.path)


def _record(job: _Job) -> VersionRecord:
    assert job.record is not None
    return job.record


def _named(ref: str, exc: PseudowordError) -> PseudowordError:
    """The same kind of error, its message prefixed with the reference it concerns."""
    if exc.message.startswith(f"{ref}:"):
        return exc
    detail = {**exc.detail, "ref": ref}
    new = type(exc)(f"{ref}: {exc.message}", detail)
    new.__cause__ = exc
    return new


class Resolver:
    """Batch resolution against a registry, with a content-addressed, verified local cache.

    ``registry`` is a URL, a ``RegistryClient`` (not closed by the resolver), or None for
    ``PSEUDOWORD_REGISTRY`` / ``http://127.0.0.1:8000``. ``cache_dir`` defaults to
    ``PSEUDOWORD_CACHE`` or ``~/.cache/pseudoword``; ``offline`` to ``PSEUDOWORD_OFFLINE``.
    Safe to share one cache between processes; one instance may be used by several threads.
    """

    def __init__(
        self,
        registry: str | RegistryClient | None = None,
        cache_dir: Path | str | None = None,
        offline: bool | None = None,
        lockfile: Path | str | dict[str, Any] | None = None,
        token: str | None = None,
    ) -> None:
        self.cache = Cache(cache_dir)
        self.offline = settings.offline() if offline is None else offline
        if isinstance(lockfile, str):
            lockfile = Path(lockfile)
        self.pins: dict[str, Pin] = load_pins(lockfile) if lockfile is not None else {}
        self._registry = registry
        self._token = token
        self._client: Any = None if isinstance(registry, str | None) else registry
        self._owns_client = False
        self._client_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def client(self) -> RegistryClient:
        with self._client_lock:
            if self._client is None:
                from pseudoword.registry.client import RegistryClient

                self._client = RegistryClient(self._registry, self._token)  # type: ignore[arg-type]
                self._owns_client = True
        return self._client

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Resolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API --------------------------------------------------------------------------

    def resolve(self, refs: list[str]) -> list[ResolvedEmbedding]:
        """Resolve every reference, in order; the first failure is raised as its typed error
        (InvalidReference, RemoteNotFound, LocalNotFound, ArchitectureMismatch,
        RegistryUnreachable, IntegrityError, ...) with the reference named in its message."""
        return self.resolve_many(refs, raise_errors=True)  # type: ignore[return-value]

    def resolve_many(
        self, refs: list[str], *, raise_errors: bool = True
    ) -> list[ResolvedEmbedding | PseudowordError]:
        """Like ``resolve``; with ``raise_errors=False`` a failed reference gives its error in
        its place instead of stopping the batch."""
        jobs = self._lookup(refs, raise_errors=raise_errors)
        self._fetch_blobs(jobs)
        return _outcomes(jobs, raise_errors, _resolved)

    def lookup(self, refs: list[str], *, raise_errors: bool = True) -> list[VersionRecord | PseudowordError]:
        """Version records only (no downloads): what ``pseudoword lock`` pins."""
        jobs = self._lookup(refs, need_blobs=False, raise_errors=raise_errors)
        return _outcomes(jobs, raise_errors, _record)

    # -- steps -------------------------------------------------------------------------------

    def _lookup(self, refs: list[str], need_blobs: bool = True, raise_errors: bool = False) -> list[_Job]:
        """Parse, apply the lockfile, find records (cache or one batch request) and check them.
        With ``raise_errors`` the first failure stops here: nothing is asked or downloaded after
        a bad reference."""
        jobs = [self._job(ref) for ref in refs]
        if raise_errors:
            self._raise_first(jobs)
        pending: list[_Job] = []
        for job in jobs:
            if job.error is not None:
                continue
            if self.offline or self._immutable(job):
                self._from_cache(job, need_blob=need_blobs)
                if job.record is not None or self.offline:
                    continue
            pending.append(job)
        if pending:
            self._ask_registry(pending, need_blobs)
        for job in jobs:
            if job.error is None and job.record is not None:
                self._check(job)
        if raise_errors:
            self._raise_first(jobs)
        return jobs

    @staticmethod
    def _raise_first(jobs: list[_Job]) -> None:
        for job in jobs:
            if job.error is not None:
                raise job.error

    def _job(self, ref: str) -> _Job:
        from pseudoword.registry.core import parse_ref

        pin = self.pins.get(ref)
        if pin is None:
            try:
                pin = self.pins.get(str(parse_ref(ref)))
            except PseudowordError:
                pin = None
        target = pin.id if pin is not None else ref
        job = _Job(ref=ref, target=target, parsed=None, ecosystem=None, pin=pin)
        try:
            asked = parse_ref(ref)
            job.ecosystem = getattr(asked, "ecosystem", None)
            job.parsed = parse_ref(target) if pin is not None else asked
        except InvalidReference as exc:
            job.error = _named(ref, exc)
        return job

    @staticmethod
    def _immutable(job: _Job) -> bool:
        return getattr(job.parsed, "version", None) is not None or hasattr(job.parsed, "algo")

    def _from_cache(self, job: _Job, need_blob: bool) -> None:
        """Fill ``job`` from the cache; offline, a miss or a corrupt file becomes the job's error."""
        record = self._cached_record(job)
        if record is None:
            if self.offline:
                job.error = LocalNotFound(
                    f"{job.ref}: not in the cache at {self.cache.root} (offline mode: nothing can be fetched)",
                    {"ref": job.ref, "cache": str(self.cache.root)},
                )
            return
        if not need_blob:
            job.record = record
            return
        try:
            path = self.cache.verified_blob(record.sha256)
        except IntegrityError as exc:
            if self.offline:
                job.error = _named(job.ref, exc)
            else:
                job.record = record  # online: the file is downloaded again by _fetch_blobs
            return
        if path is None and self.offline:
            job.error = LocalNotFound(
                f"{job.ref}: the file of {record.id} is not in the cache at {self.cache.root} (offline mode)",
                {"ref": job.ref, "id": record.id, "cache": str(self.cache.root)},
            )
            return
        job.record, job.path = record, path  # online, a missing file is downloaded by _fetch_blobs

    def _cached_record(self, job: _Job) -> VersionRecord | None:
        parsed = job.parsed
        if hasattr(parsed, "algo"):
            return self.cache.record_for_hash(parsed.algo, parsed.value)
        if parsed.version is not None:
            return self.cache.get_record(parsed.source, parsed.model, parsed.version)
        return latest_version(self.cache.records_of(parsed.source, parsed.model))

    def _ask_registry(self, pending: list[_Job], need_blobs: bool) -> None:
        targets = list(dict.fromkeys(job.target for job in pending))
        answers: dict[str, ResolveAnswer] = {}
        try:
            for target, result in zip(targets, self.client.resolve(targets), strict=True):
                answers[target] = result
        except RegistryUnreachable as exc:
            for job in pending:
                self._from_cache(job, need_blob=need_blobs)
                if job.record is None and job.error is None:
                    job.error = RegistryUnreachable(
                        f"{job.ref}: registry unreachable and nothing cached for it ({exc.message})",
                        {**exc.detail, "ref": job.ref, "cache": str(self.cache.root)},
                    )
                elif job.path is not None and job.record is not None:
                    log.warning("registry unreachable; serving %s from the cache as %s", job.ref, job.record.id)
            return
        for job in pending:
            result = answers[job.target]
            if result.record is None:
                err = result.error or {}
                cls = error_for_code(str(err.get("code", "error")))
                job.error = _named(job.ref, cls(str(err.get("message", "")), err.get("detail") or {}))
            else:
                job.record, job.path, job.from_registry = result.record, None, True

    def _check(self, job: _Job) -> None:
        record = job.record
        assert record is not None
        if job.ecosystem and record.architecture != job.ecosystem:
            job.error = ArchitectureMismatch(
                f"{job.ref}: asks for architecture {job.ecosystem} but {record.id} is {record.architecture}",
                {"ref": job.ref, "expected": job.ecosystem, "actual": record.architecture},
            )
        elif job.pin is not None and record.sha256 != job.pin.sha256:
            job.error = IntegrityError(
                f"{job.ref}: the lockfile pins {job.pin.id} to sha256 {job.pin.sha256} but the registry has {record.sha256}",
                {"ref": job.ref, "expected": job.pin.sha256, "actual": record.sha256},
            )
        elif job.from_registry:
            try:
                self.cache.put_record(record)
            except (OSError, ValueError, KeyError) as exc:  # a cache we cannot write still resolves
                log.warning("could not cache the record of %s: %s", record.id, exc)
        if job.error is not None:
            job.record = job.path = None

    def _fetch_blobs(self, jobs: list[_Job]) -> None:
        fetched: dict[str, Path | PseudowordError] = {}
        for job in jobs:
            if job.error is not None or job.path is not None:
                continue
            assert job.record is not None
            digest, version_id = job.record.sha256, job.record.id
            if digest not in fetched:
                try:
                    fetched[digest] = self.cache.fetch_blob(  # through the version's route: counted for it
                        digest, functools.partial(self.client.download, digest, version=version_id))
                except PseudowordError as exc:
                    fetched[digest] = exc
            result = fetched[digest]
            if isinstance(result, PseudowordError):
                job.error, job.record = _named(job.ref, result), None
            else:
                job.path = result

"""Blob store calls on their own bounded thread pool, each with a total deadline, behind a circuit
breaker, so a store that accepts connections but never answers costs the API nothing but 503s.

Every call to the store goes through ``GuardedStore``: it runs on the guard's threads (never the
threads that serve search, model pages or resolve), the caller waits at most ``timeout`` seconds
for it (retries included), and after ``failures`` timeouts or failures in a row the breaker opens:
calls fail at once with ``storage_unavailable`` for ``cooldown`` seconds, then one call is let
through to try again. Async callers (downloads) wait on the event loop and hold no thread at all.

Hand-written: circuit breaker libraries (pybreaker, aiobreaker) count exceptions around a call the
caller already runs; here the call must also move to its own pool with a deadline, for sync and
async callers alike, and only unreachability counts (a missing blob is an answer).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from typing import Any, TypeVar

from pseudoword.registry.core.errors import StorageUnavailable
from pseudoword.registry.service.storage import BlobStore, StoredBlob

log = logging.getLogger("pseudoword.storage")
T = TypeVar("T")


class CircuitBreaker:
    def __init__(self, failures: int, cooldown: float) -> None:
        self.failures, self.cooldown = failures, cooldown
        self._lock = threading.Lock()
        self._consecutive = 0
        self._open_until = 0.0

    def before(self, what: str) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._open_until:
                wait = self._open_until - now
                raise StorageUnavailable(
                    f"object storage is not answering; {what} refused for the next {wait:.0f} s",
                    {"retry_after": max(1, round(wait))})
            if self._consecutive >= self.failures:
                self._open_until = now + self.cooldown  # half-open: this call is the one trial

    def succeeded(self) -> None:
        with self._lock:
            self._consecutive, self._open_until = 0, 0.0

    def failed(self) -> None:
        with self._lock:
            self._consecutive += 1
            if self._consecutive == self.failures:
                log.warning("object storage failed %d times in a row; answering 503 for %.0f s",
                            self._consecutive, self.cooldown)
            if self._consecutive >= self.failures:
                self._open_until = time.monotonic() + self.cooldown

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self._open_until


class GuardedStore:
    """A ``BlobStore`` whose every call has a deadline and goes through the breaker."""

    def __init__(self, store: BlobStore, *, threads: int = 16, timeout: float = 10.0, failures: int = 3,
                 cooldown: float = 10.0) -> None:
        self.inner, self.timeout = store, timeout
        self.breaker = CircuitBreaker(failures, cooldown)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pseudoword-storage")

    # -- the guard --------------------------------------------------------------------------------

    def _submit(self, what: str, func: Callable[..., T], *args: Any) -> Future[T]:
        self.breaker.before(what)
        return self._pool.submit(func, *args)

    def _timed_out(self, what: str, future: Future[Any]) -> StorageUnavailable:
        future.cancel()  # still queued: never runs; running: finishes on its own thread
        self.breaker.failed()
        return StorageUnavailable(f"object storage did not answer {what} within {self.timeout:g} s",
                                  {"timeout_seconds": self.timeout})

    def call(self, what: str, func: Callable[..., T], *args: Any) -> T:
        future = self._submit(what, func, *args)
        try:
            result = future.result(timeout=self.timeout)
        except FutureTimeout:
            raise self._timed_out(what, future) from None
        except StorageUnavailable:
            self.breaker.failed()
            raise
        self.breaker.succeeded()
        return result

    async def acall(self, what: str, func: Callable[..., T], *args: Any) -> T:
        future = self._submit(what, func, *args)
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            raise self._timed_out(what, future) from None
        except StorageUnavailable:
            self.breaker.failed()
            raise
        self.breaker.succeeded()
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- BlobStore --------------------------------------------------------------------------------

    def put(self, sha256: str, data: bytes) -> None:
        self.call("upload", self.inner.put, sha256, data)

    def get(self, sha256: str) -> bytes:
        return self.call("download", self.inner.get, sha256)

    async def aget(self, sha256: str) -> bytes:
        return await self.acall("download", self.inner.get, sha256)

    def size(self, sha256: str) -> int | None:
        return self.call("stat", self.inner.size, sha256)

    def modified(self, sha256: str) -> float | None:
        return self.call("stat", self.inner.modified, sha256)

    def delete(self, sha256: str) -> None:
        self.call("delete", self.inner.delete, sha256)

    def list_blobs(self) -> Iterator[StoredBlob]:
        # gc's walk over the whole store is no API request: as long as the store is large.
        return self.inner.list_blobs()

    def remove_stale_temporaries(self, older_than: float) -> list[str]:
        return self.inner.remove_stale_temporaries(older_than)

    def presigned_url(self, sha256: str, expires: timedelta = timedelta(minutes=15)) -> str | None:
        return self.call("presign", self.inner.presigned_url, sha256, expires)

    async def apresigned_url(self, sha256: str) -> str | None:
        return await self.acall("presign", self.inner.presigned_url, sha256)

    def check(self) -> None:
        self.call("check", self.inner.check)

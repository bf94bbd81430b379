"""Per-client rate limits with Litestar's own middleware: one budget for the public API and the
web pages, one for publishes (each parsed, hashed and stored, so far dearer than a read).

A client is its address as uvicorn sees it (the load balancer's X-Forwarded-For when it is a
trusted proxy, FORWARDED_ALLOW_IPS). Over the limit it gets 429 ``too_many_requests`` with
``Retry-After`` (errors.py). The counts live in a Litestar store: memory for one process, Redis
(``redis://``) or a directory (``file://``) to share them between workers and replicas.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from litestar import Request
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.rate_limit import (
    DURATION_VALUES,
    CacheObject,
    RateLimitConfig,
    RateLimitMiddleware,
    get_remote_address,
)
from litestar.serialization import decode_json, encode_json
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore

from pseudoword.registry.service.settings import Settings

STORE_NAME = "rate_limit"
#: Paths never limited: probes and metrics (the platform's own), the schema.
EXEMPT = [r"^/healthz", r"^/readyz", r"^/metrics", r"^/schema"]
#: ``opt`` key a route handler sets to be counted against the publish budget instead.
OPT = "rate_limit"
_RATE = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour|day)\s*")


def parse_rate(text: str) -> tuple[Any, int] | None:
    """``"N/unit"`` as Litestar's (unit, N); None for ``off`` / ``0``."""
    if text.strip().lower() in ("off", "0", "none", ""):
        return None
    match = _RATE.fullmatch(text)
    if not match or int(match[1]) < 1:
        raise ValueError(f"rate limit {text!r}: expected N/second, N/minute, N/hour, N/day or off "
                         f"(units: {', '.join(DURATION_VALUES)})")
    return match[2], int(match[1])


def open_store(url: str) -> Store:
    parts = urlsplit(url)
    if url in ("", "memory"):
        return MemoryStore()
    if parts.scheme in ("redis", "rediss"):
        from litestar.stores.redis import RedisStore

        return RedisStore.with_client(url=url, namespace="pseudoword-rate-limit")
    if parts.scheme == "file":
        from litestar.stores.file import FileStore

        return FileStore(Path(unquote(parts.path)), create_directories=True)
    raise ValueError(f"PSEUDOWORD_RATE_LIMIT_STORE {url!r}: expected memory, redis://host:port/db or file:///dir")


class CountingRateLimitMiddleware(RateLimitMiddleware):
    """Litestar's limiter (same window, store, headers and 429), keeping each client's count as a
    number: Litestar's own stores every request's timestamp and re-encodes the list on each
    request, which costs in proportion to the limit (a budget of 10,000/s halved resolve
    throughput in bench_registry)."""

    async def retrieve_cached_history(self, key: str, store: Store) -> CacheObject:
        now = int(time.time())
        cached = await store.get(key)
        if cached:
            count, reset = decode_json(cached)
            if reset > now:
                return CacheObject(history=range(count), reset=reset)  # type: ignore[arg-type]
        return CacheObject(history=range(0), reset=now + DURATION_VALUES[self.unit])  # type: ignore[arg-type]

    async def set_cached_history(self, key: str, cache_object: CacheObject, store: Store) -> None:
        cache_object.history = range(len(cache_object.history) + 1)  # type: ignore[assignment]
        await store.set(key, encode_json([len(cache_object.history), cache_object.reset]),
                        expires_in=max(1, cache_object.reset - int(time.time())))


def _is_publish(request: Request[Any, Any, Any]) -> bool:
    return request.route_handler.opt.get(OPT) == "publish"


def _reader(request: Request[Any, Any, Any]) -> str:
    return f"read:{get_remote_address(request)}"


def _publisher(request: Request[Any, Any, Any]) -> str:
    return f"publish:{get_remote_address(request)}"


def middleware(settings: Settings) -> list[DefineMiddleware]:
    """The rate limit middleware the settings ask for (none when both limits are off)."""
    configs = []
    reads = parse_rate(settings.rate_limit)
    if reads is not None:
        configs.append(RateLimitConfig(rate_limit=reads, exclude=EXEMPT, identifier_for_request=_reader,
                                       check_throttle_handler=lambda request: not _is_publish(request),
                                       store=STORE_NAME, middleware_class=CountingRateLimitMiddleware))
    publishes = parse_rate(settings.publish_rate_limit)
    if publishes is not None:
        configs.append(RateLimitConfig(rate_limit=publishes, exclude=EXEMPT, identifier_for_request=_publisher,
                                       check_throttle_handler=_is_publish, store=STORE_NAME,
                                       middleware_class=CountingRateLimitMiddleware))
    return [config.middleware for config in configs]

"""Per-client rate limits with Litestar's own middleware: one budget for the public API and the
web pages, one for publishes (each parsed, hashed and stored, so far dearer than a read).

A client is its address as uvicorn sees it (the load balancer's X-Forwarded-For when it is a
trusted proxy, FORWARDED_ALLOW_IPS). Over the limit it gets 429 ``too_many_requests`` with
``Retry-After`` (errors.py). The counts live in a Litestar store: memory for one process, Redis
(``redis://``) or a directory (``file://``) to share them between workers and replicas.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from litestar import Request
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.rate_limit import DURATION_VALUES, RateLimitConfig, get_remote_address
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
                                       store=STORE_NAME))
    publishes = parse_rate(settings.publish_rate_limit)
    if publishes is not None:
        configs.append(RateLimitConfig(rate_limit=publishes, exclude=EXEMPT, identifier_for_request=_publisher,
                                       check_throttle_handler=_is_publish, store=STORE_NAME))
    return [config.middleware for config in configs]

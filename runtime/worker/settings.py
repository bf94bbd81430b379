"""The worker's settings, read once from the environment (``PSEUDOWORD_WORKER_*``).

API keys are secrets: they are compared in constant time, never logged, and their repr is
hidden. With no keys configured the worker accepts any key (a warning says so at start), which
suits a worker bound to loopback behind a gateway; set keys for anything else.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pseudoword.registry.core.errors import InvalidRequest


def _number(name: str, default: float, kind: type) -> Any:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a {kind.__name__}, got {raw!r}", {"setting": name}) from None
    if value < 0:
        raise InvalidRequest(f"{name} must not be negative, got {raw!r}", {"setting": name})
    return value


def _float(name: str, default: float) -> float:
    return float(_number(name, default, float))


def _int(name: str, default: int) -> int:
    return int(_number(name, default, int))


@dataclass(frozen=True)
class WorkerSettings:
    """Limits and places; every network input has a bound here."""

    data_dir: Path = Path("worker-data")
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    public_url: str | None = None  # base of imageURL; default: the URL the client used
    url_ttl: float = 3600.0  # seconds an outputType URL image is kept and served
    queue_size: int = 64  # images waiting per pipeline before "busy"
    max_batch: int = 8  # images in one denoising batch
    batch_wait: float = 0.02  # seconds the first job waits for others to join its batch
    task_timeout: float = 300.0  # deadline of a task, from its arrival
    max_body_bytes: int = 1024 * 1024  # a REST body or a WebSocket message
    max_tasks: int = 32  # tasks in one array
    encode_threads: int = 2  # requests resolved and encoded at once
    shutdown_grace: float = 30.0  # seconds queued work may finish at shutdown

    @classmethod
    def from_env(cls, **overrides: object) -> WorkerSettings:
        keys = [k.strip() for k in os.environ.get("PSEUDOWORD_WORKER_API_KEYS", "").split(",") if k.strip()]
        key_file = os.environ.get("PSEUDOWORD_WORKER_API_KEYS_FILE")
        if key_file:
            keys += [line.strip() for line in Path(key_file).read_text().splitlines() if line.strip()]
        values: dict[str, object] = {
            "data_dir": Path(os.environ.get("PSEUDOWORD_WORKER_DATA_DIR") or "worker-data"),
            "api_keys": tuple(keys),
            "public_url": os.environ.get("PSEUDOWORD_WORKER_PUBLIC_URL") or None,
            "url_ttl": _float("PSEUDOWORD_WORKER_URL_TTL", 3600.0),
            "queue_size": _int("PSEUDOWORD_WORKER_QUEUE_SIZE", 64),
            "max_batch": _int("PSEUDOWORD_WORKER_MAX_BATCH", 8),
            "batch_wait": _float("PSEUDOWORD_WORKER_BATCH_WAIT_MS", 20.0) / 1000,
            "task_timeout": _float("PSEUDOWORD_WORKER_TASK_TIMEOUT", 300.0),
            "max_body_bytes": _int("PSEUDOWORD_WORKER_MAX_BODY_BYTES", 1024 * 1024),
            "max_tasks": _int("PSEUDOWORD_WORKER_MAX_TASKS", 32),
            "encode_threads": _int("PSEUDOWORD_WORKER_ENCODE_THREADS", 2),
            "shutdown_grace": _float("PSEUDOWORD_WORKER_SHUTDOWN_GRACE", 30.0),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def key_ok(self, key: object) -> bool:
        """Whether ``key`` is one of the configured keys (any key when none are configured)."""
        if not self.api_keys:
            return True
        if not isinstance(key, str) or not key or len(key) > 512:
            return False
        given = key.encode()
        ok = False
        for known in self.api_keys:  # no early exit: the time does not say which key matched
            ok |= hmac.compare_digest(given, known.encode())
        return ok

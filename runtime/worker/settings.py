"""The worker's settings, read from the environment (``PSEUDOWORD_WORKER_*``) by the one settings
reader (``registry/core/env.py``) when the worker starts.

API keys are secrets: they are compared in constant time, never logged, and their repr is
hidden. With no keys configured the worker accepts any key (a warning says so at start), which
suits a worker bound to loopback behind a gateway; set keys for anything else.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path

from pseudoword.registry.core.env import env_float, env_int, env_text


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
        # Keys separated by commas or lines (a secret file holds one a line); PSEUDOWORD_WORKER_API_KEYS_FILE
        # stands for the variable, as every setting's _FILE form does (core/env.py).
        raw = env_text("PSEUDOWORD_WORKER_API_KEYS") or ""
        keys = [k.strip() for line in raw.splitlines() for k in line.split(",") if k.strip()]
        values: dict[str, object] = {
            "data_dir": Path(env_text("PSEUDOWORD_WORKER_DATA_DIR") or "worker-data"),
            "api_keys": tuple(keys),
            "public_url": env_text("PSEUDOWORD_WORKER_PUBLIC_URL"),
            "url_ttl": env_float("PSEUDOWORD_WORKER_URL_TTL", 3600.0),
            "queue_size": env_int("PSEUDOWORD_WORKER_QUEUE_SIZE", 64),
            "max_batch": env_int("PSEUDOWORD_WORKER_MAX_BATCH", 8, minimum=1),
            "batch_wait": env_float("PSEUDOWORD_WORKER_BATCH_WAIT_MS", 20.0) / 1000,
            "task_timeout": env_float("PSEUDOWORD_WORKER_TASK_TIMEOUT", 300.0),
            "max_body_bytes": env_int("PSEUDOWORD_WORKER_MAX_BODY_BYTES", 1024 * 1024),
            "max_tasks": env_int("PSEUDOWORD_WORKER_MAX_TASKS", 32, minimum=1),
            "encode_threads": env_int("PSEUDOWORD_WORKER_ENCODE_THREADS", 2, minimum=1),
            "shutdown_grace": env_float("PSEUDOWORD_WORKER_SHUTDOWN_GRACE", 30.0),
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

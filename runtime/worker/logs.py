"""Structured logs: one JSON object a line (``PSEUDOWORD_LOG_FORMAT=json``) or ``key=value``
text, each task's lines carrying its ``taskUUID``. API keys never reach a log line: the worker
logs whether a key was accepted, never the key."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

log = logging.getLogger("pseudoword.worker")
_FIELDS = ("taskUUID", "taskType", "model", "outcome", "code", "batch", "seconds", "images", "session")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        item: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
                                "level": record.levelname.lower(), "logger": record.name,
                                "message": record.getMessage()}
        for key in _FIELDS:
            if hasattr(record, key):
                item[key] = getattr(record, key)
        return json.dumps(item, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{key}={getattr(record, key)}" for key in _FIELDS if hasattr(record, key))
        return f"{record.levelname.lower()} {record.name}: {record.getMessage()}" + (f" {extra}" if extra else "")


def configure(level: str | None = None) -> None:
    """Send the worker's logs to stderr in the configured format (once per process)."""
    handler = logging.StreamHandler()
    json_format = os.environ.get("PSEUDOWORD_LOG_FORMAT", "").lower() == "json"
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    root = logging.getLogger("pseudoword")
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("PSEUDOWORD_LOG_LEVEL", "INFO"))
    root.propagate = False


def task_event(message: str, **fields: Any) -> None:
    log.info(message, extra={key: value for key, value in fields.items() if value is not None})

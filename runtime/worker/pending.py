"""``deliveryMethod: "async"``: the task is acknowledged at once (``status: "processing"``) and
runs on, whatever happens to the connection; the client polls ``getResponse`` with its
``taskUUID`` and gets ``processing``, the results (``status: "success"``) or the task's error.
Finished tasks are kept for ``url_ttl`` seconds; at most ``MAX_PENDING`` are held at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from pseudoword.runtime.worker.protocol import TaskError

MAX_PENDING = 1024


@dataclass
class _Entry:
    task_type: str
    job: asyncio.Task[list[dict[str, Any]]]
    finished: float | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    error: TaskError | None = None


class PendingResults:
    def __init__(self, keep_seconds: float) -> None:
        self.keep = keep_seconds
        self._entries: dict[str, _Entry] = {}

    def start(self, task_type: str, task_uuid: str, work: Coroutine[Any, Any, list[dict[str, Any]]]) -> dict[str, Any]:
        """Run ``work`` in the background; the acknowledgement item."""
        self.expire()
        if task_uuid in self._entries:
            work.close()
            raise TaskError("duplicateTaskUUID", f"taskUUID {task_uuid} is already running or answered",
                            parameter="taskUUID")
        if len(self._entries) >= MAX_PENDING:
            work.close()
            raise TaskError("workerBusy", f"{MAX_PENDING} asynchronous tasks are held; poll and retry later",
                            status=503)
        entry = _Entry(task_type, asyncio.ensure_future(work))
        entry.job.add_done_callback(lambda job: self._finish(entry, job))
        self._entries[task_uuid] = entry
        return {"taskType": task_type, "taskUUID": task_uuid, "status": "processing"}

    @staticmethod
    def _finish(entry: _Entry, job: asyncio.Task[list[dict[str, Any]]]) -> None:
        entry.finished = time.monotonic()
        if job.cancelled():
            entry.error = TaskError("taskCancelled", "the task was cancelled (the worker is stopping)", status=503)
        elif isinstance(job.exception(), TaskError):
            entry.error = job.exception()  # type: ignore[assignment]
        elif job.exception() is not None:
            entry.error = TaskError("internalError", "the worker failed on this task", status=500)
        else:
            entry.items = [{**item, "status": "success"} for item in job.result()]

    def poll(self, task_uuid: str) -> list[dict[str, Any]]:
        """``getResponse``: the task's items, or its processing state; TaskError for its error."""
        self.expire()
        entry = self._entries.get(task_uuid)
        if entry is None:
            raise TaskError("unknownTaskUUID", f"no asynchronous task {task_uuid} here (never sent with "
                            "deliveryMethod async, or answered longer ago than the results are kept)",
                            parameter="taskUUID", status=404)
        if entry.finished is None:
            return [{"taskType": entry.task_type, "taskUUID": task_uuid, "status": "processing"}]
        if entry.error is not None:
            raise TaskError(entry.error.code, entry.error.message, parameter=entry.error.parameter,
                            status=entry.error.status, task_type=entry.task_type, task_uuid=task_uuid)
        return entry.items

    def expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, e in self._entries.items() if e.finished is not None and now - e.finished > self.keep]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

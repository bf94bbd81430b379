"""The worker's core, transport-free: run a task array (REST) or a connection's messages
(WebSocket) and answer in Runware's shapes. ``app`` puts Litestar routes around it."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pseudoword.runtime.generation import denoise
from pseudoword.runtime.worker.batcher import Denoise, PipelineQueue
from pseudoword.runtime.worker.images import ImageStore
from pseudoword.runtime.worker.inference import plan_inference, run_plan
from pseudoword.runtime.worker.logs import task_event
from pseudoword.runtime.worker.metrics import WorkerMetrics
from pseudoword.runtime.worker.models import LoadedModel
from pseudoword.runtime.worker.pending import PendingResults
from pseudoword.runtime.worker.protocol import (
    Task,
    TaskError,
    check_task,
    envelope,
    parse_body,
    rest_status,
    shutting_down,
)
from pseudoword.runtime.worker.search import model_search
from pseudoword.runtime.worker.settings import WorkerSettings

log = logging.getLogger("pseudoword.worker")
Send = Callable[[dict[str, Any]], Awaitable[None]]
#: connectionSessionUUIDs a worker remembers (a reconnecting client may present its own).
MAX_SESSIONS = 10_000


class Worker:
    def __init__(self, models: Sequence[LoadedModel], settings: WorkerSettings, resolver: Any, *,
                 denoise_fn: Denoise = denoise) -> None:
        self.settings = settings
        self.resolver = resolver
        self.metrics = WorkerMetrics()
        self.models = {model.air: model for model in models}
        self.queues = {model.air: PipelineQueue(model.air, model.pipe, metrics=self.metrics,
                                                queue_size=settings.queue_size, max_batch=settings.max_batch,
                                                batch_wait=settings.batch_wait, denoise_fn=denoise_fn)
                       for model in models}
        self.executor = ThreadPoolExecutor(max(settings.encode_threads, 1), thread_name_prefix="pseudoword-encode")
        self.images = ImageStore(settings.data_dir / "images", settings.url_ttl)
        self.sessions: dict[str, float] = {}
        self.pending = PendingResults(settings.url_ttl)
        self.closing = False

    # -- tasks --------------------------------------------------------------------------------

    async def run_task(self, task: Task, base_url: str) -> list[dict[str, Any]]:
        """One task's data items; TaskError when it fails."""
        started = time.monotonic()
        try:
            if self.closing:
                raise shutting_down()
            if task.task_type == "imageInference":
                plan = plan_inference(self, task)
                if plan.asynchronous:  # acknowledged now, answered through getResponse
                    ack = self.pending.start(task.task_type, task.task_uuid, self.run_task_async(plan, base_url))
                    self._done(task, "accepted", started)
                    return [ack]
                items = await run_plan(self, plan, base_url)
            elif task.task_type == "getResponse":
                items = self.pending.poll(task.task_uuid)
                self._done(task, "ok", started)
                return items
            elif task.task_type == "modelSearch":
                items = [await model_search(self, task)]
            else:  # authentication and ping are answered by the transports
                raise TaskError("unsupportedTaskType", f"{task.task_type} is not valid here", parameter="taskType")
        except TaskError as exc:
            exc.for_task(task.task_type, task.task_uuid)
            self._done(task, "error", started, code=exc.code)
            raise
        except asyncio.CancelledError:
            self._done(task, "cancelled", started)
            raise
        except Exception as exc:  # noqa: BLE001 - one task's bug is its error, never the worker's
            log.exception("task failed", extra={"taskUUID": task.task_uuid, "taskType": task.task_type})
            self._done(task, "error", started, code="internalError")
            raise TaskError("internalError", f"the worker failed on this task ({type(exc).__name__})", status=500,
                            task_type=task.task_type, task_uuid=task.task_uuid) from None
        self._done(task, "ok", started, images=len(items) if task.task_type == "imageInference" else None)
        return items

    async def run_task_async(self, plan: Any, base_url: str) -> list[dict[str, Any]]:
        """An asynchronous task's work, logged and counted like any task's."""
        task, started = plan.task, time.monotonic()
        try:
            items = await run_plan(self, plan, base_url)
        except TaskError as exc:
            exc.for_task(task.task_type, task.task_uuid)
            self._done(task, "error", started, code=exc.code)
            raise
        except Exception:
            log.exception("task failed", extra={"taskUUID": task.task_uuid, "taskType": task.task_type})
            self._done(task, "error", started, code="internalError")
            raise
        self._done(task, "ok", started, images=len(items))
        return items

    def _done(self, task: Task, outcome: str, started: float, **fields: Any) -> None:
        self.metrics.tasks.labels(task.task_type, outcome).inc()
        task_event(f"{task.task_type} {outcome}", taskUUID=task.task_uuid, taskType=task.task_type,
                   model=task.data.get("model") if isinstance(task.data.get("model"), str) else None,
                   outcome=outcome, seconds=round(time.monotonic() - started, 4), **fields)

    def split(self, raw_tasks: list[Any]) -> tuple[list[Task], list[TaskError]]:
        """The tasks whose envelope is sound, and an error for each other one."""
        tasks: list[Task] = []
        errors: list[TaskError] = []
        seen: set[str] = set()
        for raw in raw_tasks:
            try:
                tasks.append(check_task(raw, seen))
            except TaskError as exc:
                errors.append(exc)
        return tasks, errors

    # -- REST ---------------------------------------------------------------------------------

    async def rest(self, body: bytes, authorization: str | None, base_url: str) -> tuple[int, dict[str, Any]]:
        """``POST /v1``: status and body for a task array."""
        try:
            raw_tasks = parse_body(body, max_bytes=self.settings.max_body_bytes, max_tasks=self.settings.max_tasks)
        except TaskError as exc:
            return exc.status, envelope([], [exc])
        tasks, errors = self.split(raw_tasks)
        key = _bearer(authorization)
        for task in tasks:
            if task.task_type == "authentication" and key is None:
                key = task.data.get("apiKey")
        auth_error = self._check_key(key)
        if auth_error is not None:
            return 401, envelope([], [auth_error])
        work = [t for t in tasks if t.task_type not in ("authentication", "ping")]
        data: list[dict[str, Any]] = [{"taskType": "ping", "pong": True} for t in tasks if t.task_type == "ping"]
        outcomes = await asyncio.gather(*(self.run_task(t, base_url) for t in work), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, TaskError):
                errors.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                data.extend(outcome)
        return rest_status(data, errors), envelope(data, errors)

    def _check_key(self, key: Any) -> TaskError | None:
        if not self.settings.api_keys:
            return None
        if key is None or key == "":
            return TaskError("missingApiKey", "an API key is required: Authorization: Bearer KEY, or an "
                             "authentication task with apiKey", parameter="apiKey", status=401,
                             task_type="authentication")
        if not self.settings.key_ok(key):
            return TaskError("invalidApiKey", "invalid API key", parameter="apiKey", status=401,
                             task_type="authentication")
        return None

    # -- WebSocket ----------------------------------------------------------------------------

    async def connection(self, receive: Callable[[], Awaitable[str | bytes | None]], send: Send,
                         base_url: str) -> None:
        """Serve one WebSocket until the client leaves; its unfinished tasks are cancelled then."""
        session: str | None = None
        running: set[asyncio.Task[None]] = set()
        lock = asyncio.Lock()

        async def reply(message: dict[str, Any]) -> None:
            async with lock:
                await send(message)

        async def run(task: Task) -> None:
            try:
                items = await self.run_task(task, base_url)
                await reply({"data": items})
            except TaskError as exc:
                await reply(envelope([], [exc]))

        try:
            while True:
                message = await receive()
                if message is None:
                    return
                try:
                    raw_tasks = parse_body(message, max_bytes=self.settings.max_body_bytes,
                                           max_tasks=self.settings.max_tasks)
                except TaskError as exc:
                    await reply(envelope([], [exc]))
                    continue
                tasks, errors = self.split(raw_tasks)
                if errors:
                    await reply(envelope([], errors))
                for task in tasks:
                    if task.task_type == "authentication":
                        problem = self._check_key(task.data.get("apiKey"))
                        if problem is not None:
                            await reply(envelope([], [problem]))
                            continue
                        session = self._session(task.data.get("connectionSessionUUID"))
                        task_event("authenticated", taskType="authentication", session=session)
                        await reply({"data": [{"taskType": "authentication", "connectionSessionUUID": session}]})
                    elif task.task_type == "ping":
                        await reply({"data": [{"taskType": "ping", "pong": True}]})
                    elif session is None:
                        await reply(envelope([], [TaskError(
                            "missingApiKey", "authenticate first: send an authentication task with apiKey",
                            parameter="apiKey", status=401, task_type=task.task_type, task_uuid=task.task_uuid)]))
                    else:
                        job = asyncio.create_task(run(task))
                        running.add(job)
                        job.add_done_callback(running.discard)
        finally:
            for job in list(running):  # the client left: its queued work goes with it
                job.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    def _session(self, asked: Any) -> str:
        """The client's connectionSessionUUID when it presents one we issued, else a new one."""
        if isinstance(asked, str) and asked in self.sessions:
            self.sessions[asked] = time.time()
            return asked
        session = str(uuid.uuid4())
        if len(self.sessions) >= MAX_SESSIONS:
            oldest = min(self.sessions, key=self.sessions.__getitem__)
            del self.sessions[oldest]
        self.sessions[session] = time.time()
        return session

    # -- lifecycle ----------------------------------------------------------------------------

    async def sweep_forever(self) -> None:
        interval = max(min(self.settings.url_ttl / 4, 60.0), 0.05)
        while True:
            await asyncio.sleep(interval)
            await asyncio.get_running_loop().run_in_executor(None, self.images.sweep)

    def close(self) -> None:
        """Graceful stop: refuse new tasks, let queued ones finish within the grace period, stop
        the threads."""
        self.closing = True
        for queue in self.queues.values():
            queue.close(self.settings.shutdown_grace)
        self.executor.shutdown(wait=True, cancel_futures=True)


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None

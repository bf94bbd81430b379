"""One bounded queue and one denoising thread per pipeline.

Jobs whose shape agrees (size, steps, scheduler, guidance, and conditioning of one shape) are
denoised in one batch, whatever their prompts and embeddings: ``generation.denoise`` gives each
job its own generator seeded with its seed, so an image does not depend on its batch-mates
beyond floating-point reassociation in batched kernels (the tolerance is stated and tested in
tests/integration/test_worker_batching.py). The queue holds at most ``queue_size`` images; a
full queue is answered "busy" at once. A job whose deadline passed or whose client left is
dropped before it runs; a batch already running finishes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pseudoword.runtime.generation import Job, denoise
from pseudoword.runtime.worker.metrics import WorkerMetrics
from pseudoword.runtime.worker.protocol import TaskError, busy, deadline_passed, shutting_down

log = logging.getLogger("pseudoword.worker")

Denoise = Callable[..., list[Any]]


@dataclass(frozen=True)
class Shape:
    """What jobs must share to go in one batch."""

    width: int
    height: int
    steps: int
    scheduler: str | None
    cfg_scale: float
    conditioning: tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(eq=False)
class Ticket:
    """One image on its way through the queue; ``future`` lives on the caller's event loop."""

    job: Job
    shape: Shape
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    deadline: float  # time.monotonic()
    task_uuid: str
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    batch_size: int = 0  # set when it ran
    seconds: float = 0.0  # its share of the batch's time

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        def apply() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        try:
            self.loop.call_soon_threadsafe(apply)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


class PipelineQueue:
    def __init__(self, name: str, pipe: Any, *, metrics: WorkerMetrics, queue_size: int, max_batch: int,
                 batch_wait: float, denoise_fn: Denoise = denoise) -> None:
        self.name, self.pipe = name, pipe
        self.metrics, self.queue_size, self.max_batch, self.batch_wait = metrics, queue_size, max_batch, batch_wait
        self._denoise = denoise_fn
        self._items: list[Ticket] = []
        self._cond = threading.Condition()
        self._closing = False
        self._stopped = False
        self.running = 0  # images in the batch now denoising
        self._thread = threading.Thread(target=self._loop, name=f"pseudoword-batch-{name}", daemon=True)
        self._thread.start()

    # -- callers (event loop) -----------------------------------------------------------------

    def has_room(self, count: int) -> bool:
        with self._cond:
            return not self._closing and len(self._items) + count <= self.queue_size

    def submit(self, tickets: Sequence[Ticket]) -> None:
        with self._cond:
            if self._closing:
                raise shutting_down()
            if len(self._items) + len(tickets) > self.queue_size:
                raise busy(self.name)
            self._items.extend(tickets)
            self.metrics.queue_depth.labels(self.name).set(len(self._items))
            self._cond.notify_all()

    def cancel(self, tickets: Sequence[Ticket]) -> None:
        """Drop tickets that have not started (their client left or their deadline passed)."""
        with self._cond:
            for ticket in tickets:
                ticket.cancelled = True
            self._items = [t for t in self._items if not t.cancelled]
            self.metrics.queue_depth.labels(self.name).set(len(self._items))
            self._cond.notify_all()

    def depth(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self, grace: float) -> None:
        """Refuse new work, let queued work finish for up to ``grace`` seconds, fail the rest
        and stop the thread."""
        deadline = time.monotonic() + grace
        with self._cond:
            self._closing = True
            while (self._items or self.running) and time.monotonic() < deadline:
                self._cond.wait(timeout=min(0.1, max(deadline - time.monotonic(), 0.0)))
            left, self._items = self._items, []
            self._stopped = True
            self.metrics.queue_depth.labels(self.name).set(0)
            self._cond.notify_all()
        for ticket in left:
            ticket.settle(error=shutting_down())
        self._thread.join(timeout=max(grace, 1.0) + 60)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the thread ---------------------------------------------------------------------------

    def _take_batch(self) -> list[Ticket] | None:
        with self._cond:
            while True:
                if self._stopped:
                    return None
                now = time.monotonic()
                expired = [t for t in self._items if t.deadline <= now]
                for ticket in expired:
                    ticket.cancelled = True
                    ticket.settle(error=_expired(ticket))
                if expired:
                    self._items = [t for t in self._items if not t.cancelled]
                if not self._items:
                    self._cond.wait(timeout=0.5)
                    continue
                first = self._items[0]
                mates = [t for t in self._items if t.shape == first.shape][: self.max_batch]
                wait = first.enqueued + self.batch_wait - now
                if len(mates) < self.max_batch and wait > 0 and not self._closing:
                    self._cond.wait(timeout=wait)
                    continue
                chosen = set(map(id, mates))
                self._items = [t for t in self._items if id(t) not in chosen]
                self.running = len(mates)
                self.metrics.queue_depth.labels(self.name).set(len(self._items))
                return mates

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            self._run(batch)
            del batch  # nothing of a finished batch stays referenced while the thread waits

    def _run(self, batch: list[Ticket]) -> None:
        started = time.monotonic()
        for ticket in batch:
            self.metrics.queue_seconds.labels(self.name).observe(started - ticket.enqueued)
        shape = batch[0].shape
        try:
            images = self._denoise(self.pipe, [t.job for t in batch], width=shape.width, height=shape.height,
                                   steps=shape.steps, cfg_scale=shape.cfg_scale, scheduler=shape.scheduler)
            error: BaseException | None = None
        except TaskError as exc:
            images, error = [], exc
        except Exception as exc:  # noqa: BLE001 - a failed batch fails its tasks, never the thread
            log.exception("denoising batch failed", extra={"model": self.name, "batch": len(batch)})
            from pseudoword.registry.core.errors import PseudowordError

            images, error = [], exc if isinstance(exc, PseudowordError) else TaskError(
                "internalError", f"the pipeline failed: {type(exc).__name__}", status=500)
        seconds = time.monotonic() - started
        self.metrics.pipeline_seconds.labels(self.name).observe(seconds)
        self.metrics.batch_size.labels(self.name).observe(len(batch))
        for index, ticket in enumerate(batch):
            ticket.batch_size, ticket.seconds = len(batch), seconds / len(batch)
            if error is not None:
                ticket.settle(error=error)
            else:
                ticket.settle(result=images[index])
        with self._cond:
            self.running = 0
            self._cond.notify_all()


def _expired(ticket: Ticket) -> TaskError:
    return deadline_passed(max(ticket.deadline - ticket.enqueued, 0.0))

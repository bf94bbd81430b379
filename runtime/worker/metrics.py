"""Prometheus metrics of one worker (its own registry, so several apps in one process, as in the
tests, do not collide): queue depth, batch sizes, time in queue and in the pipeline, tasks."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge("pseudoword_worker_queue_depth", "Images waiting per pipeline", ["model"],
                                 registry=self.registry)
        self.batch_size = Histogram("pseudoword_worker_batch_size", "Images per denoising batch", ["model"],
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32), registry=self.registry)
        self.queue_seconds = Histogram("pseudoword_worker_queue_seconds", "Time an image waited for its batch",
                                       ["model"], buckets=_SECONDS, registry=self.registry)
        self.pipeline_seconds = Histogram("pseudoword_worker_pipeline_seconds", "Time of one denoising batch",
                                          ["model"], buckets=_SECONDS, registry=self.registry)
        self.tasks = Counter("pseudoword_worker_tasks_total", "Tasks answered", ["task_type", "outcome"],
                             registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)

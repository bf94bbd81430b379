"""Runware's task protocol: task arrays in, ``{"data": [...]}`` / ``{"errors": [...]}`` out.

Errors have Runware's shape, ``{"code", "message", "parameter", "taskType", "taskUUID"}``, one per
failed task; over REST the status is Runware's (400 bad input, 401 no valid key, 413 too large,
503 busy or a dependency down, 504 deadline passed, 500 our fault) and a body where some tasks
succeeded answers 200 with both ``data`` and ``errors``. The runtime's typed errors
(``pseudoword.registry.core.errors``) are translated here, in one table, naming the parameter.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from pseudoword.registry.core import errors as core

#: Task types this worker answers.
TASK_TYPES = ("authentication", "ping", "imageInference", "modelSearch", "getResponse")
#: Runware task types it knows of but does not run (refused as unsupported, not as unknown).
RUNWARE_TASK_TYPES = ("imageUpscale", "imageBackgroundRemoval", "imageCaption", "imageUpload", "promptEnhance",
                      "photoMaker", "videoInference", "audioInference", "textInference", "modelUpload",
                      "vectorize", "videoCaption", "videoUpscale", "videoBackgroundRemoval",
                      "accountManagement", "imageMasking", "imageControlNetPreProcess", "3dInference",
                      "training", "mediaStorage", "getTaskDetails")


class TaskError(Exception):
    """A failed task (or a failed body, when ``task_type`` is None), in Runware's shape."""

    def __init__(self, code: str, message: str, *, parameter: str | None = None, status: int = 400,
                 task_type: str | None = None, task_uuid: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.parameter, self.status = code, message, parameter, status
        self.task_type, self.task_uuid = task_type, task_uuid

    def for_task(self, task_type: str | None, task_uuid: str | None) -> TaskError:
        self.task_type = self.task_type or task_type
        self.task_uuid = self.task_uuid or task_uuid
        return self

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.parameter:
            item["parameter"] = self.parameter
        item["taskType"] = self.task_type
        item["taskUUID"] = self.task_uuid
        return item


def busy(model: str) -> TaskError:
    return TaskError("workerBusy", f"the queue for {model} is full; retry later", status=503, parameter="model")


def deadline_passed(seconds: float) -> TaskError:
    return TaskError("timeoutProvider", f"the task did not finish within its deadline of {seconds:g} s",
                     status=504)


def shutting_down() -> TaskError:
    return TaskError("workerShuttingDown", "the worker is shutting down; send the task to another worker",
                     status=503)


@dataclass(frozen=True)
class Task:
    """One element of a task array, checked for its envelope (``taskType``, ``taskUUID``)."""

    task_type: str
    task_uuid: str
    data: dict[str, Any]


def parse_body(raw: bytes | str, *, max_bytes: int, max_tasks: int) -> list[Any]:
    """The JSON task array in ``raw``; TaskError (no task) for a body that is not one."""
    if len(raw) > max_bytes:
        raise TaskError("payloadTooLarge", f"the request is {len(raw)} bytes; at most {max_bytes}", status=413)
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TaskError("invalidJSON", f"the request is not valid JSON: {exc}") from None
    if isinstance(document, dict):
        document = [document]  # one task sent bare: read it as an array of one
    if not isinstance(document, list):
        raise TaskError("invalidPayload", f"the request must be a JSON array of tasks, got {type(document).__name__}")
    if not document:
        raise TaskError("invalidPayload", "the task array is empty")
    if len(document) > max_tasks:
        raise TaskError("tooManyTasks", f"{len(document)} tasks in one request; at most {max_tasks}")
    return document


def check_task(raw: Any, seen: set[str]) -> Task:
    """The envelope of one task; TaskError names the field."""
    if not isinstance(raw, dict):
        raise TaskError("invalidTask", f"each task must be a JSON object, got {type(raw).__name__}")
    task_type = raw.get("taskType")
    uuid_raw = raw.get("taskUUID")
    task_uuid = uuid_raw if isinstance(uuid_raw, str) and len(uuid_raw) <= 64 else None
    if not isinstance(task_type, str) or not task_type:
        raise TaskError("missingTaskType", "the task has no taskType", parameter="taskType", task_uuid=task_uuid)
    if len(task_type) > 64:
        raise TaskError("unsupportedTaskType", "taskType is not a known task type", parameter="taskType",
                        task_uuid=task_uuid)
    if task_type not in TASK_TYPES:
        known = "a Runware task type this worker does not run" if task_type in RUNWARE_TASK_TYPES else "unknown"
        raise TaskError("unsupportedTaskType", f"taskType {task_type!r} is {known}; this worker runs "
                        f"{', '.join(TASK_TYPES)}", parameter="taskType", task_type=task_type, task_uuid=task_uuid)
    if task_type in ("authentication", "ping"):
        return Task(task_type, task_uuid or "", raw)
    if uuid_raw is None:
        raise TaskError("missingTaskUUID", "the task has no taskUUID (a UUID v4 the client chooses)",
                        parameter="taskUUID", task_type=task_type)
    try:
        canonical = str(uuid.UUID(str(uuid_raw))) if isinstance(uuid_raw, str) and len(uuid_raw) <= 64 else None
    except ValueError:
        canonical = None
    if canonical is None:
        raise TaskError("invalidTaskUUID", f"taskUUID must be a UUID, got {str(uuid_raw)[:64]!r}",
                        parameter="taskUUID", task_type=task_type)
    if canonical in seen:
        raise TaskError("duplicateTaskUUID", f"taskUUID {canonical} appears twice", parameter="taskUUID",
                        task_type=task_type, task_uuid=uuid_raw)
    seen.add(canonical)
    return Task(task_type, uuid_raw, raw)


def _camel(field: str) -> str:
    return field[:1].upper() + field[1:]


def _embedding_parameter(detail: dict[str, Any], embeddings: Any, key: str = "model") -> str:
    """``embeddings[i].model`` for the entry an error's detail names."""
    if isinstance(detail.get("index"), int):
        return f"embeddings[{detail['index']}].{key}"
    label = detail.get("embedding") or detail.get("ref")
    if isinstance(embeddings, list):
        for index, entry in enumerate(embeddings):
            if isinstance(entry, dict) and label is not None and label in (entry.get("model"), entry.get("path")):
                return f"embeddings[{index}].{key}"
    return "embeddings"


_SNAKE = re.compile(r"_([a-z])")


def from_runtime(exc: core.PseudowordError, task: dict[str, Any]) -> TaskError:
    """The Runware-shaped error for one of the runtime's typed errors (one table)."""
    detail, embeddings, message = exc.detail, task.get("embeddings"), exc.message
    if isinstance(exc, core.InvalidWeight):
        return TaskError("invalidEmbeddingWeight", message, parameter=_embedding_parameter(detail, embeddings, "weight"))
    if isinstance(exc, core.ArchitectureMismatch):
        return TaskError("embeddingArchitectureMismatch", message, parameter=_embedding_parameter(detail, embeddings))
    if isinstance(exc, core.RemoteNotFound | core.LocalNotFound):
        return TaskError("unknownEmbedding", message, parameter=_embedding_parameter(detail, embeddings))
    if isinstance(exc, core.InvalidReference):
        return TaskError("invalidEmbedding", message, parameter=_embedding_parameter(detail, embeddings))
    if isinstance(exc, core.RegistryUnreachable):
        return TaskError("registryUnavailable", message, parameter=_embedding_parameter(detail, embeddings),
                         status=503)
    if isinstance(exc, core.IntegrityError):
        return TaskError("embeddingIntegrity", message, parameter=_embedding_parameter(detail, embeddings), status=502)
    if isinstance(exc, core.InvalidFile):
        return TaskError("invalidEmbeddingFile", message, parameter=_embedding_parameter(detail, embeddings),
                         status=422)
    if isinstance(exc, core.InvalidRequest):
        if detail.get("unsupported"):
            first = detail["unsupported"][0]
            return TaskError("unsupportedParameter", message, parameter=first)
        if detail.get("unknown"):
            return TaskError("unknownParameter", message, parameter=detail["unknown"][0])
        field = detail.get("field")
        if isinstance(field, str):
            return TaskError(f"invalid{_camel(field)}", message, parameter=field)
        # Errors raised deeper (the scheduler table...) name their key in their detail.
        named = [key for key in detail if key in task and key != "embeddings"]
        if named:
            return TaskError(f"invalid{_camel(named[0])}", message, parameter=named[0])
        if "index" in detail or "embedding" in message or "embeddings" in message:
            return TaskError("invalidEmbeddings", message, parameter=_embedding_parameter(detail, embeddings))
        return TaskError("invalidRequest", message)
    code = _SNAKE.sub(lambda m: m.group(1).upper(), exc.code)
    return TaskError(code, message, status=exc.status if exc.status >= 400 else 500)


def rest_status(data: list[Any], errors: list[TaskError]) -> int:
    """HTTP status of a REST answer: 200 when any task gave data, else the first error's."""
    if data or not errors:
        return 200
    return errors[0].status


def envelope(data: list[dict[str, Any]], errors: list[TaskError]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if data:
        body["data"] = data
    if errors:
        body["errors"] = [e.to_dict() for e in errors]
    if not body:
        body["data"] = []
    return body

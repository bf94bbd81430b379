"""``imageInference`` on the worker: the same steps as ``pseudoword generate``
(``parse_request``, ``encode_generation``, ``denoise``, ``infotext``, ``image_bytes``), with the
denoise step shared with other tasks through the pipeline's queue."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pseudoword.registry.core.errors import PseudowordError
from pseudoword.runtime.generation import (
    GenerationRequest,
    Job,
    a1111_clip_skip,
    as_run,
    encode_generation,
    image_bytes,
    image_size,
    infotext,
    parse_request,
)
from pseudoword.runtime.schedulers import display_name
from pseudoword.runtime.worker.batcher import Shape, Ticket
from pseudoword.runtime.worker.images import EXTENSIONS, MEDIA_TYPES
from pseudoword.runtime.worker.models import LoadedModel, canonical_air
from pseudoword.runtime.worker.protocol import Task, TaskError, busy, deadline_passed, from_runtime

if TYPE_CHECKING:
    from pseudoword.runtime.worker.service import Worker

#: Runware's default outputFormat.
DEFAULT_FORMAT = "JPG"
#: Runware asks for sides in multiples of 64.
SIDE_STEP = 64


@dataclass(frozen=True)
class Plan:
    """A checked imageInference task: everything but the work."""

    task: Task
    model: LoadedModel
    req: GenerationRequest
    width: int
    height: int
    arrived: float

    @property
    def asynchronous(self) -> bool:
        return self.req.delivery_method == "async"


def plan_inference(worker: Worker, task: Task) -> Plan:
    """Check the task without doing any work; TaskError names what is refused."""
    arrived = time.monotonic()
    data = task.data
    if data.get("model") in (None, ""):
        raise TaskError("missingModel", "model is required: the AIR of a checkpoint this worker serves "
                        f"({', '.join(worker.models)})", parameter="model")
    air = canonical_air(data.get("model"))
    model = worker.models.get(air or "")
    if model is None:
        raise TaskError("unknownModel", f"model {str(data.get('model'))[:200]!r} is not served here; this worker "
                        f"serves {', '.join(worker.models)}", parameter="model")
    embeddings = data.get("embeddings")
    if isinstance(embeddings, list):
        for index, entry in enumerate(embeddings):
            if isinstance(entry, dict) and "path" in entry:
                raise TaskError("unsupportedParameter", f"embeddings[{index}].path: a worker does not read local "
                                "files for its clients; name the embedding by its registry reference (model)",
                                parameter=f"embeddings[{index}].path")
    try:
        req = parse_request(model.spec.with_defaults(data))
    except PseudowordError as exc:
        raise from_runtime(exc, data) from None
    width, height = image_size(model.pipe, req)
    for name, side in (("width", width), ("height", height)):
        if side % SIDE_STEP:
            raise TaskError(f"invalid{name.capitalize()}", f"{name} {side} must be a multiple of {SIDE_STEP}",
                            parameter=name)
    if req.number_results > worker.settings.queue_size:
        raise TaskError("invalidNumberResults", f"numberResults {req.number_results} is more than this worker queues "
                        f"at once ({worker.settings.queue_size})", parameter="numberResults")
    if not worker.queues[model.air].has_room(req.number_results):
        raise busy(model.air)
    return Plan(task, model, req, width, height, arrived)


async def image_inference(worker: Worker, task: Task, base_url: str) -> list[dict[str, Any]]:
    """The task's result items (one per image); TaskError for anything refused."""
    return await run_plan(worker, plan_inference(worker, task), base_url)


async def run_plan(worker: Worker, plan: Plan, base_url: str) -> list[dict[str, Any]]:
    """Encode, queue for a batch, write the files: the result items."""
    task, model, req, width, height, arrived = plan.task, plan.model, plan.req, plan.width, plan.height, plan.arrived
    data = task.data
    queue = worker.queues[model.air]
    deadline = arrived + worker.settings.task_timeout
    loop = asyncio.get_running_loop()

    try:
        encoded = await asyncio.wait_for(
            loop.run_in_executor(worker.executor, lambda: encode_generation(model.pipe, req, resolver=worker.resolver)),
            timeout=max(deadline - time.monotonic(), 0.001))
    except TimeoutError:
        raise deadline_passed(worker.settings.task_timeout) from None
    except PseudowordError as exc:
        raise from_runtime(exc, data) from None
    encode_seconds = time.monotonic() - arrived

    shape = Shape(width, height, req.steps, req.scheduler, req.cfg_scale,
                  tuple((key, tuple(value.shape)) for key, value in sorted(encoded.kwargs.items())))
    tickets = [Ticket(Job(encoded.kwargs, seed), shape, loop.create_future(), loop, deadline, task.task_uuid)
               for seed in req.seeds]
    queue.submit(tickets)
    try:
        images = await asyncio.wait_for(asyncio.gather(*(t.future for t in tickets)),
                                        timeout=max(deadline - time.monotonic(), 0.001))
    except TimeoutError:
        queue.cancel(tickets)
        raise deadline_passed(worker.settings.task_timeout) from None
    except BaseException:  # the client left (cancelled) or the batch failed: drop what has not run
        queue.cancel(tickets)
        raise

    fmt = req.output_format or DEFAULT_FORMAT
    sampler = display_name(req.scheduler, model.pipe.scheduler)
    clip_skip = a1111_clip_skip(model.pipe, req.clip_skip)

    image_uuids = [str(uuid.uuid4()) for _ in req.seeds]

    def files() -> list[bytes]:
        """Encode the files (with A1111's infotext) and keep the URL ones, off the event loop."""
        out = []
        for image, seed, image_uuid in zip(images, req.seeds, image_uuids, strict=True):
            parameters = infotext(as_run(req, width, height, seed, sampler), encoded, model.air, clip_skip)
            blob = image_bytes(image, fmt, parameters=parameters, quality=req.output_quality)
            if "URL" in req.output_type:
                worker.images.put(image_uuid, fmt, blob)
            out.append(blob)
        return out

    blobs = await loop.run_in_executor(worker.executor, files)
    results = []
    for ticket, blob, seed, image_uuid in zip(tickets, blobs, req.seeds, image_uuids, strict=True):
        item: dict[str, Any] = {"taskType": "imageInference", "taskUUID": task.task_uuid, "imageUUID": image_uuid,
                                "seed": seed}
        for output in req.output_type:
            if output == "URL":
                item["imageURL"] = f"{base_url.rstrip('/')}/images/{image_uuid}.{EXTENSIONS[fmt]}"
            elif output == "base64Data":
                item["imageBase64Data"] = base64.b64encode(blob).decode("ascii")
            else:
                item["imageDataURI"] = f"data:{MEDIA_TYPES[EXTENSIONS[fmt]]};base64,{base64.b64encode(blob).decode('ascii')}"
        if req.include_cost:
            # Not money: the seconds this image took (its encode share plus its share of the batch).
            item["cost"] = round(encode_seconds / len(tickets) + ticket.seconds, 4)
        results.append(item)
    return results


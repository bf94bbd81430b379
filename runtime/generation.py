"""``generate``: a text-to-image request (Runware's ``imageInference`` task) on a local pipeline.

A request is the seeds' text-to-image shape, which is Runware's: ``positivePrompt`` (required),
``negativePrompt``, ``width``, ``height``, ``steps``, ``CFGScale``, ``seed``, ``scheduler``,
``clipSkip``, ``embeddings``, ``promptWeighting``, inside the task envelope Runware clients send
(``taskType``, ``taskUUID``, ``model``, ``numberResults``, ``outputType``, ``outputFormat``,
``outputQuality``, ``deliveryMethod``, ``includeCost``). Runware features this runtime does not
have (image-to-image, LoRA, ControlNet...) are refused by name, an unknown key as unknown.

- ``clipSkip`` has Runware's meaning: layers skipped beyond the model's default, 0 to 2 (SDXL
  already reads the penultimate layer, so 2 there reads the fourth from last). That is
  diffusers' own ``clip_skip`` count, on SD 1.x and SDXL alike; A1111's "Clip skip" counts the
  layer read from the end, so the infotext says ``clipSkip + 1`` (``+ 2`` on SDXL).
- ``promptWeighting``: ``sdEmbeds`` (the default here) reads A1111's emphasis syntax and
  ComfyUI's ``embedding:NAME``; ``none`` (ours) reads prompts literally; ``compel`` is refused.
- ``numberResults`` images are made in one batch with seeds ``seed``, ``seed + 1``, ...

The steps are separate so that a worker can batch: ``parse_request`` (validation, no model
needed), ``encode_generation`` (the conditioning), ``denoise`` (several jobs of the same shape
in one denoising batch, each with its own seeded generator), ``infotext`` and ``image_bytes``
(the file, with A1111's ``parameters`` text). The same request and seed give the same bytes: the
noise comes from seeded CPU generators, each batch gets its own scheduler (seeded where it has a
noise source of its own), and PNG/JPEG/WEBP are written without timestamps.
"""

from __future__ import annotations

import copy
import io
import json
import math
import secrets
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pseudoword.registry.core.errors import InvalidRequest, LocalNotFound, UnsupportedPipeline
from pseudoword.runtime.conditioning import MAX_PROMPT_CHARS, Encoded, encode_request
from pseudoword.runtime.embedding_entries import AppliedEmbedding, ResolverLike
from pseudoword.runtime.schedulers import DEFAULT, canonical_name, check_available, display_name, make_scheduler
from pseudoword.runtime.text_stack import text_stack

MAX_SIDE = 2048
MAX_STEPS = 150
MAX_CFG = 50.0
MAX_SEED = 2**63 - 1  # Runware's seeds are 64-bit
MAX_RESULTS = 20
MAX_CLIP_SKIP = 2
DEFAULT_STEPS = 20
DEFAULT_CFG = 7.0
DEFAULT_QUALITY = 95
TASK_TYPE = "imageInference"
OUTPUT_TYPES = ("URL", "base64Data", "dataURI")
OUTPUT_FORMATS = ("PNG", "JPG", "WEBP")
DELIVERY_METHODS = ("sync", "async")
PROMPT_WEIGHTINGS = {"sdembeds": "sdEmbeds", "none": "none"}

_ENVELOPE = {"taskType", "taskUUID", "model", "numberResults", "outputType", "outputFormat", "outputQuality",
             "deliveryMethod", "includeCost"}
_FIELDS = {"positivePrompt", "negativePrompt", "width", "height", "steps", "CFGScale", "seed", "scheduler",
           "clipSkip", "embeddings", "promptWeighting"}
#: Runware imageInference features we do not have: refused by name unless empty/off.
UNSUPPORTED = {
    "seedImage": "image-to-image", "maskImage": "inpainting", "strength": "image-to-image",
    "maskMargin": "inpainting", "outpaint": "outpainting", "lora": "LoRA", "lycoris": "LyCORIS",
    "controlNet": "ControlNet", "ipAdapters": "IP-Adapters", "refiner": "refiner models", "vae": "VAE override",
    "instantID": "InstantID", "acePlusPlus": "ACE++", "puLID": "PuLID", "photoMaker": "PhotoMaker",
    "referenceImages": "reference images", "inputs": "image inputs", "upscaleFactor": "upscaling",
    "acceleration": "acceleration presets", "acceleratorOptions": "acceleration presets",
    "advancedFeatures": "advanced features", "providerSettings": "provider settings",
    "ultralytics": "face refinement", "safety": "content checks", "checkNSFW": "content checks",
    "checkNsfw": "content checks", "settings": "provider settings", "resolution": "resolution presets",
    "uploadEndpoint": "uploads", "webhookURL": "webhooks", "ttl": "hosted URLs", "useCache": "result caching",
    "extraArgs": "extra arguments",
}


@dataclass(frozen=True)
class GenerationRequest:
    """A validated request; ``seed`` is always set (drawn when the request had none or -1)."""

    prompt: str
    negative_prompt: str
    width: int | None
    height: int | None
    steps: int
    cfg_scale: float
    seed: int
    scheduler: str | None  # the table's name, or None for the pipeline's own
    clip_skip: int  # Runware's count: layers skipped beyond the model's default (0-2)
    embeddings: list[dict[str, Any]]
    literal: bool = False  # promptWeighting "none": no prompt syntax
    task_uuid: str | None = None
    model: str | None = None
    number_results: int = 1
    output_type: tuple[str, ...] = ("URL",)
    output_format: str | None = None  # None: as the caller likes (PNG for generate)
    output_quality: int = DEFAULT_QUALITY
    delivery_method: str = "sync"
    include_cost: bool = False

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.number_results)]


@dataclass(frozen=True)
class GenerationResult:
    """One image: the file's bytes and what made it."""

    image: Any  # PIL.Image.Image
    data: bytes  # the file, in ``format``
    format: str  # PNG, JPG or WEBP
    seed: int
    request: dict[str, Any]  # the request as run: defaults filled in, this image's seed
    applied: tuple[AppliedEmbedding, ...]
    parameters: str  # the A1111 infotext written into the file


@dataclass(frozen=True)
class Job:
    """One image to denoise: its conditioning (``Encoded.kwargs``, batch of 1) and its seed."""

    kwargs: dict[str, torch.Tensor]
    seed: int


def _int(data: dict[str, Any], key: str, low: int, high: int, default: int | None) -> int | None:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InvalidRequest(f"{key} must be an integer, got {value!r}", {"field": key})
    if not low <= value <= high:
        raise InvalidRequest(f"{key} {value} is out of range ({low} to {high})", {"field": key, "value": value})
    return value


def _choice(data: dict[str, Any], key: str, allowed: Sequence[str], default: str | None) -> str | None:
    value = data.get(key)
    if value is None:
        return default
    for option in allowed:
        if isinstance(value, str) and value.lower() == option.lower():
            return option
    raise InvalidRequest(f"{key} must be one of {', '.join(allowed)}, got {value!r}", {"field": key})


def _is_empty(value: Any) -> bool:
    return value is None or value is False or value == "" or value == [] or value == {} or value == "none"


def parse_request(data: Any) -> GenerationRequest:
    """Validate a request document (a bare request or a Runware ``imageInference`` task);
    InvalidRequest names the first bad field."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"a request is a JSON object, got {type(data).__name__}")
    task_type = data.get("taskType", TASK_TYPE)
    if task_type != TASK_TYPE:
        raise InvalidRequest(f"taskType {task_type!r} is not {TASK_TYPE!r}: generate runs text-to-image tasks",
                             {"field": "taskType"})
    unsupported = sorted(key for key in data if key in UNSUPPORTED and not _is_empty(data[key]))
    if unsupported:
        what = ", ".join(f"{key} ({UNSUPPORTED[key]})" for key in unsupported)
        raise InvalidRequest(f"not supported by pseudoword, which runs text-to-image with embeddings: {what}",
                             {"unsupported": unsupported})
    unknown = sorted(set(data) - _FIELDS - _ENVELOPE - set(UNSUPPORTED))
    if unknown:
        raise InvalidRequest(f"unknown request keys {unknown}; expected {sorted(_FIELDS)} and Runware's task "
                             f"keys {sorted(_ENVELOPE)}", {"unknown": unknown})
    prompt = data.get("positivePrompt")
    if not isinstance(prompt, str):
        raise InvalidRequest("positivePrompt is required and must be a string", {"field": "positivePrompt"})
    negative = data.get("negativePrompt") or ""
    if not isinstance(negative, str):
        raise InvalidRequest("negativePrompt must be a string", {"field": "negativePrompt"})
    for key, text in (("positivePrompt", prompt), ("negativePrompt", negative)):
        if len(text) > MAX_PROMPT_CHARS:
            raise InvalidRequest(f"{key} is {len(text)} characters; at most {MAX_PROMPT_CHARS}", {"field": key})
    width = _int(data, "width", 64, MAX_SIDE, None)
    height = _int(data, "height", 64, MAX_SIDE, None)
    for key, side in (("width", width), ("height", height)):
        if side is not None and side % 8:
            raise InvalidRequest(f"{key} {side} must be a multiple of 8", {"field": key, "value": side})
    steps = _int(data, "steps", 1, MAX_STEPS, DEFAULT_STEPS) or DEFAULT_STEPS
    cfg = data.get("CFGScale", DEFAULT_CFG)
    if cfg is None:
        cfg = DEFAULT_CFG
    if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not math.isfinite(cfg) or not 0 <= cfg <= MAX_CFG:
        raise InvalidRequest(f"CFGScale must be a number from 0 to {MAX_CFG:g}, got {cfg!r}", {"field": "CFGScale"})
    number_results = _int(data, "numberResults", 1, MAX_RESULTS, 1) or 1
    seed = _int(data, "seed", -1, MAX_SEED, -1)
    if seed is None or seed == -1:
        seed = secrets.randbelow(2**32)
    if seed + number_results - 1 > MAX_SEED:
        raise InvalidRequest(f"seed {seed} + numberResults {number_results} passes the largest seed {MAX_SEED}",
                             {"field": "seed"})
    scheduler = data.get("scheduler")
    if scheduler is not None:
        if not isinstance(scheduler, str):
            raise InvalidRequest(f"scheduler must be a name such as 'DPM++ 2M Karras', got {scheduler!r}",
                                 {"field": "scheduler"})
        scheduler = canonical_name(scheduler)
        check_available(scheduler)
        if scheduler == DEFAULT:
            scheduler = None
    clip_skip = _int(data, "clipSkip", 0, MAX_CLIP_SKIP, 0) or 0
    embeddings = data.get("embeddings") or []
    if not isinstance(embeddings, list):
        raise InvalidRequest("embeddings must be a list of {model|path, weight} objects", {"field": "embeddings"})
    weighting = data.get("promptWeighting")
    if isinstance(weighting, str) and weighting.lower() == "compel":
        raise InvalidRequest("promptWeighting 'compel' is not supported: prompts are read with A1111's syntax "
                             "(sdEmbeds: (word:1.3), [word], BREAK, embedding:NAME) or literally (none)",
                             {"field": "promptWeighting"})
    weighting = _choice(data, "promptWeighting", list(PROMPT_WEIGHTINGS.values()), "sdEmbeds")
    return GenerationRequest(
        prompt, negative, width, height, steps, float(cfg), seed, scheduler, clip_skip, embeddings,
        literal=weighting == "none", **_envelope(data), number_results=number_results,
    )


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    """The Runware task keys other than numberResults, validated."""
    task_uuid = data.get("taskUUID")
    if task_uuid is not None:
        try:
            task_uuid = str(uuid.UUID(str(task_uuid)))
        except ValueError:
            raise InvalidRequest(f"taskUUID must be a UUID, got {task_uuid!r}", {"field": "taskUUID"}) from None
    model = data.get("model")
    if model is not None and (isinstance(model, bool) or not isinstance(model, (str, int)) or len(str(model)) > 256):
        raise InvalidRequest(f"model must be a model identifier (AIR), got {model!r}", {"field": "model"})
    output_type = data.get("outputType") or "URL"
    types = output_type if isinstance(output_type, list) else [output_type]
    types = [_choice({"outputType": t}, "outputType", OUTPUT_TYPES, None) for t in types]
    include_cost = data.get("includeCost", False)
    if not isinstance(include_cost, bool):
        raise InvalidRequest(f"includeCost must be true or false, got {include_cost!r}", {"field": "includeCost"})
    return {
        "task_uuid": task_uuid,
        "model": str(model) if model is not None else None,
        "output_type": tuple(t for t in types if t),
        "output_format": _choice(data, "outputFormat", OUTPUT_FORMATS, None),
        "output_quality": _int(data, "outputQuality", 20, 99, DEFAULT_QUALITY) or DEFAULT_QUALITY,
        "delivery_method": _choice(data, "deliveryMethod", DELIVERY_METHODS, "sync") or "sync",
        "include_cost": include_cost,
    }


def load_pipeline(directory: Path | str, *, device: str | None = None) -> Any:
    """A text-to-image pipeline from a local diffusers directory (safetensors weights only, no
    network): float16 on CUDA, float32 on the CPU."""
    from diffusers import AutoPipelineForText2Image

    directory = Path(directory)
    if not (directory / "model_index.json").is_file():
        raise LocalNotFound(f"{directory} is not a diffusers pipeline directory (no model_index.json)",
                            {"path": str(directory)})
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch_dtype -> dtype rename in newer diffusers
            pipe = AutoPipelineForText2Image.from_pretrained(str(directory), torch_dtype=dtype, use_safetensors=True,
                                                             local_files_only=True)
    except (ValueError, OSError) as exc:
        raise UnsupportedPipeline(f"cannot load the pipeline in {directory}: {_one_line(exc)}",
                                  {"path": str(directory)}) from None
    return pipe.to(device)


def encode_generation(pipe: Any, req: GenerationRequest, *, resolver: ResolverLike | None = None) -> Encoded:
    """The request's conditioning (clipSkip in Runware's count is diffusers' ``clip_skip``)."""
    return encode_request(pipe, req.prompt, req.negative_prompt, req.embeddings, resolver=resolver,
                          clip_skip=req.clip_skip or None, literal=req.literal)


def image_size(pipe: Any, req: GenerationRequest) -> tuple[int, int]:
    """``(width, height)``: the request's, else the pipeline's native size."""
    unet = getattr(pipe, "unet", None)
    factor = getattr(pipe, "vae_scale_factor", 8)
    default = int(unet.config.sample_size * factor) if unet is not None else 512
    return req.width or default, req.height or default


Progress = Callable[[int, int], None]


def denoise(pipe: Any, jobs: Sequence[Job], *, width: int, height: int, steps: int, cfg_scale: float,
            scheduler: str | None = None, progress: Progress | None = None) -> list[Any]:
    """Images for ``jobs`` in one denoising batch: each job's initial noise (and the noise of
    ancestral/SDE steps) comes from its own generator seeded with its seed. Jobs must have
    conditioning of one shape (the same number of prompt chunks). ``progress(step, total)`` is
    called after every step."""
    if not jobs:
        return []
    shapes = {tuple((key, tuple(value.shape)) for key, value in sorted(job.kwargs.items())) for job in jobs}
    if len(shapes) != 1:
        raise ValueError("jobs in one batch need conditioning of one shape (the same number of prompt chunks); "
                         f"got {sorted(shapes)}")
    kwargs = {key: torch.cat([job.kwargs[key] for job in jobs]) for key in jobs[0].kwargs}
    # A shallow copy with its own scheduler: the shared pipeline's scheduler and the attributes
    # its __call__ sets (guidance scale, timesteps...) stay untouched by this batch.
    runner = copy.copy(pipe)
    runner.scheduler = make_scheduler(scheduler, pipe.scheduler, seeds=[job.seed for job in jobs])
    runner.set_progress_bar_config(disable=True)
    generators = [torch.Generator(device="cpu").manual_seed(job.seed) for job in jobs]
    extra: dict[str, Any] = {}
    if progress is not None:
        def step_end(_pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            progress(step + 1, steps)
            return tensors

        extra["callback_on_step_end"] = step_end
    try:
        output = runner(**kwargs, width=width, height=height, num_inference_steps=steps, guidance_scale=cfg_scale,
                        generator=generators, output_type="pil", **extra)
    except ValueError as exc:  # diffusers' own parameter checks (size, steps for a scheduler...)
        raise InvalidRequest(f"the pipeline refused the request: {_one_line(exc)}",
                             {"scheduler": scheduler, "steps": steps}) from None
    return list(output.images)


def generate(
    request: dict[str, Any] | GenerationRequest,
    pipeline: Any,
    *,
    resolver: ResolverLike | None = None,
    device: str | None = None,
    progress: Progress | None = None,
) -> list[GenerationResult]:
    """Run ``request`` on ``pipeline`` (a loaded pipeline or a pipeline directory): one result
    per ``numberResults``, seeds ``seed``, ``seed + 1``..."""
    req = request if isinstance(request, GenerationRequest) else parse_request(request)
    model_name = req.model
    if isinstance(pipeline, (str, Path)):
        model_name = Path(pipeline).name
        pipeline = load_pipeline(pipeline, device=device)
    encoded = encode_generation(pipeline, req, resolver=resolver)
    width, height = image_size(pipeline, req)
    jobs = [Job(encoded.kwargs, seed) for seed in req.seeds]
    images = denoise(pipeline, jobs, width=width, height=height, steps=req.steps, cfg_scale=req.cfg_scale,
                     scheduler=req.scheduler, progress=progress)
    sampler = display_name(req.scheduler, pipeline.scheduler)
    clip_skip = a1111_clip_skip(pipeline, req.clip_skip)
    fmt = req.output_format or "PNG"
    results = []
    for image, seed in zip(images, req.seeds, strict=True):
        run = as_run(req, width, height, seed, sampler)
        parameters = infotext(run, encoded, model_name, clip_skip)
        document = {
            "request": run,
            "encoded": {"positivePrompt": encoded.prompt, "negativePrompt": encoded.negative_prompt},
            "embeddings": [item.to_dict() for item in encoded.applied],
            "pipeline": type(pipeline).__name__,
            "generator": f"pseudoword {_version()}",
        }
        data = image_bytes(image, fmt, parameters=parameters, document=document, quality=req.output_quality)
        results.append(GenerationResult(image, data, fmt, seed, run, encoded.applied, parameters))
    return results


def as_run(req: GenerationRequest, width: int, height: int, seed: int, sampler: str) -> dict[str, Any]:
    """The request as run, for one image (Runware's keys; defaults filled in)."""
    run = {
        "positivePrompt": req.prompt,
        "negativePrompt": req.negative_prompt,
        "width": width,
        "height": height,
        "steps": req.steps,
        "CFGScale": req.cfg_scale,
        "seed": seed,
        "scheduler": req.scheduler or DEFAULT,
        "sampler": sampler,
        "clipSkip": req.clip_skip,
        "embeddings": req.embeddings,
        "promptWeighting": "none" if req.literal else "sdEmbeds",
    }
    if req.task_uuid:
        run["taskUUID"] = req.task_uuid
    if req.model:
        run["model"] = req.model
    return run


def a1111_clip_skip(pipe: Any, clip_skip: int) -> int:
    """A1111's "Clip skip" for Runware's ``clipSkip`` on ``pipe``: the layer read, counted from
    the end of the encoder (1 = last); SDXL already reads the penultimate one."""
    return clip_skip + (2 if text_stack(pipe).is_sdxl else 1)


def infotext(run: dict[str, Any], encoded: Encoded, model: str | None, clip_skip: int) -> str:
    """AUTOMATIC1111's generation-parameters text, which A1111, Civitai and most image viewers
    read: the prompts as encoded (triggers appended or moved), then ``Key: value`` pairs."""
    lines = [encoded.prompt]
    if encoded.negative_prompt:
        lines.append(f"Negative prompt: {encoded.negative_prompt}")
    pairs: list[tuple[str, Any]] = [
        ("Steps", run["steps"]),
        ("Sampler", run["sampler"]),
        ("CFG scale", f"{run['CFGScale']:g}"),
        ("Seed", run["seed"]),
        ("Size", f"{run['width']}x{run['height']}"),
    ]
    if model:
        pairs.append(("Model", model))
    if clip_skip != 1:  # A1111 writes it only when it is not 1
        pairs.append(("Clip skip", clip_skip))
    if run.get("promptWeighting") == "none":
        pairs.append(("Emphasis", "None"))  # A1111's setting for prompts read literally
    hashes = [f"{_name(item.trigger)}: {item.a1111_hash}" for item in encoded.applied if item.a1111_hash]
    if hashes:
        pairs.append(("TI hashes", '"' + ", ".join(hashes) + '"'))
    weights = [f"{_name(item.trigger)}: {item.weight:g}" for item in encoded.applied if item.weight != 1]
    if weights:
        pairs.append(("TI weights", '"' + ", ".join(weights) + '"'))
    pairs.append(("Version", f"pseudoword {_version()}"))
    lines.append(", ".join(f"{key}: {value}" for key, value in pairs))
    return "\n".join(lines)


def _name(trigger: str) -> str:
    """A trigger as A1111 writes it in "TI hashes" (no ':' or ',')."""
    return trigger.replace(":", "").replace(",", "")


def image_bytes(image: Any, fmt: str, *, parameters: str, document: dict[str, Any] | None = None,
                quality: int = DEFAULT_QUALITY) -> bytes:
    """The image as PNG (text chunks ``parameters`` and ``pseudoword``), JPG or WEBP (the
    ``parameters`` text in EXIF UserComment, where A1111 puts it). Pillow writes no time, so
    equal pixels and text give equal bytes."""
    buffer = io.BytesIO()
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("parameters", parameters)
        if document is not None:
            info.add_text("pseudoword", json.dumps(document, sort_keys=True))
        image.save(buffer, format="PNG", pnginfo=info)
    elif fmt in ("JPG", "WEBP"):
        from PIL import Image

        exif = Image.Exif()
        # UserComment: an 8-byte character code, then the text (A1111 writes "UNICODE" + UTF-16).
        exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + parameters.encode("utf-16-be")
        image.save(buffer, format="JPEG" if fmt == "JPG" else "WEBP", quality=quality, exif=exif.tobytes())
    else:
        raise InvalidRequest(f"outputFormat must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
    return buffer.getvalue()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pseudoword")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"

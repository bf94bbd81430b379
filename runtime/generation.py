"""``generate``: one text-to-image request (the seeds' shape) on a local diffusers pipeline.

Request keys: ``positivePrompt`` (required), ``negativePrompt``, ``width``, ``height``,
``steps``, ``CFGScale``, ``seed``, ``scheduler`` (A1111 names: ``DPM++ 2M Karras``,
``Euler a``, ``DDIM``, ``UniPC``...), ``clipSkip`` (A1111's count: 1 = last layer, 2 = the
penultimate) and ``embeddings``. The same request and seed give the same image, byte for byte:
the noise comes from a seeded CPU generator, each request gets its own scheduler, and the PNG is
written without timestamps. The PNG carries an A1111-style ``parameters`` text chunk and a
``pseudoword`` chunk holding the request and the resolved digests, so the image says exactly
how to make it again.
"""

from __future__ import annotations

import copy
import io
import json
import math
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pseudoword.registry.core.errors import InvalidRequest, LocalNotFound, UnsupportedPipeline
from pseudoword.runtime.conditioning import MAX_PROMPT_CHARS, encode_request
from pseudoword.runtime.embedding_entries import AppliedEmbedding, ResolverLike
from pseudoword.runtime.schedulers import canonical_name, make_scheduler

MAX_SIDE = 2048
MAX_STEPS = 150
MAX_CFG = 30.0
MAX_SEED = 2**32 - 1
DEFAULT_STEPS = 20
DEFAULT_CFG = 7.0
_KEYS = {"positivePrompt", "negativePrompt", "width", "height", "steps", "CFGScale", "seed",
         "scheduler", "clipSkip", "embeddings"}


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
    scheduler: str | None  # canonical name, or None for the pipeline's own
    clip_skip: int | None  # A1111's count (1 = no skip)
    embeddings: list[dict[str, Any]]

    @property
    def diffusers_clip_skip(self) -> int | None:
        """diffusers counts layers skipped: A1111's "Clip skip 2" is diffusers' 1."""
        return self.clip_skip - 1 if self.clip_skip and self.clip_skip > 1 else None


@dataclass(frozen=True)
class GenerationResult:
    image: Any  # PIL.Image.Image
    png: bytes
    request: dict[str, Any]  # the request as run: defaults filled in, seed fixed
    applied: tuple[AppliedEmbedding, ...]
    parameters: str  # the A1111-style infotext written to the PNG


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


def parse_request(data: Any) -> GenerationRequest:
    """Validate a request document; InvalidRequest names the first bad field."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"a request is a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise InvalidRequest(f"unknown request keys {unknown}; expected {sorted(_KEYS)}", {"unknown": unknown})
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
    steps = _int(data, "steps", 1, MAX_STEPS, DEFAULT_STEPS)
    cfg = data.get("CFGScale", DEFAULT_CFG)
    if cfg is None:
        cfg = DEFAULT_CFG
    if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not math.isfinite(cfg) or not 0 <= cfg <= MAX_CFG:
        raise InvalidRequest(f"CFGScale must be a number from 0 to {MAX_CFG:g}, got {cfg!r}", {"field": "CFGScale"})
    seed = _int(data, "seed", -1, MAX_SEED, -1)
    if seed == -1:
        seed = secrets.randbelow(MAX_SEED + 1)
    scheduler = data.get("scheduler")
    if scheduler is not None:
        if not isinstance(scheduler, str):
            raise InvalidRequest(f"scheduler must be a name such as 'DPM++ 2M Karras', got {scheduler!r}")
        scheduler = canonical_name(scheduler)
    clip_skip = _int(data, "clipSkip", 0, 12, None)
    embeddings = data.get("embeddings") or []
    if not isinstance(embeddings, list):
        raise InvalidRequest("embeddings must be a list of {model|path, weight} objects", {"field": "embeddings"})
    return GenerationRequest(prompt, negative, width, height, steps or DEFAULT_STEPS, float(cfg),
                             seed or 0, scheduler, clip_skip or None, embeddings)


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


def generate(
    request: dict[str, Any] | GenerationRequest,
    pipeline: Any,
    *,
    resolver: ResolverLike | None = None,
    device: str | None = None,
) -> GenerationResult:
    """Run ``request`` on ``pipeline`` (a loaded pipeline or a pipeline directory)."""
    req = request if isinstance(request, GenerationRequest) else parse_request(request)
    model_name = None
    if isinstance(pipeline, (str, Path)):
        model_name = Path(pipeline).name
        pipeline = load_pipeline(pipeline, device=device)
    encoded = encode_request(pipeline, req.prompt, req.negative_prompt, req.embeddings, resolver=resolver,
                             clip_skip=req.diffusers_clip_skip)
    # A shallow copy with its own scheduler: the shared pipeline's scheduler and the attributes
    # its __call__ sets (guidance scale, timesteps...) stay untouched by this request.
    runner = copy.copy(pipeline)
    runner.scheduler = make_scheduler(req.scheduler, pipeline.scheduler)
    runner.set_progress_bar_config(disable=True)
    width, height = _size(pipeline, req)
    generator = torch.Generator(device="cpu").manual_seed(req.seed)
    try:
        output = runner(
            **encoded.kwargs,
            width=width,
            height=height,
            num_inference_steps=req.steps,
            guidance_scale=req.cfg_scale,
            generator=generator,
            output_type="pil",
        )
    except ValueError as exc:  # diffusers' own parameter checks (size, steps for a scheduler...)
        raise InvalidRequest(f"the pipeline refused the request: {_one_line(exc)}",
                             {"scheduler": req.scheduler, "steps": req.steps}) from None
    image = output.images[0]
    run = {
        "positivePrompt": req.prompt,
        "negativePrompt": req.negative_prompt,
        "width": width,
        "height": height,
        "steps": req.steps,
        "CFGScale": req.cfg_scale,
        "seed": req.seed,
        "scheduler": req.scheduler or type(runner.scheduler).__name__,
        "clipSkip": req.clip_skip,
        "embeddings": req.embeddings,
    }
    parameters = infotext(run, encoded.prompt, encoded.negative_prompt or "", encoded.applied, model_name)
    document = {
        "request": run,
        "encoded": {"positivePrompt": encoded.prompt, "negativePrompt": encoded.negative_prompt},
        "embeddings": [item.to_dict() for item in encoded.applied],
        "pipeline": type(pipeline).__name__,
        "generator": f"pseudoword {_version()}",
    }
    png = png_bytes(image, {"parameters": parameters, "pseudoword": json.dumps(document, sort_keys=True)})
    return GenerationResult(image, png, run, encoded.applied, parameters)


def _size(pipe: Any, req: GenerationRequest) -> tuple[int, int]:
    unet = getattr(pipe, "unet", None)
    factor = getattr(pipe, "vae_scale_factor", 8)
    default = int(unet.config.sample_size * factor) if unet is not None else 512
    return req.width or default, req.height or default


def infotext(run: dict[str, Any], prompt: str, negative: str, applied: tuple[AppliedEmbedding, ...],
             model: str | None) -> str:
    """AUTOMATIC1111's generation-parameters text, which A1111, Civitai and most image viewers
    read: the prompts as encoded (triggers appended), then ``Key: value`` pairs."""
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    pairs = [
        ("Steps", run["steps"]),
        ("Sampler", run["scheduler"]),
        ("CFG scale", f"{run['CFGScale']:g}"),
        ("Seed", run["seed"]),
        ("Size", f"{run['width']}x{run['height']}"),
    ]
    if model:
        pairs.append(("Model", model))
    if run.get("clipSkip"):
        pairs.append(("Clip skip", run["clipSkip"]))
    hashes = [f"{item.trigger}: {item.a1111_hash}" for item in applied if item.a1111_hash]
    if hashes:
        pairs.append(("TI hashes", '"' + ", ".join(hashes) + '"'))
    weights = [f"{item.trigger}: {item.weight:g}" for item in applied if item.weight != 1]
    if weights:
        pairs.append(("TI weights", '"' + ", ".join(weights) + '"'))
    pairs.append(("Version", f"pseudoword {_version()}"))
    lines.append(", ".join(f"{key}: {value}" for key, value in pairs))
    return "\n".join(lines)


def png_bytes(image: Any, text: dict[str, str]) -> bytes:
    """PNG with the given text chunks; Pillow writes no time chunk, so equal pixels and text
    give equal bytes."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pseudoword")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"

"""``train``: learn a new word's vectors from a few images on a loaded (possibly serving) pipeline.

Only the new vectors are parameters. They enter the text encoders through ``run_encoder``, the
swap-in ``encode`` uses, so the tokenizers and weights are only read: the same loaded pipeline
can serve requests, or run another training, at the same time. Gradients are taken with
``torch.autograd.grad`` with respect to the vectors alone, so nothing is ever accumulated in the
pipeline's parameters (``.grad`` stays untouched) even where they require gradients.

Each step: draw views, templates, latent noise, diffusion noise and timesteps from the run's
own generator (CPU, seeded), encode the prompts with the vectors in place, predict the noise
(or velocity, for v-prediction models) with the UNet, MSE loss, AdamW on the vectors. All draws
come from that one generator, whose state is checkpointed with the optimizer's, so a resumed run
continues bit-identically on the CPU.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from pseudoword.registry.core import read_embedding
from pseudoword.registry.core.embedding import Architecture, Embedding
from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.registry.core.files import atomic_write
from pseudoword.registry.core.writing import canonical_bytes
from pseudoword.runtime.clip_forward import hidden_layer_index
from pseudoword.runtime.conditioning import run_encoder
from pseudoword.runtime.prompt_layout import Chunk
from pseudoword.runtime.text_stack import TextStack, text_stack
from pseudoword.runtime.training import checkpoint as checkpoints
from pseudoword.runtime.training.device import DevicePlan, plan_for
from pseudoword.runtime.training.images import TrainImage, find_images, views
from pseudoword.runtime.training.latents import LatentCache, encode_views
from pseudoword.runtime.training.metadata import prediction_type, text_encoder_sha256, training_metadata
from pseudoword.runtime.training.options import TrainOptions
from pseudoword.runtime.training.plot import loss_csv, loss_plot_png
from pseudoword.runtime.training.prompt_rows import prompt_row
from pseudoword.runtime.training.samples import write_sample
from pseudoword.runtime.training.templates import TEMPLATES, prompt_for
from pseudoword.runtime.training.vocabulary import check_trigger_is_new, init_token, initial_vectors


@dataclass(frozen=True)
class StepReport:
    step: int
    steps: int
    loss: float


@dataclass(frozen=True)
class TrainResult:
    path: Path
    embedding: Embedding
    steps: list[int]
    losses: list[float]
    loss_csv: Path
    loss_png: Path
    checkpoints: list[Path] = field(default_factory=list)
    samples: list[Path] = field(default_factory=list)
    resumed_from: int | None = None
    held_loss_start: float | None = None  # the loss on one fixed batch with the initial vectors
    held_loss_end: float | None = None  # ... and with the learned ones
    precision: str = "float32"
    attention: str = ""

    @property
    def final_sample(self) -> Path | None:
        return self.samples[-1] if self.samples else None


Progress = Callable[[StepReport], None]
#: The held batch (``_held_loss``): its size and where its generator's seed sits from the run's.
HELD_BATCH = 8
HELD_SEED_OFFSET = 7919


@dataclass
class _Run:
    """What a step needs, prepared once."""

    pipe: Any
    stack: TextStack
    options: TrainOptions
    images: list[TrainImage]
    latents: LatentCache
    view_image: list[int]
    time_ids: torch.Tensor | None  # SDXL's micro-conditioning per view
    plan: DevicePlan
    scheduler: Any
    prediction: str
    rows: dict[tuple[str, str], Chunk] = field(default_factory=dict)

    def row(self, slot: Any, prompt: str) -> Chunk:
        key = (slot.vector_key, prompt)
        if key not in self.rows:
            self.rows[key] = prompt_row(slot, prompt, self.options.trigger, self.options.vectors)
        return self.rows[key]


def train(options: TrainOptions, pipeline: Any, *, progress: Progress | None = None,
          device: str | None = None) -> TrainResult:
    """Train ``options.trigger`` on ``pipeline`` (a loaded SD 1.x/2.x/SDXL pipeline, or a
    diffusers directory, loaded here). Every input is checked before anything is written."""
    if isinstance(pipeline, (str, Path)):
        from pseudoword.runtime.generation import load_pipeline

        pipeline_name = Path(pipeline).name
        pipeline = load_pipeline(pipeline, device=device)
        pipeline.set_progress_bar_config(disable=True)
        for module in (pipeline.unet, pipeline.vae, *(s.encoder for s in text_stack(pipeline).slots)):
            module.requires_grad_(False)  # ours alone: no weight needs a gradient graph
    else:
        pipeline_name = type(pipeline).__name__
    stack = text_stack(pipeline)
    check_trigger_is_new(stack, options.trigger)
    token = init_token(stack, options.init)
    resolution = options.resolution or int(pipeline.unet.config.sample_size * pipeline.vae_scale_factor)
    images = find_images(options.images, resolution)
    for image in images:  # every caption must give a prompt that fits (checked before any work)
        for template in range(len(TEMPLATES[options.kind])):
            for slot in stack.slots:
                prompt_row(slot, prompt_for(options.kind, template, options.trigger, image.caption),
                           options.trigger, options.vectors)
    encoder_sha = text_encoder_sha256(stack)
    fingerprint = _fingerprint(options, images, encoder_sha, resolution)
    resume_point = None
    if options.resume:
        resume_point = checkpoints.latest(options.checkpoint_dir, fingerprint)
        if resume_point.step > options.steps:
            raise InvalidRequest(f"--resume: the checkpoint is at step {resume_point.step}, past --steps "
                                 f"{options.steps}", {"step": resume_point.step})
    elif checkpoints.existing(options.checkpoint_dir):
        raise InvalidRequest(f"{options.checkpoint_dir} holds checkpoints of an earlier run: pass --resume to "
                             "continue it, or delete the folder to start over", {"path": str(options.checkpoint_dir)})

    device_ = stack.device
    plan = plan_for(pipeline, device_)
    all_views = views(images, resolution, crops=options.crops)
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    run = _Run(pipeline, stack, options, images, encode_views(pipeline.vae, all_views, device_),
               [v.image for v in all_views], _time_ids(all_views, resolution, device_) if stack.is_sdxl else None,
               plan, scheduler, prediction_type(pipeline))

    generator = torch.Generator(device="cpu").manual_seed(options.seed)
    params = {key: value.clone().requires_grad_(True)
              for key, value in initial_vectors(stack, token, options.vectors).items()}
    optimizer = torch.optim.AdamW(list(params.values()), lr=options.lr, weight_decay=options.weight_decay)
    scaler = plan.scaler()
    steps: list[int] = []
    losses: list[float] = []
    start = 0
    if resume_point is not None:
        with torch.no_grad():
            for key, value in params.items():
                value.copy_(resume_point.vectors[key])
        optimizer.load_state_dict(resume_point.optimizer)
        generator.set_state(resume_point.generator)
        if scaler is not None and resume_point.scaler:
            scaler.load_state_dict(resume_point.scaler)
        steps, losses, start = list(resume_point.steps), list(resume_point.losses), resume_point.step

    settings = {"lr": options.lr, "batch": options.batch, "resolution": resolution, "seed": options.seed,
                "images": len(images), "views": len(all_views), "precision": plan.precision,
                "weight_decay": options.weight_decay, "prediction_type": run.prediction}
    metadata = {"trigger": options.trigger, "architecture": stack.architecture, "vectors": options.vectors,
                "pipeline_name": pipeline_name, "encoder_sha256": encoder_sha, "init_word": options.init,
                "kind": options.kind, "resolution": resolution, "prediction": run.prediction, "settings": settings}
    held_start = _held_loss(run, {k: v.detach() for k, v in
                                  initial_vectors(stack, token, options.vectors).items()})
    saved: list[Path] = []
    samples: list[Path] = []
    for step in range(start + 1, options.steps + 1):
        loss = _step(run, params, optimizer, generator, scaler)
        steps.append(step)
        losses.append(loss)
        if progress is not None:
            progress(StepReport(step, options.steps, loss))
        if options.checkpoint_every and step % options.checkpoint_every == 0 and step < options.steps:
            saved.append(checkpoints.save(options.checkpoint_dir, checkpoints.Checkpoint(
                step, {k: v.detach().clone() for k, v in params.items()}, optimizer.state_dict(),
                generator.get_state(), list(steps), list(losses),
                scaler.state_dict() if scaler is not None else None, fingerprint)))
        if options.sample_every and (step % options.sample_every == 0 or step == options.steps):
            embedding = _embedding(params, stack, metadata, step)
            samples.append(write_sample(pipeline, embedding, trigger=options.trigger, kind=options.kind,
                                        resolution=resolution, steps=options.sample_steps, seed=options.seed,
                                        path=options.sample_dir / f"{options.out.stem}-{step:06d}.png"))

    held_end = _held_loss(run, {k: v.detach() for k, v in params.items()})
    settings["held_loss"] = [round(held_start, 6), round(held_end, 6)]
    embedding = _embedding(params, stack, metadata, options.steps)
    data = canonical_bytes(embedding)
    read_embedding(data, filename=options.out.name)  # what we write, the core reads back
    atomic_write(options.out, data)
    atomic_write(options.loss_csv, loss_csv(steps, losses))
    atomic_write(options.loss_png, loss_plot_png(steps, losses, f"{options.trigger}: training loss"))
    return TrainResult(options.out, embedding, steps, losses, options.loss_csv, options.loss_png, saved, samples,
                       resume_point.step if resume_point else None, held_start, held_end, plan.precision,
                       plan.attention)


@dataclass(frozen=True)
class _Draw:
    """One batch's random choices: views, templates, latent noise, diffusion noise, timesteps."""

    index: torch.Tensor
    template: torch.Tensor
    eps: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor


def _draw(run: _Run, generator: torch.Generator, batch: int) -> _Draw:
    latents = run.latents
    index = torch.randint(len(latents), (batch,), generator=generator)
    template = torch.randint(len(TEMPLATES[run.options.kind]), (batch,), generator=generator)
    shape = (batch, *latents.mean.shape[1:])
    eps = torch.randn(shape, generator=generator)
    noise = torch.randn(shape, generator=generator)
    timesteps = torch.randint(run.scheduler.config.num_train_timesteps, (batch,), generator=generator)
    return _Draw(index, template, eps, noise, timesteps)


def _loss(run: _Run, params: dict[str, torch.Tensor], draw: _Draw) -> torch.Tensor:
    """The diffusion loss of one batch with ``params`` as the trigger's vectors."""
    options, device = run.options, run.plan.device
    index = draw.index.to(device)
    noise, timesteps = draw.noise.to(device), draw.timesteps.to(device)
    clean = run.latents.sample(index, draw.eps.to(device))
    noisy = run.scheduler.add_noise(clean, noise, timesteps)
    target = noise if run.prediction == "epsilon" else run.scheduler.get_velocity(clean, noise, timesteps)
    prompts = [prompt_for(options.kind, int(t), options.trigger, run.images[run.view_image[int(i)]].caption)
               for i, t in zip(draw.index, draw.template, strict=True)]
    unet = run.pipe.unet
    with run.plan.context():
        hidden, pooled = [], None
        for slot in run.stack.slots:
            rows = [run.row(slot, prompt) for prompt in prompts]
            out, slot_pooled = run_encoder(slot, rows, [params[slot.vector_key]],
                                           read_at=hidden_layer_index(slot.encoder, None, penultimate=slot.penultimate),
                                           final_norm=not slot.penultimate)
            hidden.append(out)
            if slot.pooled:
                pooled = slot_pooled
        states = torch.cat(hidden, dim=-1) if len(hidden) > 1 else hidden[0]
        extra = {}
        if run.stack.is_sdxl:
            assert run.time_ids is not None and pooled is not None
            extra["added_cond_kwargs"] = {"text_embeds": pooled.to(unet.dtype), "time_ids": run.time_ids[index]}
        prediction = unet(noisy.to(unet.dtype), timesteps, encoder_hidden_states=states.to(unet.dtype), **extra).sample
    return torch.nn.functional.mse_loss(prediction.float(), target.float(), reduction="mean")


def _step(run: _Run, params: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
          generator: torch.Generator, scaler: Any) -> float:
    loss = _loss(run, params, _draw(run, generator, run.options.batch))
    vectors = list(params.values())
    scaled = scaler.scale(loss) if scaler is not None else loss
    grads = torch.autograd.grad(scaled, vectors)
    for vector, grad in zip(vectors, grads, strict=True):
        vector.grad = grad
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _held_loss(run: _Run, params: dict[str, torch.Tensor]) -> float:
    """The loss on one fixed batch (every view once, or 8 of them; timesteps and noise from the
    seed): the same batch before and after training, so the two figures compare the vectors
    alone, not the luck of the step's draws."""
    generator = torch.Generator(device="cpu").manual_seed(run.options.seed + HELD_SEED_OFFSET)
    draw = _draw(run, generator, min(HELD_BATCH, len(run.latents)))
    total, size, step = 0.0, len(draw.index), run.options.batch  # in pieces of the training batch: no more
    with torch.no_grad():                                          # memory than a training step needs
        for start in range(0, size, step):
            part = _Draw(*(field[start:start + step] for field in (draw.index, draw.template, draw.eps, draw.noise,
                                                                    draw.timesteps)))
            total += float(_loss(run, params, part)) * len(part.index)
    return total / size


def _time_ids(all_views: list[Any], resolution: int, device: torch.device) -> torch.Tensor:
    """SDXL's added time ids per view: original size, crop corner, target size."""
    return torch.tensor([[*v.original_size, *v.crop_top_left, resolution, resolution] for v in all_views],
                        dtype=torch.float32, device=device)


def _embedding(params: dict[str, torch.Tensor], stack: TextStack, metadata: dict[str, Any], step: int) -> Embedding:
    vectors = {key: value.detach().to("cpu", torch.float32).clone().contiguous() for key, value in params.items()}
    meta = training_metadata(steps=step, **metadata)
    return Embedding(vectors, cast(Architecture, stack.architecture), "safetensors", name=metadata["trigger"],
                     metadata=meta)


def _fingerprint(options: TrainOptions, images: list[TrainImage], encoder_sha: str, resolution: int) -> str:
    """What makes two runs the same run (for --resume): everything but the step counts."""
    digest = hashlib.sha256()
    same = {key: value for key, value in options.to_dict().items()
            if key not in ("steps", "resume", "checkpoint_every", "sample_every", "sample_steps", "out", "images")}
    digest.update(json.dumps({**same, "init": options.init, "resolution": resolution, "encoder": encoder_sha},
                             sort_keys=True).encode())
    for image in images:
        digest.update(image.path.name.encode() + b"\0" + hashlib.sha256(image.path.read_bytes()).digest())
        digest.update((image.caption or "").encode() + b"\0")
    return digest.hexdigest()

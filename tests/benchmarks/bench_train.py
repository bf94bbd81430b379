"""Training cost: ``pseudoword train`` against the diffusers example's way, same pipeline, batch,
resolution, images, seed and random draws.

The diffusers way (``examples/textual_inversion/textual_inversion.py``), implemented here: add the
trigger to a copy of the tokenizer, grow the text encoder's embedding matrix, hand AdamW the whole
49,408(+n)-row matrix, copy every other row back after each step, and run each image through the
VAE at every step. Ours: ``runtime.training.train`` (the vectors alone through encode's swap-in,
the VAE once per view). Both draw views, templates, latent noise, diffusion noise and timesteps
in the same order from one seeded generator, so their losses should agree step by step up to
float rounding; the report gives the largest difference.

Each side runs in its own fresh process (spawned), so its peak memory is its own: peak RSS
during the run minus RSS before it (ours: from the call of ``train``, its setup included; the
diffusers way: from once its grown text encoder is loaded) (Linux ``VmHWM`` reset through ``/proc/self/clear_refs``), or
on CUDA ``torch.cuda.max_memory_allocated``. Steps per second are timed from the end of step 1 to
the end of the last step (setup excluded on both sides), median over ``--repeat`` runs, sides
interleaved.

CPU (default): the tests' small SD1 pipeline shape with a 12-layer CLIP-L-size text encoder, tiny
UNet and VAE, 64 px. CUDA (``--device cuda --real-size``): SD 1.5's UNet and VAE built from their
configs (random weights, real size) and a 12-layer CLIP-L, 512 px, under the precision train
picks (bf16 autocast where the GPU has it).

Run: ``python -m tests.benchmarks.bench_train [--steps N] [--batch N] [--resolution N] [--repeat N]
[--threads N] [--device cuda --real-size] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

TRIGGER = "zqtoy"


def build_pipeline(args: argparse.Namespace) -> Any:
    from tests.conftest import CORPUS
    from tests.pipelines import build_sd1

    pipe = build_sd1(CORPUS / "clip-tokenizer", layers=args.layers)
    if args.real_size:
        from diffusers import AutoencoderKL, UNet2DConditionModel

        torch.manual_seed(1)
        pipe.unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                         block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
        pipe.vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                                 down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                                 sample_size=512)
    pipe.set_progress_bar_config(disable=True)
    if args.device != "cpu":
        pipe.to(args.device, torch.float16)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)  # as a serving pipeline is loaded (and as diffusers' script freezes)
    return pipe


def make_images(folder: Path, resolution: int, count: int = 4) -> Path:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = Image.new("RGB", (resolution, resolution), (60 * index, 200 - 40 * index, 120))
        draw = ImageDraw.Draw(image)
        for x in range(0, resolution, resolution // 4):
            draw.rectangle((x, 0, x + resolution // 10 + index, resolution - 1), fill=(250, 250, 250))
        image.save(folder / f"image{index}.png")
    return folder


class Memory:
    """Peak memory of what runs between ``start`` and ``peak_mb``."""

    def __init__(self, device: str) -> None:
        self.device = device

    def start(self) -> None:
        if self.device != "cpu":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        self.base = _status("VmRSS")

    def peak_mb(self) -> float:
        if self.device != "cpu":
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - self.base) / 2**20
        return (_status("VmHWM") - self.base) / 2**20


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def ours(args: argparse.Namespace, pipe: Any, images: Path, out: Path) -> tuple[list[float], list[float]]:
    from pseudoword.runtime.training import TrainOptions, train

    stamps: list[float] = []

    def progress(_report: Any) -> None:
        if args.device != "cpu":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    options = TrainOptions(images=images, trigger=TRIGGER, out=out / f"{TRIGGER}.safetensors", steps=args.steps,
                           lr=args.lr, batch=args.batch, resolution=args.resolution, seed=args.seed,
                           checkpoint_every=0, sample_every=0)
    result = train(options, pipe, progress=progress)
    return result.losses, stamps


def diffusers_way(args: argparse.Namespace, pipe: Any, images: Path, memory: Memory) -> tuple[list[float], list[float]]:
    """The example script's loop, on the same pipeline (its text side copied: it grows it; the
    copy stands for the script loading its own text encoder, so memory is counted after it)."""
    from diffusers import DDPMScheduler

    from pseudoword.runtime.training.device import plan_for
    from pseudoword.runtime.training.images import find_images, views
    from pseudoword.runtime.training.templates import TEMPLATES, prompt_for
    from tests.pipelines import copy_text_side

    ref = copy_text_side(pipe)
    tokenizer, encoder = ref.tokenizer, ref.text_encoder
    tokenizer.add_tokens([TRIGGER])
    trigger_id = tokenizer.convert_tokens_to_ids(TRIGGER)
    init_id = tokenizer("object", add_special_tokens=False).input_ids[0]
    encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    memory.start()
    table = encoder.get_input_embeddings()
    with torch.no_grad():
        table.weight[trigger_id] = table.weight[init_id].clone()
    encoder.requires_grad_(False)
    table.weight.requires_grad_(True)
    if table.weight.dtype != torch.float32:  # the script keeps trainable weights in float32
        table.float()
    optimizer = torch.optim.AdamW(table.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    original = table.weight.detach().clone()
    keep = torch.ones(len(tokenizer), dtype=torch.bool, device=original.device)
    keep[trigger_id] = False

    train_images = find_images(images, args.resolution)
    pixels = torch.stack([v.pixels for v in views(train_images, args.resolution, crops=True)])
    view_image = [v.image for v in views(train_images, args.resolution, crops=True)]
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    plan = plan_for(pipe, torch.device(args.device))
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    templates = TEMPLATES["object"]
    device, unet, vae = torch.device(args.device), pipe.unet, pipe.vae
    latent_shape = (4, args.resolution // 8, args.resolution // 8)
    losses, stamps = [], []
    for _ in range(args.steps):
        index = torch.randint(len(pixels), (args.batch,), generator=generator)
        template = torch.randint(len(templates), (args.batch,), generator=generator)
        eps = torch.randn((args.batch, *latent_shape), generator=generator)
        noise = torch.randn((args.batch, *latent_shape), generator=generator)
        timesteps = torch.randint(scheduler.config.num_train_timesteps, (args.batch,), generator=generator)
        with torch.no_grad():  # the VAE, at every step
            dist = vae.encode(pixels[index].to(device, vae.dtype)).latent_dist
            latents = (dist.mean.float() + dist.std.float() * eps.to(device)) * vae.config.scaling_factor
        noise, timesteps = noise.to(device), timesteps.to(device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        prompts = [prompt_for("object", int(t), TRIGGER, train_images[view_image[int(i)]].caption)
                   for i, t in zip(index, template, strict=True)]
        ids = tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        with plan.context():
            states = encoder(ids.to(device))[0]
            prediction = unet(noisy.to(unet.dtype), timesteps, encoder_hidden_states=states.to(unet.dtype)).sample
        loss = torch.nn.functional.mse_loss(prediction.float(), noise.float(), reduction="mean")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():  # every row but the new one back to what it was
            table.weight[keep] = original[keep]
        losses.append(float(loss.detach()))
        if args.device != "cpu":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
    return losses, stamps


def measure(side: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run of one side, in this (fresh) process."""
    torch.set_num_threads(args.threads)
    from diffusers.utils import logging as dl
    from transformers.utils import logging as tl

    dl.set_verbosity_error()
    tl.set_verbosity_error()
    pipe = build_pipeline(args)
    with tempfile.TemporaryDirectory() as folder:
        images = make_images(Path(folder) / "images", args.resolution)
        memory = Memory(args.device)
        if side == "ours":
            memory.start()
            losses, stamps = ours(args, pipe, images, Path(folder))
        else:
            losses, stamps = diffusers_way(args, pipe, images, memory)
        peak = memory.peak_mb()
    per_second = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return {"steps_per_s": per_second, "peak_mb": peak, "losses": losses}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1)  # as A1111 and diffusers' README train
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real-size", action="store_true", help="SD 1.5-size UNet and VAE from config")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.real_size and args.resolution == 64:
        args.resolution = 512
    context = multiprocessing.get_context("spawn")
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "diffusers": []}
    for _ in range(args.repeat):
        for side in runs:
            with context.Pool(1) as pool:
                runs[side].append(pool.apply(measure, (side, args)))
    ours_losses, base_losses = runs["ours"][0]["losses"], runs["diffusers"][0]["losses"]
    report = {
        "device": args.device, "real_size": args.real_size, "steps": args.steps, "batch": args.batch,
        "resolution": args.resolution, "threads": args.threads, "text_layers": args.layers,
        "ours_steps_per_s": statistics.median(r["steps_per_s"] for r in runs["ours"]),
        "diffusers_steps_per_s": statistics.median(r["steps_per_s"] for r in runs["diffusers"]),
        "ours_peak_mb": statistics.median(r["peak_mb"] for r in runs["ours"]),
        "diffusers_peak_mb": statistics.median(r["peak_mb"] for r in runs["diffusers"]),
        "ours_mean_loss": statistics.fmean(ours_losses),
        "diffusers_mean_loss": statistics.fmean(base_losses),
        "max_step_loss_difference": max(abs(a - b) for a, b in zip(ours_losses, base_losses, strict=True)),
    }
    report["speedup"] = report["ours_steps_per_s"] / report["diffusers_steps_per_s"]
    report["memory_ratio"] = report["diffusers_peak_mb"] / max(report["ours_peak_mb"], 1e-9)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.device}{' real-size' if args.real_size else ''}, batch {args.batch}, {args.resolution} px, "
              f"{args.steps} steps, {args.threads} thread(s)")
        print(f"  ours:      {report['ours_steps_per_s']:.2f} steps/s, peak +{report['ours_peak_mb']:.0f} MiB, "
              f"mean loss {report['ours_mean_loss']:.5f}")
        print(f"  diffusers: {report['diffusers_steps_per_s']:.2f} steps/s, "
              f"peak +{report['diffusers_peak_mb']:.0f} MiB, "
              f"mean loss {report['diffusers_mean_loss']:.5f}")
        print(f"  speedup {report['speedup']:.2f}x, memory {report['memory_ratio']:.1f}x less, largest per-step loss "
              f"difference {report['max_step_loss_difference']:.2e}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])

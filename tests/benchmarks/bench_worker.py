"""The worker's throughput, as ratios against baselines measured in the same run.

(a) images/s for ``--clients`` concurrent clients (8), each sending requests with its own
    embedding mix (and a new prompt each time), through a worker that batches (up to 8 images
    in one denoise) against the same load through a worker that runs one image at a time; the
    largest pixel difference between a batched image and the same request run alone is reported
    too (the tests guarantee at most 2/255).
(b) the worker's overhead: one client, one request at a time over REST (JSON, base64 PNG, the
    queue, HTTP) against calling ``generate`` on the pipeline directly for the same requests.

Rounds are interleaved (batched, alone, batched, ...; worker, direct, ...) and medians compared,
so drift in the machine's load hits both sides alike. Default: the small SD 1.x demo pipeline
(2-layer CLIP-L-width text encoder, tiny UNet/VAE) at 64x64 on the CPU. ``--real-size`` builds
Stable Diffusion 1.5's UNet and VAE and a 12-layer CLIP-L from their configs (random weights,
float16 on CUDA) at 512x512, for a CUDA device: ``tests/benchmarks/bench_worker_cuda.sh``.

Run: ``python -m tests.benchmarks.bench_worker [--rounds 3] [--requests 2] [--steps 8] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from pseudoword.runtime.generation import generate
from pseudoword.runtime.worker.settings import WorkerSettings
from tests.conftest import CORPUS
from tests.integration.worker_fixtures import EMBEDDINGS
from tests.pipelines import FakeResolver, build_sd1
from tests.worker_harness import SD1_AIR, LiveWorker, loaded, start_worker

TOKENIZER = CORPUS / "clip-tokenizer"  # CLIP's tokenizer from ../shared/corpus (or PSEUDOWORD_CORPUS)

MIXES: list[list[dict[str, Any]]] = [
    [{"model": "wk:glass@1", "weight": 1}],
    [{"model": "wk:glass@1", "weight": -1.5}],
    [{"model": "wk:eyeliner@1", "weight": 1.2}, {"model": "wk:easyneg@1", "weight": -1}],
    [{"model": "wk:ulzzang@1", "weight": 0.7}],
    [{"model": "wk:badhands@1", "weight": -1}, {"model": "wk:badartist@1", "weight": -2}],
    [{"model": "wk:invoke@1", "weight": 2}, {"model": "wk:badimage@1", "weight": -1}],
    [{"model": "wk:glass@1", "weight": 0.5}, {"model": "wk:eyeliner@1", "weight": -0.5}],
    [{"model": "wk:easyneg@1", "weight": -1}],
]


def _quiet() -> None:
    from diffusers.utils import logging as dl
    from transformers.utils import logging as tl

    dl.set_verbosity_error()
    tl.set_verbosity_error()
    import logging

    logging.getLogger("pseudoword").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def real_size_sd15(device: str) -> Any:
    """Stable Diffusion 1.5's shapes from config: UNet (320-640-1280-1280, 2 layers a block), VAE
    (128-256-512-512), CLIP-L with 12 layers; random weights; float16 on CUDA."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    pipe = build_sd1(TOKENIZER, layers=12)
    torch.manual_seed(0)
    pipe.unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                     block_out_channels=(320, 640, 1280, 1280), layers_per_block=2).eval()
    pipe.vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                             down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                             sample_size=512).eval()
    pipe.register_modules(unet=pipe.unet, vae=pipe.vae)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    return pipe.to(device, dtype)


def resolver() -> FakeResolver:
    res = FakeResolver()
    for ref, (name, kind, _tags) in EMBEDDINGS.items():
        if ref != "wk:pdxl@1":
            res.add(ref, CORPUS / "embeddings" / name, trigger=ref.split(":")[1].split("@")[0], kind=kind)
    return res


def request(client: int, index: int, *, size: int, steps: int) -> dict[str, Any]:
    return {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), "model": SD1_AIR,
            "positivePrompt": f"a lighthouse at dusk, view {client}, take {index}", "negativePrompt": "blurry, lowres",
            "width": size, "height": size, "steps": steps, "CFGScale": 7, "seed": 1000 * client + index,
            "scheduler": "Euler a", "embeddings": MIXES[client % len(MIXES)], "outputType": "base64Data",
            "outputFormat": "PNG"}


def load(worker: LiveWorker, clients: int, requests: int, *, size: int, steps: int) -> tuple[float, dict[str, Any]]:
    """``clients`` concurrent clients, ``requests`` each one after another: (seconds, images by seed)."""
    async def client(http: httpx.AsyncClient, number: int, out: dict[int, bytes]) -> None:
        for index in range(requests):
            response = await http.post(f"{worker.url}/v1", json=[request(number, index, size=size, steps=steps)])
            response.raise_for_status()
            item = response.json()["data"][0]
            out[item["seed"]] = base64.b64decode(item["imageBase64Data"])

    async def run() -> tuple[float, dict[int, bytes]]:
        out: dict[int, bytes] = {}
        async with httpx.AsyncClient(timeout=3600) as http:
            started = time.perf_counter()
            await asyncio.gather(*(client(http, n, out) for n in range(clients)))
            return time.perf_counter() - started, out

    return asyncio.run(run())


def _pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=None, help="image side (default 64; 512 with --real-size)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real-size", action="store_true", help="SD 1.5-size UNet/VAE at 512x512")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    _quiet()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run this on a machine with one (tests/benchmarks/bench_worker_cuda.sh)")
    pipe = real_size_sd15(args.device) if args.real_size else build_sd1(TOKENIZER, layers=2).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    size = args.size or (512 if args.real_size else 64)
    res = resolver()
    tmp = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    common = {"data_dir": tmp, "queue_size": 256, "task_timeout": 3600.0}
    batched = start_worker([loaded(pipe)], WorkerSettings(**common, max_batch=8, batch_wait=0.05), res)
    alone = start_worker([loaded(pipe)], WorkerSettings(**common, max_batch=1, batch_wait=0.0), res)
    figures: dict[str, list[float]] = {"batched": [], "alone": [], "worker": [], "direct": []}
    worst = 0
    try:
        load(batched, 2, 1, size=size, steps=2)  # warm-up: caches, allocator, first batch
        load(alone, 2, 1, size=size, steps=2)
        images = args.clients * args.requests
        for _ in range(args.rounds):
            seconds, together = load(batched, args.clients, args.requests, size=size, steps=args.steps)
            figures["batched"].append(images / seconds)
            seconds, single = load(alone, args.clients, args.requests, size=size, steps=args.steps)
            figures["alone"].append(images / seconds)
            worst = max(worst, max(int(np.abs(_pixels(together[s]) - _pixels(single[s])).max()) for s in single))
        for _ in range(args.rounds):
            seconds, _ = load(alone, 1, args.requests * 2, size=size, steps=args.steps)
            figures["worker"].append(seconds / (args.requests * 2))
            started = time.perf_counter()
            for index in range(args.requests * 2):
                item = request(0, index, size=size, steps=args.steps)
                [result] = generate(item, pipe, resolver=res)
                base64.b64encode(result.data)
            figures["direct"].append((time.perf_counter() - started) / (args.requests * 2))
    finally:
        batched.stop()
        alone.stop()
    med = {key: statistics.median(values) for key, values in figures.items()}
    result = {
        "pipeline": "SD 1.5 size (random weights)" if args.real_size else "demo SD 1.x (tiny UNet/VAE)",
        "device": args.device, "torch_threads": torch.get_num_threads(), "size": size, "steps": args.steps,
        "clients": args.clients, "images_per_round": args.clients * args.requests, "rounds": args.rounds,
        "batched_images_per_s": round(med["batched"], 3), "alone_images_per_s": round(med["alone"], 3),
        "batching_speedup": round(med["batched"] / med["alone"], 2),
        "max_pixel_difference_batched_vs_alone": worst,
        "worker_s_per_image": round(med["worker"], 4), "direct_s_per_image": round(med["direct"], 4),
        "worker_overhead": round(med["worker"] / med["direct"], 3),
        "samples": {key: [round(v, 4) for v in values] for key, values in figures.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['pipeline']} on {args.device} ({result['torch_threads']} threads), {size}x{size}, "
          f"{args.steps} steps, {args.clients} clients x {args.requests} requests, {args.rounds} rounds")
    print(f"(a) batched {result['batched_images_per_s']} images/s, one at a time {result['alone_images_per_s']} "
          f"images/s: {result['batching_speedup']}x; largest pixel difference batched vs alone: {worst}/255")
    print(f"(b) worker {result['worker_s_per_image']} s/image, direct generate {result['direct_s_per_image']} "
          f"s/image: overhead {result['worker_overhead']}x")


if __name__ == "__main__":
    main()

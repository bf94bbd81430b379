#!/usr/bin/env bash
# bench_worker on a CUDA device with Stable Diffusion 1.5-size UNet and VAE built from config
# (random weights, float16), 512x512, 20 steps. Needs a machine with an NVIDIA GPU and a CUDA
# build of torch in .venv (e.g. pip install torch==2.13.0 --index-url .../whl/cu126).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python -m tests.benchmarks.bench_worker --device cuda --real-size --steps 20 --requests 2 \
    --rounds 3 "$@"

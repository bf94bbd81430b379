#!/usr/bin/env bash
# Create .venv and install pseudoword with the given extras (default: dev).
# torch comes first and pinned, so pip never swaps in a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[${extras}]"

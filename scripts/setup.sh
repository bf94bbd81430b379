#!/usr/bin/env bash
# Create .venv and install pseudoword with the given extras (default: dev); the `pseudoword`
# command is then .venv/bin/pseudoword.
#
# torch comes first, pinned, and as the CPU build: on Linux PyPI's default torch wheel is the
# multi-GB CUDA one, so it is taken from PyTorch's CPU index (PSEUDOWORD_TORCH_INDEX overrides it;
# "pypi" means the configured index, e.g. for a CUDA machine). Where that index cannot be reached
# the configured index is used instead, and the line printed at the end says which build came.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
torch_spec="torch==2.13.0"
cpu_index="${PSEUDOWORD_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
if [ "$(uname -s)" != "Linux" ] || [ "$cpu_index" = "pypi" ]; then
    python -m pip install -q "$torch_spec"  # macOS and Windows wheels on PyPI are CPU builds already
elif ! python -m pip install -q --timeout 15 --retries 0 --index-url "$cpu_index" "$torch_spec" 2>/dev/null; then
    echo "setup: $cpu_index is unreachable; installing $torch_spec from the configured index" >&2
    python -m pip install -q "$torch_spec"
fi
python -m pip install -q -e ".[${extras}]"
python - <<'PY'
import torch
build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "the CPU build"
print(f"setup: torch {torch.__version__} ({build}); the command is .venv/bin/pseudoword")
PY

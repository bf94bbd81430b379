#!/usr/bin/env bash
# A separate virtual environment with Runware's REST SDK (runware-sdk, from PyPI) for the worker's
# client tests. It has its own venv because it installs a package named `runware`, as the
# WebSocket SDK (runware, in the dev extra) does, and pins dependencies of its own.
# Idempotent: does nothing when the pinned version is already there. Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
version="1.8.0"
venv=".venv-runware-sdk"
stamp="$venv/.runware-sdk-$version"
if [ ! -f "$stamp" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    "$venv/bin/python" -m pip install -q "runware-sdk==$version" >&2
    touch "$stamp"
fi
echo "$PWD/$venv/bin/python"

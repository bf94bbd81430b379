#!/usr/bin/env bash
# The lint gate: ruff (pyproject's small rule set) on everything, mypy on the core, the client, the
# whole runtime (worker and training included), the service's settings and the CLI. mypy cannot
# follow the editable install's import hook (the folders are installed as pseudoword.*), so it
# reads them through a tree of links under build/.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
tree=build/typecheck/pseudoword
rm -rf build/typecheck && mkdir -p "$tree"
for file in package/__init__.py package/__main__.py package/py.typed; do ln -s "../../../$file" "$tree/"; done
for folder in registry runtime cli; do ln -s "../../../$folder" "$tree/$folder"; done
MYPYPATH=build/typecheck .venv/bin/mypy --ignore-missing-imports --follow-imports=silent \
    -p pseudoword.registry.core -p pseudoword.registry.client -p pseudoword.registry.importing \
    -p pseudoword.runtime \
    -p pseudoword.registry.service.settings -p pseudoword.registry.service.identity -p pseudoword.cli

#!/usr/bin/env bash
# Set up and run the registry on the embedded default: SQLite + local blobs in the one default data
# directory that `pseudoword token`, `gc` and `migrate` use too (PSEUDOWORD_DATA_DIR, else
# ~/.local/share/pseudoword). Extra arguments go to `pseudoword serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh server
exec .venv/bin/pseudoword serve "$@"

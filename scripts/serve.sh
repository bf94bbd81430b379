#!/usr/bin/env bash
# Set up and run the registry on the embedded default: SQLite + local blobs under ./data.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh server
exec .venv/bin/pseudoword serve --data-dir "${PSEUDOWORD_DATA_DIR:-./data}" "$@"

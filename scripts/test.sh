#!/usr/bin/env bash
# Set up and run the test suite (what CI runs): the lint gate (scripts/lint.sh), then pytest.
#   ./scripts/test.sh            everything (CI: PostgreSQL, S3, the browser, slow tests)
#   ./scripts/test.sh --fast     the quick loop: ruff, then unit and SQLite tests (no PostgreSQL,
#                                S3, browser or slow tests; no mypy)
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# One torch thread per process unless told otherwise: the suite runs servers and workers beside the
# test process on small machines, where more threads only contend (the whole suite ran 13+ min
# with torch's default threads, under 9 with one).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fast=0
args=()
for arg in "$@"; do
    if [ "$arg" = "--fast" ]; then fast=1; else args+=("$arg"); fi
done
./scripts/setup.sh dev
if [ "$fast" = 1 ]; then
    .venv/bin/ruff check .
    exec .venv/bin/python -m pytest -q -p no:cacheprovider -m "not postgres and not s3 and not browser and not slow" \
        ${args[@]+"${args[@]}"}
fi
./scripts/lint.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider ${args[@]+"${args[@]}"}

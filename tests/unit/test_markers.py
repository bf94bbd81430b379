"""Markers follow from what a test uses (tests/conftest.py), so `-m` selects without hand-kept lists:
the PostgreSQL case of a per-backend test is `postgres` and `s3`, its SQLite case neither."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _collected(expression: str, *paths: str) -> list[str]:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
                             "-m", expression, *paths], cwd=ROOT, capture_output=True, text=True, timeout=300)
    return [line for line in result.stdout.splitlines() if "::" in line]


@pytest.mark.slow  # three collections in subprocesses
def test_markers_select_by_backend_and_corpus() -> None:
    per_backend = "tests/integration/test_service_catalogue.py"
    postgres = _collected("postgres and s3", per_backend, "tests/unit/test_refs.py")
    assert postgres and all("[postgres" in test or "-postgres" in test for test in postgres), postgres
    fast = _collected("not postgres and not s3 and not browser and not slow", per_backend, "tests/unit/test_refs.py")
    assert any("test_refs.py" in test for test in fast)
    assert not any("postgres" in test for test in fast)
    corpus = _collected("corpus", "tests/unit/test_refs.py", "tests/unit/test_runtime_layout.py")
    assert corpus and all("test_runtime_layout.py" in test for test in corpus)

"""Shared fixtures: where the corpus is, and how tests that need a real service skip.

Under CI (``CI=true``) a missing service or corpus is a failure, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

#: Live registry servers, one per backend per session, shared by tests/integration and tests/security.
pytest_plugins = ["tests.registry_servers"]

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("PSEUDOWORD_CORPUS", ROOT.parent / "shared" / "corpus"))
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip the test with ``reason`` when ``condition`` is false; fail instead under CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    # The corpus lives outside the project (../shared/corpus): a fresh clone without it skips these
    # conformance tests, under CI too, as the corpus README asks.
    if not (CORPUS / "embeddings" / "MANIFEST.tsv").is_file():
        pytest.skip(f"corpus not found at {CORPUS} (set PSEUDOWORD_CORPUS)")
    return CORPUS


@pytest.fixture(scope="session")
def embeddings_dir(corpus_dir: Path) -> Path:
    return corpus_dir / "embeddings"


@pytest.fixture(scope="session")
def manifest(embeddings_dir: Path) -> list[dict[str, str]]:
    """Rows of MANIFEST.tsv as dicts (file, architecture, vectors, sha256, size, format, keys)."""
    lines = (embeddings_dir / "MANIFEST.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line.strip()]


@pytest.fixture(scope="session")
def tokenizer_dir(corpus_dir: Path) -> Path:
    return corpus_dir / "clip-tokenizer"


@pytest.fixture(scope="session")
def tokenizer_2_dir(corpus_dir: Path) -> Path:
    return corpus_dir / "clip-tokenizer-2"


# -- small pipelines with real text-encoder widths (built once per session; see tests/pipelines.py)


@pytest.fixture(scope="session")
def sd1(tokenizer_dir: Path) -> Any:
    from tests.pipelines import shared_sd1

    return shared_sd1(tokenizer_dir)


@pytest.fixture(scope="session")
def sd2(tokenizer_2_dir: Path) -> Any:
    from tests.pipelines import shared_sd2

    return shared_sd2(tokenizer_2_dir)


@pytest.fixture(scope="session")
def sdxl(tokenizer_dir: Path, tokenizer_2_dir: Path) -> Any:
    from tests.pipelines import shared_sdxl

    return shared_sdxl(tokenizer_dir, tokenizer_2_dir)


# -- markers from what a test uses (so `-m "not postgres"` etc. select without hand-kept lists) -----

#: Fixtures that mean a marker; a parametrized fixture's "postgres" case means PostgreSQL + S3.
_FIXTURE_MARKERS = {
    "postgres_url": ("postgres",),
    "moto_s3": ("s3",),
    "s3_registry": ("s3",),
    **dict.fromkeys(("corpus_dir", "embeddings_dir", "manifest", "tokenizer_dir", "tokenizer_2_dir", "sd1", "sd2",
                     "sdxl"), ("corpus",)),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        wanted = {marker for name in names for marker in _FIXTURE_MARKERS.get(name, ())}
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "postgres" in (params.get("backend"), params.get("database_url")):
            wanted |= {"postgres", "s3"} if params.get("backend") == "postgres" else {"postgres"}
        if "browser" in item.path.parts:
            wanted.add("browser")
        for marker in sorted(wanted - {m.name for m in item.iter_markers()}):
            item.add_marker(getattr(pytest.mark, marker))

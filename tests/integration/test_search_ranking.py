"""Relevance ranks the newest RELEVANCE_CANDIDATES matches (so a common word stays fast); the
other sorts still see every match, whichever plan SQLite is steered to. On both databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pseudoword.registry.core.refs import parse_model_ref
from pseudoword.registry.service import search as search_module
from pseudoword.registry.service.catalogue import Catalogue, parse_metadata
from pseudoword.registry.service.db import make_engine, migrate
from pseudoword.registry.service.search import Query, search
from pseudoword.registry.service.settings import Settings
from pseudoword.registry.service.storage import open_store
from tests.integration.api import random_embedding

# Published oldest first. "style" matches all but m6; m1 and m4 carry it in title and trigger.
MODELS = [
    ("m1", {"title": "style style", "trigger": "style", "description": "style"}),
    ("m2", {"description": "a style of drawing"}),
    ("m3", {"description": "some style here", "kind": "negative"}),
    ("m4", {"title": "style", "trigger": "style"}),
    ("m5", {"description": "a long description that mentions style once among many other words"}),
    ("m6", {"description": "unrelated"}),
]


@pytest.fixture()
def catalogue(database_url: str, tmp_path: Path) -> Iterator[Catalogue]:
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    engine = make_engine(database_url)
    migrate(engine)
    catalogue = Catalogue(engine, open_store(settings.effective_storage_url, None, None), settings)
    for seed, (name, meta) in enumerate(MODELS):
        fields = {"id": f"studio:{name}@1", "trigger": meta.get("trigger", name), "kind": meta.get("kind", "positive"),
                  "title": meta.get("title", ""), "description": meta.get("description", "")}
        catalogue.publish(parse_metadata(json.dumps(fields), settings), random_embedding(seed=seed), "e.safetensors")
    yield catalogue
    engine.dispose()


def _names(catalogue: Catalogue, **query: object) -> list[str]:
    """Every page of a search, one result per page, so the cursor is exercised at each step."""
    names: list[str] = []
    cursor = None
    for _ in range(20):
        with catalogue.session() as session:
            ids, cursor = search(session, Query(limit=1, cursor=cursor, **query))  # type: ignore[arg-type]
        names += [record.model for record in catalogue.records_by_ids(ids)]
        if cursor is None:
            return names
    raise AssertionError(f"paging never ended: {names}")


def test_relevance_ranks_every_match_when_there_are_few(catalogue: Catalogue) -> None:
    ranked = _names(catalogue, q="style")
    assert sorted(ranked) == ["m1", "m2", "m3", "m4", "m5"]
    assert set(ranked[:2]) == {"m1", "m4"}  # title and trigger outweigh a description
    assert ranked[-1] == "m5"  # one mention in the longest description


def test_relevance_ranks_only_the_newest_matches_beyond_the_cap(catalogue: Catalogue,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "RELEVANCE_CANDIDATES", 3)
    ranked = _names(catalogue, q="style")
    assert ranked[0] == "m4" and sorted(ranked) == ["m3", "m4", "m5"]  # m1 and m2 are older than the cap
    # With a filter the cap counts only matches that pass it: m3 is negative.
    assert sorted(_names(catalogue, q="style", kind="positive")) == ["m2", "m4", "m5"]
    assert _names(catalogue, q="style", kind="positive")[0] == "m4"
    # A rare word is never cut.
    assert _names(catalogue, q="unrelated") == ["m6"]


@pytest.mark.parametrize("cap", [2, 1000])  # 2: 'style' counts as common and SQLite walks the sort's index
def test_newest_and_downloads_see_every_match_whatever_the_plan(catalogue: Catalogue, cap: int,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "RELEVANCE_CANDIDATES", cap)
    assert _names(catalogue, q="style", sort="newest") == ["m5", "m4", "m3", "m2", "m1"]
    for _ in range(3):
        catalogue.count_download(catalogue.version_row(parse_model_ref("studio:m2@1")))
    catalogue.count_download(catalogue.version_row(parse_model_ref("studio:m4@1")))
    assert catalogue.downloads.flush()
    assert _names(catalogue, q="style", sort="downloads") == ["m2", "m4", "m5", "m3", "m1"]
    assert _names(catalogue, q="unrelated", sort="downloads") == ["m6"]

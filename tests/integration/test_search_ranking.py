"""Relevance ranks the matches a window of RELEVANCE_WINDOW at a time, newest window first (so a
common word stays fast), and pages on into older windows, so every match is reachable by every sort,
whichever plan the database is steered to. On both databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

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


def _published(database_url: str, tmp_path: Path) -> Catalogue:
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    engine = make_engine(database_url)
    migrate(engine)
    catalogue = Catalogue(engine, open_store(settings.effective_storage_url, None, None), settings)
    for seed, (name, meta) in enumerate(MODELS):
        fields = {"id": f"studio:{name}@1", "trigger": meta.get("trigger", name), "kind": meta.get("kind", "positive"),
                  "title": meta.get("title", ""), "description": meta.get("description", "")}
        catalogue.publish(parse_metadata(json.dumps(fields), settings), random_embedding(seed=seed), "e.safetensors")
    return catalogue


@pytest.fixture()
def catalogue(database_url: str, tmp_path: Path) -> Iterator[Catalogue]:
    catalogue = _published(database_url, tmp_path)
    yield catalogue
    catalogue.engine.dispose()


def _names(catalogue: Catalogue, limit: int = 1, **query: object) -> list[str]:
    """Every page of a search, one result per page unless told, so the cursor is exercised at each step."""
    names: list[str] = []
    cursor = None
    for _ in range(20):
        with catalogue.session() as session:
            ids, cursor = search(session, Query(limit=limit, cursor=cursor, **query))  # type: ignore[arg-type]
        names += [record.model for record in catalogue.records_by_ids(ids)]
        if cursor is None:
            return names
    raise AssertionError(f"paging never ended: {names}")


def test_relevance_ranks_every_match_when_there_are_few(catalogue: Catalogue) -> None:
    ranked = _names(catalogue, q="style")
    assert sorted(ranked) == ["m1", "m2", "m3", "m4", "m5"]
    assert set(ranked[:2]) == {"m1", "m4"}  # title and trigger outweigh a description
    assert ranked[-1] == "m5"  # one mention in the longest description


def test_relevance_ranks_a_window_at_a_time_and_pages_into_older_windows(catalogue: Catalogue,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "RELEVANCE_WINDOW", 3)
    # The newest three matches (m5, m4, m3) by score, then the older window (m2, m1) by score.
    whole = _names(catalogue, q="style")
    assert whole[0] == "m4" and set(whole[:3]) == {"m3", "m4", "m5"} and whole[3:] == ["m1", "m2"]
    # Pages that end inside a window and pages that span two give the same order.
    assert _names(catalogue, q="style", limit=2) == _names(catalogue, q="style", limit=4) == whole
    assert _names(catalogue, q="style", limit=100) == whole
    # With a filter the window counts only matches that pass it: m3 is negative.
    positive = _names(catalogue, q="style", kind="positive")
    assert positive[0] == "m4" and set(positive[:3]) == {"m2", "m4", "m5"} and positive[3:] == ["m1"]
    # A rare word is never cut.
    assert _names(catalogue, q="unrelated") == ["m6"]


def test_a_relevance_page_stays_in_its_window_when_newer_models_arrive(catalogue: Catalogue,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "RELEVANCE_WINDOW", 3)
    with catalogue.session() as session:
        first, cursor = search(session, Query(q="style", limit=2))
    fields = {"id": "studio:m7@1", "trigger": "style", "title": "style style style", "description": "style"}
    settings = catalogue.settings
    catalogue.publish(parse_metadata(json.dumps(fields), settings), random_embedding(seed=7), "e.safetensors")
    names = [record.model for record in catalogue.records_by_ids(first)]
    while cursor:  # the rest of the first window, then the older one: the new m7 is not in them
        with catalogue.session() as session:
            ids, cursor = search(session, Query(q="style", limit=2, cursor=cursor))
        names += [record.model for record in catalogue.records_by_ids(ids)]
    assert sorted(names) == ["m1", "m2", "m3", "m4", "m5"] and len(names) == 5
    assert _names(catalogue, q="style")[0] == "m7"  # a new search starts from the newest window


@pytest.mark.parametrize("walk", [True, False])
def test_newest_and_downloads_see_every_match_whatever_the_plan(catalogue: Catalogue, walk: bool,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "_walk_pays", lambda *costs: walk)
    assert _names(catalogue, q="style", sort="newest") == ["m5", "m4", "m3", "m2", "m1"]
    for _ in range(3):
        catalogue.count_download(catalogue.version_row(parse_model_ref("studio:m2@1")))
    catalogue.count_download(catalogue.version_row(parse_model_ref("studio:m4@1")))
    assert catalogue.downloads.flush()
    assert _names(catalogue, q="style", sort="downloads") == ["m2", "m4", "m5", "m3", "m1"]
    assert _names(catalogue, q="unrelated", sort="downloads") == ["m6"]


def test_walking_the_primary_key_pays_only_for_common_words() -> None:
    # The two cases measured at 1,000,000 entries: two words in 6,000 models (collecting them: 17 ms,
    # walking: 35 ms) and a word in 28,000 (walking: 10 ms, collecting: 140 ms).
    cost = search_module._PG_WALK_ROW_PER_MATCH
    assert not search_module._walk_pays(6_000, 1_000_000, search_module.RELEVANCE_WINDOW, cost)
    assert search_module._walk_pays(28_000, 1_000_000, search_module.RELEVANCE_WINDOW, cost)


def test_postgres_reads_a_window_in_spans_of_ids_and_finds_the_same_matches(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalogue = _published(postgres_url, tmp_path)
    try:
        monkeypatch.setattr(search_module, "RELEVANCE_WINDOW", 3)
        whole = _names(catalogue, q="style")
        spans: list[int] = []
        monkeypatch.setattr(search_module, "_walk_pays", lambda *costs: False)
        monkeypatch.setattr(search_module, "_span", lambda *costs: spans.append(1) or 1)  # one id at a time
        assert _names(catalogue, q="style") == whole
        assert _names(catalogue, q="style", limit=2) == whole
        assert _names(catalogue, q="style", kind="positive")[3:] == ["m1"]
        assert len(spans) > 10  # the spans were taken, not the whole collection
    finally:
        catalogue.engine.dispose()


def test_a_span_of_ids_pays_between_reading_every_match_and_walking() -> None:
    # 1,000,000 entries: two words in 6,000 models were read in 17 ms; intersected with the 52,000
    # newest ids (0.08 us each) only about 300 are read (9 ms). A rare word is read whole, and a
    # span never reaches past the catalogue.
    window = search_module.RELEVANCE_WINDOW
    assert search_module._span(6_000, 1_000_000, window) == 52_084
    assert search_module._span(1_000, 1_000_000, window) is None
    assert search_module._span(300, 1_000, window) is None


def test_gc_compacts_the_sqlite_text_index_and_every_search_finds_the_same(catalogue: Catalogue) -> None:
    def segments() -> int:
        with catalogue.engine.connect() as connection:
            return int(connection.execute(text("SELECT count(DISTINCT segid) FROM model_search_idx")).scalar() or 0)

    sqlite = catalogue.engine.dialect.name == "sqlite"
    if sqlite:
        assert segments() > 1  # each publish wrote its own
    before = {sort: _names(catalogue, q="style", sort=sort) for sort in search_module.SORTS}
    report = catalogue.gc()
    assert report.search_index_compacted is sqlite  # PostgreSQL's GIN index needs nothing
    if sqlite:
        assert segments() == 1
    assert {sort: _names(catalogue, q="style", sort=sort) for sort in search_module.SORTS} == before
    assert not catalogue.gc(dry_run=True).search_index_compacted  # a dry run changes nothing

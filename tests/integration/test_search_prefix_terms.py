"""A query word matches every indexed word it is a prefix of, however the engine gets there: on
SQLite through the index's vocabulary (search_terms.py: an OR of known terms, or the prefix query
when there are too many or none), with folding as FTS5's tokenizer does it; on PostgreSQL by
prefix. Every sort finds the same matches whether it collects them or walks its index. On both
databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pseudoword.registry.service import search as search_module
from pseudoword.registry.service import search_terms
from pseudoword.registry.service.catalogue import Catalogue, parse_metadata
from pseudoword.registry.service.db import make_engine, migrate
from pseudoword.registry.service.search import Query, search
from pseudoword.registry.service.settings import Settings
from pseudoword.registry.service.storage import open_store
from tests.integration.api import random_embedding

DESCRIPTIONS = {"a": "a café in paris", "b": "cafeteria food", "c": "cafe racer", "d": "Søren's garden",
                "e": "nothing here", "f": "a CAFÉ again", "g": "stylised café-au-lait"}


@pytest.fixture()
def catalogue(database_url: str, tmp_path: Path) -> Iterator[Catalogue]:
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    engine = make_engine(database_url)
    migrate(engine)
    catalogue = Catalogue(engine, open_store(settings.effective_storage_url, None, None), settings)
    for seed, (name, text) in enumerate(DESCRIPTIONS.items()):
        meta = {"id": f"studio:m{name}@1", "trigger": f"t{name}", "description": text}
        catalogue.publish(parse_metadata(json.dumps(meta), settings), random_embedding(seed=seed), "e.safetensors")
    yield catalogue
    engine.dispose()


def found(catalogue: Catalogue, q: str, sort: str = "relevance") -> set[str]:
    with catalogue.session() as session:
        ids, _ = search(session, Query(q=q, sort=sort, limit=100))
    return {record.model[1:] for record in catalogue.records_by_ids(ids)}


@pytest.mark.parametrize("sort", ["relevance", "newest", "downloads"])
def test_prefixes_match_every_word_they_begin(catalogue: Catalogue, sort: str) -> None:
    assert found(catalogue, "caf", sort) == {"a", "b", "c", "f", "g"}
    if catalogue.engine.dialect.name == "sqlite":  # FTS5's unicode61 folds café to cafe
        assert found(catalogue, "cafe", sort) == found(catalogue, "café", sort) == {"a", "b", "c", "f", "g"}
    else:  # PostgreSQL's 'simple' configuration keeps accents (as before this index change)
        assert (found(catalogue, "cafe", sort), found(catalogue, "café", sort)) == ({"b", "c"}, {"a", "f", "g"})
    assert found(catalogue, "cafet", sort) == {"b"}
    assert found(catalogue, "cafe racer", sort) == {"c"}
    assert found(catalogue, "garden sør", sort) == {"d"}
    assert found(catalogue, "zzz", sort) == set()


def test_many_expansions_keep_the_prefix_query_and_walking_finds_the_same(catalogue: Catalogue,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    expected = {sort: found(catalogue, "ca", sort) for sort in ("relevance", "newest", "downloads")}
    assert expected["relevance"] == {"a", "b", "c", "f", "g"}
    monkeypatch.setattr(search_terms, "MAX_EXPANSIONS", 1)  # "caf": more terms than that: prefix query
    monkeypatch.setattr(search_terms, "MAX_EXPANSIONS_POSTGRES", 1)
    monkeypatch.setattr(search_module, "_walk_pays", lambda *costs: True)  # always walk the sort's index
    for sort, names in expected.items():
        assert found(catalogue, "ca", sort) == names
        assert found(catalogue, "caf", sort) == names


def test_the_vocabulary_holds_the_text_indexs_terms(catalogue: Catalogue) -> None:
    with catalogue.session() as session:
        terms = set(session.execute(search_module.text("SELECT term FROM search_terms")).scalars())
    assert {"cafeteria", "søren", "stylised", "lait", "tc", "studio"} <= terms
    if catalogue.engine.dialect.name == "sqlite":  # FTS5's own tokens: folded as its tokenizer folds
        assert search_terms.fts_tokens("Søren's CAFÉ-au-lait") == ["søren", "s", "cafe", "au", "lait"]
        assert "cafe" in terms and "café" not in terms
    else:  # PostgreSQL's 'simple' lexemes
        assert {"cafe", "café"} <= terms

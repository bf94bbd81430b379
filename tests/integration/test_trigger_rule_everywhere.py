"""One trigger rule: ``publish`` (the catalogue, no trigger given) and ``import`` (the CLI's folder
import) name every file the same way, the file's name, for the corpus and for the names the
seeds found troublesome (a stored name unlike the file's, a trailing space)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pseudoword.registry.core import read_embedding
from pseudoword.registry.core.record import ResolveAnswer
from pseudoword.registry.importing import ImportPlan, import_folder
from pseudoword.registry.service.catalogue import Catalogue, parse_metadata
from pseudoword.registry.service.db import make_engine, migrate
from pseudoword.registry.service.settings import Settings
from pseudoword.registry.service.storage import open_store

#: Seeds' names -> the corpus file whose bytes they carry.
RENAMED = {
    "badhandv4.pt": "bad-hands-5.pt",  # stores "bad-hands-5"
    "nartfixer.pt": "eyeliner2.pt",  # stores "eyeliner2"
    "Stable_Yogis_Scenery_positives .safetensors": "zPDXL2.safetensors",
}


class _NothingPublished:
    """The registry an import asks which IDs exist: none."""

    def resolve(self, refs: list[str]) -> list[ResolveAnswer]:
        return [ResolveAnswer(ref, None, {"code": "not_found"}) for ref in refs]


@pytest.fixture()
def folder(embeddings_dir: Path, manifest: list[dict[str, str]], tmp_path: Path) -> Path:
    target = tmp_path / "embeddings"
    target.mkdir()
    for row in manifest:
        if row["architecture"] != "reject":
            shutil.copy(embeddings_dir / row["file"], target / row["file"])
    for name, original in RENAMED.items():
        shutil.copy(embeddings_dir / original, target / name)
    return target


@pytest.fixture()
def catalogue(tmp_path: Path) -> Iterator[Catalogue]:
    url = f"sqlite:///{tmp_path / 'pseudoword.db'}"
    settings = Settings(data_dir=tmp_path, database_url=url)
    engine = make_engine(url)
    migrate(engine)
    yield Catalogue(engine, open_store(settings.effective_storage_url, None, None), settings)
    engine.dispose()


def test_publish_and_import_give_every_file_the_same_trigger(folder: Path, catalogue: Catalogue) -> None:
    report = import_folder(ImportPlan(folder, "corpus", dry_run=True), _NothingPublished())
    assert report.refused == [] and len(report.published) == 28 + len(RENAMED)
    by_file = {row["file"]: row for row in report.published}
    for name, row in by_file.items():
        meta = parse_metadata(json.dumps({"id": row["id"]}), catalogue.settings)
        record, created = catalogue.publish(meta, (folder / name).read_bytes(), name)
        assert created
        assert record.trigger == row["trigger"], name
    assert by_file["badhandv4.pt"]["trigger"] == "badhandv4"
    assert read_embedding(folder / "badhandv4.pt").name == "bad-hands-5"  # not what a user types
    assert by_file["Stable_Yogis_Scenery_positives .safetensors"]["trigger"] == "Stable_Yogis_Scenery_positives"
    assert by_file["Low_Quality2xx_ By_Stable_Yogi-neg.pt"]["trigger"] == "Low_Quality2xx_-By_Stable_Yogi-neg"
    assert by_file["charturnerv2.pt"]["trigger"] == "charturnerv2"  # it stores "testTurner"

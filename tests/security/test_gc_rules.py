"""gc's rules, in process on both databases: orphans younger than the grace period stay, stale
partial writes go, referenced blobs never go, the report says exactly what was deleted; and a
republish of an existing ID with the same content writes its blob again when it went missing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pseudoword.registry.core import canonical_bytes, read_embedding
from pseudoword.registry.service.catalogue import Catalogue, parse_metadata
from pseudoword.registry.service.db import make_engine, migrate
from pseudoword.registry.service.settings import Settings
from pseudoword.registry.service.storage import TMP_PREFIX, LocalBlobStore, blob_key
from tests.integration.api import random_embedding

HOUR = 3600


def _catalogue(database_url: str, tmp_path: Path) -> Catalogue:
    engine = make_engine(database_url)
    migrate(engine)
    return Catalogue(engine, LocalBlobStore(tmp_path / "blobs"), Settings(data_dir=tmp_path, database_url=database_url))


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _orphan(catalogue: Catalogue, root: Path, seed: int, age: float) -> str:
    data = canonical_bytes(read_embedding(random_embedding(seed=seed)))
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    catalogue.store.put(digest, data)
    _age(root / blob_key(digest), age)
    return digest


def test_gc_keeps_young_orphans_removes_stale_ones_and_reports_exactly(database_url: str, tmp_path: Path) -> None:
    catalogue = _catalogue(database_url, tmp_path)
    root = tmp_path / "blobs"
    try:
        record, _ = catalogue.publish(parse_metadata(json.dumps({"id": "studio:kept@1"}), catalogue.settings),
                                      random_embedding(seed=1), "kept.safetensors")
        _age(root / blob_key(record.sha256), 2 * HOUR)  # old, but referenced
        old = _orphan(catalogue, root, 2, 2 * HOUR)
        young = _orphan(catalogue, root, 3, 60)
        stale_tmp = root / "sha256" / "ab" / "cd" / f"{TMP_PREFIX}crashed"
        fresh_tmp = root / "sha256" / "ab" / "cd" / f"{TMP_PREFIX}writing"
        stale_tmp.parent.mkdir(parents=True, exist_ok=True)
        stale_tmp.write_bytes(b"partial")
        fresh_tmp.write_bytes(b"partial")
        _age(stale_tmp, 2 * HOUR)

        dry = catalogue.gc(dry_run=True)
        assert (sorted(dry.orphans), dry.young, dry.removed, dry.temporaries_removed) == (sorted([old, young]), [young], [], [])
        report = catalogue.gc()
        assert report.removed == [old] and report.young == [young] and report.grace_seconds == HOUR
        assert report.temporaries_removed == [str(stale_tmp.relative_to(root))]
        assert not (root / blob_key(old)).exists() and (root / blob_key(young)).exists()
        assert (root / blob_key(record.sha256)).exists() and fresh_tmp.exists() and not stale_tmp.exists()
        # Republishing an old orphan's content makes it young again: gc keeps it now.
        again = _orphan(catalogue, root, 4, 2 * HOUR)
        catalogue.store.put(again, canonical_bytes(read_embedding(random_embedding(seed=4))))
        assert again in catalogue.gc().young
    finally:
        catalogue.close()
        catalogue.engine.dispose()


def test_republishing_the_same_content_heals_a_missing_blob(database_url: str, tmp_path: Path) -> None:
    catalogue = _catalogue(database_url, tmp_path)
    try:
        meta = parse_metadata(json.dumps({"id": "studio:healed@1"}), catalogue.settings)
        record, created = catalogue.publish(meta, random_embedding(seed=5), "healed.safetensors")
        assert created
        catalogue.store.delete(record.sha256)  # lost (a disk replaced, a gc of old code...)
        again, created = catalogue.publish(meta, random_embedding(seed=5), "healed.safetensors")
        assert not created and again.sha256 == record.sha256
        import hashlib

        assert hashlib.sha256(catalogue.store.get(record.sha256)).hexdigest() == record.sha256
    finally:
        catalogue.close()
        catalogue.engine.dispose()

"""gc keeps the blobs preview rows refer to (images and thumbnails), on both databases, and still
removes an old orphan beside them."""

from __future__ import annotations

import json
from pathlib import Path

from pseudoword.registry.service.catalogue import parse_metadata
from pseudoword.registry.service.previews import check_images
from pseudoword.registry.service.storage import blob_key
from tests.images import png
from tests.integration.api import random_embedding
from tests.security.test_gc_rules import HOUR, _age, _catalogue, _orphan


def test_gc_keeps_preview_blobs_and_removes_orphans(database_url: str, tmp_path: Path) -> None:
    catalogue = _catalogue(database_url, tmp_path)
    root = tmp_path / "blobs"
    try:
        record, _ = catalogue.publish(parse_metadata(json.dumps({"id": "studio:pics@1"}), catalogue.settings),
                                      random_embedding(seed=1), "pics.safetensors")
        images = check_images([("a.png", png(seed=1)), ("b.png", png(seed=2))], catalogue.settings)
        version_id = catalogue.previews.version_id("studio", "pics", "1")
        attached = catalogue.previews.attach(version_id, images)
        kept = {record.sha256} | {p.sha256 for p in attached} | {str(p.thumbnail_url).rsplit("/", 1)[1] for p in attached}
        assert len(kept) == 5
        for digest in kept:
            _age(root / blob_key(digest), 2 * HOUR)  # old, but referenced
        orphan = _orphan(catalogue, root, 9, 2 * HOUR)

        report = catalogue.gc()
        assert report.removed == [orphan] and report.orphans == [orphan]
        for digest in kept:
            assert (root / blob_key(digest)).is_file(), digest
        assert not catalogue._delete_orphan(str(attached[0].sha256), 0)  # the lock-held recheck sees the row too
    finally:
        catalogue.close()

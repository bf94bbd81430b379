"""`registry.importing.import_folder` from Python, without Typer: against a live registry through
`RegistryClient`, a rerun skips what is published, other content under a published ID is refused,
and a refused file stores nothing."""

from __future__ import annotations

import secrets
from pathlib import Path

from pseudoword.registry.client import RegistryClient
from pseudoword.registry.importing import ImportPlan, import_folder
from tests.integration.api import random_embedding
from tests.integration.cli_server import LiveRegistry, live_registry  # noqa: F401  (fixture)


def test_import_folder_publishes_skips_and_refuses(live_registry: LiveRegistry, tmp_path: Path) -> None:
    source = f"t{secrets.token_hex(4)}"
    folder = tmp_path / "embeddings"
    (folder / "sub").mkdir(parents=True)
    (folder / "glassy style.safetensors").write_bytes(random_embedding(seed=1))
    (folder / "sub" / "bad_hands-neg.safetensors").write_bytes(random_embedding(seed=2))
    (folder / "broken.pt").write_bytes(b"not a torch file")
    heard: list[tuple[int, int]] = []
    plan = ImportPlan(directory=folder, source=source, kind_from_name=True, tags=("mine",))
    with RegistryClient(live_registry.url, live_registry.admin_token) as client:
        first = import_folder(plan, client, progress=lambda done, total: heard.append((done, total)))
        assert sorted(r["id"] for r in first.published) == [f"{source}:bad_hands-neg@1", f"{source}:glassy-style@1"]
        assert {r["id"]: r["kind"] for r in first.published}[f"{source}:bad_hands-neg@1"] == "negative"
        assert [r["file"] for r in first.refused] == ["broken.pt"] and first.refused[0]["code"] == "invalid_file"
        assert heard == [(1, 2), (2, 2)] and first.aborted is None
        assert client.resolve([f"{source}:broken@1"])[0].get("record") is None, "a refused file stores nothing"

        again = import_folder(plan, client)
        assert again.published == [] and len(again.skipped) == 2

        (folder / "glassy style.safetensors").write_bytes(random_embedding(seed=3))
        changed = import_folder(plan, client)
        conflict = [r for r in changed.refused if r["file"] == "glassy style.safetensors"]
        assert conflict and conflict[0]["code"] == "conflict"
        published = {r["id"]: r for r in first.published}[f"{source}:glassy-style@1"]
        assert client.get_version(f"{source}:glassy-style@1")["sha256"] == published["canonical_sha256"], \
            "the published version is unchanged"

"""The file a user has in hand is found again: one pulled in A1111's format, hashed as A1111 hashes
an embedding (``modules/hashes.py``: SHA-256 of the whole file; the short hash in an image's
``TI hashes`` is its first 12 hex digits), is found by `show` and by the search box."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from tests.integration.api import torch_file
from tests.integration.cli_server import Cli, cli, live_registry  # noqa: F401  (fixtures)


def a1111_sha256(path: Path) -> str:
    """What A1111's ``hashes.calculate_sha256`` computes: the file read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def test_a_pulled_a1111_file_is_found_by_show_and_the_search_box(cli: Cli, tmp_path: Path) -> None:
    upload = tmp_path / "tihashes-upload.safetensors"
    from safetensors.torch import save_file
    save_file({"emb_params": torch.randn(2, 768, generator=torch.Generator().manual_seed(21))}, upload)
    published = cli("publish", upload, "--id", "tihash:HandPainted@1", "--trigger", "handpainted", "--json")
    assert published.exit_code == 0, published.stderr
    pulled = cli("pull", "tihash:handpainted@1", "--format", "a1111", "--to", tmp_path / "embeddings", "--json")
    assert pulled.exit_code == 0, pulled.stderr
    path = Path(pulled.json()["path"])
    assert path.name == "handpainted.pt"
    short = a1111_sha256(path)[:12]  # what A1111 writes into "TI hashes: handpainted: <short>"
    assert short != published.json()["sha256"][:12]  # not the canonical file's hash: the export's own

    shown = cli("show", short, "--json")
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["id"] == "tihash:HandPainted@1"
    assert any(f["format"] == "a1111" and f["a1111_hash"] == short for f in shown.json()["files"])

    import httpx
    api = httpx.get(f"{cli.registry.url}/api/v1/embeddings", params={"q": short}, timeout=30).json()
    assert [item["id"] for item in api["items"]] == ["tihash:HandPainted@1"]
    page = httpx.get(f"{cli.registry.url}/", params={"q": short}, timeout=30)
    assert page.status_code == 200 and "tihash" in page.text and "HandPainted" in page.text
    # a hash nobody published finds nothing, with no error
    missing = cli("show", "0123456789ab", "--json")
    assert missing.exit_code != 0 and "0123456789ab" in missing.stderr


def test_the_upload_itself_is_found_by_its_autov2(cli: Cli, tmp_path: Path) -> None:
    data = torch_file({"string_to_param": {"*": torch.randn(1, 768, generator=torch.Generator().manual_seed(22))},
                       "name": "x", "step": 1})
    upload = tmp_path / "autov2file.pt"
    upload.write_bytes(data)
    assert cli("publish", upload, "--id", "tihash:autov2file@1").exit_code == 0
    shown = cli("show", hashlib.sha256(data).hexdigest()[:10].upper(), "--json")
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["id"] == "tihash:autov2file@1"

"""End to end: the CLI against a real `pseudoword serve` on loopback, with the whole corpus
imported: import (and its rerun), search, show, pull in every format, publish idempotence and
conflicts, yank, lock, and the `--json` documents."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from pseudoword.registry.core import read_embedding
from pseudoword.registry.importing import model_slug, trigger_from_stem
from tests.integration.api import eventually
from tests.integration.cli_server import Cli, cli, live_registry  # noqa: F401  (fixtures)

SOURCE = "corpus"
RECORD_KEYS = {"id", "air", "architecture", "vectors", "kind", "trigger", "sha256", "size", "yanked"}


def corpus_id(file: str) -> str:
    return f"{SOURCE}:{model_slug(Path(file).stem)}@1"


@pytest.fixture(scope="module")
def good_rows(manifest) -> list[dict[str, str]]:
    return [row for row in manifest if row["architecture"] != "reject"]


@pytest.fixture(scope="module")
def imported(cli: Cli, embeddings_dir: Path) -> dict[str, Any]:
    """The corpus folder imported once under `corpus`; the report of that first run."""
    result = cli("import", embeddings_dir, "--source", SOURCE, "--kind-from-name", "--tag", "corpus", "--json")
    report = result.json()
    report["exit_code"] = result.exit_code
    return report


def test_import_publishes_every_good_file_and_refuses_the_reject_with_its_reason(imported, manifest, good_rows):
    assert imported["exit_code"] == 1, "a refused file is a failure to act on"
    assert sorted(row["file"] for row in imported["published"]) == sorted(row["file"] for row in good_rows)
    assert imported["skipped"] == []
    rejects = [row["file"] for row in manifest if row["architecture"] == "reject"]
    assert [row["file"] for row in imported["refused"]] == rejects
    assert imported["refused"][0]["code"] == "shape_mismatch"
    assert "list of 11 items" in imported["refused"][0]["message"]
    by_file = {row["file"]: row for row in imported["published"]}
    for row in good_rows:
        published = by_file[row["file"]]
        assert published["id"] == corpus_id(row["file"])
        assert published["architecture"] == row["architecture"]
        assert published["vectors"] == int(row["vectors"])
        assert published["sha256"] == row["sha256"], "sha256 of the file as it is on disk"
        assert published["trigger"] == trigger_from_stem(Path(row["file"]).stem)
    assert by_file["EasyNegative.safetensors"]["kind"] == "negative"
    assert by_file["zPDXL-neg.pt"]["kind"] == "negative"
    assert by_file["charturnerv2.pt"]["kind"] == "positive"


def test_rerunning_import_publishes_nothing_new(imported, cli, embeddings_dir, good_rows):
    result = cli("import", embeddings_dir, "--source", SOURCE, "--kind-from-name", "--json")
    report = result.json()
    assert result.exit_code == 1  # the reject is still refused
    assert report["published"] == []
    assert sorted(row["file"] for row in report["skipped"]) == sorted(row["file"] for row in good_rows)
    assert [row["code"] for row in report["refused"]] == ["shape_mismatch"]

    human = cli("import", embeddings_dir, "--source", SOURCE, "--kind-from-name")
    assert f"published 0, skipped {len(good_rows)}, refused 1" in human.stdout


def test_import_dry_run_uploads_nothing(imported, cli, embeddings_dir, good_rows):
    report = cli("import", embeddings_dir, "--source", "dryrun", "--dry-run", "--json").json()
    assert report["dry_run"] is True and len(report["published"]) == len(good_rows)
    assert cli("show", "dryrun:EasyNegative").exit_code == 1, "nothing was published"


def test_search_finds_each_file_by_trigger(imported, cli, good_rows):
    for row in good_rows:
        trigger = trigger_from_stem(Path(row["file"]).stem)
        result = cli("search", trigger, "--source", SOURCE, "--limit", "50", "--json")
        assert result.exit_code == 0, result.stderr
        ids = [item["id"] for item in result.json()["items"]]
        assert corpus_id(row["file"]) in ids, f"search {trigger!r} gave {ids}"


@pytest.mark.parametrize("arch", ["sd1", "sd2", "sdxl"])
def test_search_by_architecture_finds_exactly_that_architecture(imported, cli, good_rows, arch):
    result = cli("search", "--arch", arch, "--source", SOURCE, "--limit", "100", "--json")
    document = result.json()
    assert set(document) >= {"items", "next_cursor"}
    assert sorted(item["id"] for item in document["items"]) == sorted(
        corpus_id(row["file"]) for row in good_rows if row["architecture"] == arch)
    assert all(RECORD_KEYS <= set(item) for item in document["items"])


def test_search_pages_through_the_cursor_and_prints_a_table(imported, cli, good_rows, monkeypatch):
    import pseudoword.registry.client as client_module

    monkeypatch.setattr(client_module, "MAX_SEARCH_PAGE", 5)  # force several pages
    items = cli("search", "--source", SOURCE, "--sort", "newest", "--limit", "12", "--json").json()["items"]
    assert len(items) == 12 and len({item["id"] for item in items}) == 12
    everything = cli("search", "--source", SOURCE, "--limit", "1000", "--json").json()
    assert len(everything["items"]) == len(good_rows) and everything["next_cursor"] is None

    table = cli("search", "--kind", "negative", "--source", SOURCE, "--arch", "sdxl")
    assert table.exit_code == 0
    for word in ("ID", "Architecture", "Vectors", "Kind", "Trigger", "Downloads", "corpus:zPDXL-neg@1"):
        assert word in table.stdout
    assert "corpus:zPDXL@1" not in table.stdout  # positive


def test_show_gives_versions_hashes_and_usage(imported, cli, manifest):
    document = cli("show", "corpus:bad-hands-5", "--json").json()
    assert RECORD_KEYS <= set(document)
    assert document["id"] == "corpus:bad-hands-5@1" and document["architecture"] == "sd1"
    row = next(r for r in manifest if r["file"] == "bad-hands-5.pt")
    assert document["original_sha256"] == row["sha256"]
    assert document["autov2"] == row["sha256"][:10]
    assert [v["id"] for v in document["versions"]] == ["corpus:bad-hands-5@1"]
    assert document["usage"]["embeddings"] == [{"model": "corpus:bad-hands-5@1", "weight": 1.0}]

    by_hash = cli("show", row["sha256"][:10], "--json").json()
    assert by_hash["id"] == "corpus:bad-hands-5@1"

    human = cli("show", "urn:air:sd1:embedding:corpus:bad-hands-5@1")
    assert human.exit_code == 0
    for text in (document["sha256"], row["sha256"][:10], "load_textual_inversion", '"model": "corpus:bad-hands-5@1"',
                 "Versions"):
        assert text in human.stdout

    mismatch = cli("show", "urn:air:sdxl:embedding:corpus:bad-hands-5@1")
    assert mismatch.exit_code == 1 and "error [architecture_mismatch]" in mismatch.stderr


def _load_diffusers(pipe: Any, path: Path, trigger: str, architecture: str) -> torch.Tensor:
    """Load a pulled diffusers file the documented way; return the first vector diffusers put in."""
    if architecture == "sdxl":
        from safetensors.torch import load_file

        state = load_file(str(path))
        pipe.load_textual_inversion(state["clip_l"], token=trigger, text_encoder=pipe.text_encoder,
                                    tokenizer=pipe.tokenizer)
        pipe.load_textual_inversion(state["clip_g"], token=trigger, text_encoder=pipe.text_encoder_2,
                                    tokenizer=pipe.tokenizer_2)
        token_id = pipe.tokenizer_2.convert_tokens_to_ids(trigger)
        return pipe.text_encoder_2.get_input_embeddings().weight[token_id]
    pipe.load_textual_inversion(str(path), token=trigger)
    token_id = pipe.tokenizer.convert_tokens_to_ids(trigger)
    return pipe.text_encoder.get_input_embeddings().weight[token_id]


@pytest.mark.parametrize(("file", "trigger"), [("EasyNegative.safetensors", "EasyNegative"),
                                               ("zPDXL2.safetensors", "zPDXL2"),
                                               ("nfixer.pt", "nfixer")])
@pytest.mark.slow  # one of the slowest (a subprocess or a real pipeline); CI runs it
def test_pull_in_all_three_formats_gives_files_that_load(imported, cli, tmp_path, file, trigger, tokenizer_dir,
                                                         tokenizer_2_dir, embeddings_dir):
    ref = corpus_id(file)
    record = cli("show", ref, "--json").json()
    original = read_embedding(embeddings_dir / file, filename=file)
    key = "clip_g" if original.architecture == "sdxl" else "emb_params"

    canonical = cli("pull", ref, "--to", tmp_path, "--json")
    assert canonical.exit_code == 0, canonical.stderr
    info = canonical.json()
    assert set(info) >= {"id", "path", "format", "sha256", "trigger"}
    path = Path(info["path"])
    assert path == tmp_path / f"{trigger}.safetensors"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"] == info["sha256"]
    assert torch.equal(read_embedding(path).vectors[key], original.vectors[key])

    a1111 = Path(cli("pull", ref, "--to", tmp_path, "--format", "a1111", "--json").json()["path"])
    assert a1111 == tmp_path / f"{trigger}.pt"
    loaded = torch.load(a1111, weights_only=True)
    vectors = loaded[key] if original.architecture == "sdxl" else loaded["string_to_param"]["*"]
    assert torch.equal(vectors, original.vectors[key])

    diffusers = Path(cli("pull", ref, "--to", tmp_path, "--format", "diffusers", "--json").json()["path"])
    assert diffusers == tmp_path / f"{trigger}.diffusers.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, a1111.name, diffusers.name])
    if original.architecture == "sd2":
        assert torch.equal(read_embedding(diffusers).vectors[key], original.vectors[key])
        return
    from tests import pipelines

    pipe = (pipelines.build_sdxl(tokenizer_dir, tokenizer_2_dir, layers=1) if original.architecture == "sdxl"
            else pipelines.build_sd1(tokenizer_dir, layers=1))
    vector = _load_diffusers(pipe, diffusers, trigger, original.architecture)
    assert torch.allclose(vector, original.vectors[key][0].to(vector.dtype))


def test_pull_counts_a_download_and_uses_the_cache(imported, cli, tmp_path, live_registry):
    ref = corpus_id("eyeliner2.pt")
    before = cli("show", ref, "--json").json()["downloads"]
    cache = tmp_path / "cache"
    assert cli("pull", ref, "--to", tmp_path / "a", "--cache-dir", cache).exit_code == 0
    assert cli("pull", ref, "--to", tmp_path / "b", "--cache-dir", cache).exit_code == 0
    # Counts are written in batches: wait for the first pull's, then make sure no second one comes.
    eventually(lambda: cli("show", ref, "--json").json()["downloads"] >= before + 1)
    time.sleep(0.5)
    assert cli("show", ref, "--json").json()["downloads"] == before + 1, "the second pull came from the cache"
    digest = cli("show", ref, "--json").json()["sha256"]
    assert (cache / "blobs" / "sha256" / digest[:2] / digest).is_file()


def test_publish_is_idempotent_and_refuses_other_content_under_the_same_id(imported, cli, embeddings_dir):
    same = cli("publish", embeddings_dir / "bad-artist.pt", "--id", "corpus:bad-artist@1", "--json")
    assert same.exit_code == 0, same.stderr
    record = same.json()
    assert record["created"] is False and RECORD_KEYS <= set(record)

    other = cli("publish", embeddings_dir / "bad-hands-5.pt", "--id", "corpus:bad-artist@1")
    assert other.exit_code == 1
    assert other.stderr.startswith("error [conflict]: ") and other.stderr.count("\n") == 1
    assert cli("show", "corpus:bad-artist@1", "--json").json()["sha256"] == record["sha256"], "nothing changed"


def test_publish_new_prints_a_summary_and_json_record(live_registry, cli, embeddings_dir):
    human = cli("publish", embeddings_dir / "ulzzang-6500.pt", "--id", "e2e:ulzzang@1", "--trigger", "ulzzang",
                "--tag", "face", "--title", "Ulzzang")
    assert human.exit_code == 0, human.stderr
    assert "published: e2e:ulzzang@1" in human.stdout and "ulzzang" in human.stdout
    record = cli("publish", embeddings_dir / "eyeliner2.pt", "--id", "e2e:eyeliner@1", "--kind", "negative",
                 "--json").json()
    assert record["created"] is True and record["kind"] == "negative" and record["id"] == "e2e:eyeliner@1"
    assert record["trigger"] == "eyeliner2", "default trigger: the name stored in the file"
    assert cli("show", "e2e:ulzzang", "--json").json()["tags"] == ["face"]


def test_publish_takes_base_model_licence_publisher_and_the_files_own_kind(live_registry, cli, tmp_path):
    from safetensors.torch import save_file

    negative = tmp_path / "quietneg.safetensors"
    save_file({"emb_params": torch.randn(2, 768)}, negative,
              metadata={"modelspec.is_negative_embedding": "true", "modelspec.trigger_phrase": "quietneg"})
    record = cli("publish", negative, "--id", "meta:quietneg@1", "--base-model", "sd 1.5", "--license", "CC-BY-4.0",
                 "--publisher", "Jane", "--json")
    assert record.exit_code == 0, record.stderr
    answer = record.json()
    assert (answer["kind"], answer["trigger"]) == ("negative", "quietneg"), "no --kind: the file's ModelSpec says"
    assert (answer["base_model"], answer["license"], answer["publisher"]) == ("SD 1.5", "CC-BY-4.0", "Jane")
    bad = cli("publish", negative, "--id", "meta:quietneg@2", "--base-model", "SDXL 1.0")
    assert bad.exit_code != 0 and "SDXL 1.0" in bad.stderr  # an SD 1.x file is not for SDXL
    assert cli("show", "meta:quietneg@2", "--json").exit_code != 0, "nothing was published"


def test_yank_and_unyank(live_registry, cli, embeddings_dir):
    for version, file in (("1", "bad-image-v2-39000.pt"), ("2", "bad_prompt_version2.pt")):
        assert cli("publish", embeddings_dir / file, "--id", f"yk:bad@{version}").exit_code == 0
    assert cli("show", "yk:bad", "--json").json()["id"] == "yk:bad@2"

    yanked = cli("yank", "yk:bad@2", "--reason", "broken hands", "--json")
    assert yanked.exit_code == 0, yanked.stderr
    assert yanked.json()["yanked"] is True
    assert cli("show", "yk:bad", "--json").json()["id"] == "yk:bad@1", "never the latest once yanked"
    pinned = cli("show", "yk:bad@2", "--json").json()
    assert pinned["yanked"] is True and pinned["yanked_reason"] == "broken hands"

    unyanked = cli("unyank", "yk:bad@2", "--json")
    assert unyanked.exit_code == 0 and unyanked.json()["yanked"] is False
    assert "unyanked yk:bad@2" in cli("unyank", "yk:bad@2").stdout
    assert cli("show", "yk:bad", "--json").json()["id"] == "yk:bad@2"

    assert cli("yank", "yk:bad", "--reason", "x").exit_code == 2, "yank needs an exact version"


def test_lock_pins_request_refs_and_generate_side_resolver_honours_it(live_registry, cli, embeddings_dir, tmp_path):
    from pseudoword.runtime.resolver import Resolver

    assert cli("publish", embeddings_dir / "RSC.pt", "--id", "lk:rsc@1").exit_code == 0
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"positivePrompt": "a cat, rsc", "embeddings": [
        {"model": "lk:rsc", "weight": 1}, {"path": "local.pt", "weight": -1}]}))
    locked = cli("lock", request, "--json")
    assert locked.exit_code == 0, locked.stderr
    document = locked.json()
    lock_path = tmp_path / "request.lock.json"
    assert document["path"] == str(lock_path) and lock_path.is_file()
    assert document["pins"]["lk:rsc"]["id"] == "lk:rsc@1"

    assert cli("publish", embeddings_dir / "Style-Glass.pt", "--id", "lk:rsc@2").exit_code == 0
    cache = tmp_path / "cache"
    with Resolver(live_registry.url, cache_dir=cache, lockfile=lock_path, offline=False) as resolver:
        assert resolver.resolve(["lk:rsc"])[0].id == "lk:rsc@1"
    with Resolver(live_registry.url, cache_dir=cache, offline=False) as resolver:
        assert resolver.resolve(["lk:rsc"])[0].id == "lk:rsc@2"


def test_login_saves_the_token_that_later_commands_use(live_registry, cli, embeddings_dir, tmp_path):
    home = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "PSEUDOWORD_TOKEN": ""}
    refused = cli("publish", embeddings_dir / "charturnerv2.pt", "--id", "login:turner@1", env=home)
    assert refused.exit_code == 1 and refused.stderr.startswith("error [unauthorized]")

    login = cli("login", "--registry", live_registry.url, env=home, input=live_registry.admin_token + "\n")
    assert login.exit_code == 0 and live_registry.admin_token not in login.stdout
    config_file = tmp_path / "config" / "pseudoword" / "config.toml"
    assert config_file.stat().st_mode & 0o777 == 0o600

    published = cli("publish", embeddings_dir / "charturnerv2.pt", "--id", "login:turner@1", "--json",
                    env={**home, "PSEUDOWORD_REGISTRY": ""})
    assert published.exit_code == 0, published.stderr
    assert published.json()["created"] is True

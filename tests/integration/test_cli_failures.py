"""Each failure path of the registry CLI gives one line `error [code]: message`, the right exit
code (1 to act on, 2 usage), no traceback, and changes nothing on the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cli_server import cli, free_port, live_registry, run_cli_process  # noqa: F401


def one_line(stderr: str, code: str) -> None:
    assert stderr.startswith(f"error [{code}]: "), stderr
    assert stderr.count("\n") == 1, f"one line only: {stderr!r}"
    assert "Traceback" not in stderr


@pytest.fixture(scope="module")
def down_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


@pytest.fixture(scope="module")
def easy(embeddings_dir: Path) -> Path:
    return embeddings_dir / "EasyNegative.safetensors"


@pytest.mark.parametrize("args", [
    ("search", "cat"),
    ("show", "fail:x@1"),
    ("pull", "fail:x@1"),
    ("yank", "fail:x@1", "--reason", "r"),
    ("unyank", "fail:x@1"),
])
def test_server_down(cli, down_url, tmp_path, args):
    result = cli(*args, env={"PSEUDOWORD_REGISTRY": down_url, "PSEUDOWORD_CACHE": str(tmp_path)})
    assert result.exit_code == 1
    one_line(result.stderr, "registry_unreachable")
    assert down_url in result.stderr
    assert result.stdout == ""


def test_server_down_as_a_real_process_shows_no_traceback(live_registry, down_url, easy):
    proc = run_cli_process(live_registry, "publish", easy, "--id", "fail:easy@1", "--json",
                           env={"PSEUDOWORD_REGISTRY": down_url})
    assert proc.returncode == 1
    one_line(proc.stderr, "registry_unreachable")
    assert proc.stdout == "", "--json prints nothing on failure"


def test_server_down_import_stops_and_says_what_is_left(cli, down_url, embeddings_dir, manifest):
    result = cli("import", embeddings_dir, "--source", "fail", "--json", env={"PSEUDOWORD_REGISTRY": down_url})
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("error [registry_unreachable]: ")
    report = result.json()
    assert report["published"] == [] and report["error"]["code"] == "registry_unreachable"
    assert sorted(report["not_done"]) == sorted(r["file"] for r in manifest if r["architecture"] != "reject")


def test_bad_token_and_wrong_scope(cli, easy, live_registry):
    bad = cli("publish", easy, "--id", "fail:easy@1", env={"PSEUDOWORD_TOKEN": "not-a-token"})
    assert bad.exit_code == 1
    one_line(bad.stderr, "unauthorized")
    none = cli("publish", easy, "--id", "fail:easy@1", env={"PSEUDOWORD_TOKEN": ""})
    assert none.exit_code == 1
    one_line(none.stderr, "unauthorized")

    from pseudoword.registry.client import RegistryClient

    with RegistryClient(live_registry.url, live_registry.admin_token) as admin:
        scoped = admin.create_token(source="elsewhere", name="e2e")["token"]
    forbidden = cli("publish", easy, "--id", "fail:easy@1", env={"PSEUDOWORD_TOKEN": scoped})
    assert forbidden.exit_code == 1
    one_line(forbidden.stderr, "forbidden")
    yank = cli("yank", "fail:easy@1", "--reason", "x", env={"PSEUDOWORD_TOKEN": "not-a-token"})
    assert yank.exit_code == 1
    assert cli("show", "fail:easy").exit_code == 1, "nothing was published"


@pytest.mark.parametrize("args", [
    ("show", "fail:unknown"),
    ("show", "fail:unknown@3"),
    ("show", "sha256:" + "0" * 64),
    ("pull", "fail:unknown@1"),
    ("yank", "fail:unknown@1", "--reason", "r"),
])
def test_unknown_id(cli, tmp_path, args):
    result = cli(*args, env={"PSEUDOWORD_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 1
    one_line(result.stderr, "not_found")
    assert not any(tmp_path.glob("*.safetensors"))


def test_bad_file_is_refused_locally_and_nothing_is_published(cli, tmp_path, embeddings_dir):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 100)
    result = cli("publish", garbage, "--id", "fail:garbage@1")
    assert result.exit_code == 1
    one_line(result.stderr, "invalid_file")
    reject = cli("publish", embeddings_dir / "roettger_allmyPuppet768.pt", "--id", "fail:garbage@1")
    assert reject.exit_code == 1
    one_line(reject.stderr, "shape_mismatch")
    missing = cli("publish", tmp_path / "missing.pt", "--id", "fail:garbage@1")
    assert missing.exit_code == 1 and missing.stderr.startswith("error [os_error]: ")
    assert cli("show", "fail:garbage").exit_code == 1


@pytest.mark.parametrize("args", [
    ("show", "Not A Ref"),
    ("pull", "source:"),
    ("publish", "x.pt", "--id", "fail:noversion"),
    ("publish", "x.pt", "--id", "sha256:" + "0" * 64),
    ("yank", "fail:x", "--reason", "r"),
    ("import", ".", "--source", "Bad Source"),
])
def test_bad_reference_is_a_usage_error(cli, args):
    result = cli(*args)
    assert result.exit_code == 2
    one_line(result.stderr, "invalid_reference")


def test_usage_errors_exit_2(cli, tmp_path):
    assert cli("search", "--arch", "sd9").exit_code == 2
    assert cli("publish", tmp_path / "x.pt").exit_code == 2  # --id missing
    not_dir = cli("import", tmp_path / "nope", "--source", "fail")
    assert not_dir.exit_code == 2
    one_line(not_dir.stderr, "invalid_request")


def test_lock_of_a_bad_request_fails_clearly(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    result = cli("lock", bad)
    assert result.exit_code == 1
    one_line(result.stderr, "invalid_request")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"positivePrompt": "x"}))
    assert cli("lock", empty).exit_code == 1
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"embeddings": [{"model": "fail:unknown", "weight": 1}]}))
    result = cli("lock", unknown)
    assert result.exit_code == 1
    one_line(result.stderr, "not_found")
    assert not (tmp_path / "unknown.lock.json").exists()

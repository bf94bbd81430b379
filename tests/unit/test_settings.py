"""Settings, one reader for both sides (registry/core/env.py): read when used, a bad value is one
clear InvalidSetting naming the variable, *_FILE forms read by the settings code itself, and the
server-side commands find (never silently create) the catalogue `serve` uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pseudoword.cli.main import app
from pseudoword.registry.core import env
from pseudoword.registry.core.errors import InvalidSetting
from pseudoword.registry.service.settings import Settings, default_data_dir
from pseudoword.runtime.settings import RuntimeSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("PSEUDOWORD_DATA_DIR", "PSEUDOWORD_DATABASE_URL", "PSEUDOWORD_STORAGE_URL", "PSEUDOWORD_OFFLINE",
                 "PSEUDOWORD_S3_ACCESS_KEY", "PSEUDOWORD_S3_SECRET_KEY", "PSEUDOWORD_REGISTRY", "PSEUDOWORD_TOKEN",
                 "PSEUDOWORD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


def test_a_setting_may_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "database_url"
    secret.write_text("postgresql+psycopg://app@db/pseudoword\n")
    monkeypatch.setenv("PSEUDOWORD_DATABASE_URL_FILE", str(secret))
    assert Settings.from_env().database_url == "postgresql+psycopg://app@db/pseudoword"
    monkeypatch.setenv("PSEUDOWORD_DATABASE_URL", "sqlite:///x.db")
    with pytest.raises(InvalidSetting, match="set PSEUDOWORD_DATABASE_URL or PSEUDOWORD_DATABASE_URL_FILE, not both"):
        Settings.from_env()


def test_an_unreadable_secret_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PSEUDOWORD_S3_SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(InvalidSetting, match="PSEUDOWORD_S3_SECRET_KEY_FILE names .*missing, which cannot be read"):
        Settings.from_env()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("PSEUDOWORD_MAX_UPLOAD_BYTES", "8MB", "PSEUDOWORD_MAX_UPLOAD_BYTES must be a whole number, not '8MB'"),
    ("PSEUDOWORD_MAX_UPLOAD_BYTES", "0", "PSEUDOWORD_MAX_UPLOAD_BYTES must be at least 1, not 0"),
    ("PSEUDOWORD_STORAGE_TIMEOUT", "soon", "PSEUDOWORD_STORAGE_TIMEOUT must be a number, not 'soon'"),
    ("PSEUDOWORD_PRESIGNED_DOWNLOADS", "yse", "PSEUDOWORD_PRESIGNED_DOWNLOADS must be one of 1/true/yes/on"),
    ("PSEUDOWORD_LOG_FORMAT", "xml", "PSEUDOWORD_LOG_FORMAT must be one of text, json, not 'xml'"),
])
def test_a_bad_service_setting_is_a_typed_error_naming_it(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                                          message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidSetting) as caught:
        Settings.from_env()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_truthiness_is_one_rule() -> None:
    assert [env.truthy(v) for v in ("1", "TRUE", " yes", "on")] == [True] * 4
    assert [env.truthy(v) for v in ("0", "false", "No", "off")] == [False] * 4
    with pytest.raises(InvalidSetting):
        env.truthy("maybe")


def test_runtime_settings_are_read_when_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PSEUDOWORD_OFFLINE", "on")
    monkeypatch.setenv("PSEUDOWORD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PSEUDOWORD_REGISTRY", "https://reg.example/")
    settings = RuntimeSettings.from_env()
    assert settings.offline and settings.cache_dir == tmp_path / "cache" and settings.registry == "https://reg.example"
    assert settings.token is None
    monkeypatch.setenv("PSEUDOWORD_OFFLINE", "perhaps")
    with pytest.raises(InvalidSetting, match="PSEUDOWORD_OFFLINE"):
        RuntimeSettings.from_env()


@pytest.mark.slow  # one of the slowest (a subprocess or a real pipeline); CI runs it
def test_importing_reads_no_setting() -> None:
    """A bad value fails where the setting is used, never at import (a worker imports first, configures after)."""
    code = ("import pseudoword.runtime.vector_cache as v, pseudoword.runtime.conditioning_cache as c\n"
            "import pseudoword.registry.service.app, pseudoword.registry.client, pseudoword.runtime.resolver\n"
            "try:\n    v.VectorCache().max_entries\nexcept Exception as exc:\n    print(type(exc).__name__)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "PSEUDOWORD_VECTOR_CACHE": "many",
                                 "PSEUDOWORD_CONDITIONING_CACHE": "lots", "PSEUDOWORD_OFFLINE": "maybe"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "InvalidSetting"


@pytest.mark.parametrize("command", [["token", "create", "--source", "studio"], ["token", "list"], ["gc"],
                                     ["migrate"]])
def test_server_commands_never_create_a_catalogue_silently(command: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1
    assert result.stderr.startswith("error [no_catalogue]: no catalogue at ")
    assert str(default_data_dir()) in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "xdg-data").exists() or not any((tmp_path / "xdg-data").rglob("*.db"))


def test_server_commands_share_one_default_data_directory(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["migrate", "--create"]).exit_code == 0  # an explicit flag creates it
    assert (default_data_dir() / "pseudoword.db").is_file()
    created = runner.invoke(app, ["token", "create", "--source", "studio", "--json"])
    assert created.exit_code == 0, created.output
    listed = runner.invoke(app, ["token", "list", "--json"])
    assert '"studio"' in listed.stdout
    assert runner.invoke(app, ["gc", "--dry-run"]).exit_code == 0


def test_a_bad_setting_is_one_line_on_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSEUDOWORD_GC_GRACE_SECONDS", "an hour")
    result = CliRunner().invoke(app, ["gc"])
    assert result.exit_code == 1
    assert result.stderr == "error [invalid_setting]: PSEUDOWORD_GC_GRACE_SECONDS must be a number, not 'an hour'\n"

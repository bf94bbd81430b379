"""Where the CLI takes the registry and token from (flag > env > login config > default), and
the login file being private."""

from __future__ import annotations

import stat

import pytest
from typer.testing import CliRunner

from pseudoword.cli import config
from pseudoword.cli.main import app

pytestmark = pytest.mark.smoke  # run against the built wheel too (tests/unit/test_packaging.py)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PSEUDOWORD_CONFIG", raising=False)
    monkeypatch.delenv("PSEUDOWORD_REGISTRY", raising=False)
    monkeypatch.delenv("PSEUDOWORD_TOKEN", raising=False)


def test_login_writes_a_private_file_and_sets_the_default(tmp_path):
    result = CliRunner().invoke(app, ["login", "--registry", "https://reg.example/", "--token", "s3cret",
                                          "--no-check"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "xdg" / "pseudoword" / "config.toml"
    assert config.config_path() == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert "s3cret" not in result.output, "the token is never echoed"
    assert config.registry_url() == "https://reg.example"
    assert config.registry_token(None, "https://reg.example") == "s3cret"


def test_precedence_is_flag_then_env_then_config(monkeypatch):
    config.save_login("https://reg.example", "from-config")
    assert config.registry_url(None) == "https://reg.example"
    assert config.registry_token(None, "https://reg.example") == "from-config"
    monkeypatch.setenv("PSEUDOWORD_REGISTRY", "https://env.example")
    monkeypatch.setenv("PSEUDOWORD_TOKEN", "from-env")
    assert config.registry_url(None) == "https://env.example"
    assert config.registry_token(None, "https://reg.example") == "from-env"
    assert config.registry_url("https://flag.example") == "https://flag.example"
    assert config.registry_token("from-flag", "https://reg.example") == "from-flag"


def test_a_saved_token_is_only_used_for_its_own_registry():
    config.save_login("https://reg.example", "secret-a")
    assert config.registry_token(None, "https://other.example") is None
    assert config.registry_url(None) == "https://reg.example"


def test_login_reads_the_token_from_stdin_and_logout_forgets_it():
    runner = CliRunner()
    assert runner.invoke(app, ["login", "--registry", "http://r.test", "--no-check"],
                         input="tok-from-stdin\n").exit_code == 0
    assert config.registry_token(None, "http://r.test") == "tok-from-stdin"
    assert config.registry_url(None) == "http://r.test"
    result = runner.invoke(app, ["logout", "--registry", "http://r.test"])
    assert result.exit_code == 0 and "logged out of http://r.test" in result.output
    assert config.registry_token(None, "http://r.test") is None
    assert config.registry_url(None) == config.DEFAULT_REGISTRY, "logout restores the default registry"


def test_login_without_a_token_is_a_usage_error_and_writes_nothing():
    result = CliRunner().invoke(app, ["login", "--registry", "http://r.test"], input="\n")
    assert result.exit_code == 2
    assert "error [invalid_request]: no token given" in result.output
    assert not config.config_path().exists()


def test_odd_characters_survive_the_toml_round_trip():
    token = 'a"b\\c\u00e9\n'
    config.save_login('http://r.test/"x"', token)
    assert config.load_config()["tokens"]['http://r.test/"x"'] == token
    assert config.registry_token(None, 'http://r.test/"x"') == token

"""The command line as a person uses it, against a live registry: tokens managed over the HTTP API
with an admin token, `login` checking the URL and token (whoami) before saving, `logout` restoring
the default, and `pull` never replacing a different file of the same name unless told."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from pseudoword.registry.client import RegistryClient
from pseudoword.registry.core.errors import Conflict, Unauthorized
from pseudoword.runtime.pull import pull
from pseudoword.runtime.resolver import Resolver
from tests.integration.api import random_embedding
from tests.integration.cli_server import Cli, LiveRegistry, cli, free_port, live_registry  # noqa: F401


def test_tokens_over_the_http_api(live_registry: LiveRegistry, cli: Cli) -> None:
    source = f"t{secrets.token_hex(4)}"
    created = cli("token", "create", "--source", source, "--name", "ci", "--registry", live_registry.url, "--json")
    assert created.exit_code == 0, created.stderr
    secret, token_id = created.json()["token"], created.json()["id"]
    with RegistryClient(live_registry.url, secret) as client:
        assert client.whoami() == {"token_id": token_id, "source": source, "admin": False}
        client.publish(random_embedding(seed=11), id=f"{source}:m@1")
    listed = cli("token", "list", "--registry", live_registry.url, "--json")
    assert any(row["id"] == token_id and row["source"] == source for row in listed.json())
    assert all("token" not in row for row in listed.json()), "secrets are never listed"
    # A scoped token may not manage tokens: one line, exit 1.
    refused = cli("token", "list", "--registry", live_registry.url, "--token", secret)
    assert refused.exit_code == 1 and refused.stderr.startswith("error [forbidden]:")
    assert cli("token", "revoke", str(token_id), "--registry", live_registry.url).exit_code == 0
    with RegistryClient(live_registry.url, secret) as client, pytest.raises(Unauthorized):
        client.whoami()


def test_login_checks_the_registry_and_token_and_logout_restores_the_default(
        live_registry: LiveRegistry, cli: Cli, tmp_path: Path) -> None:
    home = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    config_file = tmp_path / "config" / "pseudoword" / "config.toml"
    bad = cli("login", "--registry", live_registry.url, "--token", "pw_not-a-token", env=home)
    assert bad.exit_code == 1 and bad.stderr.startswith("error [unauthorized]:") and not config_file.exists()
    nowhere = f"http://127.0.0.1:{free_port()}"
    unreachable = cli("login", "--registry", nowhere, "--token", live_registry.admin_token, env=home)
    assert unreachable.exit_code == 1 and "registry_unreachable" in unreachable.stderr and not config_file.exists()
    good = cli("login", "--registry", live_registry.url, "--token", live_registry.admin_token, env=home)
    assert good.exit_code == 0 and "(admin)" in good.stdout and config_file.exists()
    out = cli("logout", env={**home, "PSEUDOWORD_REGISTRY": ""})
    assert out.exit_code == 0 and "the default registry is now http://127.0.0.1:8000" in out.stdout
    assert live_registry.url not in config_file.read_text()


def test_pull_skips_the_same_file_and_never_replaces_another_unless_forced(
        live_registry: LiveRegistry, tmp_path: Path) -> None:
    source = f"t{secrets.token_hex(4)}"
    with RegistryClient(live_registry.url, live_registry.admin_token) as client, \
            Resolver(client, cache_dir=tmp_path / "cache") as resolver:
        client.publish(random_embedding(seed=21), id=f"{source}:glow@1", trigger="glow")
        folder = tmp_path / "embeddings"
        first = pull(resolver, f"{source}:glow", folder)
        assert first.action == "written" and first.path == folder / "glow.safetensors"
        again = pull(resolver, f"{source}:glow", folder)
        assert again.action == "unchanged"
        mine = b"my own glow.safetensors, not from the registry"
        first.path.write_bytes(mine)
        with pytest.raises(Conflict, match="exists with other content; pass --force"):
            pull(resolver, f"{source}:glow", folder)
        assert first.path.read_bytes() == mine, "nothing was replaced"
        forced = pull(resolver, f"{source}:glow", folder, force=True)
        assert forced.action == "replaced" and first.path.read_bytes() != mine
        exported = pull(resolver, f"{source}:glow@1", folder, format="a1111")
        assert exported.path.name == "glow.pt" and exported.action == "written"


def test_pull_on_the_command_line_refuses_in_one_line(live_registry: LiveRegistry, cli: Cli, tmp_path: Path) -> None:
    source = f"t{secrets.token_hex(4)}"
    with RegistryClient(live_registry.url, live_registry.admin_token) as client:
        client.publish(random_embedding(seed=22), id=f"{source}:dusk@1", trigger="dusk")
    (tmp_path / "dusk.safetensors").write_bytes(b"mine")
    refused = cli("pull", f"{source}:dusk", "--to", str(tmp_path))
    assert refused.exit_code == 1 and refused.stderr.startswith("error [conflict]:")
    assert (tmp_path / "dusk.safetensors").read_bytes() == b"mine"
    forced = cli("pull", f"{source}:dusk", "--to", str(tmp_path), "--force", "--json")
    assert forced.exit_code == 0 and forced.json()["action"] == "replaced"

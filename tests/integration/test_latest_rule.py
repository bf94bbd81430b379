"""Latest = the newest version that is not yanked, one rule (registry/core/versions.py) that the
catalogue's SQL, the resolver, the CLI's `show` and the web page's "use it" snippet all answer by."""

from __future__ import annotations

import html
import re
import secrets
import time

import httpx

from pseudoword.registry.client import RegistryClient
from pseudoword.registry.core.versions import latest_version
from tests.integration.api import random_embedding
from tests.integration.cli_server import Cli, LiveRegistry, cli, live_registry  # noqa: F401  (fixtures)


def _snippet(url: str, source: str, model: str) -> str | None:
    page = httpx.get(f"{url}/models/{source}/{model}", timeout=30)
    assert page.status_code == 200
    found = re.search(r'<pre id="use-request">(.*?)</pre>', page.text, re.S)
    return html.unescape(found[1]) if found else None


def test_show_and_the_web_snippet_name_the_newest_unyanked_when_the_newest_is_yanked(
        live_registry: LiveRegistry, cli: Cli) -> None:
    source = f"t{secrets.token_hex(4)}"
    with RegistryClient(live_registry.url, live_registry.admin_token) as client:
        for version in ("1", "2"):
            client.publish(random_embedding(seed=int(version)), id=f"{source}:style@{version}")
            time.sleep(0.01)  # distinct publication times
        client.yank(f"{source}:style@2", "broken")
        model = client.get_model(source, "style")
    assert model["versions"][0]["version"] == "2", "the newest is first, and it is yanked"
    assert model["latest"] == "1" and latest_version(model["versions"])["version"] == "1"  # SQL and core agree
    shown = cli("show", f"{source}:style", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["id"] == f"{source}:style@1"
    snippet = _snippet(live_registry.url, source, "style")
    assert snippet is not None and f'"model": "{source}:style@1"' in snippet and "@2" not in snippet
    resolved = cli("pull", f"{source}:style", "--to", str(live_registry.home / source), "--json")
    assert resolved.json()["id"] == f"{source}:style@1"


def test_every_version_yanked_the_page_offers_no_snippet_and_show_marks_the_newest(
        live_registry: LiveRegistry, cli: Cli) -> None:
    source = f"t{secrets.token_hex(4)}"
    with RegistryClient(live_registry.url, live_registry.admin_token) as client:
        client.publish(random_embedding(seed=7), id=f"{source}:gone@1")
        client.yank(f"{source}:gone@1", "withdrawn")
    assert _snippet(live_registry.url, source, "gone") is None
    shown = cli("show", f"{source}:gone", "--json")
    assert shown.exit_code == 0 and shown.json()["id"] == f"{source}:gone@1" and shown.json()["yanked"] is True

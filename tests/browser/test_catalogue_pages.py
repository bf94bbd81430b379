"""The web catalogue as a browser shows it: headless Debian chromium against a live registry."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.chromium import chromium_path, dump_dom, screenshot
from tests.conftest import require
from tests.integration.api import publish, random_embedding, sdxl_embedding
from tests.integration.servers import Server, start_server


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require(chromium_path() is not None, "chromium is not installed (apt-get install chromium)")
    server = start_server(tmp_path_factory.mktemp("browser"))
    publish(server, random_embedding(seed=1), "studio:glass-style@1", trigger="glassy", tags=["style", "glass"],
            title="Glass style", description="makes things look like glass")
    publish(server, random_embedding(seed=2), "studio:glass-style@2", trigger="glassy", tags=["style", "glass"],
            title="Glass style v2")
    publish(server, sdxl_embedding(seed=3), "studio:hands-fix@1", kind="negative", trigger="badhandsxl",
            title="<script>alert(1)</script>", tags=["hands"])
    yield server
    server.stop()


def test_search_page_lists_and_filters(site: Server) -> None:
    dom = dump_dom(f"{site.url}/")
    assert "studio:glass-style@2" in dom and "studio:hands-fix@1" in dom
    assert "studio:glass-style@1" not in dom  # one row per model: its latest version
    filtered = dump_dom(f"{site.url}/?q=glass&architecture=sd1")
    assert "studio:glass-style@2" in filtered and "studio:hands-fix@1" not in filtered
    negative = dump_dom(f"{site.url}/?kind=negative")
    assert "badhandsxl" in negative and "glassy" not in negative
    assert "nothing found" in dump_dom(f"{site.url}/?q=zzzzunknown")


def test_model_page_shows_versions_and_usage(site: Server) -> None:
    dom = dump_dom(f"{site.url}/models/studio/glass-style")
    assert 'id="model-id"' in dom and "studio:glass-style" in dom
    assert dom.count('<li class="version') == 2
    assert '"model": "studio:glass-style@2"' in dom.replace("&quot;", '"')
    assert "no model studio:nope" in dump_dom(f"{site.url}/models/studio/nope")


def test_user_text_is_escaped(site: Server) -> None:
    dom = dump_dom(f"{site.url}/models/studio/hands-fix")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "<script>alert(1)</script>" not in dom


def test_screenshot_renders(site: Server, tmp_path: Path) -> None:
    path = screenshot(f"{site.url}/?q=glass", tmp_path / "search.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1200, 900) and len(data) > 5000  # a real page, not a blank canvas

"""The web catalogue in a real browser (Playwright driving Debian's chromium, nothing downloaded,
no request leaving loopback): search with each filter and page 2 keeping them, a hash typed in
the search box, the model page's gallery, copy buttons, per-version pages, a yanked version,
a phone-width page without horizontal scrolling, the friendly 404, and the API browser offline."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.chromium import browser, chromium_path, offline_context
from tests.conftest import require
from tests.images import INFOTEXT, jpeg, png
from tests.integration.api import publish, random_embedding, sdxl_embedding
from tests.integration.servers import start_server

pytestmark = pytest.mark.browser
#: Models matching the combined filters: more than a page (24), so there is a page 2.
MATCHING = 26
#: Where screenshots go (docs/ when refreshing the README's, else the test's temporary folder).
SCREENSHOTS = os.environ.get("PSEUDOWORD_SCREENSHOTS")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require(chromium_path() is not None, "chromium is not installed (apt-get install chromium)")
    server = start_server(tmp_path_factory.mktemp("browser"))
    facts: dict[str, Any] = {"server": server}
    try:
        for i in range(MATCHING):
            response = publish(server, random_embedding(seed=100 + i), f"studio:glass-{i:02d}@1",
                               trigger=f"glassy{i:02d}", tags=["style", "glass"], title=f"Glass style {i:02d}")
            assert response.status_code == 201, response.text
        publish(server, random_embedding(seed=200), "other:glass-elsewhere@1", trigger="glassother", tags=["style"])
        publish(server, random_embedding(seed=201, width=1024), "studio:glass-sd2@1", trigger="glasssd2",
                tags=["style"])
        publish(server, sdxl_embedding(seed=3), "studio:hands-fix@1", kind="negative", trigger="badhandsxl",
                title="<script>alert(1)</script>", tags=["hands"],
                description="<script>alert(2)</script> [x](javascript:alert(3)) <img src=x onerror=alert(4)>")
        # A model with a gallery and a Markdown description.
        files = [("file", ("teapot.safetensors", random_embedding(seed=300))),
                 ("preview", ("a.png", png(size=(96, 64), seed=1))), ("preview", ("b.jpg", jpeg()))]
        meta = {"id": "studio:teapot@1", "trigger": "teapotz", "title": "Glass teapot", "tags": ["object"],
                "description": "A **teapot** made of glass.\n\n- clear\n- shiny\n\nTry it at weight 0.8 to 1.2."}
        response = httpx.post(f"{server.url}/api/v1/embeddings", headers=server.headers(), files=files,
                              data={"metadata": json.dumps(meta)}, timeout=60)
        assert response.status_code == 201, response.text
        facts["teapot"] = response.json()
        # Versions: 1 and 2 published, 2 yanked: the latest is 1.
        publish(server, random_embedding(seed=400), "studio:multi@1", trigger="multiv")
        publish(server, random_embedding(seed=401), "studio:multi@2", trigger="multiv")
        yank = httpx.post(f"{server.url}/api/v1/embeddings/studio/multi/2/yank", headers=server.headers(),
                          json={"reason": "broken hands"}, timeout=30)
        assert yank.status_code == 200, yank.text
        yield facts
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    require(chromium_path() is not None, "chromium is not installed (apt-get install chromium)")
    with browser() as instance:
        yield instance


@pytest.fixture()
def blocked() -> list[str]:
    return []


@pytest.fixture()
def page(chromium: Any, blocked: list[str]) -> Iterator[Any]:
    context = offline_context(chromium, blocked, viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    yield page
    context.close()
    assert blocked == [], f"the page asked the internet for {blocked}"


def url(site: dict[str, Any], path: str) -> str:
    return f"{site['server'].url}{path}"


def result_ids(page: Any) -> list[str]:
    return page.locator("#results .card .id code").all_inner_texts()


def search_with(page: Any, site: dict[str, Any], q: str = "", **filters: str) -> list[str]:
    """Fill the search form as a user does (open the filters, pick values) and submit it."""
    page.goto(url(site, "/"))
    page.fill("input[name=q]", q)
    if filters:
        page.click(".filters summary")
        for name, value in filters.items():
            field = page.locator(f"[name={name}]")
            if field.evaluate("el => el.tagName") == "SELECT":
                field.select_option(value)
            else:
                field.fill(value)
    page.click("form#search-form button[type=submit]")
    page.wait_for_load_state()
    return result_ids(page)


def test_each_filter_in_the_form(page: Any, site: dict[str, Any]) -> None:
    assert set(search_with(page, site, "", architecture="sdxl")) == {"studio:hands-fix@1"}
    assert set(search_with(page, site, "", kind="negative")) == {"studio:hands-fix@1"}
    assert set(search_with(page, site, "", tag="hands")) == {"studio:hands-fix@1"}
    assert set(search_with(page, site, "glass", source="other")) == {"other:glass-elsewhere@1"}
    assert set(search_with(page, site, "glass", architecture="sd2")) == {"studio:glass-sd2@1"}
    assert "studio:teapot@1" in search_with(page, site, "teapot")
    newest = search_with(page, site, "", sort="newest")
    assert newest[0] == "studio:multi@1"  # the newest unyanked version of the newest model
    assert search_with(page, site, "zzzzunknown") == [] and page.locator("#nothing").is_visible()


def test_page_two_keeps_every_filter(page: Any, site: dict[str, Any]) -> None:
    first = search_with(page, site, "glass", architecture="sd1", kind="positive", tag="style", source="studio",
                        sort="newest")
    assert len(first) == 24 and all(i.startswith("studio:glass-") for i in first)
    page.click("#next")
    page.wait_for_load_state()
    for name, value in {"q": "glass", "architecture": "sd1", "kind": "positive", "tag": "style",
                        "source": "studio", "sort": "newest"}.items():
        assert f"{name}={value}" in page.url
        assert page.locator(f"[name={name}]").input_value() == value
    second = result_ids(page)
    assert len(second) == MATCHING - 24 and not set(first) & set(second)
    assert set(first) | set(second) == {f"studio:glass-{i:02d}@1" for i in range(MATCHING)}
    assert page.locator("#next").count() == 0


def test_a_hash_typed_in_the_search_box(page: Any, site: dict[str, Any]) -> None:
    teapot = site["teapot"]
    for digest in (teapot["sha256"], teapot["autov2"], teapot["a1111_hash"], f"sha256:{teapot['original_sha256']}"):
        assert search_with(page, site, digest) == ["studio:teapot@1"], digest
    page.click("#results .card h3 a")
    assert page.url.endswith("/models/studio/teapot/1")
    assert search_with(page, site, "0123456789") == []
    assert "no file has the hash" in page.inner_text("#hash-note")


def test_model_page_gallery_description_and_facts(page: Any, site: dict[str, Any]) -> None:
    teapot = site["teapot"]
    page.goto(url(site, "/models/studio/teapot"))
    assert page.inner_text("h1#title") == "Glass teapot"
    images = page.locator("#gallery figure img")
    assert images.count() == 2
    for i in range(2):  # the thumbnails loaded (served by the registry, decoded by the browser)
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
    page.locator("#gallery summary").first.click()
    assert page.inner_text("#params-1") == INFOTEXT
    full = page.locator("#gallery figure a").first.get_attribute("href")
    assert httpx.get(url(site, full)).content == png(size=(96, 64), seed=1)
    assert page.inner_html("#description strong") == "teapot"
    assert page.locator("#description li").count() == 2
    assert page.inner_text("#sha256") == teapot["sha256"]  # every hash in full
    assert page.inner_text("#original-sha256") == teapot["original_sha256"]
    assert page.inner_text("#autov2") == teapot["autov2"] and page.inner_text("#a1111-hash") == teapot["a1111_hash"]
    assert f"({teapot['size']} bytes)" in page.inner_text("#files")
    formats = page.locator("#files a.download")
    assert formats.count() == 3
    assert page.inner_text("#use-comfyui") == "embedding:teapotz"
    assert "pipe.load_textual_inversion" in page.inner_text("#use-diffusers")
    task = json.loads(page.inner_text("#use-runware"))
    assert task[0]["taskType"] == "imageInference" and task[0]["embeddings"] == [{"model": "studio:teapot@1", "weight": 1}]
    assert "teapotz" in page.inner_text("#use-a1111")


def test_copy_buttons_put_the_right_text_on_the_clipboard(page: Any, site: dict[str, Any]) -> None:
    teapot = site["teapot"]
    page.goto(url(site, "/models/studio/teapot"))
    expected = {"#trigger": "teapotz", "#air": "urn:air:sd1:embedding:studio:teapot@1", "#sha256": teapot["sha256"],
                "#use-comfyui": "embedding:teapotz", "#model-id": "studio:teapot"}
    for target, text in expected.items():
        button = page.locator(f"button[data-copy='{target}']")
        button.click()
        assert page.evaluate("navigator.clipboard.readText()") == text, target
        assert button.inner_text() == "copied"


def test_per_version_pages_and_a_yanked_version(page: Any, site: dict[str, Any]) -> None:
    page.goto(url(site, "/models/studio/multi"))
    rows = page.locator("#versions li.version")
    assert rows.count() == 2
    yanked_row = page.locator("#versions li.version.yanked")
    assert yanked_row.count() == 1 and "broken hands" in yanked_row.inner_text()
    assert page.locator("#yanked").count() == 0  # the model page shows the latest, 1
    page.click("#versions li.version.yanked a")
    assert page.url.endswith("/models/studio/multi/2")
    assert page.inner_text("#version-name") == "2"
    assert "Yanked" in page.inner_text("#yanked") and "broken hands" in page.inner_text("#yanked")
    assert page.inner_text("#air") == "urn:air:sd1:embedding:studio:multi@2"
    # "Use it" names the newest unyanked version, whatever page it is on.
    assert json.loads(page.inner_text("#use-request")) == {"embeddings": [{"model": "studio:multi@1", "weight": 1}]}
    page.goto(url(site, "/models/studio/multi/1"))
    assert page.locator("#yanked").count() == 0 and page.inner_text("#version-name") == "1"
    download = page.locator("#files a.download[data-format=safetensors]").get_attribute("href")
    assert download == "/api/v1/embeddings/studio/multi/1/download"


def test_user_text_is_escaped(page: Any, site: dict[str, Any]) -> None:
    alerts: list[str] = []
    page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
    page.goto(url(site, "/models/studio/hands-fix"))
    assert page.inner_text("h1#title") == "<script>alert(1)</script>"
    # Raw HTML in a description stays text; a javascript: link is not made a link.
    assert page.locator("#description script, #description img, #description a").count() == 0
    assert "<script>alert(2)</script>" in page.inner_text("#description")
    page.wait_for_timeout(200)
    assert alerts == []


def test_friendly_404(page: Any, site: dict[str, Any]) -> None:
    response = page.goto(url(site, "/models/studio/nope"))
    assert response.status == 404
    assert page.inner_text("h1") == "Not found" and "no model studio:nope" in page.inner_text("#missing-message")
    assert page.locator("form[role=search] input[name=q]").count() == 1
    assert page.goto(url(site, "/models/studio/multi/9")).status == 404


def test_pages_work_without_javascript(chromium: Any, site: dict[str, Any], blocked: list[str]) -> None:
    context = offline_context(chromium, blocked, java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(url(site, "/models/studio/teapot"))
        assert page.locator("button[data-copy]").first.is_hidden()  # nothing that cannot work is shown
        assert page.inner_text("#trigger") == "teapotz"
        page.goto(url(site, "/"))
        page.fill("input[name=q]", "teapot")
        page.click("form#search-form button[type=submit]")
        page.wait_for_load_state()
        assert result_ids(page) == ["studio:teapot@1"]
    finally:
        context.close()
    assert blocked == []


@pytest.mark.parametrize("path", ["/?q=glass&tag=style", "/models/studio/teapot", "/models/studio/multi/2"])
def test_phone_width_has_no_horizontal_scrolling(chromium: Any, site: dict[str, Any], blocked: list[str],
                                                 tmp_path: Path, path: str) -> None:
    context = offline_context(chromium, blocked, viewport={"width": 390, "height": 844}, device_scale_factor=2,
                              is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(url(site, path))
        page.wait_for_load_state("networkidle")
        widths = page.evaluate("({scroll: document.documentElement.scrollWidth, "
                               "client: document.documentElement.clientWidth})")
        assert widths["scroll"] <= widths["client"], widths
        name = "phone-" + path.strip("/").replace("/", "-").replace("?", "").replace("&", "-").replace("=", "-")
        shot = page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        context.close()
    assert blocked == []


def test_screenshots_of_the_search_and_model_pages(page: Any, site: dict[str, Any], tmp_path: Path) -> None:
    out = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    page.goto(url(site, "/?q=glass&sort=newest"))
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(out / "search.png"))
    page.goto(url(site, "/models/studio/teapot"))
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(out / "model.png"), full_page=True)
    for name in ("search.png", "model.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name  # a real page, not a blank one
    digest = hashlib.sha256((out / "model.png").read_bytes()).hexdigest()
    assert digest  # written


def test_api_browser_renders_offline(page: Any, site: dict[str, Any], blocked: list[str]) -> None:
    page.goto(url(site, "/schema"))
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "pseudoword registry" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/api/v1/embeddings" in p for p in paths) and any("/api/v1/previews" in p for p in paths)
    assert blocked == []  # every asset came from the registry

"""Debian's chromium driven by Playwright (the `playwright` package from PyPI, its own browser
builds never downloaded: ``executable_path`` points at the system chromium), kept off the network:
every request to anything but loopback is refused and recorded, so a page that needs the
internet fails its test instead of quietly loading from a CDN."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

#: chromium flags: no sandbox (root in CI containers), nothing fetched in the background.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def browser() -> Iterator[Any]:
    """A headless chromium for a test module."""
    from playwright.sync_api import sync_playwright

    binary = chromium_path()
    assert binary, "chromium is not installed"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=binary, args=FLAGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


def offline_context(instance: Any, blocked: list[str], **options: Any) -> Any:
    """A browser context whose requests may reach loopback only; others are aborted and listed."""
    context = instance.new_context(**options)

    def guard(route: Any) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK or route.request.url.startswith("data:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    return context

"""Drive Debian's chromium headless: the page as a browser renders it, and screenshots."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

# The flags keep chromium off the network (this machine has none) and out of the user's profile.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--virtual-time-budget=3000",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    binary = chromium_path()
    assert binary, "chromium is not installed"
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def dump_dom(url: str, timeout: float = 60) -> str:
    """The DOM after the page loaded and its scripts ran."""
    proc = _run(["--dump-dom", url], timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def screenshot(url: str, out: Path, size: str = "1200,900", timeout: float = 60) -> Path:
    proc = _run([f"--screenshot={out}", f"--window-size={size}", url], timeout)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-2000:]
    return out

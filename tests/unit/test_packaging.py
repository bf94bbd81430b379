"""Packaging that cannot drift: pyproject's package list and package data cover the whole tree,
the top-level folders refuse to be imported under their own names, and a built wheel, installed
(not editable) in a fresh environment, works from the repository root."""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def _tree() -> dict[str, list[Path]]:
    """Every folder under the mapped folders that holds files, as its installed dotted name."""
    found: dict[str, list[Path]] = {}
    for name, folder in SETUPTOOLS["package-dir"].items():
        base = ROOT / folder
        for path in sorted(base.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            parts = path.parent.relative_to(base).parts
            found.setdefault(".".join((name, *parts)), []).append(path)
    return found


def test_every_folder_of_the_tree_is_a_listed_package() -> None:
    assert set(SETUPTOOLS["packages"]) == set(_tree()), "pyproject's [tool.setuptools] packages differ from the tree"


def test_every_data_file_is_package_data() -> None:
    data = SETUPTOOLS["package-data"]
    missing = [str(path.relative_to(ROOT)) for package, files in _tree().items() for path in files
               if path.suffix != ".py" and not any(fnmatch.fnmatch(path.name, g) for g in data.get(package, []))]
    assert not missing, f"files no package-data pattern ships: {missing}"
    assert (ROOT / "package" / "py.typed").is_file() and "py.typed" in data["pseudoword"]


def test_licence_is_spdx_with_its_file() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]


@pytest.mark.parametrize("folder", ["registry", "runtime", "cli", "registry.core.errors"])
def test_a_folder_imported_by_its_own_name_refuses(folder: str) -> None:
    result = subprocess.run([sys.executable, "-c", f"import {folder}"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    top = folder.split(".")[0]
    assert f"ImportError: import pseudoword.{top}, not {top} " in result.stderr.splitlines()[-1]


def test_from_the_repository_root_pseudoword_is_the_installed_package() -> None:
    assert not (ROOT / "pseudoword").exists(), "a pseudoword/ folder at the root shadows the installed package"
    result = subprocess.run([sys.executable, "-c", "import pseudoword.registry.core.errors as e; print(e.__name__)"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "pseudoword.registry.core.errors", result.stderr

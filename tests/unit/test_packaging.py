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
from typing import Any

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


@pytest.mark.smoke
def test_the_package_under_test_is_the_installed_one() -> None:
    """Under the wheel test (PSEUDOWORD_EXPECT_SITE set) the suite runs against the installed wheel."""
    import pseudoword.registry.core.errors as errors

    expected = os.environ.get("PSEUDOWORD_EXPECT_SITE")
    if expected:
        assert Path(errors.__file__).resolve().is_relative_to(Path(expected).resolve()), errors.__file__
    assert not Path(errors.__file__).resolve().is_relative_to(ROOT / "pseudoword")


# -- the command line as installed ------------------------------------------------------------------


def _cli(*args: str, block: tuple[str, ...] = (), cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter, with ``block`` modules made uninstallable (as without an extra)."""
    code = ("import sys\n"
            f"for name in {block!r}: sys.modules[name] = None\n"
            "from pseudoword.cli.main import app\n"
            f"try:\n    app({list(args)!r}, prog_name='pseudoword')\n"
            "finally:\n    print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_does_not_import_torch() -> None:
    result = _cli("--help")
    assert result.returncode == 0 and "publish" in result.stdout
    assert "TORCH False" in result.stderr


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = _cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"pseudoword {version('pseudoword')}"


@pytest.mark.parametrize(("args", "block", "extra"), [
    (("serve", "--data-dir", "{tmp}"), ("sqlmodel", "litestar", "uvicorn"), "server"),
    (("gc", "--data-dir", "{tmp}"), ("sqlmodel", "litestar"), "server"),
    (("generate", "{tmp}/request.json", "--pipeline", "{tmp}", "--out", "{tmp}/x.png"),
     ("diffusers", "transformers"), "runtime"),
])
def test_a_missing_extra_is_one_line_naming_it(tmp_path: Path, args: tuple[str, ...], block: tuple[str, ...],
                                               extra: str) -> None:
    (tmp_path / "request.json").write_text('{"positivePrompt": "a cat", "width": 64, "height": 64}')
    result = _cli(*(a.format(tmp=tmp_path) for a in args), block=block)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("TORCH")]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and f"[{extra}]" in lines[0] and "error [missing_extra]" in lines[0], result.stderr
    assert f"pip install 'pseudoword[{extra}]'" in lines[0]
    assert not list(tmp_path.glob("*.db")), "nothing was created"


# -- a built wheel, installed (not editable) in a fresh environment ---------------------------------


def _closure(requirements: list[str]) -> list[Any]:
    """The installed distributions that ``requirements`` need (extras not asked for left out)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: dict[str, Any] = {}
    todo = list(requirements)
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = requirement.name.lower().replace("_", "-")
        if key not in seen:
            seen[key] = metadata.distribution(requirement.name)
            todo += seen[key].requires or []
    return list(seen.values())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    [built] = out.glob("pseudoword-*.whl")
    return built


def _fresh_venv(where: Path, wheel: Path, site: list[Path]) -> Path:
    """A venv with the wheel installed and ``site`` folders on its path (so torch is not installed again)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    [own_site] = where.glob("lib/python*/site-packages")
    (own_site / "zz_reused.pth").write_text("".join(f"{path}\n" for path in site))
    return python


@pytest.mark.slow
def test_the_wheel_installed_in_a_fresh_venv_passes_the_smoke_tests(wheel: Path, tmp_path: Path) -> None:
    import sysconfig

    venv_site = Path(sysconfig.get_paths()["purelib"])  # this venv's packages, without our editable finder
    python = _fresh_venv(tmp_path / "venv", wheel, [venv_site])
    [own_site] = (tmp_path / "venv").glob("lib/python*/site-packages")
    env = {**os.environ, "PSEUDOWORD_EXPECT_SITE": str(own_site)}
    result = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "smoke", "tests/unit"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
    shown = subprocess.run([str(tmp_path / "venv" / "bin" / "pseudoword"), "--version"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert shown.stdout.strip() == "pseudoword 0.1.0"
    assert (own_site / "pseudoword" / "py.typed").is_file()
    assert (own_site / "pseudoword" / "registry" / "service" / "templates" / "model.html").is_file()


@pytest.mark.slow
def test_the_wheel_without_extras_names_the_extra(wheel: Path, tmp_path: Path) -> None:
    """`pip install .` without extras: serve and generate say which extra to install, in one line."""
    from importlib import metadata

    core = [r for r in metadata.requires("pseudoword") or [] if "extra" not in r]
    links = tmp_path / "core-site"
    links.mkdir()
    for dist in _closure(core):
        base = Path(dist.locate_file(""))
        for top in {file.parts[0] for file in dist.files or []} - {"..", "__pycache__"}:
            if not top.endswith(".pth") and not (links / top).exists():
                (links / top).symlink_to(base / top)
    python = _fresh_venv(tmp_path / "venv", wheel, [links])
    command = tmp_path / "venv" / "bin" / "pseudoword"
    assert subprocess.run([str(python), "-c", "import litestar"], capture_output=True).returncode == 1
    for args, extra in ((["serve", "--data-dir", str(tmp_path / "data")], "server"),
                        (["generate", str(tmp_path / "r.json"), "--pipeline", str(tmp_path), "--out",
                          str(tmp_path / "x.png")], "runtime")):
        (tmp_path / "r.json").write_text('{"positivePrompt": "a cat"}')
        result = subprocess.run([str(command), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 1, result.stderr
        assert len(result.stderr.splitlines()) == 1 and f"[{extra}]" in result.stderr, result.stderr
    assert not (tmp_path / "data").exists()

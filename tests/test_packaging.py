"""Packaging: only ``hambench`` is importable from the install; the wheel carries the leaderboard's templates and
static files, the model configs and the demo data, and its CLI works in a clean virtual environment."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("name", ["models", "pipelines", "leaderboard", "benchmarks", "tests"])
def test_only_hambench_is_importable(name, tmp_path):
    """From any folder but the checkout, the source folders are not top-level packages."""
    r = _python(f"import {name}", tmp_path)
    assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, (r.stdout, r.stderr)
    assert _python(f"import hambench.{name}" if name in ("models", "pipelines", "leaderboard") else "import hambench",
                   tmp_path).returncode == 0


@pytest.mark.parametrize("name", ["models", "pipelines", "leaderboard"])
def test_folder_refuses_a_top_level_import_even_from_the_checkout(name):
    """In the checkout itself (where the current folder is on sys.path) the folders refuse to be imported bare."""
    r = _python(f"import {name}", ROOT)
    assert r.returncode != 0 and f"import hambench.{name}" in r.stderr, (r.stdout, r.stderr)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w", str(out),
                        str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("hambench-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_contains_data_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, package in [("leaderboard/templates", "hambench/leaderboard/templates"),
                            ("leaderboard/static", "hambench/leaderboard/static"),
                            ("models/configs", "hambench/models/configs"),
                            ("hambench/data/demo_qm9", "hambench/data/demo_qm9")]:
        files = [p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        expected = {f"{package}/{p.relative_to(ROOT / folder).as_posix()}" for p in files}
        assert expected and expected <= names, (folder, sorted(expected - names)[:5])
    assert any(n.startswith("hambench/_core") and n.endswith(".so") for n in names)
    assert not any(n.split("/")[0] in ("models", "pipelines", "leaderboard", "benchmarks", "tests") for n in names)


@pytest.mark.slow
def test_wheel_cli_works_in_a_clean_venv(wheel, tmp_path):
    """The wheel installed alone into a new venv (its dependencies made visible from this one, hambench not):
    the CLI answers and builds the shipped board's site (templates and static files from the wheel)."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    # the dependencies of this venv, as a plain path (its .pth files, the editable hook among them, are not run)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    with zipfile.ZipFile(wheel) as z:  # a wheel is installed by unpacking it into site-packages
        z.extractall(site)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*args):
        return subprocess.run([str(py), *args], cwd=tmp_path, env=env, capture_output=True, text=True)

    where = run("-c", "import hambench, hambench.models, hambench._core; print(hambench.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(site)), where.stdout  # the wheel's copy, not the checkout
    r = run("-m", "hambench", "--help")
    assert r.returncode == 0 and "prepare" in r.stdout, r.stderr
    r = run("-m", "hambench", "leaderboard", "build", "-o", str(tmp_path / "site"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert any((tmp_path / "site").rglob("*.css")) or any((tmp_path / "site").rglob("*.js"))
    assert run("-c", "import models").returncode != 0

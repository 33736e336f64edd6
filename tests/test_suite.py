"""The test suite's own set-up (root conftest.py): `python -m pytest` from the repository root, the realdata
marker on every test that reads ../shared/realdata."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from hambench.testing import require_realdata

ROOT = Path(__file__).resolve().parents[1]


def pytest_run(*args, python=(sys.executable,), env=None):
    return subprocess.run([*python, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


def test_python_m_pytest_from_the_root_works():
    r = pytest_run("-q", "tests/test_structure.py::test_repr_is_short")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "1 passed" in r.stdout


def test_python_without_hambench_installed_says_what_to_run():
    """-S: no site processing, so no editable-install mapping; pytest itself still imports via PYTHONPATH. The root
    (cwd of `python -m`) then holds the bare source folder hambench/ without pipelines/ or _core."""
    r = pytest_run("-q", "tests/test_structure.py", python=(sys.executable, "-S"),
                   env={"PYTHONPATH": sysconfig.get_paths()["purelib"]})
    out = r.stdout + r.stderr
    assert r.returncode == 4, out[-2000:]
    assert "hambench is not installed in this Python" in out and "-m pytest" in out
    assert out.count("Traceback") == 0


# --- the realdata marker -----------------------------------------------------------------------------------
def _reads_directly():
    return require_realdata("deeph_new_MoTe2")


def _reads_through_a_helper():
    return [_reads_directly()]


def _reads_nothing():
    return Path("x")


def test_realdata_detection_follows_helpers():
    import conftest

    assert conftest._reads_realdata(_reads_directly, set())
    assert conftest._reads_realdata(_reads_through_a_helper, set())
    assert conftest._reads_realdata(lambda: _reads_through_a_helper(), set())
    assert not conftest._reads_realdata(_reads_nothing, set())


def test_realdata_marker_selects_exactly_the_realdata_tests():
    """tests/test_export.py: every test but the folder-name one reads real DeepH folders (directly or through the
    mote2_store fixture), so only that one is left by -m "not realdata" (7 in the file)."""
    r = pytest_run("--collect-only", "-q", "-m", "not realdata", "tests/test_export.py")
    rest = [line.split("::")[1] for line in r.stdout.splitlines() if "::" in line]
    assert rest == ["test_folder_names_are_safe_and_unique"], r.stdout[-2000:]
    assert "1/" in r.stdout and "deselected" in r.stdout

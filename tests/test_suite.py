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


def root_conftest(config):
    """The repository's root conftest.py as pytest loaded it (a plugin; tests/conftest.py is another module)."""
    for m in config.pluginmanager.get_plugins():
        if getattr(m, "__file__", None) and Path(m.__file__).resolve() == ROOT / "conftest.py":
            return m
    raise AssertionError("the root conftest.py was not loaded")


def test_realdata_detection_follows_helpers(pytestconfig):
    conftest = root_conftest(pytestconfig)
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


# --- the Makefile's install steps (issue 21 §1) -------------------------------------------------------------
def make(*args, cwd=ROOT):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_install_says_each_step_and_pins_torch_first(tmp_path):
    r = make("-n", "-B", f"VENV={tmp_path / 'v'}", "install")
    assert r.returncode == 0, r.stderr
    steps = [line for line in r.stdout.splitlines() if line.startswith('echo "==> [')]
    assert [s.split("]")[0][-3:] for s in steps] == [f"{k}/6" for k in range(1, 7)]
    installs = [line.split("install --progress-bar off ")[1].split(" 2>&1")[0]
                for line in r.stdout.splitlines() if "-m pip" in line]
    # every install is constrained to the verified versions (constraints.txt), torch pinned before anything can
    # pull another
    assert all(s.startswith("-c constraints.txt ") for s in installs), installs
    assert [s.removeprefix("-c constraints.txt ") for s in installs[:2]] == ["--upgrade pip", "torch==2.13.0"]
    assert " -q" not in r.stdout


def test_pip_lines_are_shown_and_failures_explained(tmp_path):
    """The pip_install macro with a stand-in for python: one line per package, the log's end on failure."""
    fake = tmp_path / "fakepy"
    fake.write_text("#!/bin/bash\necho 'Looking in indexes: x'\necho 'Collecting numpy (from hambench==0.1)'\n"
                    "echo 'Processing /opt/pypi/files/zarr-3.1.6-py3-none-any.whl (from hambench)'\n"
                    "echo 'Requirement already satisfied: pip'\necho 'Successfully installed numpy-2 zarr-3'\n"
                    "[ \"$FAIL\" = 1 ] && { echo 'ERROR: no matching distribution' >&2; exit 1; }\nexit 0\n")
    fake.chmod(0o755)
    (tmp_path / "t.mk").write_text(f"include {ROOT / 'Makefile'}\nt:\n\t@$(call pip_install,{fake},numpy)\n")
    r = make("-f", str(tmp_path / "t.mk"), "t", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["    Collecting numpy", "    Processing zarr-3.1.6-py3-none-any.whl",
                                     "    Successfully installed numpy-2 zarr-3"]
    assert "Looking in indexes" in (tmp_path / "build" / "install.log").read_text()
    r = subprocess.run(["make", "--no-print-directory", "-f", str(tmp_path / "t.mk"), "t"], cwd=tmp_path,
                       capture_output=True, text=True, env={**os.environ, "FAIL": "1"}, timeout=120)
    assert r.returncode != 0
    assert "make: pip install numpy failed; the end of build/install.log:" in r.stdout
    assert "ERROR: no matching distribution" in r.stdout

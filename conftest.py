"""Repository-wide pytest set-up (loaded before any test module).

1. ``python -m pytest`` from the repository root puts the root on ``sys.path``, so a Python without hambench
   installed would import the bare source folder ``hambench/`` (no ``hambench.pipelines``, ``.models``,
   ``.leaderboard``, no compiled ``_core``: those come from the editable install's mapping). Such a run stops here
   with one line saying what to run instead. (With the venv's Python the installed mapping wins and all is well.)
2. Every test that reads the real DFT fixtures (``hambench.testing.require_realdata`` / ``realdata_path``, directly,
   through a fixture or through a helper function of the test tree) gets the ``realdata`` marker, so
   ``-m "not realdata"`` runs without ../shared/realdata and ``-m realdata`` selects exactly those tests.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
TESTS = ROOT / "tests"
#: names whose use means "this reads ../shared/realdata"
REALDATA_CALLS = ("require_realdata", "realdata_path")


def installed_problem() -> str | None:
    """Why this interpreter cannot run the tests (hambench not installed with its mapping), or None."""
    try:
        spec = importlib.util.find_spec("hambench.pipelines")
        core = importlib.util.find_spec("hambench._core")
    except (ImportError, ValueError) as e:  # pragma: no cover - a broken install
        return f"hambench does not import in {sys.executable} ({e})"
    if spec is None or core is None:
        import hambench

        where = Path(hambench.__file__).resolve().parent
        return (f"{sys.executable} imports hambench from the source folder {where} without the installed "
                f"mapping (hambench.pipelines, hambench._core): hambench is not installed in this Python")
    return None


def pytest_configure(config):
    problem = installed_problem()
    if problem:
        venv = ROOT / ".venv" / "bin" / "python"
        fix = (f"run `{venv} -m pytest` (or `source .venv/bin/activate` first)" if venv.exists()
               else "run `make test` (it creates .venv and installs hambench), then `.venv/bin/python -m pytest`")
        pytest.exit(f"hambench: {problem}; {fix}", returncode=4)


# --- the realdata marker -------------------------------------------------------------------------------------
def _in_test_tree(obj) -> bool:
    try:
        f = inspect.getsourcefile(obj)
    except TypeError:
        return False
    return f is not None and Path(f).resolve().is_relative_to(TESTS)


def _reads_realdata(func, seen: set) -> bool:
    """Does ``func`` (or a function of the test tree it names, recursively) call a realdata accessor?"""
    func = inspect.unwrap(func)
    code = getattr(func, "__code__", None)
    if code is None or code in seen or not _in_test_tree(func):
        return False
    seen.add(code)

    def names(c):
        out = set(c.co_names) | set(c.co_freevars)
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                out |= names(const)
        return out

    used = names(code)
    if any(n in used for n in REALDATA_CALLS):
        return True
    g = getattr(func, "__globals__", {})
    for n in used:
        obj = g.get(n)
        if isinstance(obj, types.ModuleType) and _in_test_tree(obj):  # e.g. `import _train_data as td`
            if any(_reads_realdata(v, seen) for v in vars(obj).values() if inspect.isfunction(v)):
                return True
        elif inspect.isfunction(obj) and _reads_realdata(obj, seen):
            return True
    return False


def reads_realdata(item) -> bool:
    """Whether a collected test reads ../shared/realdata: its function, its fixtures, the helpers they call."""
    seen: set = set()
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        funcs += [d.func for d in defs]
    return any(f is not None and _reads_realdata(f, seen) for f in funcs)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "realdata" not in item.keywords and reads_realdata(item):
            item.add_marker(pytest.mark.realdata)

"""The layer contract: dependencies point one way (DESIGN.md §2), checked over the source tree's AST.

    app → pipelines / models / leaderboard → training / scoring (/ testing) → store → basis → small helpers → _core

Every ``import`` and ``from … import`` counts, module-level or inside a function, absolute or relative. A room may
import only rooms of a lower rank (and itself); rooms of equal rank never import each other. The test also
asserts that the checker sees the imports it must see (a planted violation is reported), so it cannot pass by
parsing nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder → the package it installs as (pyproject's wheel.packages)
FOLDERS = {"hambench": "hambench", "pipelines": "hambench.pipelines", "models": "hambench.models",
           "leaderboard": "hambench.leaderboard"}
#: rank of each room; a room imports only lower ranks (equal ranks: never each other)
RANK = {
    "hambench": 0, "hambench._core": 0, "hambench.errors": 0,
    "hambench.atomic": 1, "hambench.config": 1, "hambench.parallel": 1,
    "hambench.basis": 2,
    "hambench.store": 3,
    "hambench.training": 4, "hambench.scoring": 4, "hambench.testing": 4,
    "hambench.pipelines": 5, "hambench.models": 5, "hambench.leaderboard": 5,
    "hambench.app": 6, "hambench.__main__": 7,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts[0] = FOLDERS[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room(module: str) -> str | None:
    """``hambench.store._read`` → ``hambench.store``; None outside hambench."""
    parts = module.split(".")
    if parts[0] != "hambench":
        return None
    return "hambench" if len(parts) == 1 else f"hambench.{parts[1]}"


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``source`` (function-local ones included); for
    ``from M import a`` both M and M.a are listed (``a`` may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            out.append((node.lineno, target))
            out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return out


def violations(files) -> list[str]:
    bad = []
    for path, source in files:
        me = module_name(path)
        mine = room(me)
        for line, target in imported_modules(source, me, path.name == "__init__.py"):
            other = room(target)
            if other is None or other == mine:
                continue
            if other not in RANK:  # hambench.__version__ and other attributes of the top package
                other = "hambench"
            if RANK[other] >= RANK[mine]:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {mine} imports {target} ({other})")
    return sorted(set(bad))


def source_files():
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path, path.read_text()


def test_every_module_has_a_room():
    rooms = {room(module_name(p)) for p, _ in source_files()}
    assert rooms <= set(RANK), sorted(rooms - set(RANK))
    assert {"hambench.basis", "hambench.store", "hambench.training", "hambench.scoring", "hambench.app"} <= rooms


def test_dependencies_point_one_way():
    bad = violations(source_files())
    assert not bad, "layer order broken:\n" + "\n".join(bad)


@pytest.mark.parametrize("where, code, broken", [
    ("hambench/store/_x.py", "def f():\n    from hambench.models import registry\n", True),
    ("hambench/basis/_x.py", "from ..store import Store\n", True),
    ("hambench/training/_x.py", "import hambench.scoring\n", True),
    ("pipelines/x.py", "from hambench.models.run import train_run\n", True),
    ("models/x.py", "from hambench.training import make_loader\nfrom .common import BlockHead\n", False),
    ("hambench/app/x.py", "from hambench.pipelines import prepare\n", False),
], ids=["core-imports-model-in-function", "relative-upward", "sibling", "pipeline-imports-model", "downward",
        "app-imports-pipeline"])
def test_checker_sees_violations(where, code, broken):
    """The checker itself: planted imports are (or are not) reported."""
    assert bool(violations([(ROOT / where, code)])) is broken

"""Test helpers that drive the whole tool (the app layer: they may use every package): the CLI through
click's test runner, the one-line error check, and the embedded demo molecules prepared into a store."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from hambench.app.cli import main
from hambench.app.demo import DEMO_OPTIONS, demo_raw_dir
from hambench.pipelines import prepare

__all__ = ["cli", "one_line_error", "demo_truth"]


def cli(*args):
    """``hambench ARGS...`` through click's test runner (arguments str()-ed); the click ``Result``."""
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(r, code: int = 1) -> str:
    """Assert a CLI ``Result`` failed with ``code`` and ended in one ``hambench: error:`` line; that line."""
    assert r.exit_code == code, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert lines[-1].startswith("hambench: error:"), r.output
    return lines[-1]


def demo_truth(folder, augment: int = 1) -> Path:
    """``folder/qm9mini[_augK].zarr``: the embedded demo molecules (10 real PySCF QM9 results, no DFT run), with
    ``augment`` seeded rotated copies each; made once per folder."""
    path = Path(folder) / ("qm9mini.zarr" if not augment else f"qm9mini_aug{augment}.zarr")
    if not path.exists():  # prepare writes NAME.zarr.partial and renames: an existing store is complete
        path.parent.mkdir(parents=True, exist_ok=True)
        prepare("pyscf/qm9", None, path, quiet=True, raw_dir=demo_raw_dir(), augment=augment, seed=0,
                **DEMO_OPTIONS)
    return path

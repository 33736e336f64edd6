"""``hambench demo``: the main job on the embedded demo data.

The demo data are real DFT results shipped with the package (``hambench/data/demo_qm9``: PySCF B3LYP/def2-SVP
runs of the smallest QM9 molecules, made by ``hambench prepare --source pyscf/qm9``; its README gives the
command). ``prepare`` finds every molecule in that cache, so the demo runs no DFT: it builds a store with two
rotation-augmented copies per molecule, re-opens it, validates it and prints its summary.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

__all__ = ["run_demo", "DEMO_OPTIONS"]

#: the exact prepare options the demo data were generated with (see hambench/data/demo_qm9/README.md)
DEMO_OPTIONS = {"max_heavy": 3, "limit": 10}


def demo_raw_dir() -> Path:
    return Path(str(resources.files("hambench") / "data" / "demo_qm9"))


def run_demo(output: Path, quiet: bool = False) -> None:
    import click

    from .pipelines import prepare
    from .store import open_store

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    store = output / "qm9_demo.zarr"
    if store.exists():
        shutil.rmtree(store)
    line = prepare("pyscf/qm9", None, store, quiet=quiet, augment=2, seed=0, raw_dir=demo_raw_dir(), **DEMO_OPTIONS)
    click.echo(line)
    st = open_store(store)
    for k in range(len(st)):
        st[k].validate()
    click.echo(st.summary())
    click.echo(f"demo: every structure of {store} re-read and validated (shapes, finite, H_ij(R) = H_ji(-R)^T)")

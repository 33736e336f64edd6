"""Stores shared by the training/predict tests, built once per pytest session (cached in the session's
temporary folder, each written under a staging name and renamed whole by :func:`hambench.atomic.atomic_path`): the
embedded demo molecules (real PySCF labels, no DFT run) and the real MoTe2 crystal."""

from __future__ import annotations

import shutil
from pathlib import Path

from hambench.atomic import atomic_path


def _base(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp() / "hambench_train_stores"
    base.mkdir(exist_ok=True)
    return base


def demo_store(tmp_path_factory) -> Path:
    """10 QM9 molecules (≤ 3 heavy atoms) with B3LYP/def2-SVP labels from the demo cache."""
    from hambench.app.demo import demo_raw_dir
    from hambench.pipelines import prepare

    out = _base(tmp_path_factory) / "demo.zarr"
    if not out.exists():
        with atomic_path(out) as tmp:
            prepare("pyscf/qm9", None, tmp, raw_dir=demo_raw_dir(), max_heavy=3, limit=10, quiet=True)
    return out


def mote2_store(tmp_path_factory) -> Path:
    """The real MoTe2 monolayer (OpenMX via DeepH-dock's folder): 3 atoms, 131 edges, 19 orbitals per atom."""
    from hambench.pipelines import prepare
    from hambench.testing import require_realdata

    src = require_realdata("deeph_new_MoTe2")
    out = _base(tmp_path_factory) / "mote2.zarr"
    if not out.exists():
        with atomic_path(out) as tmp:
            prepare("deeph/folder", src, tmp, quiet=True)
    return out


def with_split(src, dst, codes, labels, name="demo"):
    """A copy of store ``src`` with a split ``name``: structure k gets ``labels[codes[k]]`` (−1: none)."""
    import numpy as np
    import zarr

    shutil.copytree(src, dst)
    g = zarr.open_group(str(dst), mode="r+")
    n = g.attrs["counts"]["structures"]
    a = g.create_array(f"splits/{name}", shape=(n,), dtype="int8", chunks=(n,))
    a[:] = np.asarray(codes, dtype=np.int8)
    g.attrs["splits"] = {**g.attrs.get("splits", {}), name: list(labels)}
    return dst

"""Reading a store at training speed: structures/s of the data loader against the per-structure ``store[k]`` loop.

Builds a store of the shipped demo molecules (PySCF B3LYP/def2-SVP, no DFT run) and one of the real MoTe2 DeepH
crystal (../shared/realdata), both with rotation-augmented copies, then measures on each, in the same run, structures per second of:

* ``store[k]`` as it was before range reads (every field opened with ``group[name]`` and sliced per structure:
  the baseline, reproduced here as ``legacy_getitem``),
* ``store[k]`` today (cached array handles, one ``read_range(k, k+1)``),
* ``Store.read_range(a, a+64)`` (flat CSR arrays, no collate),
* ``make_loader`` (read + collate into torch Batches) with num_workers 0 and 2, plain and with
  ``augment_rotations=True``,

and prints each as a ratio against the baseline.

    .venv/bin/python benchmarks/bench_loader.py [--copies 31] [--crystal-copies 63] [--batch-size 8]

Loader time as a share of a training step belongs to the engine's benchmark (it needs a model); see the note at
the end of the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def legacy_getitem(group, attrs, k: int):
    """``Store.__getitem__`` before range reads: every array looked up and sliced per structure."""
    from hambench.store._structure import Structure

    g = group
    ap, ep = g["structures/atom_ptr"][:], g["structures/edge_ptr"][:]  # the old reader cached these once per
    a0, a1 = int(ap[k]), int(ap[k + 1])  # store (Store.ptr); reading them is not charged below
    e0, e1 = int(ep[k]), int(ep[k + 1])
    Z = g["atoms/Z"][a0:a1]
    present = {int(z) for z in np.unique(Z)}
    species = {int(z): list(map(int, s)) for z, s in attrs["species"].items()}
    hp, sp = g["edges/H_ptr"], g["edges/S_ptr"]
    h0, h1, s0, s1 = int(hp[e0]), int(hp[e1]), int(sp[e0]), int(sp[e1])
    splits = {}
    for name, labels in attrs.get("splits", {}).items():
        c = int(g[f"splits/{name}"][k])
        if c >= 0:
            splits[name] = labels[c]
    return Structure(
        id=str(g["structures/id"][k]), Z=Z, pos=g["atoms/pos"][a0:a1], cell=g["structures/cell"][k],
        pbc=g["structures/pbc"][k], src=g["edges/src"][e0:e1], dst=g["edges/dst"][e0:e1],
        shift=g["edges/shift"][e0:e1], H=g["blocks/H"][h0:h1], S=g["blocks/S"][s0:s1],
        species={z: s for z, s in species.items() if z in present}, spinful=bool(attrs["spinful"]),
        energy=float(g["structures/energy"][k]), nelectron=float(g["structures/nelectron"][k]),
        fermi_level=float(g["structures/fermi_level"][k]), rotation=g["structures/rotation"][k],
        parent=int(g["structures/parent"][k]), sources=[tuple(x) for x in json.loads(str(g["structures/sources"][k]))],
        splits=splits,
    )


def rate(fn, n_structures: int, repeat: int = 3) -> float:
    """Best structures/s of ``fn`` over ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_structures / best


def bench_store(path, what: str, args) -> None:
    import zarr

    from hambench.training._data import make_loader
    from hambench.store._store import open_store

    st = open_store(path)
    n = len(st)
    na = int(st.attrs["counts"]["atoms"]) / n
    ne = int(st.attrs["counts"]["edges"]) / n
    nh = int(st.attrs["counts"]["H"]) / n
    print(f"\nstore: {n} structures ({what}): {na:.1f} atoms, {ne:.0f} edges, {nh:.0f} H elements per structure")
    group = zarr.open_group(str(path), mode="r")
    attrs = group.attrs.asdict()
    m = min(args.legacy_sample, n)
    sample = np.linspace(0, n - 1, m).astype(int)
    results = {}
    results["store[k], before range reads (baseline)"] = rate(
        lambda: [legacy_getitem(group, attrs, int(k)) for k in sample], m, repeat=2)
    st2 = open_store(path)
    results["store[k], cached handles"] = rate(lambda: [st2[int(k)] for k in range(n)], n)
    R = args.range
    results[f"read_range, {R} structures per read"] = rate(
        lambda: [st2.read_range(a, min(a + R, n)) for a in range(0, n, R)], n)
    for aug in (False, True):
        for w in (0, 2):
            L = make_loader(path, batch_size=args.batch_size, shuffle=True, seed=0, num_workers=w,
                            augment_rotations=aug, range_size=R)
            list(L)  # warm: JIT kernels, worker start-up (persistent workers are reused)
            label = f"make_loader num_workers={w}{', augment_rotations' if aug else ''}"
            results[label] = rate(lambda: sum(b.num_structures for b in L), n)
            del L
    base = results["store[k], before range reads (baseline)"]
    print(f"{'method':<48} {'structures/s':>13} {'ms/structure':>13} {'vs baseline':>12}")
    for label, r in results.items():
        print(f"{label:<48} {r:>13.1f} {1e3 / r:>13.3f} {r / base:>11.1f}x")
    print(f"(batch size {args.batch_size} structures, ranges of {R}; loader figures include the collate into torch "
          "Batches; best of 3 epochs)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=31, help="rotated copies per demo molecule (store = 10 x (1+N))")
    ap.add_argument("--crystal-copies", type=int, default=63, help="rotated copies of the MoTe2 crystal (0: skip)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--range", type=int, default=64, help="structures per range read")
    ap.add_argument("--legacy-sample", type=int, default=64, help="structures timed with the legacy loop")
    args = ap.parse_args(argv)

    import torch
    import zarr

    from hambench.app.demo import demo_raw_dir
    from hambench.pipelines import prepare
    from hambench.testing import realdata_path

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_loader_"))
    try:
        stores = []
        path = tmp / "qm9_aug.zarr"
        prepare("pyscf/qm9", None, path, quiet=True, raw_dir=demo_raw_dir(), max_heavy=3, limit=10,
                augment=args.copies, seed=0)
        stores.append((path, f"10 demo molecules (PySCF def2-SVP) x {1 + args.copies}"))
        mote2 = realdata_path("deeph_legacy_MoTe2")
        if mote2.is_dir() and args.crystal_copies > 0:
            path = tmp / "mote2_aug.zarr"
            prepare("deeph/folder", mote2, path, quiet=True, augment=args.crystal_copies, seed=0)
            stores.append((path, f"MoTe2 DeepH crystal x {1 + args.crystal_copies}"))
        print(f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at start), Python "
              f"{platform.python_version()}, zarr {zarr.__version__}, torch {torch.__version__} (1 thread)")
        for path, what in stores:
            bench_store(path, what, args)
        print("\nnote: loader time as a share of a training step is measured by the training engine's benchmark "
              "(it needs a model); not here.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

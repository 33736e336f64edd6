"""A store of PySCF water conformers for the TraceGrad comparison (``bench_tracegrad_variants.py``).

Written because the ``pyscf/conformers`` source (another branch) was not ready when the experiment had to start.
Geometries: O at the origin, two O–H bonds drawn uniformly from [0.85, 1.10] Å and the H–O–H angle from
[95°, 120°], then a random rigid rotation (numpy seed ``--seed``). Labels: :func:`pipelines.pyscf_qm9.run_pyscf`
with hambench's default QH9 protocol (RKS b3lyp5/def2-SVP, grid 3), one raw ``.npz`` per conformer under
``--raw`` (resumable: existing files are kept), then ``hambench prepare pyscf/outputs`` into ``--out``.

Run:  nice -n 5 .venv/bin/python benchmarks/water_conformers.py --n 300 --raw /tmp/tg/water_raw --out /tmp/tg/water.zarr
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def geometry(rng) -> np.ndarray:
    r1, r2 = rng.uniform(0.85, 1.10, size=2)
    ang = np.deg2rad(rng.uniform(95.0, 120.0))
    xyz = np.array([[0.0, 0.0, 0.0], [r1, 0.0, 0.0], [r2 * np.cos(ang), r2 * np.sin(ang), 0.0]])
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return xyz @ q.T


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--raw", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from hambench.basis._pyscf import DEFAULT_PROTOCOL
    from hambench.pipelines.pyscf_qm9 import _write_npz_atomic, run_pyscf

    args.raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    geoms = [geometry(rng) for _ in range(args.n)]
    t0 = last = time.perf_counter()
    for i, xyz in enumerate(geoms):
        path = args.raw / f"water_{i:05d}.npz"
        if not path.exists():
            _write_npz_atomic(path, run_pyscf(["O", "H", "H"], xyz, dict(DEFAULT_PROTOCOL)))
        if time.perf_counter() - last > 10:
            last = time.perf_counter()
            print(f"{i + 1}/{args.n} conformers, {last - t0:.0f} s", flush=True)
    print(f"{args.n} conformers in {time.perf_counter() - t0:.0f} s", flush=True)
    if not args.out.exists():
        subprocess.run([sys.executable, "-m", "hambench", "prepare", "--source", "pyscf/outputs",
                        "--input", str(args.raw), "-o", str(args.out)], check=True)


if __name__ == "__main__":
    main()

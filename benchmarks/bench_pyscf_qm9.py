"""pyscf/qm9 generator: DFT time per molecule vs number of basis functions, and molecules/s at 1 and 2 workers.

Part 1 runs the QH9 protocol (RKS b3lyp5/def2-SVP, grid 3, conv_tol 1e-9) on the first QM9 molecule with
k = 1..K heavy atoms, one PySCF thread, and fits t ∝ n_ao^p. Part 2 runs ``hambench prepare --source pyscf/qm9``
over the same small molecules with 1 and then 2 Dask workers (one PySCF thread each), fresh raw caches, and
prints molecules/s and the ratio (2 vs 1). A plot of part 1 goes to benchmarks/results/bench_pyscf_qm9.png.

Usage: .venv/bin/python benchmarks/bench_pyscf_qm9.py [--max-heavy 6] [--throughput 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-heavy", type=int, default=6, help="largest molecule of part 1 (heavy atoms)")
    ap.add_argument("--throughput", type=int, default=8, help="molecules (<= 3 heavy atoms) in part 2")
    args = ap.parse_args()

    import pyscf

    from hambench.pipelines import prepare
    from hambench.pipelines import pyscf_qm9 as pq

    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"numpy {np.__version__}, PySCF {pyscf.__version__}; protocol {pq.protocol_of({})}")
    table = pq.load_qm9_table()
    ids = []
    for k in range(1, args.max_heavy + 1):
        ids.append(int(table.loc[table["n_heavy"] == k, "Index"].iloc[0]))
    items = pq.select_molecules(table, ids=",".join(map(str, ids)))

    print("\n## 1. DFT time per molecule (1 PySCF thread)")
    print(f"{'QM9':>6} {'SMILES':>10} {'atoms':>5} {'n_ao':>5} {'cycles':>6} {'DFT s':>8} {'E (Ha)':>14}")
    rows = []
    for it in items:
        t0 = time.perf_counter()
        raw = pq.run_pyscf(it[2], it[3], pq.protocol_of({}), threads=1)
        dt = time.perf_counter() - t0
        nao = raw["fock"].shape[0]
        rows.append((nao, dt))
        print(f"{it[0]:>6} {it[1]:>10} {len(it[2]):>5} {nao:>5} {int(raw['cycles']):>6} {dt:>8.2f} {float(raw['e_tot']):>14.6f}")
    n = np.array([r[0] for r in rows], float)
    t = np.array([r[1] for r in rows])
    p, c = np.polyfit(np.log(n), np.log(t), 1)
    print(f"fit: t = {np.exp(c):.3g} s * n_ao^{p:.2f};  extrapolated 9-heavy-atom QM9 molecule (n_ao 176): "
          f"{np.exp(c) * 176 ** p:.0f} s -> {3600 / (np.exp(c) * 176 ** p):.0f} molecules per CPU-hour")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.loglog(n, t, "o", label="measured (1 thread)")
    xs = np.linspace(n.min(), 200, 50)
    ax.loglog(xs, np.exp(c) * xs ** p, "-", label=f"fit ∝ n_ao^{p:.2f}")
    ax.set_xlabel("basis functions n_ao (def2-SVP)")
    ax.set_ylabel("DFT wall time per molecule (s)")
    ax.set_title("PySCF RKS b3lyp5/def2-SVP, grid 3 (QH9 protocol)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out_png = Path(__file__).resolve().parent / "results" / "bench_pyscf_qm9.png"
    out_png.parent.mkdir(exist_ok=True)
    fig.savefig(out_png, dpi=120)
    print(f"plot: {out_png.relative_to(Path(__file__).resolve().parents[1])}")

    print(f"\n## 2. prepare --source pyscf/qm9 --max-heavy 3 --limit {args.throughput} (fresh raw cache)")
    rate = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            out = Path(tmp) / f"w{workers}.zarr"
            t0 = time.perf_counter()
            prepare("pyscf/qm9", None, out, quiet=True, workers=workers, max_heavy=3, limit=args.throughput,
                    raw_dir=Path(tmp) / f"raw{workers}")
            dt = time.perf_counter() - t0
            rate[workers] = args.throughput / dt
            print(f"workers={workers}: {dt:6.1f} s  {rate[workers]:.3f} molecules/s  "
                  f"({3600 * rate[workers]:.0f} molecules/hour)")
    print(f"ratio (2 workers / 1 worker): {rate[2] / rate[1]:.2f}x")


if __name__ == "__main__":
    main()

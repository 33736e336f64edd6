"""pyscf/conformers: DFT cost per conformer (MD17 protocol, PBE/def2-SVP) against the pyscf/qm9 path, same run.

For each molecule (default water and ethanol), one PySCF thread:

1. the one-time geometry work of the source (optimisation at PBE/def2-SVP + analytic Hessian; reused from
   ``--modes-dir`` when cached there, and then its recorded cost is printed),
2. ``--conformers`` thermal conformers (500 K, classical) labelled through the source (fresh raw cache): seconds
   per conformer,
3. the baseline, measured in the same run: the pyscf/qm9 path for the same molecule (QM9 index 3 / 14, its
   QH9 protocol B3LYP5/def2-SVP, fresh raw cache), and the same conformers labelled with the QH9 protocol (PySCF
   run directly; so the ratio separates the functional from the geometry),
4. ab-initio MD as the alternative sampler: seconds per velocity-Verlet step of ``pyscf.md`` (PBE/def2-SVP), the
   cost of one MD sample being (steps between decorrelated frames) × this.

Usage: .venv/bin/python benchmarks/bench_pyscf_conformers.py [--molecules water,ethanol] [--conformers 3]
       [--modes-dir DIR] [--md-steps 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

QM9_INDEX = {"water": 3, "ethanol": 14, "uracil": 4258}


def _timed_compute(src, items) -> tuple[float, list[int]]:
    """Mean seconds per item of ``src.compute`` (fresh cache) and the SCF cycles of each."""
    times, cycles = [], []
    for it in items:
        t0 = time.perf_counter()
        raw, _, computed = src.compute(it)
        times.append(time.perf_counter() - t0)
        assert computed and bool(raw["converged"])
        cycles.append(int(raw["cycles"]))
    return float(np.mean(times)), cycles


def _timed_qh9(src) -> tuple[float, list[int]]:
    """Mean seconds of the QH9 protocol (B3LYP5/def2-SVP) on the conformers of ``src`` (PySCF run directly: a
    ``--protocol qh9`` source would first optimise the geometry at B3LYP)."""
    from hambench.basis._pyscf import protocol_of
    from hambench.pipelines.pyscf_conformers import PROTOCOLS
    from hambench.pipelines.pyscf_qm9 import run_pyscf

    times, cycles = [], []
    for _, xyz in src.items():
        t0 = time.perf_counter()
        raw = run_pyscf(src.symbols, xyz, protocol_of(PROTOCOLS["qh9"]))
        times.append(time.perf_counter() - t0)
        cycles.append(int(raw["cycles"]))
    return float(np.mean(times)), cycles


def _md_step_seconds(symbols, xyz, steps: int) -> float:
    """Seconds per velocity-Verlet step of pyscf.md (PBE/def2-SVP, 500 K Maxwell-Boltzmann start)."""
    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # pyscf.md writes every frame to the process's stdout
    try:
        return _md_run(symbols, xyz, steps)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(null)
        os.close(saved)


def _md_run(symbols, xyz, steps: int) -> float:
    from pyscf import md

    from hambench.basis._pyscf import build_mol, make_rks, protocol_of
    from hambench.pipelines.pyscf_conformers import PROTOCOLS

    p = protocol_of(PROTOCOLS["md17"])
    mol = build_mol(symbols, xyz, p)
    mf = make_rks(mol, p)
    veloc = md.distributions.MaxwellBoltzmannVelocity(mol, T=500, rng=np.random.default_rng(0))
    integ = md.NVE(mf, dt=20, steps=steps, veloc=veloc, verbose=0)  # 20 a.u. = 0.48 fs (MD17: 0.5 fs)
    t0 = time.perf_counter()
    integ.run()
    return (time.perf_counter() - t0) / (steps + 1)  # the first gradient is computed before step 1


def bench_molecule(name: str, n_conf: int, modes_dir: Path, md_steps: int) -> dict:
    from hambench.pipelines import get_source
    from hambench.pipelines import pyscf_qm9 as pq

    t0 = time.perf_counter()
    src = get_source("pyscf/conformers", molecule=name, count=n_conf, raw_dir=modes_dir)
    setup = time.perf_counter() - t0
    cached = np.load(src._modes_path())
    geo = (f"{int(cached['gradients'])} gradients to max |g| {float(cached['max_gradient']):.1e} Ha/Bohr"
           + (f"; optimisation {float(cached['opt_wall_s']):.1f} s + Hessian {float(cached['hessian_wall_s']):.1f} s"
              if "opt_wall_s" in cached.files else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for f in Path(modes_dir).glob(f"{name}_modes_*.npz"):  # the geometry work is not part of a conformer
            (Path(tmp) / "pbe").mkdir(exist_ok=True)
            (Path(tmp) / "pbe" / f.name).write_bytes(f.read_bytes())
        fresh = get_source("pyscf/conformers", molecule=name, count=n_conf, raw_dir=Path(tmp) / "pbe")
        pbe, pbe_cycles = _timed_compute(fresh, fresh.items())
        b3lyp, b3_cycles = _timed_qh9(fresh)  # the same geometries labelled with the QH9 protocol
        qm9 = get_source("pyscf/qm9", ids=str(QM9_INDEX[name]), raw_dir=Path(tmp) / "qm9")
        qm9_s, qm9_cycles = _timed_compute(qm9, qm9.items())
    md_s = _md_step_seconds(src.symbols, src.modes["xyz_eq"], md_steps) if md_steps else float("nan")
    nao = sum(pq._nao_per_element("def2-svp", s) for s in src.symbols)
    return {"name": name, "atoms": len(src.symbols), "nao": nao, "setup": setup, "geo": geo, "pbe": pbe,
            "pbe_cycles": pbe_cycles, "b3lyp": b3lyp, "b3_cycles": b3_cycles, "qm9": qm9_s, "qm9_cycles": qm9_cycles,
            "md": md_s, "freqs": src.modes["frequencies_cm1"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--molecules", default="water,ethanol")
    ap.add_argument("--conformers", type=int, default=3, help="conformers timed per molecule")
    ap.add_argument("--modes-dir", type=Path, default=Path(tempfile.gettempdir()) / "hambench_bench_conformers_modes",
                    help="cache of the optimised geometries and Hessians (kept between runs)")
    ap.add_argument("--md-steps", type=int, default=5, help="pyscf.md steps timed per molecule (0: skip)")
    args = ap.parse_args()

    import pyscf

    from hambench.pipelines import pyscf_qm9 as pq

    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}, "
          f"PySCF {pyscf.__version__}; one PySCF thread; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = [bench_molecule(m, args.conformers, args.modes_dir, args.md_steps)
            for m in args.molecules.split(",")]
    print("\n## seconds per conformer (mean over conformers, fresh raw cache) vs the pyscf/qm9 path, same run")
    print(f"{'molecule':>10} {'atoms':>5} {'n_ao':>5} {'PBE conf s':>10} {'cycles':>12} {'B3LYP conf s':>12} {'qm9 path s':>10} "
          f"{'PBE/qm9':>8} {'B3LYP/qm9':>9} {'MD step s':>9}")
    for r in rows:
        print(f"{r['name']:>10} {r['atoms']:>5} {r['nao']:>5} {r['pbe']:>10.2f} {','.join(map(str, r['pbe_cycles'])):>12} "
              f"{r['b3lyp']:>12.2f} {r['qm9']:>10.2f} {r['pbe'] / r['qm9']:>8.2f} {r['b3lyp'] / r['qm9']:>9.2f} "
              f"{r['md']:>9.2f}")
    print("\n## one-time geometry work per molecule (cached in --modes-dir; a second run reuses it)")
    for r in rows:
        print(f"{r['name']:>10}: {r['geo']}; source set-up this run {r['setup']:.1f} s; "
              f"frequencies {np.round(r['freqs']).astype(int).tolist()} cm-1")
    ratio = float(np.mean([r["pbe"] / r["qm9"] for r in rows]))
    print(f"\nmean PBE-conformer / qm9-path ratio: {ratio:.2f} -> TIME_FIT = ({pq.QM9Source.TIME_FIT[0] * ratio:.3g}, "
          f"{pq.QM9Source.TIME_FIT[1]}) (pyscf/qm9's fit scaled by the ratio)")
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

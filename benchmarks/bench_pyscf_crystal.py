"""pyscf/crystal generator: wall time per structure vs atoms and k-points, to size a data set.

Each point runs :class:`hambench.pipelines.pyscf_crystal.CrystalSource` end to end on one structure (fresh raw
cache): geometry + S-aliasing mesh choice, KRKS SCF (multigrid, smearing), the non-SCF Fock on the dense
transform mesh, and the real-space conversion. Printed per point: atoms, AOs, SCF k-points, SCF cycles, the
transform mesh, seconds in SCF / dense Fock / the rest, the time relative to the baseline (the first point,
measured in the same run), and the quality numbers (S aliasing bound, band residual at off-mesh k, eV).

Usage: .venv/bin/python benchmarks/bench_pyscf_crystal.py [--basis gth-szv] [--ke-cutoff 100] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time


POINTS = [  # (system, supercell, kmesh)
    ("graphene", "1x1x1", "2x2x1"),
    ("graphene", "1x1x1", "4x4x1"),
    ("graphene", "2x2x1", "1x1x1"),  # the 2x2x1 supercell at Γ samples the same k density as 2x2x1 above
    ("graphene", "2x2x1", "2x2x1"),
]
#: MoS2 (Mo gth-szv-molopt-sr with semicore 4s4p: 14 valence electrons) ran > 6 min for 3 atoms, 2x2x1 here:
#: opt in with --mos2
MOS2 = [("mos2", "1x1x1", "1x1x1")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--basis", default="gth-szv")
    ap.add_argument("--ke-cutoff", type=float, default=100.0, help="Hartree (PySCF's default from precision: ~400)")
    ap.add_argument("--vacuum", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mos2", action="store_true", help="also time a MoS2 cell (slow)")
    args = ap.parse_args()

    import pyscf

    from hambench.pipelines import pyscf_crystal as pc

    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, PySCF {pyscf.__version__}; "
          f"basis {args.basis}, ke_cutoff {args.ke_cutoff} Ha, vacuum {args.vacuum} Å, {args.threads} threads; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'system':<10} {'cell':>6} {'atoms':>5} {'nao':>4} {'kmesh':>6} {'cyc':>3} {'fft mesh':>9} "
          f"{'scf s':>7} {'dense s':>7} {'rest s':>6} {'total s':>7} {'x base':>6} {'S alias':>8} {'band res eV':>11}")
    base = None
    for system, sc, km in POINTS + (MOS2 if args.mos2 else []):
        with tempfile.TemporaryDirectory() as raw_dir:
            src = pc.CrystalSource(None, system=system, supercell=sc, kmesh=km, basis=args.basis,
                                   ke_cutoff=args.ke_cutoff, vacuum=args.vacuum, threads=args.threads,
                                   raw_dir=raw_dir, seed=0)
            item = src.items()[0]
            t0 = time.perf_counter()
            s = src.read(item)[0]
            total = time.perf_counter() - t0
            raw, _, _ = src.compute(item)
            scf, dense = float(raw["wall_scf_s"]), float(raw["wall_fft_s"])
            base = base or total
            nao = int(raw["fock_k"].shape[-1])
            res = pc.interpolation_residual(s, raw)
            print(f"{system:<10} {sc:>6} {s.natoms:>5} {nao:>4} {km:>6} {int(raw['cycles']):>3} "
                  f"{'x'.join(map(str, raw['fft_mesh'])):>9} {scf:7.1f} {dense:7.1f} {total - scf - dense:6.1f} "
                  f"{total:7.1f} {total / base:6.2f} {float(raw['alias_error_S']):8.1e} {res:11.1e}", flush=True)


if __name__ == "__main__":
    main()

"""Benchmark of the bulk SO(3) block algebra against the straightforward per-block loop, same data, same run.

Workload: QM9-like edges in def2-SVP (H 5 orbitals, C/N/O 14), random blocks, one random rotation;
spinful: bismuthene-like (Bi s,s,p,d: 20x20 complex blocks). Methods:
    loop     per-edge Python loop (D per element precomputed, dense D_i H D_jᵀ)  -- the baseline
    grouped  NumPy: one batched dense matmul per (Z_i, Z_j) group (gather / scatter)
    numba    hambench.basis._so3 default: one Numba pass over the flat array, shell pair by shell pair
Every fast result is checked against the loop on the same data before it is timed. `H.copy()` (same size) is
printed as the memory-traffic floor.

Run:  .venv/bin/python benchmarks/bench_so3.py [--edges 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from hambench.basis import _so3 as so3
from hambench.testing import random_edge_blocks

SPECIES_QM9 = {1: [0, 0, 1], 6: [0, 0, 0, 1, 1, 2], 7: [0, 0, 0, 1, 1, 2], 8: [0, 0, 0, 1, 1, 2]}
SPECIES_BI = {83: [0, 0, 1, 2]}


def best(f, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


def edges(rng, n, species, p=None):
    zs = np.array(sorted(species))
    return rng.choice(zs, n, p=p), rng.choice(zs, n, p=p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", type=int, default=100_000, help="edges of the QM9-like workload")
    ap.add_argument("--trace-loop-edges", type=int, default=10_000, help="edges for the (slow) trace loop")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")
    R = so3.random_rotation(rng)

    # warm-up (Numba compile / cache load, e3nn import)
    zi, zj = edges(rng, 10, SPECIES_QM9)
    for sp in (False, True):
        h = random_edge_blocks(rng, zi, zj, SPECIES_QM9, sp)
        so3.rotate_edge_blocks(h, zi, zj, SPECIES_QM9, R, sp)
        so3.edge_traces(h, zi, zj, SPECIES_QM9, sp)

    print("\n## wigner_D(l, R) for one rotation: ladder from e3nn 3j vs e3nn D_from_matrix (both float64)")
    print(f"{'l':>3s} {'e3nn ms':>9s} {'ladder ms':>10s} {'e3nn/ladder':>12s} {'max |diff|':>11s}")
    for l in (1, 2, 3, 4):
        t_e, De = best(lambda: so3.wigner_D_e3nn(l, R), repeat=20)
        t_l, Dl = best(lambda: so3.wigner_D(l, R), repeat=20)
        print(f"{l:3d} {t_e * 1e3:9.3f} {t_l * 1e3:10.3f} {t_e / t_l:11.0f}x {np.max(np.abs(De - Dl)):11.1e}")

    print("\n## rotate_edge_blocks  D_i H D_j^T")
    print(f"{'workload':34s} {'elements':>10s} {'loop s':>8s} {'grouped s':>9s} {'numba s':>8s} {'grouped/loop':>12s} {'numba/loop':>11s}")
    cases = [
        ("QM9-like def2-SVP, float64", SPECIES_QM9, args.edges, False, np.float64, [0.5, 0.35, 0.08, 0.07]),
        ("QM9-like def2-SVP, float32", SPECIES_QM9, args.edges, False, np.float32, [0.5, 0.35, 0.08, 0.07]),
        ("Bi s2p1d1 spinful, complex128", SPECIES_BI, args.edges // 5, True, np.float64, None),
    ]
    for name, species, n, spinful, dtype, p in cases:
        zi, zj = edges(rng, n, species, p)
        H = random_edge_blocks(rng, zi, zj, species, spinful, dtype)
        t_loop, ref = best(lambda: so3.rotate_edge_blocks_loop(H, zi, zj, species, R, spinful), repeat=1)
        t_grp, grp = best(lambda: so3.rotate_edge_blocks_grouped(H, zi, zj, species, R, spinful))
        t_nb, nb = best(lambda: so3.rotate_edge_blocks(H, zi, zj, species, R, spinful))
        scale = np.max(np.abs(ref))
        assert np.max(np.abs(grp - ref)) <= 1e-5 * scale and np.max(np.abs(nb - ref)) <= 1e-5 * scale
        t_copy, _ = best(lambda: H.copy())
        print(f"{name:34s} {H.size:10d} {t_loop:8.3f} {t_grp:9.3f} {t_nb:8.3f} {t_loop / t_grp:11.1f}x {t_loop / t_nb:10.1f}x"
              f"   (H.copy(): {t_copy:.3f} s)")

    print("\n## edge_traces  T_b = tr(H_b H_b^†) per basic block")
    print(f"{'workload':34s} {'edges':>8s} {'loop s':>8s} {'grouped s':>9s} {'numba s':>8s} {'grouped/loop':>12s} {'numba/loop':>11s}")
    for name, species, spinful, p in (
        ("QM9-like def2-SVP, float64", SPECIES_QM9, False, [0.5, 0.35, 0.08, 0.07]),
        ("Bi s2p1d1 spinful, complex128", SPECIES_BI, True, None),
    ):
        n = args.trace_loop_edges
        zi, zj = edges(rng, n, species, p)
        H = random_edge_blocks(rng, zi, zj, species, spinful)
        t_loop, (ref, _) = best(lambda: so3.edge_traces_loop(H, zi, zj, species, spinful), repeat=1)
        t_grp, (grp, _) = best(lambda: so3.edge_traces_grouped(H, zi, zj, species, spinful))
        t_nb, (nb, _) = best(lambda: so3.edge_traces(H, zi, zj, species, spinful))
        assert np.max(np.abs(grp - ref) / ref) < 1e-12 and np.max(np.abs(nb - ref) / ref) < 1e-12
        print(f"{name:34s} {n:8d} {t_loop:8.3f} {t_grp:9.4f} {t_nb:8.4f} {t_loop / t_grp:11.1f}x {t_loop / t_nb:10.1f}x")
    zi, zj = edges(rng, args.edges, SPECIES_QM9, [0.5, 0.35, 0.08, 0.07])
    H = random_edge_blocks(rng, zi, zj, SPECIES_QM9)
    t_nb, _ = best(lambda: so3.edge_traces(H, zi, zj, SPECIES_QM9))
    print(f"numba throughput on {args.edges} QM9-like edges ({H.size} elements): {t_nb:.3f} s = {H.size / t_nb / 1e6:.0f} M elements/s")

    print("\n## CG decomposition of l1 x l2 basic blocks (decompose_blocks: one matmul) vs per-block decompose_block")
    print(f"{'(l1, l2)':10s} {'blocks':>8s} {'loop s':>8s} {'bulk s':>8s} {'bulk/loop':>10s}")
    for l1, l2 in ((1, 1), (2, 2), (1, 2)):
        n = 20_000
        X = rng.standard_normal((n, 2 * l1 + 1, 2 * l2 + 1))
        so3.decompose_block(X[0], l1, l2)  # fill the CG cache
        t_loop, ref = best(lambda: [np.concatenate(list(so3.decompose_block(x, l1, l2).values())) for x in X], repeat=1)
        t_bulk, bulk = best(lambda: so3.decompose_blocks(X, l1, l2))
        assert np.max(np.abs(bulk - np.asarray(ref))) < 1e-12
        print(f"({l1}, {l2})    {n:8d} {t_loop:8.3f} {t_bulk:8.4f} {t_loop / t_bulk:9.0f}x")


if __name__ == "__main__":
    main()

"""Benchmark: hambench's C++ cell-list neighbour list vs brute force (numpy) and vesin (a peer, if installed).

Random dense periodic boxes (0.08 atoms/Å³, like a solid), a 2-D slab, and a non-periodic cluster with one atom
1e6 Å away (the case that defeats a plain bounding-box grid); cutoff 5 Å. Every peer is asked for the same
information as ours (i, j, S); self pairs are included in ours only (counts are compared after adding them),
and ours is sorted by (src, dst, R) while the peers' lists are not. ASE runs up to 16k atoms (4k for the
cluster: it ran out of memory at 16k atoms on this machine).

    python benchmarks/bench_neighbors.py
"""

from __future__ import annotations

import time

import numpy as np

from hambench.basis._neighbors import neighbor_list


def best(f, repeat=3):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t)
    return min(ts), out


def brute(pos, cell, rc):
    """Numpy brute force over the 27 neighbouring images (valid when rc < box/2... boxes here are ≥ 2 rc)."""
    n = 0
    for R in np.array(np.meshgrid(*[[-1, 0, 1]] * 3, indexing="ij")).reshape(3, -1).T:
        d = pos[None, :, :] + R @ cell - pos[:, None, :]
        n += int(np.count_nonzero(np.einsum("ijk,ijk->ij", d, d) < rc * rc))
    return n


def main():
    try:
        import vesin
    except ImportError:
        vesin = None
    try:
        from ase import Atoms
        from ase.neighborlist import neighbor_list as ase_neighbor_list
    except ImportError:
        Atoms = None
    rc, density = 5.0, 0.08
    print(f"cutoff {rc} Å, density {density} atoms/Å³; times are the best of 3")
    print(f"{'system':>18} {'atoms':>8} {'pairs':>10} {'hambench s':>11} {'pairs/s':>10} "
          f"{'brute s':>9} {'ratio':>7} {'vesin s':>9} {'ratio':>7} {'ase s':>8} {'ratio':>7}")
    rng = np.random.default_rng(0)
    for n in (1000, 4000, 16000, 64000, 128000):
        for kind in ("3-D box", "2-D slab", "cluster+far atom"):
            L = (n / density) ** (1 / 3)
            cell = np.diag([L, L, L])
            pos = rng.uniform(0, L, (n, 3))
            pbc = {"3-D box": (True,) * 3, "2-D slab": (True, True, False)}.get(kind, (False,) * 3)
            if kind == "2-D slab":
                cell[2, 2] = L + 30.0
            if kind == "cluster+far atom":
                pos[-1] = (1e6, 0.0, 0.0)
                cell = np.zeros((3, 3))
            t_ours, (src, _, _) = best(lambda: neighbor_list(pos, rc, cell, pbc))
            t_brute = ratio_b = float("nan")
            if n <= 4000 and kind == "3-D box":
                t_brute, nb = best(lambda: brute(pos, cell, rc), repeat=1)
                assert nb == len(src), (nb, len(src))
                ratio_b = t_brute / t_ours
            t_v = ratio_v = float("nan")
            if vesin is not None:
                nl = vesin.NeighborList(cutoff=rc, full_list=True)
                t_v, (i, _, _) = best(lambda: nl.compute(pos, cell, list(pbc), quantities="ijS"))
                assert len(i) + n == len(src)
                ratio_v = t_v / t_ours
            t_a = ratio_a = float("nan")
            # ASE bins the bounding box: out of memory on the cluster beyond 4k atoms
            if Atoms is not None and n <= (4000 if kind == "cluster+far atom" else 16000):
                atoms = Atoms(numbers=np.ones(n, int), positions=pos, cell=cell, pbc=pbc)
                t_a, (i, _, _) = best(lambda: ase_neighbor_list("ijS", atoms, rc), repeat=1)
                assert len(i) + n == len(src)
                ratio_a = t_a / t_ours
            print(f"{kind:>18} {n:8d} {len(src):10d} {t_ours:11.4f} {len(src) / t_ours:10.3g} "
                  f"{t_brute:9.3f} {ratio_b:7.1f} {t_v:9.4f} {ratio_v:7.2f} {t_a:8.3f} {ratio_a:7.1f}")
    print("ratio = other's time / hambench's time (> 1: hambench faster). Time per pair stays flat with N: O(N).")


if __name__ == "__main__":
    main()

"""Bands near E_F by shift-invert (``hambench bands``) against dense ``eigh``, per k-point (issue 31 item 4).

For each store (or prediction store with S) given: the n levels nearest E_F at one k-point by shift-invert on the
sparse H(k), S(k) (one LU of H − σS: SciPy's SuperLU, or LAPACK for small/dense-ish matrices, then ARPACK), and,
where the matrix is small enough (``--dense-max`` orbitals), all levels by dense generalised ``eigh`` of the same
matrices in the same run: the time ratio and the largest difference of the n levels. pypardiso / MUMPS are not
measured: neither is installed here, and pypardiso needs MKL (the ``mkl`` wheel, ~200 MB, x86 only) — SuperLU is
what ships with SciPy.

Usage::

    python benchmarks/bench_sparse_bands.py --huckel tblg_9_10.vasp tblg_15_16.vasp tblg_28_29.vasp \
        --fermi -8.675 --n 40 --dense-max 5000 -o benchmarks/results/bench_sparse_bands.txt
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from hambench.scoring._bands import generalized_eigh
from hambench.scoring._sparse import _near, sparse_matrices
from hambench.store import open_store


#: extended-Hückel on-site energies of carbon (eV, Hoffmann 1963) and the Wolfsberg–Helmholz constant
HUCKEL_C = {0: -21.4, 1: -11.4}
HUCKEL_K = 1.75


def huckel_structure(path, basis: str = "gth-szv", cutoff: float = 9.33):
    """A carbon structure file as a :class:`Structure` with the exact Gaussian S per edge (the basis' shells) and
    the extended-Hückel H_ij = K S_ij (h_i + h_j) / 2 (h_i on site): a physical H with the sparsity of the model's
    prediction, built from S alone (for timing the solver where no predicted store is at hand)."""
    import ase.io

    from hambench.basis import BasisLayout, gaussian_overlap_blocks, neighbor_list
    from hambench.store import Structure

    at = ase.io.read(str(path))
    Z, pos, cell = at.get_atomic_numbers(), at.get_positions(), at.cell.array
    pbc = np.array([True, True, False])
    src, dst, shift = neighbor_list(pos, cutoff, cell, pbc)
    shells = [0, 1]
    layout = BasisLayout.from_dict({"species": {"6": shells}, "spinful": False})
    S = gaussian_overlap_blocks(Z, pos, cell, src, dst, shift, layout, basis)
    h = np.array([HUCKEL_C[0], HUCKEL_C[1], HUCKEL_C[1], HUCKEL_C[1]])
    blocks = S.reshape(-1, 4, 4)
    onsite = (src == dst) & ~shift.any(axis=1)
    H = HUCKEL_K * blocks * (h[:, None] + h[None, :]) / 2
    # on site: h_i on the diagonal (S = 1 there), the Wolfsberg–Helmholz form off it
    H[onsite] = np.where(np.eye(4, dtype=bool), np.diag(h), H[onsite])
    return Structure(id=Path(path).stem, Z=Z, pos=pos, cell=cell, pbc=pbc, src=src, dst=dst, shift=shift,
                     H=H.reshape(-1), S=S, species={6: shells}, spinful=False)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stores", nargs="*", help="stores or prediction stores with S")
    ap.add_argument("--fermi", type=float, required=True, help="the energy the n levels are nearest to (eV)")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--k", type=float, nargs=3, default=[0.1, 0.05, 0.0], help="fractional k-point")
    ap.add_argument("--dense-max", type=int, default=12000, help="largest matrix for the dense baseline")
    ap.add_argument("--huckel", nargs="*", default=[], help="carbon structure files: exact gth-szv S and an "
                    "extended-Hückel H from it (huckel_structure)")
    ap.add_argument("-o", "--output")
    a = ap.parse_args(argv)
    lines = [f"$ {Path(sys.executable).name} benchmarks/bench_sparse_bands.py " + " ".join(sys.argv[1:] if argv is None else argv),
             f"machine: {os.cpu_count()} cores shared with other jobs (loaded): times are noisy; ratios are measured "
             "in the same run, on the same matrices", "",
             f"{'store':24s} {'atoms':>6s} {'orbitals':>9s} {'nnz H(k)':>11s} {'build s':>8s} {'shift-inv s':>11s} "
             f"{'dense s':>8s} {'dense/sparse':>12s} {'max|dE| eV':>11s}"]
    for path in a.stores + a.huckel:
        s = open_store(path)[0] if path in a.stores else huckel_structure(path)
        t0 = time.perf_counter()
        Hk, Sk = sparse_matrices(s, np.asarray(a.k), None, path)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        near = np.sort(_near(Hk, Sk, a.fermi, a.n, "auto"))
        t_sparse = time.perf_counter() - t0
        N = Hk.shape[0]
        dense_s, ratio, err = "-", "-", "-"
        if N <= a.dense_max:
            t0 = time.perf_counter()
            ev = generalized_eigh(Hk.toarray()[None], Sk.toarray()[None])[0]
            t_dense = time.perf_counter() - t0
            ref = np.sort(ev[np.argsort(np.abs(ev - a.fermi))[:a.n]])
            dense_s, ratio, err = f"{t_dense:.2f}", f"{t_dense / t_sparse:.1f}x", f"{np.abs(ref - near).max():.1e}"
        row = (f"{Path(path).name:24s} {s.natoms:6d} {N:9d} {Hk.nnz:11,d} {t_build:8.2f} {t_sparse:11.2f} "
               f"{dense_s:>8s} {ratio:>12s} {err:>11s}")
        print(row, flush=True)
        lines.append(row)
        if a.output:
            Path(a.output).write_text("\n".join(lines) + "\n")
    lines += ["", f"n = {a.n} levels nearest {a.fermi} eV at k = {tuple(a.k)} (fractional); build = sparse H(k), S(k) "
              "from the blocks; shift-invert = factorisation + ARPACK; dense = LAPACK generalised eigh of all levels"]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.output:
        Path(a.output).write_text(text)


if __name__ == "__main__":
    main()

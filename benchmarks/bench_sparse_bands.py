"""Bands near E_F by shift-invert (``hambench bands``) against dense ``eigh``, per k-point (issue 31 item 4).

For each store (or prediction store with S) given: the n levels nearest E_F at one k-point by shift-invert on the
sparse H(k), S(k) (one LU of H − σS: SciPy's SuperLU, or LAPACK for small/dense-ish matrices, then ARPACK), and,
where the matrix is small enough (``--dense-max`` orbitals), all levels by dense generalised ``eigh`` of the same
matrices in the same run: the time ratio and the largest difference of the n levels. pypardiso / MUMPS are not
measured: neither is installed here, and pypardiso needs MKL (the ``mkl`` wheel, ~200 MB, x86 only) — SuperLU is
what ships with SciPy.

Usage::

    python benchmarks/bench_sparse_bands.py p1084.zarr p2884.zarr p9748.zarr --fermi -3.9 --n 40 \
        -o benchmarks/results/bench_sparse_bands.txt
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stores", nargs="+")
    ap.add_argument("--fermi", type=float, required=True, help="the energy the n levels are nearest to (eV)")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--k", type=float, nargs=3, default=[0.1, 0.05, 0.0], help="fractional k-point")
    ap.add_argument("--dense-max", type=int, default=12000, help="largest matrix for the dense baseline")
    ap.add_argument("-o", "--output")
    a = ap.parse_args(argv)
    lines = [f"$ {Path(sys.executable).name} benchmarks/bench_sparse_bands.py " + " ".join(sys.argv[1:] if argv is None else argv),
             f"machine: {os.cpu_count()} cores shared with other jobs (loaded): times are noisy; ratios are measured "
             "in the same run, on the same matrices", "",
             f"{'store':24s} {'atoms':>6s} {'orbitals':>9s} {'nnz H(k)':>11s} {'build s':>8s} {'shift-inv s':>11s} "
             f"{'dense s':>8s} {'dense/sparse':>12s} {'max|dE| eV':>11s}"]
    for path in a.stores:
        s = open_store(path)[0]
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
    lines += ["", f"n = {a.n} levels nearest {a.fermi} eV at k = {tuple(a.k)} (fractional); build = sparse H(k), S(k) "
              "from the blocks; shift-invert = factorisation + ARPACK; dense = LAPACK generalised eigh of all levels"]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.output:
        Path(a.output).write_text(text)


if __name__ == "__main__":
    main()

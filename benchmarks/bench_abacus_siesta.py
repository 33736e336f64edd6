"""abacus/csr and siesta/hsx readers vs a straightforward Python reader of the same files (same run).

Each side turns the real fixture (realdata/abacus_MoS2, realdata/siesta_Si) into H and S edge blocks in hambench
order, eV. Baseline: split the text / walk the records in Python, build dense matrices per R, cut them into atom
blocks and convert each with ``conventions.to_hambench``. Both results are checked equal before timing.
Prints structures/s and MB/s (bytes of the matrix files) and the ratio.

    .venv/bin/python benchmarks/bench_abacus_siesta.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import struct
import time
from pathlib import Path

import numpy as np

from hambench.basis import _conventions as cv
from hambench.pipelines.abacus import read_abacus_run
from hambench.pipelines.siesta import hsx_to_structure
from hambench.testing import realdata_path


# --- baselines -------------------------------------------------------------------------------------------
def baseline_abacus(out_dir: Path, shells: list[list[int]]):
    """Python reader: tokens via str.split, dense per R, blocks of overlap-non-empty pairs."""
    def parse(path):
        lines = path.read_text().split("\n")
        dim, nr = int(lines[1].split()[-1]), int(lines[2].split()[-1])
        k, mats = 3, {}
        for _ in range(nr):
            rx, ry, rz, nnz = (int(x) for x in lines[k].split())
            k += 1
            if nnz:
                v = [float(x) for x in lines[k].split()]
                c = [int(x) for x in lines[k + 1].split()]
                p = [int(x) for x in lines[k + 2].split()]
                k += 3
                m = np.zeros((dim, dim))
                for r in range(dim):
                    for q in range(p[r], p[r + 1]):
                        m[r, c[q]] = v[q]
                mats[(rx, ry, rz)] = m
        return mats

    H = parse(out_dir / "data-HR-sparse_SPIN0.csr")
    S = parse(out_dir / "data-SR-sparse_SPIN0.csr")
    norb = [cv.n_orbitals(s) for s in shells]
    first = np.concatenate([[0], np.cumsum(norb)])
    blocks = {}
    for R, s in S.items():
        for i in range(len(norb)):
            for j in range(len(norb)):
                sb = s[first[i]:first[i + 1], first[j]:first[j + 1]]
                if sb.any():
                    hb = H[R][first[i]:first[i + 1], first[j]:first[j + 1]] * cv.RYDBERG_EV
                    blocks[(i, j, *R)] = (cv.to_hambench(hb, "abacus", shells[i], shells[j]),
                                          cv.to_hambench(sb, "abacus", shells[i], shells[j]))
    return blocks


def baseline_siesta(path: Path):
    """Python reader: struct per record, per-element loop into dict-of-blocks, then to_hambench."""
    data = path.read_bytes()
    recs, p = [], 0
    while p < len(data):
        (n,) = struct.unpack("<i", data[p:p + 4])
        recs.append(data[p + 4:p + 4 + n])
        p += n + 8
    na, no, nspin, nsp, *nsc = struct.unpack("<7i", recs[2])
    ns = nsc[0] * nsc[1] * nsc[2]
    isc = np.frombuffer(recs[4][:12 * ns], "<i4").reshape(ns, 3)
    lasto = np.frombuffer(recs[4][12 * ns + 28 * na:], "<i4")
    q = np.frombuffer(recs[6], "<i4").reshape(-1, 3)
    shells, k = [], 0
    while k < len(q):
        shells.append(int(q[k, 1]))
        k += 2 * q[k, 1] + 1
    first = np.concatenate([[0], lasto])
    atom_of = np.repeat(np.arange(na), np.diff(first))
    base = 9 if struct.unpack("<i", recs[0])[0] == 2 else 8
    blocks = {}
    for io in range(no):
        cols = struct.unpack(f"<{len(recs[base + io]) // 4}i", recs[base + io])
        hv = struct.unpack(f"<{len(cols)}d", recs[base + no + io])
        sv = struct.unpack(f"<{len(cols)}d", recs[base + (nspin + 1) * no + io])
        i = atom_of[io]
        for c, h, s in zip(cols, hv, sv):
            img, jo = divmod(c - 1, no)
            j = atom_of[jo]
            key = (int(i), int(j), *(int(x) for x in isc[img]))
            if key not in blocks:
                blocks[key] = (np.zeros((first[i + 1] - first[i], first[j + 1] - first[j])),) * 1 + \
                              (np.zeros((first[i + 1] - first[i], first[j + 1] - first[j])),)
            blocks[key][0][io - first[i], jo - first[j]] = h * cv.RYDBERG_EV
            blocks[key][1][io - first[i], jo - first[j]] = s
    return {k: (cv.to_hambench(h, "siesta", shells, shells), cv.to_hambench(s, "siesta", shells, shells))
            for k, (h, s) in blocks.items()}


def check_equal(struct_, blocks) -> float:
    idx = struct_.edge_index()
    assert set(idx) == set(blocks), "edge sets differ"
    worst = 0.0
    for key, (h, s) in blocks.items():
        e = idx[key]
        worst = max(worst, float(np.abs(struct_.block(e, "H") - h).max()), float(np.abs(struct_.block(e, "S") - s).max()))
    return worst


def timed(fn, repeat):
    fn()  # warm (Numba compile / cache load, file cache)
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    rows = []
    out_dir = realdata_path("abacus_MoS2", "abacus_raw", "OUT.ABACUS")
    hsx = realdata_path("siesta_Si", "siesta_raw", "Si.HSX")
    if out_dir.is_dir():
        s = read_abacus_run(out_dir)
        shells = [s.species[int(z)] for z in s.Z]
        err = check_equal(s, baseline_abacus(out_dir, shells))
        nbytes = sum(p.stat().st_size for p in out_dir.glob("data-*R-sparse_SPIN0.csr"))
        ours = timed(lambda: read_abacus_run(out_dir), args.repeat)
        base = timed(lambda: baseline_abacus(out_dir, shells), max(2, args.repeat // 4))
        rows.append(("abacus/csr MoS2 (53 orb, 239 edges)", nbytes, ours, base, err))
    if hsx.is_file():
        s = hsx_to_structure(hsx)
        err = check_equal(s, baseline_siesta(hsx))
        nbytes = hsx.stat().st_size
        ours = timed(lambda: hsx_to_structure(hsx), args.repeat)
        base = timed(lambda: baseline_siesta(hsx), max(2, args.repeat // 4))
        rows.append(("siesta/hsx Si (26 orb, 294 edges)", nbytes, ours, base, err))
    if not rows:
        raise SystemExit("realdata fixtures not found")
    print(f"{'reader':38s} {'MB':>6s} {'ours struct/s':>14s} {'ours MB/s':>10s} {'python struct/s':>16s} "
          f"{'python MB/s':>12s} {'ratio':>7s} {'max|diff|':>10s}")
    for name, nbytes, ours, base, err in rows:
        mb = nbytes / 1e6
        print(f"{name:38s} {mb:6.2f} {1 / ours:14.1f} {mb / ours:10.1f} {1 / base:16.2f} {mb / base:12.2f} "
              f"{base / ours:6.1f}x {err:10.1e}")
    print("ours = full read incl. STRU/log/XV/fdf parsing and sha256 of the inputs; python = matrices only")


if __name__ == "__main__":
    main()

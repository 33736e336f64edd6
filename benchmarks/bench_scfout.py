"""Benchmark: hambench's C++ ``.scfout`` reader vs a straightforward Python reader, on the real OpenMX files.

The baseline is the way Python scripts usually parse a ``.scfout``: read the bytes, then ``struct.unpack`` the
header and neighbour lists and ``np.frombuffer`` one block per (matrix, pair), keeping a list of blocks.
Both read every record (``what='all'``). Also printed: the C++ reader reading only H, iHNL and OLP (the default),
the full conversion to a hambench Structure, and the raw ``read()`` bandwidth of the same bytes (page cache).

Run:  .venv/bin/python benchmarks/bench_scfout.py
"""

from __future__ import annotations

import platform
import struct
import sys
import time
from pathlib import Path

import numpy as np

from hambench._core import read_scfout
from hambench.pipelines.openmx import scfout_to_structure
from hambench.testing import realdata_path

FILES = ["openmx_graphene_scfout/openmx.scfout", "openmx_bismuthene_soc_scfout/openmx.scfout"]


def python_reader(path):
    """Straightforward reader: struct for the header, one np.frombuffer per block."""
    data = Path(path).read_bytes()
    off = 0

    def ints(n):
        nonlocal off
        v = struct.unpack_from(f"<{n}i", data, off)
        off += 4 * n
        return v

    def doubles(n):
        nonlocal off
        v = np.frombuffer(data, "<f8", n, off)
        off += 8 * n
        return v

    atomnum, sp, _c, _l, _r, tcpy = ints(6)
    spin = sp % 4
    (order_max,) = ints(1)
    atv = [doubles(4) for _ in range(tcpy + 1)]
    atv_ijk = [ints(4) for _ in range(tcpy + 1)]
    norb = ints(atomnum)
    fnan = ints(atomnum)
    natn = [ints(f + 1) for f in fnan]
    ncn = [ints(f + 1) for f in fnan]
    tv, rtv = [doubles(4) for _ in range(3)], [doubles(4) for _ in range(3)]
    gxyz = [doubles(4) for _ in range(atomnum)]

    def matrix():
        out = []
        for a in range(atomnum):
            for h in range(fnan[a] + 1):
                ni, nj = norb[a], norb[natn[a][h] - 1]
                out.append(doubles(ni * nj).reshape(ni, nj).copy())
        return out

    H = [matrix() for _ in range(spin + 1)]
    iH = [matrix() for _ in range(3)] if spin == 3 else []
    olp = matrix()
    po = [[matrix() for _ in range(order_max)] for _ in range(3)]
    mo = [matrix() for _ in range(3)]
    dm = [matrix() for _ in range(spin + 1)]
    idm = [matrix() for _ in range(2)]
    (solver,) = ints(1)
    scalars = doubles(10)
    (nlines,) = ints(1)
    lines = [data[off + 256 * k: off + 256 * (k + 1)].split(b"\0", 1)[0].decode() for k in range(nlines)]
    return dict(atv=atv, atv_ijk=atv_ijk, natn=natn, ncn=ncn, tv=tv, rtv=rtv, gxyz=gxyz, H=H, iH=iH, olp=olp,
                po=po, mo=mo, dm=dm, idm=idm, solver=solver, scalars=scalars, lines=lines)


def best_of(fn, repeat, inner):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t) / inner)
    return best


def main():
    print(f"# {platform.processor() or platform.machine()}, Python {sys.version.split()[0]}, numpy {np.__version__}")
    print(f"{'file':<40} {'MB':>6} {'raw read MB/s':>14} {'python ms':>10} {'C++ all ms':>11} {'ratio':>7} "
          f"{'C++ MB/s':>9} {'C++ H+S ms':>11} {'Structure ms':>13}")
    for rel in FILES:
        path = realdata_path(rel)
        if not path.exists():
            print(f"{rel}: absent, skipped")
            continue
        size = path.stat().st_size
        mb = size / 1e6
        # correctness first: both readers give the same H and overlap
        ref, ours = python_reader(path), read_scfout(str(path), "all")
        assert np.array_equal(np.concatenate([b.ravel() for b in ref["olp"]]), ours["OLP"])
        assert np.array_equal(np.concatenate([b.ravel() for b in ref["H"][0]]), ours["H"][0])
        t_raw = best_of(lambda: path.read_bytes(), 5, 50)
        t_py = best_of(lambda: python_reader(path), 5, 10)
        t_cpp = best_of(lambda: read_scfout(str(path), "all"), 5, 50)
        t_def = best_of(lambda: read_scfout(str(path)), 5, 50)
        t_struct = best_of(lambda: scfout_to_structure(path), 5, 10)
        print(f"{rel.split('/')[0]:<40} {mb:6.2f} {mb / t_raw:14.0f} {t_py * 1e3:10.2f} {t_cpp * 1e3:11.3f} "
              f"{t_py / t_cpp:6.1f}x {mb / t_cpp:9.0f} {t_def * 1e3:11.3f} {t_struct * 1e3:13.2f}")
    print("python = struct + one np.frombuffer per (matrix, pair) block; C++ all = hambench._core.read_scfout(path, 'all');")
    print("ratio = python / C++ all; C++ H+S = default mode (H, iHNL, OLP read, the rest skipped);")
    print("Structure = read + conversion to eV/Å/hambench order (+ SOC spinor assembly) + sha256 of the file.")


if __name__ == "__main__":
    main()

"""Benchmark: `hambench prepare` end to end against raw read bandwidth, its own reader, an h5py loop and DeepH-dock.

Three real inputs, made by copying the files of ../shared/realdata (real copies, so every folder is read from its
own bytes; page cache warm, as we cannot drop caches here):

* ``legacy``  N copies of the DeepH legacy MoTe2 folder (hamiltonians.h5 / overlaps.h5, one dataset per pair);
* ``dock``    N copies of the DeepH-dock MoTe2 folder (hamiltonian.h5 / overlap.h5, four flat datasets);
* ``openmx``  M copies of the OpenMX graphene run (openmx.scfout + openmx.out).

For each, in one process, medians over ``--rounds`` rounds (the order of the timed steps rotated each round):

* ``cat``        reading every input file once (``cat > /dev/null``): the bandwidth floor;
* ``reader``     our low-level reader alone (the HDF5 datasets as arrays / the parsed .scfout);
* ``structure``  the source's ``read`` of every item: arrays → :class:`Structure` in hambench conventions;
* ``h5py loop``  the straightforward peer baseline: h5py per dataset + numpy reorder (DeepH inputs only);
* ``prepare ×1`` / ``×2`` the whole command (validation, traces, Zarr store written and renamed), 1 and 2 workers;
* ``DeepH-dock`` (when ``$HAMBENCH_DEEPX_DOCK`` or ``build/deepx-dock`` provides deepx-dock's ``dock``):
  ``dock convert deeph upgrade`` (legacy), ``HamiltonianObj`` load of every folder (dock), ``dock convert
  openmx to-deeph`` (openmx), each with one process (``-p 1``) and, where it has one, two (``-p 2``).

Then the memory check: peak RSS of ``prepare --source synthetic/random`` for 10³ and 10⁴ structures (each in its
own process; ``--rss-counts``).

    python benchmarks/bench_prepare.py [--copies 150] [--openmx-copies 50] [--rounds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hambench.conventions import atom_permutation  # noqa: E402
from hambench.pipelines import get_source, prepare  # noqa: E402
from hambench.store import open_store  # noqa: E402
from hambench.testing import realdata_path  # noqa: E402

DOCK_BUILT = REPO / "build" / "deepx-dock" / "bin" / "dock"


def copy_tree(src: Path, dst_root: Path, copies: int, name: str) -> Path:
    root = dst_root / name
    for c in range(copies):
        d = root / f"{name}_{c:04d}"
        d.mkdir(parents=True)
        for f in src.iterdir():
            if f.is_file():
                shutil.copyfile(f, d / f.name)
    return root


def timed(fn, *a, **kw) -> float:
    t = time.perf_counter()
    fn(*a, **kw)
    return time.perf_counter() - t


def cat(root: Path) -> None:
    files = sorted(str(p) for p in root.rglob("*") if p.is_file())
    subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)


# --- the steps -----------------------------------------------------------------------------------------------
def reader_deeph(root: Path) -> None:
    from hambench.pipelines.deeph_format import _read_h5  # the HDF5 reader the DeepH source uses
    for d in sorted(root.iterdir()):
        for f in sorted(d.glob("*.h5")):
            _read_h5(f)


def reader_openmx(root: Path) -> None:
    from hambench.pipelines.openmx import read_scfout
    for d in sorted(root.iterdir()):
        read_scfout(d / "openmx.scfout")


def structures(source: str, root: Path) -> int:
    src = get_source(source, root)
    return sum(len(src.read(it)) for it in src.items())


def h5py_legacy(root: Path) -> None:
    """h5py + numpy per-key loop (what DeepH-style preprocessing does), the same arrays as the store's blocks."""
    for folder in sorted(root.iterdir()):
        orb = [list(map(int, line.split())) for line in (folder / "orbital_types.dat").read_text().splitlines()
               if line.strip()]
        Hs, Ss = [], []
        with h5py.File(folder / "hamiltonians.h5") as fh, h5py.File(folder / "overlaps.h5") as fs:
            for k in sorted(fh.keys(), key=lambda k: (json.loads(k)[3], json.loads(k)[4], json.loads(k)[:3])):
                _r1, _r2, _r3, i, j = json.loads(k)
                pi, si = atom_permutation("openmx", orb[i - 1])
                pj, sj = atom_permutation("openmx", orb[j - 1])
                for f, out in ((fh, Hs), (fs, Ss)):
                    b = f[k][()]
                    out.append((b[np.ix_(pi, pj)] * np.outer(si, sj)).ravel())
        np.concatenate(Hs), np.concatenate(Ss)


def h5py_dock(root: Path) -> None:
    """h5py reads of the four datasets and a per-pair slice + reshape (the DeepH-dock layout's natural loop)."""
    for folder in sorted(root.iterdir()):
        for name in ("hamiltonian.h5", "overlap.h5"):
            with h5py.File(folder / name) as f:
                pairs, bounds, shapes, ent = (f[k][()] for k in ("atom_pairs", "chunk_boundaries", "chunk_shapes",
                                                                 "entries"))
            blocks = [ent[bounds[e]:bounds[e + 1]].reshape(shapes[e]) for e in range(len(pairs))]
            np.concatenate([b.ravel() for b in blocks])


def run_prepare(source: str, root: Path, out: Path, workers: int) -> None:
    shutil.rmtree(out, ignore_errors=True)
    prepare(source, root, out, quiet=True, workers=workers)


def dock_exe() -> str | None:
    exe = os.environ.get("HAMBENCH_DEEPX_DOCK") or (str(DOCK_BUILT) if DOCK_BUILT.exists() else None)
    return exe if exe and Path(exe).exists() else None


def dock_cmd(exe: str, case: str, root: Path, tmp: Path, procs: int) -> list[str]:
    out = tmp / f"dock_out_{case}_{procs}"
    shutil.rmtree(out, ignore_errors=True)
    if case == "legacy":
        return [exe, "convert", "deeph", "upgrade", str(root), str(out), "-p", str(procs)]
    if case == "openmx":
        return [exe, "convert", "openmx", "to-deeph", str(root), str(out), "-p", str(procs)]
    py = str(Path(exe).with_name("python"))
    code = ("import sys,pathlib\nfrom deepx_dock.compute.eigen.hamiltonian import HamiltonianObj\n"
            "for d in sorted(pathlib.Path(sys.argv[1]).iterdir()): HamiltonianObj(str(d))\n")
    return [py, "-c", code, str(root)]


def dock_inside(exe: str, case: str, root: Path, tmp: Path, procs: int) -> float:
    """Wall time of DeepH-dock's command (a subprocess; its interpreter start-up is subtracted: `python -c pass`
    of the same venv)."""
    cmd = dock_cmd(exe, case, root, tmp, procs)
    t = timed(subprocess.run, cmd, check=True, capture_output=True)
    return t


# --- memory ----------------------------------------------------------------------------------------------------
RSS_CHILD = r"""
import resource, sys, time
from hambench.pipelines import prepare
t = time.perf_counter()
prepare("synthetic/random", None, sys.argv[1], quiet=True, workers=1, count=int(sys.argv[2]))
wall = time.perf_counter() - t
self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"{max(self_kb, kids_kb)} {wall}")
"""


def peak_rss(count: int, out: Path) -> tuple[float, float, float]:
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run([sys.executable, "-c", RSS_CHILD, str(out), str(count)], check=True, capture_output=True,
                       text=True, cwd=REPO)
    kb, wall = r.stdout.split()[-2:]
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return int(kb) / 1024, float(wall), size / 1e6


# --- main ------------------------------------------------------------------------------------------------------
CASES = {  # case: (realdata folder, source, reader, h5py baseline, copies argument)
    "legacy": ("deeph_legacy_MoTe2", "deeph/folder", reader_deeph, h5py_legacy, "copies"),
    "dock": ("deeph_new_MoTe2", "deeph/folder", reader_deeph, h5py_dock, "copies"),
    "openmx": ("openmx_graphene_scfout", "openmx/scfout", reader_openmx, None, "openmx_copies"),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=150, help="DeepH folders per case (default 150)")
    ap.add_argument("--openmx-copies", type=int, default=50, help="OpenMX runs (default 50)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", default="legacy,dock,openmx")
    ap.add_argument("--rss-counts", default="1000,10000", help="synthetic structures for the RSS check ('' = skip)")
    ap.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    args = ap.parse_args(argv)
    exe = dock_exe()
    lines = [f"# command: python benchmarks/bench_prepare.py {' '.join(argv if argv is not None else sys.argv[1:])}",
             f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average at start "
             f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"# DeepH-dock: {exe or 'not found (set HAMBENCH_DEEPX_DOCK or run make deepx-dock)'}",
             f"# medians of {args.rounds} rounds, order rotated each round; page cache warm", ""]

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    for l in lines:
        print(l)
    with tempfile.TemporaryDirectory(prefix="hambench-bench-prepare-") as tmp:
        tmp = Path(tmp)
        for case in [c for c in args.cases.split(",") if c]:
            folder, source, reader, base, n_arg = CASES[case]
            n = getattr(args, n_arg)
            root = copy_tree(realdata_path(folder), tmp, n, case)
            nbytes = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
            cat(root)  # warm the page cache
            steps = {"cat": lambda: cat(root), "reader": lambda: reader(root),
                     "structure": lambda: structures(source, root)}
            if base is not None:
                steps["h5py loop"] = lambda: base(root)
            steps["prepare x1"] = lambda: run_prepare(source, root, tmp / "w1.zarr", 1)
            steps["prepare x2"] = lambda: run_prepare(source, root, tmp / "w2.zarr", 2)
            if exe:
                steps["DeepH-dock -p 1"] = lambda: dock_inside(exe, case, root, tmp, 1)
                if case != "dock":
                    steps["DeepH-dock -p 2"] = lambda: dock_inside(exe, case, root, tmp, 2)
            steps["structure"](), steps["prepare x1"]()  # untimed: imports, Numba's cache, lazily built tables
            times: dict[str, list[float]] = {k: [] for k in steps}
            names = list(steps)
            for r in range(args.rounds):
                order = names[r % len(names):] + names[:r % len(names)]
                for k in order:
                    times[k].append(timed(steps[k]))
            med = {k: statistics.median(v) for k, v in times.items()}
            a, b = open_store(tmp / "w1.zarr"), open_store(tmp / "w2.zarr")
            assert len(a) == n and len(b) == n and a.attrs["counts"] == b.attrs["counts"]
            same = all(
                (p.read_bytes() == (tmp / "w2.zarr" / p.relative_to(tmp / "w1.zarr")).read_bytes())
                for p in (tmp / "w1.zarr").rglob("*") if p.is_file() and p.name != "zarr.json")
            edges = a.attrs["counts"]["edges"]
            say(f"## {case}: {n} copies of realdata/{folder} ({source}), {nbytes / 1e6:.1f} MB, {edges:,} edges; "
                f"stores of 1 and 2 workers byte-identical (chunks): {same}")
            p1 = med["prepare x1"]
            for k in names:
                t = med[k]
                extra = f"{nbytes / t / 1e6:9.1f} MB/s  {n / t:8.1f} items/s"
                if k.startswith("prepare"):
                    extra += f"   {100 * med['cat'] / t:5.1f} % of cat"
                if k == "prepare x2":
                    extra += f"   speed-up over x1 {p1 / t:4.2f}x"
                if k.startswith("DeepH-dock"):
                    extra += f"   this / prepare x1 = {t / p1:5.2f}"
                if k == "h5py loop":
                    extra += f"   this / prepare x1 = {t / p1:5.2f}"
                say(f"  {k:16s} {t:9.3f} s  {extra}")
            say()
            shutil.rmtree(root)
        counts = [int(c) for c in args.rss_counts.split(",") if c]
        if counts:
            say("## memory: peak RSS of prepare --source synthetic/random (1 worker, own process)")
            for c in counts:
                mb, wall, size = peak_rss(c, tmp / f"rss{c}.zarr")
                say(f"  {c:6d} structures   peak RSS {mb:7.1f} MB   wall {wall:7.1f} s   store {size:7.1f} MB")
            say()
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

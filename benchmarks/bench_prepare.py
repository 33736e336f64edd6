"""Benchmark: `hambench prepare` end to end against raw read bandwidth, its own reader, an h5py loop and DeepH-dock.

Three real inputs, made by copying the files of ../shared/realdata (real copies, so every folder is read from its
own bytes; page cache warm, as we cannot drop caches here):

* ``legacy``  N copies of the DeepH legacy MoTe2 folder (hamiltonians.h5 / overlaps.h5, one dataset per pair);
* ``dock``    N copies of the DeepH-dock MoTe2 folder (hamiltonian.h5 / overlap.h5, four flat datasets);
* ``openmx``  M copies of the OpenMX graphene run (openmx.scfout + openmx.out).

For each, in one process, medians over ``--rounds`` rounds (the order of the timed steps rotated each round; dirty
pages flushed with ``os.sync`` before each step):

* ``cat``        reading every input file once (``cat > /dev/null``): the bandwidth floor;
* ``reader``     our low-level reader alone (the HDF5 datasets as arrays / the parsed .scfout);
* ``structure``  the source's ``read`` of every item: arrays → :class:`Structure` in hambench conventions;
* ``h5py loop``  the straightforward peer baseline: h5py per dataset + numpy reorder (DeepH inputs only);
* ``prepare ×1`` / ``×2`` the whole command (validation, traces, Zarr store written and renamed), 1 and 2 workers;
* ``DeepH-dock`` (when ``$HAMBENCH_DEEPX_DOCK`` or ``build/deepx-dock`` provides deepx-dock's ``dock``):
  ``dock convert deeph upgrade`` (legacy), ``HamiltonianObj`` load of every folder (dock), ``dock convert
  openmx to-deeph`` (openmx), each with one process (``-p 1``) and, where it has one, two (``-p 2``).

After the timings, one ``prepare ×1`` of each case under cProfile says what each step costs (cumulative seconds
of: the source's ``read`` with the sha256 of the inputs inside it, ``Structure.validate``, traces, the batch
concatenation, the part write, the store's metadata and the shard jobs).

Workers on a DFT source (``--pyscf-molecules``): ``prepare --source pyscf/qm9 --max-heavy 3 --limit N`` with 1
and 2 workers (fresh raw caches: every molecule is a PySCF run, one thread per worker) — the ≥ 30 s job of the
workers goal — and the byte-identity of the two stores.

Then the memory check: peak RSS of ``prepare --source synthetic/random`` for 10³ and 10⁴ structures (each in its
own process; ``--rss-counts``).

Virtual machines back guest memory lazily: the first write into a never-touched page costs a host fault, so
page-cache writes run at ~0.4 GB/s until the guest has touched its memory once, then at ~3 GB/s. Whatever step
first writes a file would pay it; ``--warm-memory GiB`` touches that much memory once before timing (default:
70 % of the available memory, at most 18 GiB; 0 = off).

    python benchmarks/bench_prepare.py [--copies 150] [--openmx-copies 50] [--rounds 3] [--pyscf-molecules 18]
                                       [--out FILE]
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

from hambench.basis._conventions import atom_permutation  # noqa: E402
from hambench.pipelines import get_source, prepare  # noqa: E402
from hambench.store._store import open_store  # noqa: E402
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
    """Seconds of ``fn(*a, **kw)``, after flushing the dirty pages of earlier steps (``os.sync``): no step pays
    the write-back of another's output."""
    os.sync()
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


# --- step costs ------------------------------------------------------------------------------------------------
def _steps(src) -> dict:
    """step → the function whose cumulative profile time it is (the source's own ``read`` for reading)."""
    from hambench.basis import _so3 as so3
    from hambench.pipelines import driver, parts
    from hambench.store import StoreRange, StoreWriter
    from hambench.store._structure import Structure

    return {
        "read (source.read)": type(src).read,
        "  of which sha256 of inputs": None,
        "validate (one compiled pass per array)": Structure.validate,
        "traces": so3.edge_traces,
        "batch (StoreRange.from_structures)": StoreRange.from_structures.__func__,
        "part write": parts.write_part,
        "store metadata (zarr)": StoreWriter.__init__,
        "shard jobs (read parts, write shards)": parts.write_shard_job,
        "  ranges (all of the above but metadata, jobs)": driver.process_range,
    }


def step_costs(source: str, root: Path, out: Path) -> tuple[float, dict[str, float]]:
    """One ``prepare ×1`` under cProfile: its seconds and the cumulative seconds of each step of :func:`_steps`."""
    import cProfile
    import pstats

    shutil.rmtree(out, ignore_errors=True)
    os.sync()
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    prepare(source, root, out, quiet=True, workers=1)
    prof.disable()
    total = time.perf_counter() - t
    st = pstats.Stats(prof).stats
    got = {}
    for name, fn in _steps(get_source(source, root)).items():
        if fn is None:  # hashing: hashlib's builtins, wherever they are called from (file_sha256, the readers)
            got[name] = sum(v[3] for k, v in st.items() if k[0] == "~" and ("sha256" in k[2] or "_hashlib.HASH" in k[2]))
            continue
        code = fn.__code__
        got[name] = st.get((code.co_filename, code.co_firstlineno, code.co_name), (0, 0, 0, 0.0))[3]
    return total, got


# --- workers on a DFT source ---------------------------------------------------------------------------------
def pyscf_workers(tmp: Path, molecules: int, rounds: int) -> list[str]:
    """prepare pyscf/qm9 (≤ 3 heavy atoms, first ``molecules``) with 1 and 2 workers, fresh raw caches."""
    times = {1: [], 2: []}
    for r in range(rounds):
        for w in ((1, 2) if r % 2 == 0 else (2, 1)):
            out, raw = tmp / f"qm9_w{w}.zarr", tmp / "qm9_raw"  # one cache path (stored in sources), emptied
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(raw, ignore_errors=True)
            t = time.perf_counter()
            prepare("pyscf/qm9", None, out, quiet=True, workers=w, max_heavy=3, limit=molecules, raw_dir=raw)
            times[w].append(time.perf_counter() - t)
    a = tmp / "qm9_w1.zarr"  # structures/sources differ by design: each raw cache file records its run's wall_s
    same = all(p.read_bytes() == (tmp / "qm9_w2.zarr" / p.relative_to(a)).read_bytes()
               for p in a.rglob("*") if p.is_file() and p.name != "zarr.json"
               and not p.relative_to(a).as_posix().startswith("structures/sources/"))
    t1, t2 = statistics.median(times[1]), statistics.median(times[2])
    return [f"## workers on a DFT source: prepare --source pyscf/qm9 --max-heavy 3 --limit {molecules} (fresh raw "
            f"caches, one PySCF thread per worker; medians of {rounds}); stores byte-identical (chunks; but the raw "
            f"caches' digests in structures/sources, which hold each run's wall time): {same}",
            f"  workers 1   {t1:7.1f} s   {molecules / t1:6.3f} molecules/s",
            f"  workers 2   {t2:7.1f} s   {molecules / t2:6.3f} molecules/s   speed-up {t1 / t2:4.2f}x", ""]


def warm_memory(gib: float) -> float:
    """Touch ``gib`` GiB once (then free it): see the module docstring. Returns the seconds it took."""
    t = time.perf_counter()
    left = int(gib * (1 << 30))
    while left > 0:
        n = min(left, 1 << 30)
        np.ones(n // 8)
        left -= n
    return time.perf_counter() - t


def default_warm_gib() -> float:
    try:
        avail = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemAvailable")) / (1 << 20)
    except (OSError, StopIteration):
        return 0.0
    return round(min(18.0, 0.7 * avail), 1)


# --- memory ----------------------------------------------------------------------------------------------------
RSS_CHILD = r"""
import sys, time
from hambench.pipelines import prepare
t = time.perf_counter()
prepare("synthetic/random", None, sys.argv[1], quiet=True, workers=1, count=int(sys.argv[2]))
wall = time.perf_counter() - t
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork + exec, so it would count the benchmark's own size
hwm_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(f"{hwm_kb} {wall}")
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
    ap.add_argument("--pyscf-molecules", type=int, default=18, help="pyscf/qm9 workers case: molecules (0 = skip)")
    ap.add_argument("--pyscf-rounds", type=int, default=2)
    ap.add_argument("--warm-memory", type=float, default=None, help="GiB to touch once before timing (see above)")
    ap.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    args = ap.parse_args(argv)
    exe = dock_exe()
    warm = default_warm_gib() if args.warm_memory is None else args.warm_memory
    warm_s = warm_memory(warm) if warm > 0 else 0.0
    lines = [f"# command: python benchmarks/bench_prepare.py {' '.join(argv if argv is not None else sys.argv[1:])}",
             f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average at start "
             f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"# DeepH-dock: {exe or 'not found (set HAMBENCH_DEEPX_DOCK or run make deepx-dock)'}",
             f"# medians of {args.rounds} rounds, order rotated each round; page cache warm; {warm:g} GiB of guest "
             f"memory touched once before timing ({warm_s:.1f} s)", ""]

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
            total, costs = step_costs(source, root, tmp / "prof.zarr")
            say(f"  what each step costs (one prepare x1 under cProfile, {total:.3f} s with the profiler's overhead):")
            for k, v in costs.items():
                say(f"    {k:40s} {v:7.3f} s  {100 * v / total:5.1f} %")
            say()
            shutil.rmtree(root)
        if args.pyscf_molecules:
            for l in pyscf_workers(tmp, args.pyscf_molecules, args.pyscf_rounds):
                say(l)
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

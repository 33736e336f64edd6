"""Benchmark: training and inference speed of the model zoo on this machine, peak memory against structure size,
and inference time per molecule next to the PySCF time that made its label.

For each model and preset (CPU, float32, the torch threads of this process):

* training steps/s and structures/s of the engine's step (forward, loss, backward, gradient norm/clip,
  optimiser step) on batches already in memory (the loader has its own benchmark), over the preset's batch size;
* inference structures/s (eval, no grad) at batch 1 and at the preset's batch size;
* peak resident memory (RSS high-water mark above the level before the call, Linux ``clear_refs``; the script
  re-runs itself with glibc's mmap threshold at 64 kB so freed tensors leave RSS; smaller allocations reuse the
  heap, so values under ~1 MB read as 0) of one training step and of one inference pass against structure size:
  QM9 molecules of growing size (geometries
  from ``qm9pack``, every atom pair an edge, as the PySCF stores have) and MoTe2 supercells (edges from the
  cut-offs the training store has, as ``predict --structures`` builds them);
* inference time per molecule against PySCF B3LYP/def2-SVP (the QH9 protocol) on the same molecule, run in
  this process now (same machine, same load) — and the time recorded when the shipped demo label was made.

    python benchmarks/bench_models.py                    # tiny and paper presets of deephe3 and qhnet
    python benchmarks/bench_models.py --presets tiny --steps 5

Stores are built from the shipped demo molecules (no DFT) and ../shared/realdata MoTe2.
"""

from __future__ import annotations

import argparse
import gc
import glob
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _rss_kb(field="VmHWM") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb(fn) -> float:
    """Peak RSS (MB) reached while running ``fn`` above the RSS just before it."""
    gc.collect()
    ok = _reset_peak()
    base = _rss_kb("VmRSS")
    fn()
    return (_rss_kb("VmHWM") - base) / 1024 if ok else float("nan")


_PREP = """
import json, sys
import numpy as np
from hambench.app.demo import demo_raw_dir
from hambench.pipelines import prepare
from hambench.pipelines.pyscf_qm9 import load_qm9_table
from hambench.testing import realdata_path
tmp, sizes = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
prepare("pyscf/qm9", None, tmp + "/demo.zarr", raw_dir=demo_raw_dir(), max_heavy=3, limit=10, quiet=True)
src = realdata_path("deeph_new_MoTe2")
if src.exists():
    prepare("deeph/folder", src, tmp + "/mote2.zarr", quiet=True)
tab = load_qm9_table()
mols = []
for n in sizes:
    for _, r in tab[tab["N_atoms"] == n].iterrows():
        els = json.loads(str(r["Elements"]).replace("'", '"'))
        if set(els) <= {"H", "C", "N", "O"}:
            mols.append([int(r["Index"]), els, json.loads(str(r["XYZ_Ang"]))])
            break
json.dump(mols, open(tmp + "/molecules.json", "w"))
"""


def stores(tmp: Path, sizes: str):
    """Build the stores and pick the molecules in a subprocess: prepare's imports (Dask, PySCF, numba) change
    this process's allocator behaviour and would spoil the RSS measurements."""
    import json
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", _PREP, str(tmp), sizes], check=True)
    out = {"molecules (demo, 10)": tmp / "demo.zarr"}
    if (tmp / "mote2.zarr").exists():
        out["MoTe2 crystal"] = tmp / "mote2.zarr"
    mols = [(i, e, np.asarray(x, float)) for i, e, x in json.loads((tmp / "molecules.json").read_text())]
    return out, mols


def batches(store, layout, bs, dtype):
    from hambench.training._data import collate

    n = len(store)
    out = []
    for a in range(0, n, bs):
        out.append(collate(store.read_range(a, min(n, a + bs), blocks=("H", "T")), layout, dtype=dtype))
    return out


def bench_train_infer(name, preset, store_path, steps, dtype="float32"):
    from hambench.basis._layout import BasisLayout
    from hambench.models.run import build_model, resolve_config
    from hambench.store._store import open_store
    from hambench.training import Trainer, torch_dtype

    res = resolve_config(name, preset)
    st = open_store(store_path)
    layout = st.layout
    if st.attrs["kind"] not in res.spec.kinds:
        return None
    cfg = res.train
    cfg.dtype = dtype
    dt = torch_dtype(dtype)
    bs = min(cfg.batch_size, len(st))
    model = build_model(res.spec, res.model, layout, dtype, seed=0)
    npar = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(model, cfg, None, None, d, {}, device="cpu")
        bb = batches(st, layout, bs, dt)

        def step(b):
            tr.backward(b)
            tr.grad_norm()
            tr.optimizer.step()

        step(bb[0])  # warm-up (first-call allocations, e3nn code generation)
        t0 = time.perf_counter()
        nstruct = 0
        for k in range(steps):
            b = bb[k % len(bb)]
            step(b)
            nstruct += b.num_structures
        t_train = time.perf_counter() - t0
    model.eval()
    one = batches(st, layout, 1, dt)
    with torch.no_grad():
        model(one[0])
        t0 = time.perf_counter()
        reps = max(1, 2 * steps // len(one))
        for _ in range(reps):
            for b in one:
                model(b)
        t1 = (time.perf_counter() - t0) / (reps * len(one))
        t0 = time.perf_counter()
        for _ in range(reps):
            for b in bb:
                model(b)
        tB = (time.perf_counter() - t0) / (reps * len(st))
    return {"params": npar, "batch": bs, "steps_per_s": steps / t_train, "train_struct_per_s": nstruct / t_train,
            "infer_per_struct_b1": t1, "infer_struct_per_s_b1": 1 / t1, "infer_struct_per_s_bB": 1 / tB,
            "model": model, "layout": layout, "cfg": cfg}


def mol_structure(els, xyz, layout, sid="m"):
    from hambench.basis._conventions import symbol_to_z
    from hambench.store._structure import Structure

    Z = np.array([symbol_to_z(e) for e in els])
    n = len(Z)
    src, dst = np.divmod(np.arange(n * n), n)
    return Structure(id=sid, Z=Z, pos=xyz, cell=np.zeros((3, 3)), pbc=np.zeros(3, bool), src=src, dst=dst,
                     shift=np.zeros((n * n, 3)), H=np.zeros(0), S=None,
                     species={int(z): layout.species[int(z)] for z in set(Z)})


def crystal_structure(store_path, layout, k):
    from hambench.models.run import edges_for
    from hambench.store._store import open_store
    from hambench.store._structure import Structure
    from hambench.training import edge_cutoffs

    st = open_store(store_path)
    s = st[0]
    cut = edge_cutoffs(st, [0])
    cell = s.cell.copy()
    cell[0] *= k
    cell[1] *= k
    pos = np.concatenate([s.pos + a * s.cell[0] + b * s.cell[1] for a in range(k) for b in range(k)])
    Z = np.tile(s.Z, k * k)
    src, dst, shift = edges_for(pos, cell, s.pbc, Z, cut, "supercell")
    return Structure(id=f"{k}x{k}", Z=Z, pos=pos, cell=cell, pbc=s.pbc, src=src, dst=dst, shift=shift,
                     H=np.zeros(0), S=None, species=s.species)


def memory_rows(model, cfg, layout, structs, dtype):
    from hambench.training._data import batch_from_structures
    from hambench.training import torch_dtype

    dt = torch_dtype(dtype)
    rows = []
    for s in structs:
        b = batch_from_structures([s], layout, dtype=dt)
        model.eval()

        def infer():
            with torch.no_grad():
                model(b)

        infer()
        t0 = time.perf_counter()
        infer()
        t_inf = time.perf_counter() - t0
        m_inf = peak_mb(infer)
        model.train()
        # a training step needs targets: random blocks of the right size (memory and time do not depend on them)
        nH = int(b.H_ptr[-1])
        b.H = torch.randn(nH, dtype=torch.complex64 if layout.spinful else dt)

        def step():
            from hambench.training import loss_terms

            out = model(b)
            t = loss_terms(out["H"], b, cfg)
            (t["num"] / t["den"]).backward()
            model.zero_grad(set_to_none=True)

        step()
        m_tr = peak_mb(step)
        rows.append((s.id, s.natoms, s.nedges, nH, t_inf, m_inf, m_tr))
    return rows


def pyscf_time(els, xyz, threads):
    from pyscf import lib

    from hambench.basis._pyscf import DEFAULT_PROTOCOL, build_mol, make_rks

    lib.num_threads(threads)
    mol = build_mol(els, xyz, DEFAULT_PROTOCOL)
    mf = make_rks(mol, DEFAULT_PROTOCOL)
    t0 = time.perf_counter()
    mf.kernel()
    return time.perf_counter() - t0, bool(mf.converged), int(mol.nao)


def _reexec_with_mmap_malloc():
    """Re-run this script with glibc serving allocations ≥ 64 kB by mmap (returned to the OS when freed), so the
    RSS high-water mark after ``clear_refs`` measures the peak of live tensor memory, not allocator reuse."""
    import sys

    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and sys.platform.startswith("linux"):
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main():
    _reexec_with_mmap_malloc()
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="deephe3,qhnet")
    ap.add_argument("--presets", default="tiny,paper")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--mol-sizes", default="5,9,13,17,21,25")
    ap.add_argument("--supercells", default="1,2,3,4")
    ap.add_argument("--pyscf", type=int, default=3, help="molecules timed with PySCF in this run")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch (and PySCF) threads; 1 by default: on a shared CPU extra OpenMP threads only spin")
    ap.add_argument("--memory-presets", default="tiny,paper", help="presets of the memory-vs-size section")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"CPU: {os.cpu_count()} cores, torch {torch.__version__} with {threads} threads, float32; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    tmp = Path(tempfile.mkdtemp(prefix="bench_models_"))
    st, mols = stores(tmp, args.mol_sizes)
    from hambench.store._store import open_store

    # 1. training and inference speed per model, preset and store
    print("\n== training steps/s and inference structures/s (batches in memory) ==")
    print(f"{'model':8s} {'preset':6s} {'store':22s} {'params':>10s} {'batch':>5s} {'steps/s':>8s} "
          f"{'train str/s':>11s} {'infer str/s b1':>14s} {'infer str/s bB':>14s}")
    kept = {}
    for name in args.models.split(","):
        for preset in args.presets.split(","):
            for sname, path in st.items():
                steps = args.steps if preset == "tiny" else max(2, args.steps // 5)
                r = bench_train_infer(name, preset, path, steps)
                if r is None:
                    print(f"{name:8s} {preset:6s} {sname:22s}   (model refuses this kind of store)")
                    continue
                kept[(name, preset, sname)] = r
                print(f"{name:8s} {preset:6s} {sname:22s} {r['params']:>10,d} {r['batch']:>5d} {r['steps_per_s']:>8.2f} "
                      f"{r['train_struct_per_s']:>11.2f} {r['infer_struct_per_s_b1']:>14.2f} "
                      f"{r['infer_struct_per_s_bB']:>14.2f}", flush=True)

    # 2. peak memory against structure size (tiny and paper presets)
    print("\n== peak RSS above baseline against structure size (one structure; inference / training step) ==")
    for (name, preset, sname), r in kept.items():
        if preset not in args.memory_presets.split(","):
            continue
        if sname.startswith("molecules"):
            structs = [mol_structure(e, x, r["layout"], f"qm9-{i}") for i, e, x in mols]
        else:
            structs = [crystal_structure(st[sname], r["layout"], int(k)) for k in args.supercells.split(",")]
        print(f"-- {name} {preset} on {sname}")
        print(f"   {'structure':12s} {'atoms':>5s} {'edges':>6s} {'H elems':>9s} {'infer s':>8s} {'infer MB':>9s} "
              f"{'train MB':>9s}")
        for sid, na, ne, nH, ti, mi, mt in memory_rows(r["model"], r["cfg"], r["layout"], structs, "float32"):
            print(f"   {sid:12s} {na:>5d} {ne:>6d} {nH:>9,d} {ti:>8.3f} {mi:>9.1f} {mt:>9.1f}", flush=True)

    # 3. inference per molecule vs the PySCF run that makes its label
    print(f"\n== inference per molecule vs PySCF B3LYP/def2-SVP (QH9 protocol), PySCF on {threads} threads ==")
    from hambench.app.demo import demo_raw_dir

    files = sorted(glob.glob(str(Path(demo_raw_dir()) / "*.npz")))
    demo = open_store(st["molecules (demo, 10)"])
    ids = list(demo.array("structures/id")[:])
    print(f"{'molecule':18s} {'AOs':>4s} {'PySCF now s':>11s} {'PySCF label s':>13s} "
          + " ".join(f"{m + ' ' + p + ' ms':>16s} {'ratio':>8s}" for (m, p, s) in kept if s.startswith("molecules")))
    for f in files[: args.pyscf]:
        d = np.load(f, allow_pickle=True)
        els, xyz = [str(x) for x in d["symbols"]], np.asarray(d["xyz_ang"], float)
        t_now, conv, nao = pyscf_time(els, xyz, threads)
        idx = ids.index(f"dsgdb9nsd_{int(d['qm9_index']):06d}")
        cells = []
        for (m, p, s), r in kept.items():
            if not s.startswith("molecules"):
                continue
            from hambench.training._data import collate

            b = collate(demo.read_range(idx, idx + 1, blocks=()), r["layout"], dtype=torch.float32)
            r["model"].eval()
            with torch.no_grad():
                r["model"](b)
                t0 = time.perf_counter()
                for _ in range(5):
                    r["model"](b)
                ti = (time.perf_counter() - t0) / 5
            cells.append(f"{ti * 1e3:>16.2f} {t_now / ti:>7.0f}x")
        print(f"{str(d['smiles'])[:10] + ' #' + str(int(d['qm9_index'])):18s} {nao:>4d} {t_now:>11.2f} "
              f"{float(d['wall_s']):>13.2f} " + " ".join(cells) + ("" if conv else "  (PySCF not converged)"),
              flush=True)
    print("\nratio = PySCF time now / model inference time on the same molecule (batch 1, same process).")
    print(f"load average {os.getloadavg()[0]:.1f} at the end (the machine is shared; times scale with the load)")


if __name__ == "__main__":
    main()

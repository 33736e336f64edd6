"""Benchmark of scoring against the straightforward way, same data, same run.

Molecules (ε/ψ, QH9's metric): N QM9 molecules with 9 heavy atoms (qm9pack geometries, def2-SVP, 150–190 AOs),
"truth" H = PySCF's core Hamiltonian (no SCF: the size and conditioning of the real problem at 10 ms per molecule;
S = int1e_ovlp), predictions = H + symmetric noise. Methods:
    qh9 loop     QH9's test.py way on the same dense matrices already in memory: per molecule torch float64
                 ``cal_orbital_and_energies`` for prediction and truth (eigh of S twice), cosine, MAE; with
                 torch's default threads and with one thread (threads oversubscribe a loaded 2-core box)
    ours         ``metrics.orbital_errors`` on the same matrices (one eigh of S, batched by size)
    score 1w/2w  ``hambench score`` end to end (open + validate + checksums + read the store + assembly + every
                 metric incl. ε/ψ, per block, per structure) with 1 and 2 local Dask workers (2w includes
                 starting the local cluster), and on an already running 2-worker cluster (``--scheduler``)
    loop e2e     the straightforward end-to-end: ``Store[k]`` per molecule + per-edge assembly + the qh9 loop
                 (torch on one thread)
Crystals (block MAE): synthetic/random cells (C/H, 16 atoms, ~700 edges each), spinless; methods:
    loop         per structure, per edge, per basic block: numpy slice, abs, sum (DeepH-E3 analyzer style),
                 structures already in memory
    ours         ``metrics.block_error_sums`` per structure (one vectorised pass per element pair), same data
    score 1w/2w  ``hambench score`` end to end
Every fast result is checked against the slow one. Best of --repeat for hambench, one run of each baseline.

Run:  .venv/bin/python benchmarks/bench_score.py [--molecules 48] [--crystals 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def best(f, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


# --- data ------------------------------------------------------------------------------------------------
def molecule_store(workdir: Path, n: int) -> Path:
    """A store of n QM9 molecules (9 heavy atoms) whose H is the core Hamiltonian (via pyscf/outputs npz)."""
    from pyscf import gto

    from hambench.pipelines import prepare
    from hambench.pipelines.pyscf_qm9 import load_qm9_table, select_molecules

    table = load_qm9_table()
    table = table[table["n_heavy"] == 9]
    items = select_molecules(table, limit=n, seed=0)
    raw = workdir / "raw"
    raw.mkdir()
    protocol = {"xc": "b3lyp5", "basis": "def2-svp", "grid_level": 3, "conv_tol": 1e-9}
    for idx, smiles, symbols, xyz in items:
        mol = gto.M(atom=list(zip(symbols, xyz)), basis="def2-svp", unit="Angstrom", verbose=0)
        np.savez(raw / f"qm9_{idx:06d}.npz", format=np.int64(1), symbols=np.array(symbols, dtype="U3"),
                 xyz_ang=np.array(xyz), fock=mol.intor("int1e_kin") + mol.intor("int1e_nuc"),
                 overlap=mol.intor("int1e_ovlp"), e_tot=np.float64(np.nan), converged=np.bool_(True),
                 nelectron=np.int64(mol.nelectron), protocol=np.array(json.dumps(protocol)))
    out = workdir / "mol.zarr"
    prepare("pyscf/outputs", raw, out, quiet=True)
    return out


def crystal_store(workdir: Path, n: int) -> Path:
    from hambench.pipelines import prepare

    out = workdir / "cry.zarr"
    prepare("synthetic/random", None, out, quiet=True, count=n, seed=1, natoms=16)
    return out


def noisy_predictions(truth: Path, out: Path, scale: float) -> Path:
    from hambench.basis._layout import BasisLayout
    from hambench.scoring import block_entries
    from hambench.store._predictions import write_predictions
    from hambench.store._store import open_store

    st = open_store(truth)
    rng = np.random.default_rng(0)
    blocks = []
    for k in range(len(st)):
        s = st[k]
        e = rng.normal(size=s.H.size) * scale
        # symmetric noise: the partner edge (j, i, −R) gets the transposed block
        partner = s.partner_index()
        edge, row, col = block_entries(s.Z, s.src, s.dst, BasisLayout(s.species))
        ptr = s.block_ptr()
        ni, nj = s.block_shapes()
        sym = e.copy()
        for f in range(s.nedges):
            g = partner[f]
            if g > f:
                blk = e[ptr[f]:ptr[f + 1]].reshape(ni[f], nj[f])
                sym[ptr[g]:ptr[g + 1]] = blk.T.ravel()
            elif g == f:
                blk = e[ptr[f]:ptr[f + 1]].reshape(ni[f], nj[f])
                sym[ptr[f]:ptr[f + 1]] = ((blk + blk.T) / 2).ravel()
        blocks.append(s.H + sym)
    return write_predictions(st, range(len(st)), blocks, out, {"model": {"name": "noise"}})


# --- the QH9 way ------------------------------------------------------------------------------------------
def qh9_loop(mats):
    """QH9 test.py: per molecule, torch float64, cal_orbital_and_energies for pred and truth (same S)."""
    import torch

    def cal_orbital_and_energies(S, H):
        s, U = torch.linalg.eigh(S)
        s = torch.where(s > 1e-8, s, torch.full_like(s, 1e-8))
        X = U / torch.sqrt(s)[None, :]
        F = X.T @ H @ X
        e, V = torch.linalg.eigh(F)
        return e, X @ V

    eps, psi = [], []
    for Hp, Ht, S, nocc in mats:
        Hp, Ht, S = (torch.from_numpy(x) for x in (Hp, Ht, S))
        ep, Cp = cal_orbital_and_energies(S, Hp)
        et, Ct = cal_orbital_and_energies(S, Ht)
        eps.append(float(torch.mean(torch.abs(ep[:nocc] - et[:nocc]))))
        psi.append(float(torch.cosine_similarity(Cp[:, :nocc], Ct[:, :nocc], dim=0).abs().mean()))
    return np.array(eps), np.array(psi)


def dense_of(st, with_S=True):
    """Per molecule (H, S, n_occ) by a plain per-edge assembly from Store[k] (the e2e baseline)."""
    out = []
    for k in range(len(st)):
        s = st[k]
        n = np.array([sum(2 * l + 1 for l in s.species[int(z)]) for z in s.Z])
        off = np.concatenate([[0], np.cumsum(n)])
        H = np.zeros((off[-1], off[-1]))
        S = np.zeros_like(H) if with_S else None
        for e in range(s.nedges):
            i, j = s.src[e], s.dst[e]
            H[off[i]:off[i + 1], off[j]:off[j + 1]] = s.block(e)
            if with_S:
                S[off[i]:off[i + 1], off[j]:off[j + 1]] = s.block(e, "S")
        out.append((H, S, int(s.Z.sum()) // 2))
    return out


def block_loop(pairs, lay):
    """Per structure, edge, basic block: slice, abs, sum; then per-structure block MAE (DeepH-E3 style)."""
    res = {}
    for p, t in pairs:
        ptr = t.block_ptr()
        ni, nj = t.block_shapes()
        acc = {}
        for e in range(t.nedges):
            d = np.abs(p.H[ptr[e]:ptr[e + 1]] - t.H[ptr[e]:ptr[e + 1]]).reshape(ni[e], nj[e])
            zi, zj = int(t.Z[t.src[e]]), int(t.Z[t.dst[e]])
            for b in lay.basic_blocks(zi, zj):
                sub = d[b.row:b.row + 2 * b.lp + 1, b.col:b.col + 2 * b.lq + 1]
                a = acc.setdefault((zi, zj, b.p, b.q), [0.0, 0])
                a[0] += float(sub.sum())
                a[1] += sub.size
        for key, (s, c) in acc.items():
            res.setdefault(key, []).append(s / c)
    return {key: float(np.mean(v)) for key, v in res.items()}


def run_score(preds, workers, scheduler=None):
    from hambench.scoring._score import score

    return score(preds, workers=workers, scheduler=scheduler, quiet=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--molecules", type=int, default=48)
    ap.add_argument("--crystals", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import torch

    from hambench import scoring as M
    from hambench.basis._layout import BasisLayout
    from hambench.store._predictions import open_predictions
    from hambench.store._store import open_store

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
          f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    import logging

    from dask.distributed import LocalCluster

    work = Path(tempfile.mkdtemp(prefix="bench_score_"))
    lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR)
    cluster = lc.scheduler_address
    try:
        t0 = time.perf_counter()
        mol = molecule_store(work, args.molecules)
        mp = noisy_predictions(mol, work / "mol_preds.zarr", 1e-4)
        cry = crystal_store(work, args.crystals)
        cp = noisy_predictions(cry, work / "cry_preds.zarr", 1e-3)
        print(f"# data: {args.molecules} molecules, {args.crystals} crystals in {time.perf_counter() - t0:.0f} s")
        print(f"{'workload':58s}  {'baseline':24s} {'struct/s':>9s}   {'hambench':26s} {'struct/s':>9s}  ratio")
        state = {"base": None}

        class Rows(list):
            def append(self, row):
                name, bname, bval, oname, oval = row
                if bval is not None:
                    state["base"] = bval
                base = state["base"]
                ratio = f"{oval / base:6.1f}x" if base else ""
                bs = f"{bval:9.2f}" if bval is not None else " " * 9
                print(f"{name:58s}  {bname:24s} {bs}   {oname:26s} {oval:9.2f}  {ratio}", flush=True)
                super().append(row)

        rows = Rows()

        # --- molecules: ε/ψ on in-memory dense matrices -----------------------------------------------------
        tst, p = open_store(mol), open_predictions(mp)
        truths = dense_of(tst)
        preds = dense_of(p.store, with_S=False)
        mats = [(hp, ht, s, n) for (hp, _, _), (ht, s, n) in zip(preds, truths)]
        nao = [m[0].shape[0] for m in mats]
        t_loop, (eps_ref, psi_ref) = best(lambda: qh9_loop(mats), 1)  # slow: once

        def ours():
            by = {}
            for i, (hp, ht, s, n) in enumerate(mats):
                by.setdefault(hp.shape[0], []).append(i)
            eps, psi = np.zeros(len(mats)), np.zeros(len(mats))
            with M.blas_threads(1):
                for N, ids in by.items():
                    o = M.orbital_errors(np.stack([mats[i][0] for i in ids]), np.stack([mats[i][1] for i in ids]),
                                         np.stack([mats[i][2] for i in ids]), [mats[i][3] for i in ids])
                    eps[ids], psi[ids] = o["eps_mae"], o["psi"]
            return eps, psi

        nthreads = torch.get_num_threads()
        torch.set_num_threads(1)
        t_loop1, _ = best(lambda: qh9_loop(mats), 1)
        torch.set_num_threads(nthreads)
        t_ours, (eps, psi) = best(ours, args.repeat)
        assert np.allclose(eps, eps_ref, rtol=1e-6, atol=1e-12), np.abs(eps - eps_ref).max()
        nmol = len(mats)
        rows.append((f"ε/ψ, {nmol} molecules ({min(nao)}–{max(nao)} AOs), matrices in memory",
                     f"qh9 torch loop ({nthreads} thr)", nmol / t_loop, "ours (batched, 1 thread)", nmol / t_ours))
        rows.append(("", "qh9 torch loop (1 thr)", nmol / t_loop1, "ours (batched, 1 thread)", nmol / t_ours))

        # --- molecules end to end ----------------------------------------------------------------------------
        def loop_e2e():
            st, pp = open_store(mol), open_predictions(mp)
            tr, pr = dense_of(st), dense_of(pp.store, with_S=False)
            return qh9_loop([(a[0], b[0], b[1], b[2]) for a, b in zip(pr, tr)])

        torch.set_num_threads(1)  # the fair setting (row 1 shows the default)
        t_le, (eps_e2e, _) = best(loop_e2e, 1)  # slow: once
        torch.set_num_threads(nthreads)
        t1, s1 = best(lambda: run_score(mp, 1), args.repeat)
        t2, s2 = best(lambda: run_score(mp, 2), args.repeat)
        assert s1 == s2, [k for k in s1 if s1[k] != s2[k]]
        got = np.array([r["eps_mae"] for r in s1["per_structure"]]) / 1e3
        assert np.allclose(got, eps_e2e, rtol=1e-6, atol=1e-12)
        rows.append(("molecules end to end (all metrics)", "Store[k]+loop+qh9 (1 thr)", nmol / t_le,
                     "hambench score 1 worker", nmol / t1))
        rows.append(("", "", None, "hambench score 2 workers", nmol / t2))
        t3, s3 = best(lambda: run_score(mp, 1, cluster), args.repeat)
        assert s3 == s1
        rows.append(("", "", None, "score, running 2-worker cluster", nmol / t3))

        # --- crystals: block MAE -----------------------------------------------------------------------------
        ct, cpp = open_store(cry), open_predictions(cp)
        ncry = len(ct)
        lay = BasisLayout(ct.species)
        pairs = [(cpp.store[k], ct[k]) for k in range(ncry)]  # in memory: time the metric, not the reads
        t_bl, ref = best(lambda: block_loop(pairs, lay), 1)  # slow: once

        def ours_blocks():
            sums, nels = [], []
            for q, t in pairs:
                s_, n_, _ = M.block_error_sums(q.H, t.H, t.Z[t.src], t.Z[t.dst], lay)
                sums.append(s_[0])
                nels.append(n_[0])
            return M.block_mae(np.array(sums), np.array(nels))[0]

        t_ob, mean = best(ours_blocks, args.repeat)
        for g, (zi, zj, b) in enumerate(M.block_index(lay)):
            assert abs(mean[g] - ref[(zi, zj, b.p, b.q)]) < 1e-12
        E = int(ct.attrs["counts"]["edges"])
        rows.append((f"block MAE, {ncry} cells ({E // ncry} edges each), in memory", "per-block loop",
                     ncry / t_bl, "metrics.block_error_sums", ncry / t_ob))
        t1, c1 = best(lambda: run_score(cp, 1), args.repeat)
        t2, c2 = best(lambda: run_score(cp, 2), args.repeat)
        assert c1 == c2, [k for k in c1 if c1[k] != c2[k]]
        rows.append(("crystals end to end (all metrics)", "", None, "hambench score 1 worker", ncry / t1))
        rows.append(("", "", None, "hambench score 2 workers", ncry / t2))
        t3, c3 = best(lambda: run_score(cp, 1, cluster), args.repeat)
        assert c3 == c1
        rows.append(("", "", None, "score, running 2-worker cluster", ncry / t3))

        print("identical scores for 1 and 2 workers: yes; results checked against the baselines")
    finally:
        lc.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""SCF acceleration (``hambench score --scf N``): how many SCF cycles a predicted Hamiltonian saves, the QH9 way.

Definitions (FACTS.md §6, research/qh9.md §3.4, tracegrad_harmose.md §2.4/§5):

* **Molecules**: ``np.random.default_rng(seed).choice(pool, n, replace=False)`` over the predicted molecules
  (``pool`` = the truth-store indices of the prediction store, ascending), seed 43 as QH9; all of them when
  ``n ≥ len(pool)``. QH9 draws from the intersection of two test splits (stable: id ∩ ood; dynamic: mol ∩ geo):
  ``intersect="split:subset"`` restricts the pool to predicted molecules also in that subset.
* **PySCF settings** from the truth store's ``dft`` attrs (functional, basis, grid level, conv_tol; QH9 defaults
  for anything not recorded): RKS, ``max_cycle`` 50, DIIS, PySCF defaults otherwise; one thread per molecule.
* **Guesses**: the model's ``D0 = 2 Ĉ_occ Ĉ_occᵀ`` with Ĉ from the predicted H (eV → Hartree, hambench → PySCF
  AO order) by canonical orthogonalisation on the **true** S (QH9's ``cal_orbital_and_energies``: eigenvalues
  of S clamped at 1e-8, X = U s^-1/2), n_occ = N_electrons / 2; baselines ``minao``
  (``scf.hf.init_guess_by_minao``) and ``1e`` (``scf.hf.init_guess_by_1e``).
* **Cycles**: QH9's ``callback`` records ``envs['cycle']``, the **0-based** index of the SCF loop iteration, so
  N = (iterations − 1); the post-convergence "extra cycle" is not counted. PySCF ≥ 2.7 sets
  ``mf.cycles`` = iterations = N + 1: hambench reports N (QH9's count) and checks ``mf.cycles == N + 1``.
* **Ratios** per molecule and baseline g: optimal ``1/N_g``; achieved ``N_model/N_g`` (lower is better);
  error level ``N_err,g/N_g`` where N_err,g is the first (0-based) cycle of the g-run whose non-DIIS Fock
  ``envs['fock']`` = h + V[D_k] has ``mean|F_k − H_true| < e``, e = ``mean|Ĥ − H_true|`` (Hartree, full matrix)
  — higher is better. A run that never reaches e (a very accurate model) counts ``N_err = N_g`` (ratio 1;
  QH9's script would crash) and is counted in ``scf_n_error_level_unreached_<g>``. Reported: mean and
  population std over the molecules, as QH9's Table 4.
* **Wall times** (TraceGrad Table 9): t1 = DFT from the baseline guess (guess + SCF, grid set-up included);
  t2 = model inference per molecule (from the prediction store's attrs, ``meta.timing`` as ``hambench
  predict`` writes it — amortised over its batches — else null); t3 = t2 + DFT from the model guess (its
  ``D0`` construction + SCF). One PySCF/BLAS thread per molecule by default, as TraceGrad's runs.

The SCF runs of one molecule are independent of the others: they run in parallel over molecules and each
molecule's result is cached atomically under ``cache_dir`` (a rerun with the same matrices, protocol and guesses
reads it back instead of recomputing). Results, except wall times, do not depend on ``workers``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from pathlib import Path

import numpy as np

from hambench.atomic import write_json
from hambench.basis._conventions import HARTREE_EV
from hambench.basis._pyscf import make_rks, mol_from_structure, protocol_from_attrs, shells_of_atoms, to_pyscf_matrix
from hambench.errors import InputError
from hambench.parallel import run_tasks
from hambench.store import select_split
from ._catalogue import SCF_GUESSES, units_of
from ._dense import blas_threads, bloch_sum
from ._orbitals import canonical_orthogonalization

__all__ = [
    "BASELINES",
    "CYCLE_CONVENTION",
    "scf_acceleration",
    "scf_molecule",
    "density_from_hamiltonian",
    "select_molecules",
    "dense_molecule",
]

BASELINES = SCF_GUESSES
CYCLE_CONVENTION = ("QH9: 0-based index of the last SCF iteration (envs['cycle'] in the callback) = "
                    "iterations - 1; PySCF >= 2.7's mf.cycles is that + 1")
#: version of the per-molecule cache files
CACHE_FORMAT = 1


# --- matrices --------------------------------------------------------------------------------------------
def dense_molecule(s, flat=None, which: str = "H") -> np.ndarray:
    """Full (n_ao, n_ao) real matrix of a molecule (all edges R = 0) from flat edge blocks in hambench order,
    by the one dense assembly (:func:`hambench.scoring._dense.bloch_sum` at Γ).

    ``flat`` defaults to ``s.H`` (``which='H'``) or ``s.S`` (``'S'``).
    """
    if np.any(s.shift):
        raise InputError(None, f"structure {s.id!r} has edges with R != 0: not a molecule")
    if flat is None:
        flat = s.H if which == "H" else s.S
    m = bloch_sum(np.asarray(flat), s.Z, s.src, s.dst, s.shift, s.layout, None,
                  overlap=(which == "S"))
    return np.ascontiguousarray(np.real(m))


def density_from_hamiltonian(H_ha: np.ndarray, S: np.ndarray, nocc: int) -> np.ndarray:
    """QH9's model guess ``D0 = 2 C_occ C_occᵀ``: canonical orthogonalisation on S (eigenvalues clamped at 1e-8,
    X = U s^{-1/2}), eigh of XᵀHX (ascending), C = X V, the ``nocc`` lowest orbitals."""
    X = canonical_orthogonalization(S)
    _, V = np.linalg.eigh(X.T @ H_ha @ X)
    C = X @ V[:, :nocc]
    return 2.0 * C @ C.T


# --- one molecule ----------------------------------------------------------------------------------------
def _run(mol, protocol: dict, H_true: np.ndarray, make_dm0) -> dict:
    """One SCF from the guess ``make_dm0()``: QH9 cycle count, the Fock error trace, wall time."""
    cycles: list[int] = []
    trace: list[float] = []

    def callback(envs):
        cycles.append(int(envs["cycle"]))
        trace.append(float(np.mean(np.abs(envs["fock"] - H_true))))

    t0 = time.perf_counter()
    mf = make_rks(mol, protocol)
    mf.callback = callback
    dm0 = make_dm0()
    mf.kernel(dm0=dm0)
    wall = time.perf_counter() - t0
    if not cycles:
        raise RuntimeError("the SCF callback never ran (max_cycle <= 0?)")
    n = cycles[-1]
    if cycles != list(range(n + 1)):
        raise RuntimeError(f"unexpected SCF cycle sequence {cycles}")
    pyscf_cycles = int(getattr(mf, "cycles", -1))
    if pyscf_cycles >= 0 and pyscf_cycles != n + 1:
        raise RuntimeError(f"PySCF mf.cycles = {pyscf_cycles}, expected the QH9 count + 1 = {n + 1}")
    return {"cycles": n, "pyscf_cycles": pyscf_cycles, "converged": bool(mf.converged), "wall_s": wall,
            "fock_mae_ha": trace, "e_tot_ha": float(mf.e_tot)}


def scf_molecule(truth, H_pred_flat, protocol: dict, guesses=BASELINES, threads: int = 1, where=None) -> dict:
    """SCF acceleration of one molecule: runs from the model guess and from each baseline guess.

    Parameters
    ----------
    truth : the true :class:`~hambench.store._structure.Structure` (H in eV, hambench order)
    H_pred_flat : predicted blocks of the same edges (eV, hambench order)
    protocol : PySCF protocol (:func:`hambench.basis._pyscf.protocol_from_attrs`)
    guesses : baselines among ``'minao'``, ``'1e'``

    Returns a JSON-able dict: ``error_level_ha`` (e), per run (``model`` and each baseline) ``cycles`` (QH9's
    0-based count), ``pyscf_cycles``, ``converged``, ``wall_s``, ``fock_mae_ha`` (per cycle), and per baseline
    g: ``n_err`` (first cycle below e, None if never), ``optimal_ratio``, ``achieved_ratio``,
    ``error_level_ratio``.
    """
    from pyscf import lib, scf

    for g in guesses:
        if g not in BASELINES:
            raise InputError(where, f"unknown baseline guess {g!r}; known: {', '.join(BASELINES)}")
    mol = mol_from_structure(truth, protocol, where)
    shells = shells_of_atoms(mol)
    H_true = to_pyscf_matrix(dense_molecule(truth, truth.H), shells)
    H_pred = to_pyscf_matrix(dense_molecule(truth, np.asarray(H_pred_flat, dtype=np.float64)), shells)
    S = mol.intor("int1e_ovlp")
    if truth.S is not None and len(truth.S):
        dS = float(np.abs(to_pyscf_matrix(dense_molecule(truth, truth.S, "S"), shells, hartree=False) - S).max())
        if dS > 1e-6:
            raise InputError(where, f"structure {truth.id!r}: PySCF's overlap ({protocol['basis']}) differs from the "
                                    f"store's by {dS:.2g}: the store was made with another basis or geometry")
    nocc = mol.nelectron // 2
    if mol.nelectron % 2:
        raise InputError(where, f"structure {truth.id!r} has an odd number of electrons; RKS needs a closed shell")
    err = float(np.mean(np.abs(H_pred - H_true)))
    old = lib.num_threads()
    lib.num_threads(int(threads))  # PySCF's OpenMP threads; BLAS/LAPACK (its eigh per cycle) limited alike
    try:
        with blas_threads(int(threads)):
            runs = {"model": _run(mol, protocol, H_true, lambda: density_from_hamiltonian(H_pred, S, nocc))}
            makers = {"minao": lambda: scf.hf.init_guess_by_minao(mol), "1e": lambda: scf.hf.init_guess_by_1e(mol)}
            for g in guesses:
                runs[g] = _run(mol, protocol, H_true, makers[g])
    finally:
        lib.num_threads(old)
    out = {"id": truth.id, "natoms": int(truth.natoms), "nao": int(mol.nao), "nelectron": int(mol.nelectron),
           "error_level_ha": err, "runs": runs, "baselines": {}}
    n_model = runs["model"]["cycles"]
    for g in guesses:
        r = runs[g]
        n_g = r["cycles"]
        below = [k for k, v in enumerate(r["fock_mae_ha"]) if v < err]
        n_err = below[0] if below else None
        safe = max(n_g, 1)  # a 0-cycle baseline run (impossible from minao/1e in practice) must not divide by 0
        out["baselines"][g] = {
            "n_err": n_err,
            "optimal_ratio": 1.0 / safe,
            "achieved_ratio": n_model / safe,
            "error_level_ratio": (n_err if n_err is not None else n_g) / safe,
        }
    return out


# --- selection, cache, aggregation -----------------------------------------------------------------------
def select_molecules(pool, n: int, seed: int = 43) -> np.ndarray:
    """QH9's choice: ``default_rng(seed).choice(pool, n, replace=False)`` (in the drawn order); all of ``pool``
    (ascending) when ``n >= len(pool)``."""
    pool = np.asarray(pool, dtype=np.int64)
    if n < 1:
        raise InputError("--scf", f"the number of molecules must be >= 1, got {n}")
    if n >= len(pool):
        return np.sort(pool)
    return np.asarray(np.random.default_rng(int(seed)).choice(pool, int(n), replace=False), dtype=np.int64)


def _cache_key(truth, H_pred, protocol: dict, guesses) -> str:
    import pyscf

    h = hashlib.sha256()
    h.update(json.dumps({"format": CACHE_FORMAT, "protocol": protocol, "guesses": list(guesses),
                         "pyscf": pyscf.__version__, "id": truth.id}, sort_keys=True).encode())
    for a in (truth.Z.astype("<i8"), truth.pos.astype("<f8"), truth.src.astype("<i8"), truth.dst.astype("<i8"),
              np.asarray(truth.H, dtype="<f8"), np.asarray(H_pred, dtype="<f8")):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _cache_path(cache_dir: Path, index: int, sid: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", sid)[:80]
    return Path(cache_dir) / f"scf_{int(index):08d}_{safe}.json"


def _task(args) -> dict:
    """Worker: one molecule, cached. ``args`` = (truth Structure, H_pred, protocol, guesses, threads, index,
    cache_dir, where)."""
    truth, H_pred, protocol, guesses, threads, index, cache_dir, where = args
    key = _cache_key(truth, H_pred, protocol, guesses)
    path = _cache_path(cache_dir, index, truth.id) if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            got = json.loads(path.read_text())
            if got.get("key") == key:
                got["cached"] = True
                return got
        except (OSError, ValueError):
            pass  # unreadable: recompute
    res = scf_molecule(truth, H_pred, protocol, guesses, threads=threads, where=where)
    res["index"] = int(index)
    res["key"] = key
    if path is not None:
        write_json(path, res, indent=1)
    res["cached"] = False
    return res


def _inference_seconds(preds, n_pred: int) -> tuple[np.ndarray, str | None]:
    """Model-inference seconds per prediction-store structure, if the predictor recorded them, else NaN; and
    where they came from.

    Looked up in the prediction store's attrs ``meta.timing`` (what ``hambench predict`` writes) or ``timing``:
    ``per_structure_s`` (a list aligned with the prediction store), else ``mean_s``, else ``seconds`` or
    ``total_s`` ÷ structures, else 1 / ``structures_per_s``. ``hambench predict`` runs batches, so its time per
    structure is amortised over a batch (TraceGrad timed batch size 1).
    """
    extra = preds.meta.extra  # keys of the prediction store's attributes that are no StoreMeta field
    for where, timing in (("meta.timing", (extra.get("meta") or {}).get("timing")), ("timing", extra.get("timing"))):
        if not isinstance(timing, dict):
            continue
        per = timing.get("per_structure_s")
        if isinstance(per, (list, tuple)) and len(per) == n_pred:
            return np.asarray(per, dtype=np.float64), f"{where}.per_structure_s"
        for key, scale in (("mean_s", 1.0), ("seconds", 1.0 / max(n_pred, 1)), ("total_s", 1.0 / max(n_pred, 1))):
            if isinstance(timing.get(key), (int, float)) and timing[key] >= 0:
                return np.full(n_pred, float(timing[key]) * scale), f"{where}.{key}" + ("" if key == "mean_s" else
                                                                                      " / structures")
        rate = timing.get("structures_per_s")
        if isinstance(rate, (int, float)) and rate > 0:
            return np.full(n_pred, 1.0 / float(rate)), f"1 / {where}.structures_per_s"
    return np.full(n_pred, np.nan), None


def _stats(values) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std())  # numpy population std, as QH9


def _map(fn, items, workers: int, scheduler, quiet: bool, label: str):
    """Run ``fn(item)`` over ``items`` with :func:`hambench.parallel.run_tasks` (results in item order)."""
    def note(i, r):
        cyc = " ".join(f"{g}={v['cycles']}" for g, v in r["runs"].items())
        return f"{r['id']}: cycles {cyc}" + (" (cached)" if r.get("cached") else "")

    return run_tasks(fn, [(it,) for it in items], workers=int(workers), scheduler=scheduler, quiet=quiet,
                     label=label, unit="molecules", on_result=note)


def scf_acceleration(truth_store, preds, n, seed=43, workers=1, scheduler=None, quiet=False, cache_dir=None,
                     guesses=BASELINES, protocol=None, threads: int = 1, intersect: str | None = None) -> dict:
    """SCF acceleration of a prediction store on ``n`` of its molecules (see the module docstring).

    Parameters
    ----------
    truth_store : :class:`hambench.store._store.Store` (molecules, PySCF RKS attrs)
    preds : :class:`hambench.store._predictions.Predictions` of that truth
    n : number of molecules (``default_rng(seed).choice``; all when ``n`` ≥ the predicted molecules)
    workers, scheduler : parallel over molecules (local processes or a Dask scheduler address)
    cache_dir : folder for the per-molecule results (resumable); None = no cache
    guesses : baselines; protocol : overrides of the store's PySCF settings (keys of
        :func:`hambench.basis._pyscf.protocol_of`); threads : PySCF threads per molecule (TraceGrad: 1)
    intersect : ``"split:subset"`` of the truth store — draw only from predicted molecules also in that subset
        (QH9: predictions on ``qh9-stable-id:test`` with ``intersect="qh9-stable-ood:test"``)

    Returns
    -------
    ``{"metrics": {flat name: value}, "units": {name: unit}, "per_molecule": [...], "settings": {...}}`` with
    metrics ``scf_n_molecules``, ``scf_cycles_model``, ``scf_cycles_<g>``, ``scf_optimal_ratio_<g>``,
    ``scf_achieved_ratio_<g>`` (+ ``_std``), ``scf_error_level_ratio_<g>`` (+ ``_std``),
    ``scf_n_error_level_unreached_<g>``, ``scf_n_unconverged``, ``scf_t1_<g>_s``, ``scf_t2_s``, ``scf_t3_s``,
    ``scf_t_dft_model_s`` (means over molecules).
    """
    import pyscf

    where = getattr(truth_store, "path", None)
    if truth_store.kind != "molecule":
        raise InputError(where, f"--scf needs a molecule store; {where} holds {truth_store.kind!r} structures")
    if truth_store.spinful:
        raise InputError(where, "--scf needs a spinless (RKS) molecule store")
    proto = protocol_from_attrs(truth_store.kind, truth_store.meta.dft, where, overrides=protocol)
    guesses = tuple(guesses)
    truth_index = np.asarray(preds.truth_index, dtype=np.int64)
    pool = _pool(truth_store, truth_index, intersect, where)
    chosen = select_molecules(pool, int(n), seed)
    pos_of = {int(t): k for k, t in enumerate(truth_index)}
    t_inf, t_inf_source = _inference_seconds(preds, len(truth_index))
    items = []
    for t in chosen:
        pred, true = preds.pair(pos_of[int(t)])
        items.append((true, np.asarray(pred.H, dtype=np.float64), proto, guesses, int(threads), int(t),
                      Path(cache_dir) if cache_dir is not None else None, str(where)))
    results = _map(_task, items, int(workers), scheduler, quiet, "scf")
    per = []
    for r, t in zip(results, chosen):
        t2 = float(t_inf[pos_of[int(t)]])
        r = dict(r)
        r.pop("key", None)
        r["t2_s"] = None if math.isnan(t2) else t2
        r["t3_s"] = None if math.isnan(t2) else t2 + r["runs"]["model"]["wall_s"]
        per.append(r)
    m = _scf_metrics(per, guesses)
    settings = {
        "protocol": proto,
        "pyscf_version": pyscf.__version__,
        "cycle_convention": CYCLE_CONVENTION,
        "seed": int(seed),
        "n_requested": int(n),
        "selection": "numpy.random.default_rng(seed).choice(sorted truth indices of the predicted molecules"
                     + (f" that are in {intersect}" if intersect else "") + ", n, replace=False); all when n >= "
                     "their number",
        "pool_size": int(len(pool)),
        "guesses": ["model", *guesses],
        "threads_per_molecule": int(threads),
        "error_level": "first 0-based cycle of the baseline run with mean|F_k - H_true| < mean|H_pred - H_true| "
                       "(Hartree, non-DIIS Fock envs['fock']); never reached -> N_err = N_g (ratio 1), counted",
        "timing": "t1 = baseline guess + SCF (grid set-up included); t2 = model inference per molecule from the "
                  "prediction store's attrs meta.timing (null when not recorded); t3 = t2 + model D0 + SCF",
        "t2_source": t_inf_source,
        "units_note": f"store H in eV converted with 1 Eh = {HARTREE_EV} eV; matrices reordered hambench -> PySCF",
    }
    return {"metrics": m, "units": units_of(m), "per_molecule": per, "settings": settings}


def _pool(truth_store, truth_index: np.ndarray, intersect: str | None, where) -> np.ndarray:
    """The truth indices to draw from: the predicted molecules, ascending, restricted to subset ``intersect``."""
    pool = np.sort(truth_index)
    if not intersect:
        return pool
    pool = np.intersect1d(pool, select_split(truth_store, intersect, flag="intersect"))
    if pool.size == 0:
        raise InputError(where, f"no predicted molecule is in {intersect!r}")
    return pool


def _scf_metrics(per: list[dict], guesses) -> dict:
    """The flat SCF metrics: means (and population std) over the molecules; NaN → None."""
    m: dict = {"scf_n_molecules": len(per)}
    m["scf_cycles_model"] = _stats(r["runs"]["model"]["cycles"] for r in per)[0]
    for g in guesses:
        m[f"scf_cycles_{g}"] = _stats(r["runs"][g]["cycles"] for r in per)[0]
        for name in ("optimal_ratio", "achieved_ratio", "error_level_ratio"):
            m[f"scf_{name}_{g}"], m[f"scf_{name}_{g}_std"] = _stats(r["baselines"][g][name] for r in per)
        m[f"scf_n_error_level_unreached_{g}"] = sum(r["baselines"][g]["n_err"] is None for r in per)
        m[f"scf_t1_{g}_s"] = _stats(r["runs"][g]["wall_s"] for r in per)[0]
    m["scf_n_unconverged"] = sum(any(not v["converged"] for v in r["runs"].values()) for r in per)
    # t2/t3 only when every molecule has an inference time (a mean over a part would mislead)
    has_t2 = bool(per) and all(r["t2_s"] is not None for r in per)
    m["scf_t2_s"] = float(np.mean([r["t2_s"] for r in per])) if has_t2 else None
    m["scf_t_dft_model_s"] = _stats(r["runs"]["model"]["wall_s"] for r in per)[0]
    m["scf_t3_s"] = float(np.mean([r["t3_s"] for r in per])) if has_t2 else None
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}

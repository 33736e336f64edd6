"""The scores of ``hambench score`` and of the :class:`Evaluator`: per-structure records of one range of
structures, and their aggregation into the metrics, subsets, per-block and per-structure tables of scores.json.

Definitions (FACTS.md §6; research/qh9.md §3, deeph.md §4, tracegrad_harmose.md §5) are those of the pieces:
:mod:`hambench.scoring._errors` (element-wise, gauge-fixed and per-block errors of crystals and molecules),
:mod:`hambench.scoring._orbitals` (the QH9 molecule metrics of the full matrices), :mod:`hambench.scoring._dense`
(the one dense assembly). Everything is in eV inside; reported keys carry the units of
:mod:`hambench.scoring._catalogue` (:data:`UNITS`). Reductions run per structure in a fixed order, so results never
depend on how structures are grouped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hambench.basis._layout import BasisLayout
from hambench.errors import InputError
from hambench.store import StoreRange, edge_endpoints
from ._catalogue import CATALOGUE, EV_TO_MEV, EV_TO_UEH, TWIN_SUFFIX
from ._dense import blas_threads, bloch_sum, orbital_offsets
from ._errors import (block_error_sums, block_index, block_label, expand_overlap, gauge_fixed_mae, mean_and_pooled,
                      per_structure_block_mae, worst)
from ._orbitals import molecule_h_errors, n_occupied, orbital_errors

__all__ = ["UNITS", "RangeArrays", "range_partial", "aggregate", "Evaluator"]

#: unit of every metric key (flat snake_case), from the catalogue
UNITS = {k: m.unit for k, m in CATALOGUE.items()}
#: molecules: per-structure record → reported metric (meV and its µEh twin), mean over the molecules
_MOLECULE_MEANS = (("H_mae", "H_mae"), ("H_mae_onsite", "H_mae_onsite"), ("H_mae_offsite", "H_mae_offsite"),
                   ("eps_mae", "eps_mae"), ("homo_err", "homo_mae"), ("lumo_err", "lumo_mae"), ("gap_err", "gap_mae"))
_ORBITAL_KEYS = ("eps_mae", "homo_err", "lumo_err", "gap_err", "psi", "psi_subspace")


@dataclass
class RangeArrays:
    """Flat arrays of a range of structures (a truth :class:`~hambench.store.StoreRange` plus the predicted H,
    see :meth:`of`): local offsets ``atom_ptr``, ``edge_ptr`` (n+1) and ``H_ptr``, ``S_ptr`` (E+1)."""

    ids: Sequence[str]
    Z: np.ndarray
    atom_ptr: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    shift: np.ndarray
    edge_ptr: np.ndarray
    H_pred: np.ndarray
    H_true: np.ndarray
    S: np.ndarray
    H_ptr: np.ndarray
    S_ptr: np.ndarray
    groups: Sequence[Sequence[str]] | None = None   # subset keys ("split:subset") of each structure
    index: Sequence[int] | None = None              # truth indices (reported)
    T_pred: np.ndarray | None = None
    T_true: np.ndarray | None = None

    @classmethod
    def of(cls, truth: StoreRange, H_pred: np.ndarray, T_pred: np.ndarray | None = None,
           index: bool = False) -> "RangeArrays":
        """The arrays of the truth range ``truth`` (with H and S) and the predictions on its edges; the groups
        are its split subsets; ``index``: report the truth's store indices."""
        return cls(
            ids=[str(x) for x in truth.ids], Z=truth.Z, atom_ptr=truth.atom_ptr, src=truth.src, dst=truth.dst,
            shift=truth.shift, edge_ptr=truth.edge_ptr, H_pred=H_pred, H_true=truth.H, S=truth.S,
            H_ptr=truth.H_ptr, S_ptr=truth.S_ptr, groups=truth.split_groups(),
            index=[int(x) for x in truth.index] if index else None,
            T_pred=T_pred, T_true=truth.T if T_pred is not None else None,
        )


# --- one range of structures → partial results ----------------------------------------------------------
def range_partial(r: RangeArrays, layout: BasisLayout, kind: str) -> dict:
    """Per-structure records and per-block sums of one range of structures (see :func:`aggregate`).

    LAPACK/BLAS run on one thread here, as in every Dask worker, so the results carry the same bits whichever
    process computes them.
    """
    with blas_threads(1):
        return _range_partial(r, layout, kind)


def _range_partial(r: RangeArrays, layout: BasisLayout, kind: str) -> dict:
    n = len(r.ids)
    edge_owner = np.repeat(np.arange(n), np.diff(r.edge_ptr))
    Zg = np.asarray(r.Z, dtype=np.int64)
    i, j = edge_endpoints(r.atom_ptr, r.edge_ptr, r.src, r.dst)
    Zs, Zd = Zg[i], Zg[j]
    S_h = expand_overlap(r.S, Zs, Zd, layout)
    groups = [list(g) for g in (r.groups or [[] for _ in range(n)])]
    records = [_record(r, k, S_h, layout, groups[k]) for k in range(n)]
    if kind == "molecule":
        _molecule_records(r, records, Zg, layout)
    if r.T_pred is not None and r.T_true is not None:
        _trace_records(r, records, layout.trace_ptr(Zs, Zd))
    sums, nel, _ = block_error_sums(r.H_pred, r.H_true, Zs, Zd, layout, edge_owner, n, H_ptr=r.H_ptr)
    return {"records": records, "blocks": _group_block_sums(sums, nel, groups)}


def _record(r: RangeArrays, k: int, S_h: np.ndarray, layout: BasisLayout, groups: list[str]) -> dict:
    """Structure ``k``'s H errors (sums and MAEs, eV): plain, gauge-fixed, Re/Im for spinful blocks."""
    e0, e1 = int(r.edge_ptr[k]), int(r.edge_ptr[k + 1])
    h0, h1 = int(r.H_ptr[e0]), int(r.H_ptr[e1])
    hp, ht, sh = r.H_pred[h0:h1], r.H_true[h0:h1], S_h[h0:h1]
    err = np.abs(hp - ht)
    rec = {"id": str(r.ids[k]), "natoms": int(r.atom_ptr[k + 1] - r.atom_ptr[k]), "nedges": e1 - e0,
           "n_elements": int(err.size), "H_sum": float(err.sum())}
    rec["H_mae"] = rec["H_sum"] / err.size if err.size else float("nan")
    g, mu = gauge_fixed_mae(hp, ht, sh)
    rec["H_mae_gauge"], rec["gauge_mu"] = g, mu
    rec["H_sum_gauge"] = g * err.size
    if layout.spinful:
        d = hp - ht
        s2 = float(np.abs(d.real).sum() + np.abs(d.imag).sum())
        rec["H_sum_reim"], rec["H_mae_reim"] = s2, s2 / (2 * err.size) if err.size else float("nan")
    if r.index is not None:
        rec["index"] = int(r.index[k])
    rec["groups"] = groups
    return rec


def _molecule_records(r: RangeArrays, records: list[dict], Zg: np.ndarray, layout: BasisLayout) -> None:
    """The full-matrix metrics of each molecule: on-/off-site H errors, then orbital errors batched by size."""
    by_size: dict[int, list[int]] = {}
    mats: dict[int, tuple] = {}
    for k, rec in enumerate(records):
        e0, e1 = int(r.edge_ptr[k]), int(r.edge_ptr[k + 1])
        h0, h1 = int(r.H_ptr[e0]), int(r.H_ptr[e1])
        Zk = Zg[int(r.atom_ptr[k]) : int(r.atom_ptr[k + 1])]
        lay_args = (Zk, r.src[e0:e1], r.dst[e0:e1], r.shift[e0:e1], layout)
        Hp = bloch_sum(r.H_pred[h0:h1], *lay_args)
        Ht = bloch_sum(r.H_true[h0:h1], *lay_args)
        S = bloch_sum(r.S[int(r.S_ptr[e0]) : int(r.S_ptr[e1])], *lay_args, overlap=True)
        he = molecule_h_errors(Hp, Ht, orbital_offsets(Zk, layout))
        rec.update(H_mae=he["all"], H_mae_onsite=he["onsite"], H_mae_offsite=he["offsite"],
                   n_occ=n_occupied(Zk), n_ao=int(Hp.shape[0]))
        mats[k] = (Hp, Ht, S)
        by_size.setdefault(Hp.shape[0], []).append(k)
    for _, ks in sorted(by_size.items()):
        Hp, Ht, S = (np.stack([mats[k][i] for k in ks]) for i in range(3))
        o = orbital_errors(Hp, Ht, S, np.array([records[k]["n_occ"] for k in ks]))
        for j, k in enumerate(ks):
            for key in _ORBITAL_KEYS:
                records[k][key] = float(o[key][j])


def _trace_records(r: RangeArrays, records: list[dict], tp_ptr: np.ndarray) -> None:
    """Each structure's MAE of the TraceGrad trace labels T."""
    for k, rec in enumerate(records):
        t0, t1 = int(tp_ptr[int(r.edge_ptr[k])]), int(tp_ptr[int(r.edge_ptr[k + 1])])
        d = np.abs(r.T_pred[t0:t1] - r.T_true[t0:t1])
        rec["T_mae"] = float(d.mean()) if d.size else float("nan")


def _group_block_sums(sums: np.ndarray, nel: np.ndarray, groups: list[list[str]]) -> dict:
    """Per group ("all" and each subset): Σ over its structures of the block MAE, the structures having each
    block, and the pooled sums and element counts."""
    per, have = per_structure_block_mae(sums, nel)
    blocks = {}
    for key in ["all"] + sorted({g for gs in groups for g in gs}):
        m = np.array([key == "all" or key in g for g in groups], dtype=bool)
        blocks[key] = {"mae_sum": per[m].sum(axis=0), "n_struct": have[m].sum(axis=0).astype(np.int64),
                       "sum": sums[m].sum(axis=0), "count": nel[m].sum(axis=0).astype(np.int64)}
    return blocks


# --- partials → metrics ---------------------------------------------------------------------------------
def _merge_blocks(partials: Sequence[dict]) -> dict:
    out: dict = {}
    for p in partials:  # in range order: deterministic
        for key, b in p["blocks"].items():
            if key not in out:
                out[key] = {k: np.array(v, copy=True) for k, v in b.items()}
            else:
                for k, v in b.items():
                    out[key][k] = out[key][k] + v
    return out


def _scalar_metrics(recs: list[dict], kind: str, spinful: bool) -> dict:
    m: dict = {}
    if not recs:
        return m
    ids = [r["id"] for r in recs]
    col = lambda k: np.array([r.get(k, np.nan) for r in recs], dtype=np.float64)  # noqa: E731
    n_el = col("n_elements")
    if kind == "molecule":
        for key, name in _MOLECULE_MEANS:
            v = float(np.nanmean(col(key))) if np.any(~np.isnan(col(key))) else float("nan")
            m[name] = v * EV_TO_MEV
            m[name + TWIN_SUFFIX] = v * EV_TO_UEH
        m["psi"] = float(np.nanmean(col("psi")))
        m["psi_subspace"] = float(np.nanmean(col("psi_subspace")))
        mx, who = worst(col("H_mae"), ids)
        m["H_mae_max"] = mx * EV_TO_MEV
        m["H_mae_max_id"] = who
        m["H_mae_pooled"] = float(np.sum(col("H_sum")) / np.sum(n_el)) * EV_TO_MEV
    else:
        mean, pooled = mean_and_pooled(col("H_sum"), n_el)
        m["H_mae"], m["H_mae_pooled"] = mean * EV_TO_MEV, pooled * EV_TO_MEV
        mx, who = worst(col("H_mae"), ids)
        m["H_mae_max"], m["H_mae_max_id"] = mx * EV_TO_MEV, who
        if spinful:
            mean, pooled = mean_and_pooled(col("H_sum_reim"), 2 * n_el)
            m["H_mae_reim"], m["H_mae_reim_pooled"] = mean * EV_TO_MEV, pooled * EV_TO_MEV
    mean, pooled = mean_and_pooled(col("H_sum_gauge"), n_el)
    m["H_mae_gauge"], m["H_mae_gauge_pooled"] = mean * EV_TO_MEV, pooled * EV_TO_MEV
    mx, who = worst(col("H_mae_gauge"), ids)
    m["H_mae_gauge_max"], m["H_mae_gauge_max_id"] = mx * EV_TO_MEV, who
    m["gauge_mu_mean"] = float(np.mean(col("gauge_mu"))) * EV_TO_MEV
    if any("T_mae" in r for r in recs):
        m["T_mae"] = float(np.nanmean(col("T_mae")))
    return m


def _block_table(b: dict, layout: BasisLayout) -> tuple[list[dict], dict | None]:
    mean = np.where(b["n_struct"] > 0, b["mae_sum"] / np.maximum(b["n_struct"], 1), np.nan)
    pooled = np.where(b["count"] > 0, b["sum"] / np.maximum(b["count"], 1), np.nan)
    rows = []
    for g, (zi, zj, bb) in enumerate(block_index(layout)):
        if b["n_struct"][g] == 0:
            continue
        pair, label = block_label(layout, zi, zj, bb)
        rows.append({"pair": pair, "block": label, "Z": [zi, zj], "shells": [bb.p, bb.q], "l": [bb.lp, bb.lq],
                     "mae": float(mean[g]) * EV_TO_MEV, "mae_pooled": float(pooled[g]) * EV_TO_MEV,
                     "n_structures": int(b["n_struct"][g]), "n_elements": int(b["count"][g])})
    if not rows:
        return rows, None
    k = int(np.argmax([r["mae"] for r in rows]))
    return rows, rows[k]


def aggregate(partials: Sequence[dict], layout: BasisLayout, kind: str, reference: dict | None = None) -> dict:
    """Combine range partials (in range order) into ``metrics``, ``subsets``, ``per_block``, ``per_structure``.

    ``reference``: a scores dict of another run (e.g. the baseline); adds ``H_mae_max_on_reference`` (this
    run's MAE on the reference's worst structure) and ``H_mae_block_max_on_reference`` (on its worst block),
    overall and per subset where the reference has that subset.
    """
    recs = [r for p in partials for r in p["records"]]
    blocks = _merge_blocks(partials)
    metrics = _scalar_metrics(recs, kind, layout.spinful)
    per_block, worst_block = _block_table(blocks["all"], layout) if "all" in blocks else ([], None)
    if worst_block is not None:
        metrics["H_mae_block_max"] = worst_block["mae"]
        metrics["H_mae_block_max_block"] = f"{worst_block['pair']} {worst_block['block']}"
    subsets = {}
    for key in sorted(k for k in blocks if k != "all"):
        srecs = [r for r in recs if key in r["groups"]]
        sm = _scalar_metrics(srecs, kind, layout.spinful)
        rows, wb = _block_table(blocks[key], layout)
        if wb is not None:
            sm["H_mae_block_max"] = wb["mae"]
            sm["H_mae_block_max_block"] = f"{wb['pair']} {wb['block']}"
        subsets[key] = {"n_structures": len(srecs), "metrics": sm, "per_block": rows}
    if reference is not None:
        _apply_reference(metrics, recs, per_block, reference, None)
        for key, sub in subsets.items():
            if key in reference.get("subsets", {}):
                _apply_reference(sub["metrics"], [r for r in recs if key in r["groups"]], sub["per_block"],
                                 reference["subsets"][key], key)
    per_structure = []
    for r in recs:
        row = {"id": r["id"]}
        if "index" in r:
            row["index"] = r["index"]
        row.update(natoms=r["natoms"], nedges=r["nedges"], n_elements=r["n_elements"],
                   H_mae=r["H_mae"] * EV_TO_MEV, H_mae_gauge=r["H_mae_gauge"] * EV_TO_MEV,
                   gauge_mu=r["gauge_mu"] * EV_TO_MEV)
        for key in ("H_mae_reim", "H_mae_onsite", "H_mae_offsite", "eps_mae", "homo_err", "lumo_err", "gap_err"):
            if key in r:
                row[key] = r[key] * EV_TO_MEV
        for key in ("psi", "psi_subspace", "n_occ", "n_ao", "T_mae"):
            if key in r:
                row[key] = r[key]
        if r["groups"]:
            row["subsets"] = r["groups"]
        per_structure.append(row)
    return {"metrics": metrics, "subsets": subsets, "per_block": per_block, "per_structure": per_structure}


def _apply_reference(metrics: dict, recs: list[dict], per_block: list[dict], ref: dict, key) -> None:
    where = ref.get("_path", "--reference")
    rm = ref.get("metrics", {})
    wid = rm.get("H_mae_max_id")
    if wid is None:
        raise InputError(where, "names no worst structure (metrics.H_mae_max_id)" + (f" in subset {key}" if key else ""))
    mine = {r["id"]: r for r in recs}
    if wid not in mine:
        raise InputError(where, f"its worst structure {wid!r} is not among the scored predictions")
    metrics["H_mae_max_on_reference"] = mine[wid]["H_mae"] * EV_TO_MEV
    metrics["H_mae_max_reference_id"] = wid
    wb = rm.get("H_mae_block_max_block")
    if wb:
        row = next((b for b in per_block if f"{b['pair']} {b['block']}" == wb), None)
        if row is None:
            raise InputError(where, f"its worst block {wb!r} does not occur in the scored predictions")
        metrics["H_mae_block_max_on_reference"] = row["mae"]
        metrics["H_mae_block_max_reference_block"] = wb


# --- OGB-style evaluator for people's own training loops --------------------------------------------
class Evaluator:
    """Scores predictions held in memory with the same functions as ``hambench score``.

    >>> ev = Evaluator("molecule")                                   # doctest: +SKIP
    >>> ev.eval({"pred": [H_flat_0, H_flat_1], "truth": [s0, s1]})   # doctest: +SKIP
    {'H_mae': ..., 'eps_mae': ..., 'psi': ..., ...}

    ``truth``: :class:`~hambench.store._structure.Structure` objects (hambench order, eV, with S); ``pred``: for each,
    its predicted flat H blocks on the same edges (or a Structure whose ``H`` is the prediction). All molecules
    or crystals must share one layout (the union of their species is used). Returns the ``metrics`` dict of
    scores.json (units in :data:`UNITS`); ``eval(..., full=True)`` returns the whole result (per block, per
    structure).
    """

    def __init__(self, kind: str):
        if kind not in ("molecule", "crystal"):
            raise ValueError(f"kind must be 'molecule' or 'crystal', got {kind!r}")
        self.kind = kind

    @property
    def expected_input_format(self) -> str:
        return ("input_dict = {'pred': [flat H blocks (or Structure) per structure], "
                "'truth': [hambench.store._structure.Structure with H and S]}")

    @property
    def expected_output_format(self) -> str:
        return "dict of metric name -> float (units: hambench.scoring._metrics.UNITS)"

    def eval(self, input_dict: dict, full: bool = False) -> dict:
        preds, truths = list(input_dict["pred"]), list(input_dict["truth"])
        if len(preds) != len(truths):
            raise ValueError(f"{len(preds)} predictions for {len(truths)} structures")
        if not truths:
            raise ValueError("nothing to evaluate")
        truth = StoreRange.from_structures(truths)  # the union of their species; other shells are refused
        for p, s in zip(preds, truths):
            if np.size(getattr(p, "H", p)) != s.H.size:
                raise ValueError(f"structure {s.id!r}: {np.size(getattr(p, 'H', p))} predicted elements, its edges "
                                 f"need {s.H.size}")
            if s.S is None:
                raise ValueError(f"structure {s.id!r} has no overlap S")
        layout = truth.layout
        r = RangeArrays.of(truth, np.concatenate([np.asarray(getattr(p, "H", p)).reshape(-1) for p in preds]))
        out = aggregate([range_partial(r, layout, self.kind)], layout, self.kind)
        return out if full else out["metrics"]

"""Which numbers a leaderboard table shows, how they are labelled, and which direction is better.

The table shows every metric key present in any submission's ``scores.json`` (known keys first, in the order
of :data:`KNOWN`, then the rest alphabetically), then the worst structure and worst block (from
``per_structure`` / ``per_block``), then parameters and times from ``meta.yml``.

Direction: lower is better, except similarities and speed-ups — ψ (orbital cosine similarity) and any key
naming a speed-up, saving, similarity or accuracy. A ratio of SCF cycles (predicted-guess / baseline-guess) is
lower-better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Column", "KNOWN", "better_of", "label_of", "table_columns", "row_values", "rank_rows", "best_keys"]

#: key → (label, short description); the order is the table's column order
KNOWN: dict[str, tuple[str, str]] = {
    "H_mae": ("H MAE", "mean absolute error of all Hamiltonian matrix elements"),
    "H_mae_onsite": ("H MAE on-site", "MAE of the on-site (i = j, R = 0) blocks"),
    "H_mae_offsite": ("H MAE off-site", "MAE of the hopping blocks"),
    "H_mae_uEh": ("H MAE", "MAE of H in micro-Hartree"),
    "eps_mae": ("ε MAE", "MAE of the occupied orbital energies"),
    "eps_homo_mae": ("ε HOMO MAE", "MAE of the HOMO energy"),
    "eps_lumo_mae": ("ε LUMO MAE", "MAE of the LUMO energy"),
    "gap_mae": ("gap MAE", "MAE of the HOMO–LUMO gap"),
    "psi": ("ψ", "cosine similarity of the occupied orbital coefficients (1 = exact)"),
    "psi_cos": ("ψ", "cosine similarity of the occupied orbital coefficients (1 = exact)"),
    "scf_cycles_ratio": ("SCF cycles ratio", "SCF cycles from the predicted H / from the baseline guess"),
    "scf_speedup": ("SCF speed-up", "baseline SCF cycles / cycles from the predicted H"),
    "bands_mae": ("bands MAE", "MAE of band energies"),
    "equivariance_error": ("equivariance error", "max change of the prediction under rotation, rotated back"),
}

_HIGHER_TOKENS = ("speedup", "speed_up", "saving", "saved", "similarity", "cos", "accuracy", "r2")


def better_of(key: str) -> str:
    """``"higher"`` or ``"lower"``: which direction of metric ``key`` is better.

    >>> better_of("psi"), better_of("scf_speedup"), better_of("scf_cycles_ratio"), better_of("H_mae")
    ('higher', 'higher', 'lower', 'lower')
    """
    k = key.lower()
    if k == "psi" or k.startswith("psi_") or any(t in k for t in _HIGHER_TOKENS):
        return "higher"
    return "lower"


def label_of(key: str) -> str:
    if key in KNOWN:
        return KNOWN[key][0]
    label = key.replace("_", " ")
    return label.replace("eps", "ε").replace("psi", "ψ")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    unit: str
    better: str                 # "lower" | "higher" | "" (not ranked: text columns)
    description: str = ""
    source: str = "metrics"     # metrics | worst | meta | model

    def to_dict(self) -> dict:
        return {"key": self.key, "label": self.label, "unit": self.unit, "better": self.better,
                "description": self.description}


def table_columns(submissions) -> list[Column]:
    """Columns of one dataset's table, from the union of the submissions' metric keys."""
    keys, units = set(), {}
    has_struct = has_block = False
    for s in submissions:
        keys.update(k for k, v in s.scores.get("metrics", {}).items() if _is_number(v))
        units.update(s.scores.get("units", {}) or {})
        has_struct |= bool(s.scores.get("per_structure"))
        has_block |= bool(s.scores.get("per_block"))
    order = [k for k in KNOWN if k in keys] + sorted(keys - set(KNOWN))
    cols = [Column("model", "Model", "", "", "model name (links to its page)", "model")]
    for k in order:
        cols.append(Column(k, label_of(k), _unit(k, units), better_of(k), KNOWN.get(k, ("", ""))[1]))
    h_unit = _unit("H_mae", units)
    if has_struct:
        cols.append(Column("worst_structure_H_mae", "worst structure", h_unit, "lower",
                           "largest per-structure H MAE (structure id in the tooltip)", "worst"))
    if has_block:
        cols.append(Column("worst_block_mae", "worst block", h_unit, "lower",
                           "largest per-block MAE (element pair and shell pair in the tooltip)", "worst"))
    cols += [
        Column("parameters", "parameters", "", "lower", "number of trained parameters", "meta"),
        Column("inference_time_per_structure_s", "inference time", "s/structure", "lower",
               "inference time per structure (hardware on the model page)", "meta"),
        Column("training_time_s", "training time", "s", "lower", "training wall time", "meta"),
    ]
    return cols


def _unit(key: str, units: dict) -> str:
    if key in units:
        return str(units[key])
    for prefix in ("H", "eps", "gap", "bands", "equivariance"):  # scores.json may give units per quantity
        if key.startswith(prefix) and prefix in units:
            return str(units[prefix])
    return ""


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def row_values(sub, columns: list[Column]) -> tuple[dict, dict]:
    """(values, notes) of one submission: numbers per column key, and tooltip notes (e.g. the worst id)."""
    vals: dict = {"model": sub.model}
    notes: dict = {}
    metrics = sub.scores.get("metrics", {})
    for c in columns:
        if c.source == "metrics":
            v = metrics.get(c.key)
            vals[c.key] = float(v) if _is_number(v) else None
    per_s = [p for p in sub.scores.get("per_structure", []) or [] if _is_number(p.get("H_mae"))]
    if per_s:
        w = max(per_s, key=lambda p: p["H_mae"])
        vals["worst_structure_H_mae"] = float(w["H_mae"])
        notes["worst_structure_H_mae"] = f"structure {w.get('id')}"
    per_b = [p for p in sub.scores.get("per_block", []) or [] if _is_number(p.get("mae"))]
    if per_b:
        w = max(per_b, key=lambda p: p["mae"])
        vals["worst_block_mae"] = float(w["mae"])
        notes["worst_block_mae"] = f"{w.get('pair', '?')} {w.get('block', '')}".strip()
    m = sub.meta
    vals["parameters"] = int(m["parameters"]) if "parameters" in m else None
    vals["inference_time_per_structure_s"] = float(m.get("inference", {}).get("time_per_structure_s")) \
        if m.get("inference", {}).get("time_per_structure_s") is not None else None
    vals["training_time_s"] = float(m["training"]["time_s"]) if m.get("training", {}).get("time_s") is not None \
        else None
    return vals, notes


def rank_rows(rows: list[dict], primary: str, columns: list[Column]) -> list[dict]:
    """Rows sorted by the primary metric (its better direction first; missing last; ties by model name)."""
    better = next((c.better for c in columns if c.key == primary), "lower") or "lower"
    sign = -1.0 if better == "higher" else 1.0

    def key(r):
        v = r.get(primary)
        return (v is None, sign * v if v is not None else 0.0, r["model"])

    return sorted(rows, key=key)


def best_keys(rows: list[dict], columns: list[Column]) -> dict[str, float]:
    """The best value of every ranked column whose values differ (ties share the mark)."""
    best = {}
    for c in columns:
        if not c.better:
            continue
        vals = [r[c.key] for r in rows if r.get(c.key) is not None]
        if len(set(vals)) > 1:
            best[c.key] = min(vals) if c.better == "lower" else max(vals)
    return best

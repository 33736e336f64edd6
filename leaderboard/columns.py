"""Which numbers a leaderboard table shows, how they are labelled, and which direction is better.

The table shows every numeric metric key present in any submission's ``scores.json`` (keys of the metric
catalogue, :data:`hambench.scoring.CATALOGUE`, first in its display order, then the rest alphabetically; µEh twins
of meV columns and facts about the run only in table.json/CSV), the worst structure and worst block
(``H_mae_max`` / ``H_mae_block_max``, or derived from ``per_structure`` / ``per_block``), then parameters and
times from ``meta.yml``. String metrics ``<key>_id`` / ``<key>_block`` become the tooltip of ``<key>``.

Labels, tooltips and directions are the catalogue's (:func:`~hambench.scoring.better_of`,
:func:`~hambench.scoring.label_of`): lower is better, except ψ, SCF error-level ratios and any key naming a speed-up,
similarity or accuracy (higher). Facts about the data or the run (counts, standard deviations, baseline cycles and
times, the optimal ratio, the gauge shift) are sortable but never marked best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hambench.scoring._catalogue import CATALOGUE, TWIN_SUFFIX, better_of, label_of

__all__ = ["Column", "better_of", "label_of", "table_columns", "row_values", "rank_rows", "best_keys"]


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    unit: str
    better: str                 # "lower" | "higher" | "" (not ranked)
    description: str = ""
    source: str = "metrics"     # metrics | worst (derived from per_structure/per_block) | meta | model
    hidden: bool = False        # only in table.json / table.csv (µEh twins of meV columns)

    def to_dict(self) -> dict:
        return {"key": self.key, "label": self.label, "unit": self.unit, "better": self.better,
                "description": self.description}


#: string metrics that annotate a numeric one: ``H_mae_max_id`` names the structure of ``H_mae_max``
_NOTE_SUFFIXES = ("_id", "_block")


def table_columns(submissions) -> list[Column]:
    """Columns of one dataset's table, from the union of the submissions' numeric metric keys."""
    keys, units, better = set(), {}, {}
    has_struct = has_block = False
    for s in submissions:
        keys.update(k for k, v in s.scores.get("metrics", {}).items() if _is_number(v) or v is None)
        units.update(s.scores.get("units", {}) or {})
        better.update(s.scores.get("better", {}) or {})
        has_struct |= bool(s.scores.get("per_structure"))
        has_block |= bool(s.scores.get("per_block"))
    keys = {k for k in keys if any(_is_number(s.scores.get("metrics", {}).get(k)) for s in submissions)}
    order = [k for k in CATALOGUE if k in keys] + sorted(keys - set(CATALOGUE))
    cols = [Column("model", "Model", "", "", "model name (links to its page)", "model")]
    for k in order:
        direction = better_of(k, better)
        # the HTML table leaves out µEh twins and facts about the run (counts, std, baseline cycles/times);
        # table.json / table.csv and the model pages keep them
        hidden = (k.endswith(TWIN_SUFFIX) and k[: -len(TWIN_SUFFIX)] in keys) or direction == ""
        description = CATALOGUE[k].description if k in CATALOGUE else ""
        cols.append(Column(k, label_of(k), _unit(k, units), direction, description, hidden=hidden))
    h_unit = _unit("H_mae", units)
    for key, derived, present in (("H_mae_max", "worst_structure_H_mae", has_struct),
                                  ("H_mae_block_max", "worst_block_mae", has_block)):
        if present and key not in keys:  # older scores: the worst from the per-structure / per-block tables
            m = CATALOGUE[key]
            cols.append(Column(derived, m.label, h_unit, m.better, m.description, "worst"))
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
            for suffix in _NOTE_SUFFIXES:
                note = metrics.get(c.key + suffix)
                if isinstance(note, str) and note:
                    notes[c.key] = f"structure {note}" if suffix == "_id" else note
    keys = {c.key for c in columns}
    per_s = [p for p in sub.scores.get("per_structure", []) or [] if _is_number(p.get("H_mae"))]
    if per_s and "worst_structure_H_mae" in keys:
        w = max(per_s, key=lambda p: p["H_mae"])
        vals["worst_structure_H_mae"] = float(w["H_mae"])
        notes["worst_structure_H_mae"] = f"structure {w.get('id')}"
    per_b = [p for p in sub.scores.get("per_block", []) or [] if _is_number(p.get("mae"))]
    if per_b and "worst_block_mae" in keys:
        w = max(per_b, key=lambda p: p["mae"])
        vals["worst_block_mae"] = float(w["mae"])
        notes["worst_block_mae"] = f"{w.get('pair', '?')} {w.get('block', '')}".strip()
    m = sub.meta
    inf, tr = m.get("inference") or {}, m.get("training") or {}
    vals["parameters"] = int(m["parameters"]) if m.get("parameters") is not None else None
    vals["inference_time_per_structure_s"] = (float(inf["time_per_structure_s"])
                                              if inf.get("time_per_structure_s") is not None else None)
    vals["training_time_s"] = float(tr["time_s"]) if tr.get("time_s") is not None else None
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

"""Which numbers a leaderboard table shows, how they are labelled and grouped, and which get a best mark.

The table has every numeric metric key present in any submission's ``scores.json``, grouped by the metric
catalogue's topic (:data:`hambench.scoring.TOPICS`: H, orbitals, per-structure, per-block, SCF, bands,
equivariance; within a topic in catalogue order; keys the catalogue does not know last, alphabetically), the
worst structure and worst block (``H_mae_max`` / ``H_mae_block_max``, or derived from ``per_structure`` /
``per_block``), then the model's parameters and times from ``meta.yml`` and a links column (paper, code).
String metrics ``<key>_id`` / ``<key>_block`` become the tooltip of ``<key>``. µEh twins of meV columns and facts
about the run (counts, spreads, baselines) are only in table.json/CSV and on the model pages.

The *headline* columns (the catalogue's headline metrics, the dataset's primary metric, parameters and links)
are the table people see first; the rest are one click away. Labels, units, tooltips and directions are the
catalogue's (:func:`~hambench.scoring.label_of`, :func:`~hambench.scoring.better_of`). Only accuracy metrics are
*ranked* (best value marked): never parameter counts, facts or wall times. Wall times are *load-dependent*
(:func:`~hambench.scoring.is_load_dependent`) and carry a note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from hambench.scoring._catalogue import (CATALOGUE, TOPICS, TWIN_SUFFIX, better_of, is_load_dependent, is_ranked,
                                         label_of)

__all__ = ["Column", "GROUPS", "better_of", "label_of", "table_columns", "row_values", "rank_rows", "best_keys",
           "safe_url"]

#: column groups in table order: the catalogue's topics, then the metrics it does not know, then the model's facts
GROUPS = (*TOPICS, "other", "model")
_GROUP_TITLES = {"H": "Hamiltonian", "orbitals": "orbitals", "per-structure": "worst structure",
                 "per-block": "worst block", "SCF": "SCF acceleration", "bands": "bands",
                 "equivariance": "equivariance", "other": "other", "model": "model"}


@dataclass(frozen=True)
class Column:
    """One column of a dataset's table (``source``: metrics | worst | meta | model | links)."""

    key: str
    label: str
    unit: str
    better: str                 # "lower" | "higher" | "" (no direction): the first sort direction
    description: str = ""
    source: str = "metrics"     # metrics | worst (derived from per_structure/per_block) | meta | model | links
    hidden: bool = False        # only in table.json / table.csv (µEh twins of meV columns, facts)
    ranked: bool = False        # its best value is marked (accuracy metrics only)
    load_dependent: bool = False  # a wall time: depends on the hardware and its load
    headline: bool = False      # in the table people see first
    group: str = "other"        # one of GROUPS

    @property
    def group_title(self) -> str:
        return _GROUP_TITLES.get(self.group, self.group)

    @property
    def integer(self) -> bool:
        return self.key == "parameters"

    def to_dict(self) -> dict:
        return {"key": self.key, "label": self.label, "unit": self.unit, "better": self.better,
                "description": self.description, "ranked": self.ranked, "load_dependent": self.load_dependent,
                "headline": self.headline, "group": self.group}


#: string metrics that annotate a numeric one: ``H_mae_max_id`` names the structure of ``H_mae_max``
_NOTE_SUFFIXES = ("_id", "_block")
_CATALOGUE_POSITION = {k: i for i, k in enumerate(CATALOGUE)}


def _order_key(key: str):
    m = CATALOGUE.get(key)
    if m is None:
        return (GROUPS.index("other"), 0, key)
    return (GROUPS.index(m.topic), _CATALOGUE_POSITION[key], key)


def _metric_column(k: str, keys: set, units: dict, better: dict, primary: str) -> Column:
    direction = better_of(k, better)
    m = CATALOGUE.get(k)
    # the HTML table leaves out µEh twins and facts about the run (counts, std, baseline cycles/times);
    # table.json / table.csv and the model pages keep them
    hidden = (k.endswith(TWIN_SUFFIX) and k[: -len(TWIN_SUFFIX)] in keys) or (direction == "" and k != primary)
    return Column(k, label_of(k), m.unit if m is not None else _unit(k, units), direction,
                  m.description if m is not None else "", hidden=hidden, ranked=is_ranked(k, better),
                  load_dependent=is_load_dependent(k), headline=(m is not None and m.headline) or k == primary,
                  group=m.topic if m is not None else "other")


def table_columns(submissions, primary: str = "H_mae") -> list[Column]:
    """Columns of one dataset's table, from the union of the submissions' numeric metric keys (``primary``: the
    dataset's ranking metric, always a headline column)."""
    keys, units, better = set(), {}, {}
    has_struct = has_block = False
    for s in submissions:
        keys.update(k for k, v in s.scores.get("metrics", {}).items() if _is_number(v) or v is None)
        units.update(s.scores.get("units", {}) or {})
        better.update(s.scores.get("better", {}) or {})
        has_struct |= bool(s.scores.get("per_structure"))
        has_block |= bool(s.scores.get("per_block"))
    keys = {k for k in keys if any(_is_number(s.scores.get("metrics", {}).get(k)) for s in submissions)}
    cols = [_metric_column(k, keys, units, better, primary) for k in sorted(keys, key=_order_key)]
    h_unit = CATALOGUE["H_mae"].unit
    for key, derived, present in (("H_mae_max", "worst_structure_H_mae", has_struct),
                                  ("H_mae_block_max", "worst_block_mae", has_block)):
        if present and key not in keys:  # older scores: the worst from the per-structure / per-block tables
            m = CATALOGUE[key]
            cols.append(Column(derived, m.label, h_unit, m.better, m.description, "worst", ranked=True,
                               group=m.topic))
    cols.sort(key=lambda c: GROUPS.index(c.group))  # stable: catalogue order inside a group
    if not any(c.headline and not c.hidden for c in cols) and cols:  # a board of unknown keys: show the first
        cols[0] = replace(cols[0], headline=True, hidden=False)
    return [
        Column("model", "Model", "", "", "model name (links to its page)", "model", headline=True, group="model"),
        *cols,
        Column("parameters", "parameters", "", "", "number of trained parameters (not ranked)", "meta",
               headline=True, group="model"),
        Column("inference_time_per_structure_s", "inference time", "s/structure", "lower",
               "inference time per structure as measured by the submitter (hardware on the model page)", "meta",
               load_dependent=True, group="model"),
        Column("training_time_s", "training time", "s", "lower", "training wall time as measured by the submitter",
               "meta", load_dependent=True, group="model"),
        Column("links", "links", "", "", "the model's paper and code", "links", headline=True, group="model"),
    ]


def _unit(key: str, units: dict) -> str:
    if key in units:
        return str(units[key])
    for prefix in ("H", "eps", "gap", "bands", "equivariance"):  # scores.json may give units per quantity
        if key.startswith(prefix) and prefix in units:
            return str(units[prefix])
    return ""


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def safe_url(u) -> str | None:
    """Only http(s) links reach a page (the schema already requires it; this guards hand-edited boards)."""
    return u if isinstance(u, str) and u.startswith(("http://", "https://")) else None


def row_values(sub, columns: list[Column]) -> tuple[dict, dict]:
    """(values, notes) of one submission: numbers per column key, and tooltip notes (e.g. the worst id); the
    links column's value is a list of (name, url)."""
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
    vals["links"] = [(k, safe_url(m.get(k))) for k in ("paper", "code") if safe_url(m.get(k))]
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
    """The best value of every ranked column (accuracy metrics) whose values differ (ties share the mark)."""
    best = {}
    for c in columns:
        if not c.ranked or not c.better:
            continue
        vals = [r[c.key] for r in rows if r.get(c.key) is not None]
        if len(set(vals)) > 1:
            best[c.key] = min(vals) if c.better == "lower" else max(vals)
    return best

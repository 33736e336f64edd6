"""What a model page shows: its metrics grouped by topic, each with its label, value, unit and definition.

Sections follow the order people read a Hamiltonian model in (H, orbitals, SCF, bands, equivariance, then the
per-block and per-structure extremes, which carry the worst-blocks and worst-structures tables), each metric with
the catalogue's label, unit and definition (:func:`hambench.scoring.describe`); a molecule metric's µEh twin shares
its row; string metrics (``H_mae_max_id`` …) become the note of the number they annotate. Keys the catalogue does
not know form a last section "other".
"""

from __future__ import annotations

import math

from hambench.scoring._catalogue import CATALOGUE, TWIN_SUFFIX, describe, is_load_dependent, label_of
from hambench.scoring._format import column_format

__all__ = ["PAGE_TOPICS", "metric_sections", "subset_rows"]

#: topics of a model page, in page order, with their headings
PAGE_TOPICS = (("H", "Hamiltonian"), ("orbitals", "Orbitals"), ("SCF", "SCF acceleration"), ("bands", "Bands"),
               ("equivariance", "Equivariance"), ("per-block", "Per block"),
               ("per-structure", "Per structure"), ("other", "Other"))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _notes(metrics: dict) -> dict[str, str]:
    """``{numeric key: text}`` from the string metrics that annotate it (``H_mae_max_id`` → ``H_mae_max``)."""
    out = {}
    for k, v in metrics.items():
        if not isinstance(v, str) or not v:
            continue
        for suffix, what in (("_reference_id", "structure "), ("_reference_block", ""), ("_id", "structure "),
                             ("_block", "")):
            if k.endswith(suffix):
                base = k[: -len(suffix)]
                base = base + "_on_reference" if suffix.startswith("_reference") else base
                out[base] = f"{what}{v}"
                break
    return out


def _row(key: str, metrics: dict, units: dict, notes: dict) -> dict:
    m = CATALOGUE.get(key)
    v = metrics.get(key)
    twin = key + TWIN_SUFFIX
    tv = metrics.get(twin)
    role = m.role if m is not None else ("timing" if is_load_dependent(key) else "")
    return {
        "key": key, "label": label_of(key), "unit": m.unit if m is not None else str(units.get(key, "")),
        "text": column_format([v])(v), "twin": column_format([tv])(tv) if _number(tv) else "",
        "twin_unit": CATALOGUE[twin].unit if twin in CATALOGUE else str(units.get(twin, "")),
        "definition": describe(key), "note": notes.get(key, ""), "role": role,
        "better": m.better if m is not None else "",
    }


def metric_sections(scores: dict) -> list[dict]:
    """``[{"topic", "title", "rows": [{key, label, text, unit, twin, twin_unit, definition, note, role, better}]}]``
    of one scores.json, in :data:`PAGE_TOPICS` order (empty topics left out, except per-block and per-structure
    when scores.json has those tables)."""
    metrics = scores.get("metrics") or {}
    units = scores.get("units") or {}
    notes = _notes(metrics)
    keys = [k for k in metrics if (_number(metrics[k]) or metrics[k] is None) and not
            (k.endswith(TWIN_SUFFIX) and k[: -len(TWIN_SUFFIX)] in metrics)]
    known = [k for k in CATALOGUE if k in keys]
    by_topic: dict[str, list[str]] = {}
    for k in known:
        by_topic.setdefault(CATALOGUE[k].topic, []).append(k)
    by_topic["other"] = sorted(k for k in keys if k not in CATALOGUE)
    out = []
    tables = {"per-block": bool(scores.get("per_block")), "per-structure": bool(scores.get("per_structure"))}
    for topic, title in PAGE_TOPICS:
        rows = [_row(k, metrics, units, notes) for k in by_topic.get(topic, [])]
        if rows or tables.get(topic):
            out.append({"topic": topic, "title": title, "rows": rows})
    return out


def subset_rows(sub: dict) -> list[dict]:
    """The numeric metrics of one subset of scores.json, labelled, in catalogue order (unknown keys last)."""
    metrics = sub.get("metrics") or {}
    notes = _notes(metrics)
    keys = [k for k in metrics if _number(metrics[k]) and not k.endswith(TWIN_SUFFIX)]
    order = [k for k in CATALOGUE if k in keys] + sorted(k for k in keys if k not in CATALOGUE)
    return [_row(k, metrics, {}, notes) for k in order]

"""``hambench score``: every metric of a prediction store against its truth, into one scores.json.

Flow::

    open_predictions(PREDS)              validates against the truth (checksum, ids, edges, sizes, finite)
    structure ranges ──run_tasks──▶      metrics.range_partial per range (local processes / Dask scheduler)
    partials, in range order ──▶         metrics.aggregate → metrics, subsets, per_block, per_structure
    --scf N / --bands / --plots ──▶      hambench.scoring._scf / hambench.scoring._bands / hambench.scoring._plots
    scores.json (atomic), a terminal table of at most 100 columns

Ranges are cut from the data alone (at most :data:`RANGE_STRUCTURES` structures or about
:data:`RANGE_ELEMENTS` matrix elements each), never from the number of workers, and their partials are combined
in range order: scores.json is byte-identical for any ``--workers`` or scheduler.

scores.json (``scores_version`` 1)::

    {"hambench_version", "scores_version", "kind", "spinful", "truth": {path, checksum},
     "predictions": {path, checksum}, "model", "split", "n_structures", "units": {metric: unit},
     "definitions": {...}, "metrics": {flat snake_case: value}, "subsets": {"split:subset": {n_structures,
     metrics, per_block}}, "per_block": [{pair, block, Z, shells, l, mae, mae_pooled, n_structures,
     n_elements}], "per_structure": [{id, index, H_mae, ...}], "reference": {path, checksum} | null,
     "scf": {...} (--scf), "bands": {...} (--bands), "plots": [files] (--plots)}

NaN (e.g. a LUMO error of a molecule without virtual orbitals) is written as null.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
from hambench import __version__
from hambench.atomic import check_output, write_text
from hambench.errors import InputError
from hambench.parallel import run_tasks
from hambench.store import Predictions, gather, open_predictions, open_store
from . import _bands, _plots, _scf
from ._catalogue import CATALOGUE, TWIN_SUFFIX, console_keys, definitions_of, units_of
from ._console import CONSOLE_WIDTH, TextColumn, fit_tables
from ._format import column_format
from ._metrics import RangeArrays, aggregate, range_partial

__all__ = ["SCORES_VERSION", "score", "plan_ranges", "score_range", "load_scores", "write_scores", "json_safe",
           "table", "tables", "summary_lines"]

SCORES_VERSION = 1
#: a range (one task) holds at most this many structures …
RANGE_STRUCTURES = 16
#: … or about this many matrix elements of H
RANGE_ELEMENTS = 1 << 19

# --- ranges and the per-range task -----------------------------------------------------------------------
def plan_ranges(preds: Predictions) -> list[tuple[int, int]]:
    """``(a, b)``: prediction structures ``a..b-1`` of each task, cut by :data:`RANGE_STRUCTURES` and
    :data:`RANGE_ELEMENTS` only (from the data, never from the number of workers)."""
    p = preds.store.ptr
    h_sizes = p.H[p.edge[1:]] - p.H[p.edge[:-1]]
    out = []
    start, acc = 0, 0
    n = len(preds)
    for t in range(n):
        acc += int(h_sizes[t])
        if t + 1 - start >= RANGE_STRUCTURES or acc >= RANGE_ELEMENTS or t + 1 == n:
            out.append((start, t + 1))
            start, acc = t + 1, 0
    return out


_OPEN: dict[str, object] = {}


def _open(path: str):
    st = _OPEN.get(path)
    if st is None:
        st = _OPEN[path] = open_store(path)
    return st


def score_range(preds_path: str, truth_path: str, a: int, b: int, truth_index: list[int]) -> dict:
    """Partial metrics of prediction structures ``a..b-1`` (truth structures ``truth_index``): runs in a worker."""
    q = _open(preds_path)
    t = _open(truth_path)
    with_T = q.meta.counts.T > 0
    dt = gather(t, truth_index, blocks=("H", "S", "T") if with_T else ("H", "S"))
    dq = q.read_range(a, b, blocks=("H", "T") if with_T else ("H",))
    r = RangeArrays.of(dt, dq.H, dq.T if with_T else None, index=True)
    return range_partial(r, t.layout, t.kind)


# --- scores.json -----------------------------------------------------------------------------------------
def json_safe(x):
    """A JSON-safe copy: NumPy scalars and arrays → Python, NaN/Inf → None, paths → str, keys → str."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return [json_safe(v) for v in x.tolist()]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Path):
        return str(x)
    return x


def write_scores(scores: dict, path) -> Path:
    """Write scores.json atomically (:func:`hambench.atomic.write_text`)."""
    text = json.dumps(json_safe(scores), indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    return write_text(path, text)


def load_scores(path) -> dict:
    """A scores.json (e.g. the ``--reference`` run); :class:`InputError` if missing, not JSON, another version."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such scores file")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(path, f"is not a JSON scores file ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict) or "metrics" not in d:
        raise InputError(path, "is not a hambench scores file (no 'metrics')")
    if d.get("scores_version") != SCORES_VERSION:
        raise InputError(path, f"scores version {d.get('scores_version')}, this hambench reads {SCORES_VERSION}")
    d["_path"] = str(path)
    d["_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return d


# --- the command -----------------------------------------------------------------------------------------
def score(preds, truth=None, output=None, *, workers: int = 1, scheduler: str | None = None, reference=None,
          scf: int | None = None, bands: bool = False, kpath=None, plots=None, quiet: bool = False,
          seed: int = 43) -> dict:
    """Score the prediction store ``preds`` (see the module docstring); returns the scores dict.

    ``truth`` overrides the truth store recorded in the predictions; ``output`` is the scores.json to write
    (atomically; nothing is written on bad input); ``reference`` a scores.json of another run (its worst
    structure and block); ``scf`` = N molecules for SCF acceleration; ``bands``/``kpath`` band errors of
    crystals; ``plots`` a folder for PNG + SVG plots.
    """
    if workers < 1:
        raise InputError(None, f"--workers must be >= 1, got {workers}")
    if output is not None:
        check_output(output, folder=False, what="the scores.json to write")
    if plots is not None:
        check_output(plots, folder=True, flag="--plots", what="a folder for the plots")
    if scf is not None and int(scf) < 1:
        raise InputError(None, f"--scf needs a positive number of molecules, got {scf}")
    if kpath is not None:
        bands = True
        if not Path(kpath).is_file():
            raise InputError(kpath, "no such k-path file")
    ref = load_scores(reference) if reference is not None else None
    p = open_predictions(preds, truth)
    kind = p.kind
    if scf is not None and kind != "molecule":
        raise InputError(p.truth.path, f"--scf (SCF acceleration) needs a molecule store; this is a {kind} store")
    if bands and kind != "crystal":
        raise InputError(p.truth.path, f"--bands needs a crystal store; this is a {kind} store")
    if ref is not None and ref.get("kind") not in (None, kind):
        raise InputError(ref["_path"], f"scores a {ref.get('kind')} store; these predictions are {kind}")
    layout = p.truth.layout
    ranges = plan_ranges(p)
    args = [(str(p.store.path), str(p.truth.path), a, b, [int(x) for x in p.truth_index[a:b]]) for a, b in ranges]
    partials = run_tasks(score_range, args, workers=workers, scheduler=scheduler, quiet=quiet, label="score",
                         sizes=[b - a for a, b in ranges], unit="structures")
    result = aggregate(partials, layout, kind, reference=ref)
    metrics = result["metrics"]
    scores = {
        "hambench_version": __version__,
        "scores_version": SCORES_VERSION,
        "kind": kind,
        "spinful": bool(p.spinful),
        "truth": {"path": str(p.truth.path.resolve()), "checksum": p.truth_checksum},
        "predictions": {"path": str(p.path.resolve()), "checksum": p.checksum},
        "model": p.model,
        "split": p.split,
        "n_structures": len(p),
        "units": units_of(metrics),
        "definitions": definitions_of(metrics),
        "metrics": metrics,
        "subsets": result["subsets"],
        "per_block": result["per_block"],
        "per_structure": result["per_structure"],
        "reference": None if ref is None else {"path": str(Path(ref["_path"]).resolve()), "sha256": ref["_sha256"]},
    }
    if scf is not None:
        cache = None if output is None else Path(output).with_name(Path(output).name + ".scf_cache")
        scores["scf"] = _scf.scf_acceleration(p.truth, p, int(scf), seed=seed, workers=workers, scheduler=scheduler,
                                         quiet=quiet, cache_dir=cache)
        _merge_section(scores, scores["scf"])
    if bands:
        scores["bands"] = _bands.band_errors(p.truth, p, kpath=kpath, quiet=quiet)
        _merge_section(scores, scores["bands"])
    if plots is not None:
        files = _plots.make_plots(scores, p.truth, p, plots)
        scores["plots"] = [str(f) for f in files]
    if output is not None:
        write_scores(scores, output)
    return json_safe(scores)


def _merge_section(scores: dict, section: dict) -> None:
    """Copy an extra section's flat metrics and units into the top level (the leaderboard reads those)."""
    for k, v in (section.get("metrics") or {}).items():
        scores["metrics"].setdefault(k, v)
    for k, v in (section.get("units") or {}).items():
        scores["units"].setdefault(k, v)


# --- the terminal table ---------------------------------------------------------------------------------
def _fmt(v) -> str:
    """One number on its own (the summary lines)."""
    return column_format([v])(v) if not isinstance(v, str) else v


def _shown_keys(scores: dict, all_metrics: bool) -> list[str]:
    m = scores["metrics"]
    if not all_metrics:
        return [k for k in console_keys(scores["kind"]) if m.get(k) is not None]
    numbers = [k for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    keys = [k for k in CATALOGUE if k in numbers] + sorted(k for k in numbers if k not in CATALOGUE)
    return [k for k in keys if not (k.endswith(TWIN_SUFFIX) and k[: -len(TWIN_SUFFIX)] in m)]


def tables(scores: dict, all_metrics: bool = False, width: int = CONSOLE_WIDTH) -> list:
    """``hambench score``'s table as ``rich`` tables of at most ``width`` columns: one row per metric the catalogue
    shows for this kind of store (``all_metrics``: every number of scores.json), columns for all structures and
    each subset (wrapped into several tables when they do not fit); one number format per metric; a molecule
    metric's µEh twin shares its cell."""
    m = scores["metrics"]
    subs = scores.get("subsets", {})
    units = scores["units"]
    keys = _shown_keys(scores, all_metrics)
    groups = [("all", scores["n_structures"], m)] + [(k, v["n_structures"], v["metrics"]) for k, v in subs.items()]
    cells: list[list[str]] = [[] for _ in groups]
    unit_cells = []
    for k in keys:
        twin = k + TWIN_SUFFIX
        f = column_format([g[2].get(k) for g in groups])
        ft = column_format([g[2].get(twin) for g in groups]) if twin in m else None
        unit_cells.append(f"{units.get(k, '')} | {units.get(twin, '')}" if ft else units.get(k, ""))
        for col, g in zip(cells, groups):
            col.append(f"{f(g[2].get(k))} | {ft(g[2].get(twin))}" if ft else f(g[2].get(k)))
    key_cols = [TextColumn("metric", keys, justify="left"), TextColumn("unit", unit_cells, justify="left")]
    value_cols = [TextColumn(f"{name} ({n})", col) for (name, n, _), col in zip(groups, cells)]
    title = f"hambench score — {scores['kind']} ({scores['n_structures']} structures)"
    n_more = len(_shown_keys(scores, True)) - len(keys)
    caption = None if all_metrics or n_more <= 0 else f"{n_more} more metrics: --all (every one in scores.json)"
    return fit_tables(title, key_cols, value_cols, width, caption=caption)


def table(scores: dict):
    """The first of :func:`tables` (all of it when the subsets fit in :data:`CONSOLE_WIDTH` columns)."""
    return tables(scores)[0]


def summary_lines(scores: dict) -> list[str]:
    m = scores["metrics"]
    out = []
    if m.get("H_mae_max_id"):
        out.append(f"worst structure: {m['H_mae_max_id']} ({_fmt(m['H_mae_max'])} meV)")
    if m.get("H_mae_block_max_block"):
        out.append(f"worst block: {m['H_mae_block_max_block']} ({_fmt(m['H_mae_block_max'])} meV)")
    if m.get("H_mae_max_reference_id"):
        out.append(f"on the reference's worst structure {m['H_mae_max_reference_id']}: "
                   f"{_fmt(m['H_mae_max_on_reference'])} meV")
    return out

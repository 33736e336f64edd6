"""``hambench leaderboard submit``: validate a submission, recompute its scores, record it atomically.

Order of checks (nothing is written until all pass; each failure is one :class:`InputError` line):

1. ``meta.yml`` against the schema (unknown keys, types, missing fields, unsafe model/dataset names);
2. the dataset is on the board, and ``submissions/<model>/<dataset>`` stays inside the board (no links);
   an existing submission is only replaced with ``replace=True``;
3. the predictions open and validate against their truth store (:func:`hambench.store._predictions.open_predictions`:
   ids, atoms, edges — missing or extra —, block sizes, NaN/Inf, the truth unchanged since prediction);
4. the truth's content checksum and kind equal the board's dataset entry, and the predicted split is the
   board's test split (when the board names one);
5. the scores are recomputed by hambench (the board's scoring options for that dataset), plus the equivariance
   error when the predictions hold rotated copies (:mod:`~hambench.leaderboard.equivariance`); numbers the
   submitter states (``metrics`` in ``meta.yml`` or a ``scores.json`` passed as ``claimed``) must equal them.

The submission (``meta.yml`` as given, the recomputed ``scores.json``, the plots, and ``record.json`` sealing
them with the truth's and predictions' checksums: :mod:`~hambench.leaderboard.record`) is written to a hidden
``.<dataset>.partial-*`` folder and swapped into place in one step (:func:`hambench.atomic.replace_dir`).
"""

from __future__ import annotations

import json
import math
import shutil
import uuid
from pathlib import Path

from hambench.atomic import replace_dir
from hambench.errors import InputError
from hambench.scoring._catalogue import is_timing
from hambench.scoring._plots import make_plots
from hambench.scoring._score import json_safe, score
from hambench.store import open_predictions, select_split, store_checksum

from .board import Board, Submission, open_board, read_scores
from .equivariance import prediction_equivariance
from .record import check_scores_chain, make_record, write_record
from .schema import load_yaml_strict, validate_meta

__all__ = ["submit", "recompute_scores", "check_claimed", "CLAIM_RTOL", "CLAIM_ATOL"]

#: a stated metric must match the recomputed one to this relative (or absolute) tolerance: the recomputation
#: runs the same float64 code on the same inputs, so only last-digit rounding of a printed number may differ
CLAIM_RTOL = 1e-6
CLAIM_ATOL = 1e-12


def recompute_scores(preds, truth, options: dict, plots_dir: Path | None = None) -> dict:
    """Scores of ``preds`` (an open :class:`~hambench.store._predictions.Predictions`) by ``hambench score`` itself.

    ``options`` are the board's per-dataset scoring options (``datasets.yml`` ``score:``: ``scf``, ``bands``,
    ``kpath``, ``seed``), so every submission on a dataset is scored the same way; ``plots_dir`` receives the
    per-block heat map, parity and the other plots.
    """
    opts = dict(options)
    if opts.get("kpath") is not None and not Path(opts["kpath"]).is_absolute():
        opts["kpath"] = str(Path(truth.path).parent / opts["kpath"])
    return score(preds.path, truth=truth.path, plots=plots_dir, quiet=True, **opts)


def _make_plots(preds, scores: dict, out: Path) -> list[Path]:
    """The per-block heat map, parity and other plots of ``hambench score --plots`` (PNG kept, SVG dropped)."""
    out.mkdir(parents=True, exist_ok=True)
    made = [Path(p) for p in make_plots(scores, preds.truth, preds, out)]
    for p in made:
        if p.suffix != ".png":
            p.unlink(missing_ok=True)
    return sorted(p for p in made if p.suffix == ".png")


def _close(a: float, b: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= max(CLAIM_ATOL, CLAIM_RTOL * abs(b))


def check_claimed(claimed: dict, recomputed: dict, where) -> None:
    """Refuse stated metric values that are not what hambench computes from the predictions.

    Wall times (the catalogue's timings, e.g. of the SCF runs) are measurements, not functions of the
    predictions: they are recorded as measured at submission and a stated value is not compared.
    """
    for key, value in claimed.items():
        if is_timing(key):
            continue
        if key not in recomputed:
            raise InputError(where, f"states metric {key!r}, which hambench does not compute for this dataset "
                                    f"(computed: {', '.join(sorted(recomputed))})")
        got = recomputed[key]
        if _is_number(got) and _is_number(value):
            same = _close(float(value), float(got))
            got = float(got)
        else:  # strings (the worst structure's id), null (a metric this data set does not define)
            same = type(value) is type(got) and value == got
        if not same:
            raise InputError(where, f"stated {key} = {value!r} but hambench recomputes {got!r} from the "
                                    "predictions (scores are recomputed, never typed in)")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _public(scores: dict, preds) -> dict:
    """The recorded scores: local paths reduced to file names (a board is shared), checksums kept."""
    out = dict(scores)
    for k in ("truth", "predictions", "reference"):
        if isinstance(out.get(k), dict) and out[k].get("path"):
            out[k] = {**out[k], "path": Path(str(out[k]["path"])).name}
    if isinstance(out.get("model"), dict) and out["model"].get("checkpoint"):
        out["model"] = {**out["model"], "checkpoint": Path(str(out["model"]["checkpoint"])).name}
    if isinstance(out.get("plots"), list):
        out["plots"] = sorted(Path(str(f)).name for f in out["plots"] if str(f).endswith(".png"))
    out.setdefault("predictions", {"path": Path(preds.path).name, "checksum": preds.checksum})
    return out


def _check_dataset(b: Board, ds, preds, preds_path) -> None:
    """The predictions are of the board dataset's truth (content checksum), kind and test split."""
    truth_sum = store_checksum(preds.truth)
    if not b.truth_matches(ds, truth_sum):
        raise InputError(preds_path, f"truth store {preds.truth.path} has content checksum {truth_sum[:16]}…, the "
                                     f"board's dataset {ds.name!r} is {ds.truth_checksum[:16]}… (another data set "
                                     "or version)")
    if preds.kind != ds.kind:
        raise InputError(preds_path, f"predicts {preds.kind}s, the board's dataset {ds.name!r} holds {ds.kind}s")
    if ds.split is None:
        return
    if preds.split != ds.split:
        raise InputError(preds_path, f"predicts split {preds.split!r}; the board's dataset {ds.name!r} is scored "
                                     f"on {ds.split!r}")
    want = set(map(int, select_split(preds.truth, ds.split, flag=f"the board's dataset {ds.name!r} split")))
    have = set(map(int, preds.truth_index))
    if want != have:
        raise InputError(preds_path, f"holds {len(have)} structures, split {ds.split!r} has {len(want)} "
                                     f"({len(want - have)} missing, {len(have - want)} not in it)")


def _scores_of(preds, ds, scorer, plots_dir: Path | None, preds_path) -> dict:
    """The recomputed scores (plus the equivariance error of rotated copies among the predictions), JSON-safe."""
    scores = (scorer or recompute_scores)(preds, preds.truth, dict(ds.score), plots_dir)
    if not isinstance(scores, dict) or not isinstance(scores.get("metrics"), dict):
        raise InputError(preds_path, "the scorer returned no metrics")
    eq = prediction_equivariance(preds)
    if eq is not None:  # rotated copies among the predictions: how equivariant the predictions are
        scores["metrics"] = {**scores["metrics"], **eq["metrics"]}
        scores["units"] = {**(scores.get("units") or {}), **eq["units"]}
    return json_safe(scores)


def _keep_plots(preds, scores: dict, plots_dir: Path, plots: bool) -> None:
    """PNG plots for the site (made here when the scorer made none); the SVG twins stay with ``score --plots``."""
    if plots and not any(plots_dir.glob("*.png")):
        _make_plots(preds, scores, plots_dir)
    if plots_dir.exists():
        for f in plots_dir.iterdir():
            if f.suffix != ".png" or not plots:
                f.unlink()
        if not any(plots_dir.iterdir()):
            plots_dir.rmdir()


def submit(preds_path, meta_path, board=None, truth=None, claimed=None, replace: bool = False,
           scorer=None, plots: bool = True) -> tuple[Submission, str]:
    """Validate, score and record one submission; return (the recorded :class:`Submission`, a summary line).

    Parameters
    ----------
    preds_path : the prediction store (``preds.zarr``)
    meta_path : the submission's ``meta.yml``
    board : board folder or :class:`Board` (default: the repository's ``leaderboard/``)
    truth : truth store; default: the board dataset's ``store``, else the path recorded in the predictions
    claimed : optional ``scores.json`` whose ``metrics`` the submitter claims (checked like ``meta.metrics``)
    replace : replace an existing submission of the same model and dataset
    scorer : ``f(preds, truth, options, plots_dir) -> scores dict``; default :func:`recompute_scores`
    plots : also make the per-block heat maps and parity plots (``hambench.scoring._plots``)
    """
    b = board if isinstance(board, Board) else open_board(board)
    meta_path = Path(meta_path)
    meta = validate_meta(load_yaml_strict(meta_path), meta_path)
    ds = b.dataset(meta["dataset"], meta_path)
    dest = b.submission_dir(meta["model"], meta["dataset"], meta_path)
    if dest.exists() and not replace:
        raise InputError(dest, f"{meta['model']} on {meta['dataset']} is already on the board; pass --replace "
                               "to record the new one instead")
    claimed_metrics = read_scores(claimed)["metrics"] if claimed is not None else None
    if truth is None and ds.store is not None and ds.store.exists():
        truth = ds.store
    preds = open_predictions(preds_path, truth=truth)
    _check_dataset(b, ds, preds, preds_path)

    staging = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:8]}"
    made = [p for p in (dest.parent.parent, dest.parent) if not p.exists()]  # removed again on failure
    try:
        staging.mkdir(parents=True)
        plots_dir = staging / "plots"
        scores = _scores_of(preds, ds, scorer, plots_dir if plots else None, preds_path)
        if meta.get("metrics"):
            check_claimed(meta["metrics"], scores["metrics"], meta_path)
        if claimed_metrics is not None:
            check_claimed(claimed_metrics, scores["metrics"], claimed)
        public = _public(scores, preds)
        _keep_plots(preds, scores, plots_dir, plots)
        shutil.copyfile(meta_path, staging / "meta.yml")
        (staging / "scores.json").write_text(json.dumps(public, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        record = make_record(staging, meta["model"], meta["dataset"], preds.truth_checksum, Path(preds.path).name,
                             preds.checksum, ds.score)
        check_scores_chain(public, record, preds_path)  # what every reader checks, before anything is published
        write_record(staging, record)
        replace_dir(staging, dest)  # the board skips the ``NAME.old-<id>`` copy it moves aside
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for p in reversed(made):
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        raise
    sub = b.read_submission(meta["model"], meta["dataset"])
    return sub, _summary(sub, ds, len(preds), dest)


def _summary(sub: Submission, ds, n: int, dest: Path) -> str:
    primary = sub.scores["metrics"].get(ds.primary)
    if not isinstance(primary, (int, float)):
        return f"leaderboard: recorded {sub.model} on {sub.dataset} ({n} structures) → {dest}"
    unit = (sub.scores.get("units") or {}).get(ds.primary, "")
    return (f"leaderboard: recorded {sub.model} on {sub.dataset} ({n} structures; {ds.primary} = "
            f"{primary:.6g} {unit}".rstrip() + f") → {dest}")

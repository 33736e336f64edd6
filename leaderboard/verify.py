"""Re-deriving a recorded submission's scores from its predictions (``leaderboard build --predictions DIR``).

A record (:mod:`.record`) names its predictions by file name and content checksum. Where that store is found in
one of the given folders, :func:`rederive` opens it against the dataset's truth, checks it is the recorded one,
scores it again exactly as ``submit`` did (the board's scoring options, the equivariance of rotated copies) and
compares every recorded number with the new one (:func:`first_difference`): a ``scores.json`` that does not follow
from the predictions is refused, however consistent its digests are.
"""

from __future__ import annotations

import math
from pathlib import Path

from hambench import __version__
from hambench.errors import InputError
from hambench.scoring._catalogue import is_timing
from hambench.store import open_predictions

from .board import Board, Submission
from .submit import CLAIM_ATOL, CLAIM_RTOL, _check_dataset, _public, _scores_of

__all__ = ["find_predictions", "rederive", "first_difference", "measured", "IGNORED_KEYS"]

#: top-level keys of scores.json that are not functions of the predictions: the version and wording of the code
#: that wrote them, the plot file names (the plots are sealed by the record's digests), file names of the stores
IGNORED_KEYS = ("hambench_version", "definitions", "plots")
#: keys compared by checksum only (their ``path`` is a file name that may differ between machines)
_BY_CHECKSUM = ("truth", "predictions")
#: how a run went rather than what it computed: whether an SCF result came from the cache, its threads
_CONDITIONS = ("cached", "threads_per_molecule")


def measured(key: str) -> bool:
    """Whether ``key`` holds a measurement of the run (not compared): a catalogue timing, any wall time (hambench
    names seconds with the ``_s`` suffix: ``wall_s``, ``t2_s``, ``scf_t1_minao_s``) or a run condition."""
    return is_timing(key) or key.endswith("_s") or key in _CONDITIONS


def find_predictions(sub: Submission, folders) -> Path | None:
    """The recorded prediction store of ``sub`` in the first of ``folders`` that holds one by its name."""
    name = sub.record["predictions"]["name"]
    for d in folders:
        p = Path(d) / name
        if p.is_dir():
            return p
    return None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def first_difference(recorded, derived, where: str = "", same_version: bool = True) -> tuple | None:
    """``(path, recorded value, re-derived value)`` of the first difference, or None.

    Numbers agree within ``submit``'s claim tolerance (the same float64 code on the same inputs); measurements of
    the run (:func:`measured`: wall times, cache use) are not compared. A key the re-derivation lacks is a difference; one only
    the re-derivation has is one too when both come from the same hambench version (a number left out of
    ``scores.json`` is a way to lie as well), and is allowed across versions (a newer hambench computes more).
    """
    if isinstance(recorded, dict) and isinstance(derived, dict):
        for k in recorded:
            if measured(str(k)):
                continue
            if k not in derived:
                return (f"{where}{k}", recorded[k], "(not computed)")
            d = first_difference(recorded[k], derived[k], f"{where}{k}.", same_version)
            if d:
                return d
        if same_version:
            for k in derived:
                if k not in recorded and not measured(str(k)):
                    return (f"{where}{k}", "(missing)", derived[k])
        return None
    if isinstance(recorded, list) and isinstance(derived, list):
        if len(recorded) != len(derived):
            return (f"{where.rstrip('.')} (length)", len(recorded), len(derived))
        for i, (a, b) in enumerate(zip(recorded, derived)):
            d = first_difference(a, b, f"{where}{i}.", same_version)
            if d:
                return d
        return None
    if _is_number(recorded) and _is_number(derived):
        a, b = float(recorded), float(derived)
        ok = (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= max(CLAIM_ATOL, CLAIM_RTOL * abs(b))) or a == b
        return None if ok else (where.rstrip("."), recorded, derived)
    return None if recorded == derived and type(recorded) is type(derived) else (where.rstrip("."), recorded, derived)


def rederive(board: Board, sub: Submission, folders, scorer=None) -> Path | None:
    """Score ``sub``'s recorded predictions again and refuse a ``scores.json`` that differs; the predictions'
    path, or None when none of ``folders`` holds them."""
    path = find_predictions(sub, folders)
    if path is None:
        return None
    ds = board.datasets[sub.dataset]
    truth = ds.store if ds.store is not None and ds.store.exists() else None
    preds = open_predictions(path, truth=truth)
    want = sub.record["predictions"]["checksum"]
    if preds.checksum != want:
        raise InputError(path, f"content checksum {preds.checksum[:12]}… is not the one recorded for "
                               f"{sub.model} on {sub.dataset} ({want[:12]}…): not the predictions it was scored from")
    _check_dataset(board, ds, preds, path)
    derived = _public(_scores_of(preds, ds, scorer, None, path), preds)
    recorded = {k: v for k, v in sub.scores.items() if k not in IGNORED_KEYS}
    for k in _BY_CHECKSUM:
        for side in (recorded, derived):
            if isinstance(side.get(k), dict):
                side[k] = {"checksum": side[k].get("checksum")}
    derived = {k: v for k, v in derived.items() if k not in IGNORED_KEYS}
    same = sub.scores.get("hambench_version") == __version__
    diff = first_difference(recorded, derived, same_version=same)
    if diff is not None:
        key, a, b = diff
        raise InputError(sub.path / "scores.json", f"{key} = {_short(a)} but scoring the recorded predictions "
                                                   f"{path} again gives {_short(b)} (scores.json does not follow "
                                                   "from the predictions)")
    return path


def _short(v) -> str:
    text = f"{v:.6g}" if _is_number(v) and not isinstance(v, int) else repr(v)
    return text if len(text) <= 80 else text[:77] + "…"

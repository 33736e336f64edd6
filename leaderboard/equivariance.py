"""Equivariance error recomputed from a prediction store that holds rotated copies of its structures.

A store made with ``prepare --augment K`` holds, for every original structure x, copies Rx (``structures/parent``
= the original's index, ``structures/rotation`` = R, positions r' = R r) with the same edges. An equivariant
model predicts H(Rx) = D(R) H(x) D(R)ᵀ block by block; the leaderboard measures how far the submitted
predictions are from that, over every (copy, original) pair whose both members were predicted:

* ``equivariance_error``: max |H_pred(Rx) − D H_pred(x) Dᵀ| over all elements of all pairs (meV);
* ``equivariance_mae``: the mean of that absolute difference over all elements of all pairs (meV);
* ``equivariance_n_pairs``: how many pairs were compared.

Nothing is reported when the predictions hold no such pair.
"""

from __future__ import annotations

import numpy as np

from hambench.testing import EquivarianceTally, equivariance_residual

__all__ = ["prediction_equivariance", "EV_TO_MEV"]

EV_TO_MEV = 1000.0


def prediction_equivariance(preds) -> dict | None:
    """``{"metrics": {...}, "units": {...}}`` of the pairs in ``preds`` (a :class:`~hambench.store.Predictions`),
    or None without pairs."""
    truth = preds.truth
    parent = truth.array("structures/parent")[:]
    pos_of = {int(t): k for k, t in enumerate(preds.truth_index)}
    pairs = [(pos_of[int(parent[t])], k) for k, t in enumerate(preds.truth_index)
             if parent[t] >= 0 and int(parent[t]) in pos_of]
    tally, n = EquivarianceTally(), 0
    for kp, kc in pairs:
        p_pred, p_true = preds.pair(kp)
        c_pred, c_true = preds.pair(kc)
        if not (np.array_equal(p_true.src, c_true.src) and np.array_equal(p_true.dst, c_true.dst)
                and np.array_equal(p_true.shift, c_true.shift)):
            continue  # a copy whose edges were rebuilt differ in order: not comparable block by block
        tally.add(equivariance_residual(p_pred.H, c_pred.H, p_true.Z[p_true.src], p_true.Z[p_true.dst],
                                        p_true.species, c_true.rotation, truth.spinful))
        n += 1
    if n == 0:
        return None
    return {"metrics": {"equivariance_error": tally.max * EV_TO_MEV, "equivariance_mae": tally.mean * EV_TO_MEV,
                        "equivariance_n_pairs": n},
            "units": {"equivariance_error": "meV", "equivariance_mae": "meV", "equivariance_n_pairs": "pairs"}}

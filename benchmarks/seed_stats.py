"""Statistics of the seeds' claims: paired per-seed differences of a variant against its backbone, with a 95 %
Student-t interval over seeds, and diverged runs counted as failures (never dropped).

For one metric and one pair (variant, backbone) trained on the same seeds:

* the pairs are the seeds where both runs finished; for each, the relative difference d_s = (v_s − b_s) / |b_s|
  (the same seed: same split, initial weights of the shared parts, data order);
* the interval is the t-interval of the mean of the d_s over seeds: mean ± t(0.975, n − 1) · sd / √n, with sd the
  sample standard deviation (ddof = 1). It needs n ≥ 2 pairs; it says nothing about other data sets or budgets;
* a run that diverged (NaN/Inf, ``TrainingDiverged``) has no metric. It is counted as a failure of its variant:
  in ``failed_variant`` / ``failed_backbone`` and in the win count (a seed where only the variant diverged is a loss
  of the variant, only the backbone a win, both a tie), so a variant that diverges often cannot look good by the
  seeds that survived;
* ``wins`` counts seeds where the variant is better (lower metric, or higher for ``higher_is_better``), ``losses``
  where it is worse, over every seed either variant ran.

Used by ``bench_seed_claims.py`` (its tables) and tested against hand-computed values (tests/test_seed_stats.py).
"""

from __future__ import annotations

import math

from scipy import stats as _st

__all__ = ["t_interval", "paired_differences", "format_paired"]

LEVEL = 0.95


def t_interval(values, level: float = LEVEL) -> dict:
    """Mean, sample sd (ddof 1) and the Student-t interval of the mean of ``values`` (finite numbers).

    Returns {n, mean, sd, lo, hi, half}; with n < 2 the sd and interval are NaN (one seed has no spread)."""
    v = [float(x) for x in values]
    n = len(v)
    if n == 0:
        return {"n": 0, "mean": math.nan, "sd": math.nan, "lo": math.nan, "hi": math.nan, "half": math.nan}
    mean = math.fsum(v) / n
    if n < 2:
        return {"n": 1, "mean": mean, "sd": math.nan, "lo": math.nan, "hi": math.nan, "half": math.nan}
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (n - 1))
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "lo": mean - half, "hi": mean + half, "half": half}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def paired_differences(variant: dict, backbone: dict, higher_is_better: bool = False) -> dict:
    """Paired relative differences of ``variant`` against ``backbone``, per seed.

    ``variant`` and ``backbone`` map seed → the run's metric value, or None for a run that diverged (a seed
    missing from a mapping did not run). Returns the :func:`t_interval` of d_s = (v_s − b_s)/|b_s| over the
    seeds where both are finite (fields n, mean, sd, lo, hi, half; fractions, not %), and ``seeds`` (seeds either
    ran), ``failed_variant``, ``failed_backbone`` (diverged seeds), ``wins``, ``losses`` (see the module
    docstring), ``diffs`` {seed: d_s}."""
    seeds = sorted(set(variant) | set(backbone))
    diffs, wins, losses, fv, fb = {}, 0, 0, 0, 0
    for s in seeds:
        v, b = variant.get(s, "absent"), backbone.get(s, "absent")
        v_fail, b_fail = v is None, b is None
        fv += v_fail
        fb += b_fail
        if v_fail or b_fail:
            wins += b_fail and not v_fail
            losses += v_fail and not b_fail
            continue
        if not (_finite(v) and _finite(b)) or b == 0:
            continue  # a seed one of the two did not run (or a metric it lacks): no pair, no failure
        d = (v - b) / abs(b)
        diffs[s] = d
        better = d > 0 if higher_is_better else d < 0
        worse = d < 0 if higher_is_better else d > 0
        wins += better
        losses += worse
    out = t_interval(list(diffs.values()))
    out.update({"seeds": len(seeds), "failed_variant": fv, "failed_backbone": fb, "wins": wins, "losses": losses,
                "diffs": diffs})
    return out


def format_paired(p: dict) -> str:
    """``+5.1 % [−3.2, +13.4] (3 pairs, 2/3 better)`` with failures appended; ``–`` without pairs or failures."""
    fails = []
    if p["failed_variant"]:
        fails.append(f"{p['failed_variant']} diverged")
    if p["failed_backbone"]:
        fails.append(f"backbone {p['failed_backbone']} diverged")
    tail = f"{p['wins']}/{p['seeds']} better" + (", " + ", ".join(fails) if fails else "")
    if p["n"] == 0:
        return f"– ({tail})" if fails else "–"
    if p["n"] < 2:
        return f"{100 * p['mean']:+.1f} % (1 pair, no interval; {tail})"
    return f"{100 * p['mean']:+.1f} % [{100 * p['lo']:+.1f}, {100 * p['hi']:+.1f}] ({p['n']} pairs, {tail})"

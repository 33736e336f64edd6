"""The seeds' claims' statistics (benchmarks/seed_stats.py, used by bench_seed_claims.py): paired per-seed relative
differences, the 95 % Student-t interval over seeds against hand-computed values (the t quantiles of 1 and 2
degrees of freedom in closed form), and diverged runs counted as failures of their variant."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from hambench.testing import TOL

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def ss():
    return _load("seed_stats")


def test_t_interval_hand_computed(ss):
    # 2 degrees of freedom: t_p = (2p − 1)·√(2 / (4p(1 − p))); 1 degree: t_p = tan(π(p − ½))
    t2 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))
    t1 = math.tan(math.pi * 0.475)
    r = ss.t_interval([1.0, 2.0, 4.0])  # mean 7/3, deviations −4/3, −1/3, 5/3 → sd² = (16 + 1 + 25)/9/2 = 7/3
    assert r["mean"] == pytest.approx(7 / 3, rel=TOL.roundoff)
    assert r["sd"] == pytest.approx(math.sqrt(7 / 3), rel=TOL.roundoff)
    assert r["half"] == pytest.approx(t2 * math.sqrt(7 / 3) / math.sqrt(3), rel=TOL.by_hand)
    assert (r["lo"], r["hi"]) == pytest.approx((7 / 3 - r["half"], 7 / 3 + r["half"]), rel=TOL.roundoff)
    r = ss.t_interval([1.0, 3.0])  # sd √2, se 1
    assert r["half"] == pytest.approx(t1, rel=TOL.by_hand)
    one = ss.t_interval([5.0])
    assert one["mean"] == 5.0 and math.isnan(one["half"]) and one["n"] == 1


def test_paired_differences_count_a_diverged_run_as_a_failure(ss):
    variant = {0: 0.9, 1: 1.2, 2: 1.0, 3: None}  # seed 3 diverged
    backbone = {0: 1.0, 1: 1.0, 2: 0.8, 3: 1.0}
    p = ss.paired_differences(variant, backbone)
    d = [-0.1, 0.2, 0.25]  # (v − b)/|b| of seeds 0..2
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    t2 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))
    assert p["n"] == 3 and p["seeds"] == 4
    assert p["mean"] == pytest.approx(mean, rel=TOL.roundoff)
    assert p["half"] == pytest.approx(t2 * sd / math.sqrt(3), rel=TOL.by_hand)
    assert (p["wins"], p["losses"], p["failed_variant"], p["failed_backbone"]) == (1, 3, 1, 0)
    text = ss.format_paired(p)
    assert "1 diverged" in text and "1/4 better" in text and text.startswith("+11.7 %")
    # the backbone diverging is the backbone's failure: a win of the variant; ψ-like metrics: higher is better
    q = ss.paired_differences({0: 0.95, 1: 0.9}, {0: 0.9, 1: None}, higher_is_better=True)
    assert (q["n"], q["wins"], q["losses"], q["failed_backbone"]) == (1, 2, 0, 1)
    assert "no interval" in ss.format_paired(q) and "backbone 1 diverged" in ss.format_paired(q)
    # every variant run diverged: no pairs, but the failures are reported
    assert ss.format_paired(ss.paired_differences({0: None, 1: None}, {0: 1.0, 1: 2.0})) == \
        "– (0/2 better, 2 diverged)"


def test_seed_claims_table_reports_paired_intervals_and_failures():
    bsc = _load("bench_seed_claims")
    runs = []
    for seed, (a, b) in enumerate([(1.0, 2.0), (1.5, 2.0), (None, 2.0)]):
        runs.append({"variant": "qhnet", "seed": seed, "metrics": {"H_mae": b, "psi": 0.9},
                     "train": {"steps": 10, "wall_s": 1.0}})
        runs.append({"variant": "tracegrad-qhnet", "seed": seed, "train": {"steps": 10, "wall_s": 1.0},
                     **({"diverged": "NaN", "metrics": {}} if a is None else {"metrics": {"H_mae": a, "psi": 0.95}})})
    lines, table = bsc.family_table(runs, ["qhnet", "tracegrad-qhnet"], [("H_mae", "H"), ("psi", "ψ")],
                                    {"qhnet": None, "tracegrad-qhnet": "qhnet"})
    row = next(x for x in lines if x.startswith("| tracegrad-qhnet | qhnet |"))
    t1 = math.tan(math.pi * 0.475)  # d = −0.5, −0.25: mean −0.375, sd √(1/32), se 1/8
    assert f"{100 * (-0.375 - t1 / 8):+.1f}" in row and "1 diverged" in row and "2/3 better" in row
    assert table["tracegrad-qhnet"]["_paired"]["H_mae"]["failed_variant"] == 1
    assert "2 (+1 diverged)" in next(x for x in lines if x.startswith("| tracegrad-qhnet | 2"))

"""The tiny presets train without diverging (issue 32 item 5): two seeds of each backbone family on the demo store
through the end of warm-up and the lr peak, no NaN and no step's loss above 3× the first epoch's mean (the
criterion of benchmarks/bench_tiny_stability.py, whose five-seed log over the whole budget is committed in
benchmarks/results/bench_tiny_stability.txt)."""

from __future__ import annotations

import json

import pytest

from hambench.models.run import train_run

SPIKE = 3.0


def _losses(run) -> list[tuple[int, float]]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert not [x for x in lines if x["event"] == "diverged"]
    return [(x["epoch"], x["loss"]) for x in lines if x["event"] == "train"]


@pytest.mark.slow
@pytest.mark.parametrize("model,steps", [("qhnet", 45), ("tracegrad-qhnet", 45), ("deephe3", 24)])
@pytest.mark.parametrize("seed", [0, 1])
def test_tiny_preset_does_not_spike(demo_store, tmp_path, model, steps, seed):
    # qhnet: warm-up to step 30 (the spikes of the old lr 1e-2 came there), then 15 steps at the peak lr;
    # deephe3: its constant lr from the first step, 6 epochs of 4 batches
    train_run(model, demo_store, tmp_path / "run", preset="tiny", sets=("train.log_every=1",),
              overrides={"train": {"max_steps": steps, "max_epochs": 1 << 30, "seed": seed}})
    losses = _losses(tmp_path / "run")
    first = [v for e, v in losses if e == losses[0][0]]
    start = sum(first) / len(first)
    worst = max(v for _, v in losses)
    assert len(losses) == steps and worst <= SPIKE * start, (start, worst)

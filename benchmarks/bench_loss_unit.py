"""Loss units (issue 32 item 1): step-1 gradient norms and the share of clipped steps, the loss in eV vs Hartree.

QH9 trains QHNet with the loss of ΔH in Hartree; hambench's store keeps eV, and ``train.loss_unit`` (``Ha`` | ``eV``)
says in which unit the engine forms the loss. For qhnet and tracegrad-qhnet at each ``--presets`` size this runs
``hambench train`` on the demo store (the 10 shipped QM9 molecules, PySCF B3LYP/def2-SVP) twice from the same seed,
``--set train.loss_unit=eV`` (the baseline) and ``=Ha`` (the paper's), with one logged line per step, and reports

    step-1 |g|     the gradient norm at the initial weights (before clipping; the engine logs it pre-clip)
    clipped        the share of the ``--steps`` steps whose gradient norm exceeded train.clip_grad_norm (5)
    mu             TraceGrad's μ = L_H/L_T at step 1 (the trace term's weight, detached)
    loss jump      the largest ratio loss(step)/loss(step − 1) over the run (spikes at the end of warm-up)

and the ratio Ha/eV of the step-1 norms. Everything else is each preset's recipe (the paper's: AdamW, warm-up
1,000 steps, batch 32, clip 5; the demo's 10 molecules make a batch of the 7 training ones).

Run:  .venv/bin/python benchmarks/bench_loss_unit.py [--presets tiny,paper] [--steps 200] [--models qhnet,...]
          [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("qhnet", "tracegrad-qhnet")
UNITS = ("eV", "Ha")


def _store(root: Path) -> Path:
    import hambench.app.demo
    import hambench.pipelines

    out = root / "demo.zarr"
    hambench.pipelines.prepare("pyscf/qm9", None, out, raw_dir=hambench.app.demo.demo_raw_dir(), max_heavy=3,
                               limit=10, quiet=True)
    return out


def _run(store: Path, run: Path, model: str, preset: str, unit: str, steps: int) -> dict:
    cmd = [sys.executable, "-m", "hambench", "train", model, "--data", str(store), "-o", str(run), "--preset",
           preset, "--max-steps", str(steps), "--seed", "0", "--threads", "1", "-q", "--set", f"train.loss_unit={unit}",
           "--set", "train.log_every=1", "--set", f"train.val_interval={steps}"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    clip = next(x for x in lines if x["event"] == "start")["config"]["clip_grad_norm"]
    train = [x for x in lines if x["event"] == "train"]
    g = [x["grad_norm"] for x in train]
    loss = [x["loss"] for x in train]
    jump = max((b / a for a, b in zip(loss, loss[1:]) if a > 0), default=float("nan"))
    return {"model": model, "preset": preset, "unit": unit, "steps": len(train), "grad1": g[0],
            "clipped": (sum(x > clip for x in g) / len(g)) if clip else 0.0, "clip": clip,
            "mu1": train[0].get("mu"), "loss1": loss[0], "jump": jump, "seconds": time.perf_counter() - t0,
            "grad_median": sorted(g)[len(g) // 2]}


def _table(rows: list[dict]) -> list[str]:
    out = ["| model | preset | unit | steps | step-1 |g| | Ha/eV | median |g| | clipped (|g| > 5) | μ at step 1 | "
           "largest loss jump | s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    base = {(r["model"], r["preset"]): r["grad1"] for r in rows if r["unit"] == "eV"}
    for r in rows:
        ratio = r["grad1"] / base[(r["model"], r["preset"])] if (r["model"], r["preset"]) in base else float("nan")
        mu = "—" if r["mu1"] is None else f"{r['mu1']:.4g}"
        out.append(f"| {r['model']} | {r['preset']} | {r['unit']} | {r['steps']} | {r['grad1']:.4g} | {ratio:.4g} | "
                   f"{r['grad_median']:.4g} | {100 * r['clipped']:.1f} % | {mu} | {r['jump']:.3g}× | "
                   f"{r['seconds']:.0f} |")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,paper")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", type=Path, default=None, help="also write the report here (markdown)")
    a = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench_loss_unit_"))
    store = _store(root)
    rows = []
    for preset in a.presets.split(","):
        for model in a.models.split(","):
            for unit in UNITS:
                print(f"{model} {preset} loss in {unit}: {a.steps} steps ...", flush=True)
                rows.append(_run(store, root / f"{model}-{preset}-{unit}", model, preset, unit, a.steps))
                print("  " + _table(rows)[-1], flush=True)
    head = [f"# command: python benchmarks/bench_loss_unit.py --presets {a.presets} --steps {a.steps} --models "
            f"{a.models}",
            f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared with other "
            "jobs (loaded; the gradient norms and shares do not depend on load, the seconds do); one torch thread",
            f"# store: the demo's 10 QM9 molecules (7 train / 3 val), seed 0; baseline = the same run with the loss "
            "in eV", ""]
    text = "\n".join(head + _table(rows)) + "\n"
    print(text)
    if a.out is not None:
        a.out.write_text(text)
        (a.out.with_suffix(".json")).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

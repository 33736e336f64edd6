"""Do the ``tiny`` presets train without diverging? Five seeds of every model on the demo store (issue 32 item 5).

For each model and seed 0..``--seeds``−1: ``hambench train MODEL --preset tiny --seed S`` on the demo store (the 10
shipped QM9 molecules, PySCF B3LYP/def2-SVP; 7 train / 3 validation), the preset's own budget, one logged line per
step. A run **fails** when it stops on a NaN/Inf (the engine's ``TrainingDiverged``) or when any step's training loss
exceeds 3× the *starting loss* (the mean training loss over the first epoch's steps, i.e. the initial model's level
over every training batch; batches differ, so one batch's loss is not the reference). HarmoSE's stage 1 is the
deephe3 (harmose) / tracegrad-deephe3 (harmose-tracegrad) run of the same seed. Reported per run: steps, starting
loss, the largest loss / starting loss, the last validation MAE (meV) and the verdict. The baseline of the ratio
is each run's own start (the machine's load does not enter: no timings are compared).

Resumable: a finished run (its ``result.json``) is skipped on a second invocation with the same ``--out``.

Run:  .venv/bin/python benchmarks/bench_tiny_stability.py [--models ...] [--seeds 5] [--out DIR] [--report FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("qhnet", "tracegrad-qhnet", "deephe3", "tracegrad-deephe3", "harmose", "harmose-tracegrad")
STAGE1 = {"harmose": "deephe3", "harmose-tracegrad": "tracegrad-deephe3"}
SPIKE = 3.0


def _store(root: Path) -> Path:
    out = root / "demo.zarr"
    if not out.exists():
        import hambench.app.demo
        import hambench.pipelines

        hambench.pipelines.prepare("pyscf/qm9", None, out, raw_dir=hambench.app.demo.demo_raw_dir(), max_heavy=3,
                                   limit=10, quiet=True)
    return out


def verdict(lines: list[dict], spike: float = SPIKE) -> dict:
    """The stability facts of one run's metrics.jsonl records (see the module docstring)."""
    train = [x for x in lines if x["event"] == "train"]
    if not train:
        return {"steps": 0, "start": None, "max_ratio": None, "diverged": True, "ok": False}
    first_epoch = [x["loss"] for x in train if x["epoch"] == train[0]["epoch"]]
    start = sum(first_epoch) / len(first_epoch)
    ratio = max(x["loss"] for x in train) / start
    diverged = any(x["event"] == "diverged" for x in lines)
    val = [x["val_mae"] for x in lines if x["event"] == "val" and x.get("val_mae") is not None]
    return {"steps": train[-1]["step"], "start": start, "max_ratio": ratio, "diverged": diverged,
            "ok": not diverged and ratio <= spike, "val_mae_meV": 1e3 * val[-1] if val else None}


def _run(store: Path, out: Path, model: str, seed: int, max_steps: int | None = None) -> dict:
    rdir = out / model / f"s{seed}"
    done = rdir / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    if rdir.exists():
        import shutil

        shutil.rmtree(rdir)
    cmd = [sys.executable, "-m", "hambench", "train", model, "--data", str(store), "-o", str(rdir / "run"),
           "--preset", "tiny", "--seed", str(seed), "--threads", "1", "-q", "--set", "train.log_every=1"]
    if max_steps is not None:
        cmd += ["--max-steps", str(max_steps)]
    if model in STAGE1:
        cmd += ["--stage1", str(out / STAGE1[model] / f"s{seed}" / "run")]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    metrics = rdir / "run" / "metrics.jsonl"
    if r.returncode != 0 and "NaN" not in r.stdout + r.stderr:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    lines = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.is_file() else []
    res = {"model": model, "seed": seed, **verdict(lines), "wall_s": time.perf_counter() - t0,
           "command": " ".join(["hambench", *cmd[3:]])}
    done.write_text(json.dumps(res) + "\n")
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("runs/tiny_stability"))
    ap.add_argument("--report", type=Path, default=None, help="write the markdown report here too")
    ap.add_argument("--max-steps", type=int, default=None,
                    help="stop each run here instead of the preset's budget (a loaded machine: past the warm-up and "
                         "the lr peak is where the old presets spiked)")
    ap.add_argument("--finished-only", action="store_true",
                    help="report the runs that finished (their result.json) and start none")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    store = None if a.finished_only else _store(a.out)
    rows = []
    for model in a.models.split(","):
        for seed in range(a.seeds):
            if a.finished_only:
                done = a.out / model / f"s{seed}" / "result.json"
                if done.is_file():
                    rows.append(json.loads(done.read_text()))
                continue
            print(f"[{time.strftime('%H:%M:%S')}] {model} seed {seed} ...", flush=True)
            rows.append(_run(store, a.out, model, seed, a.max_steps))
            r = rows[-1]
            print(f"  {'ok' if r['ok'] else 'FAILED'}: max loss / start {r['max_ratio']}", flush=True)
    L = [f"# command: python benchmarks/bench_tiny_stability.py --models {a.models} --seeds {a.seeds}"
         + (f" --max-steps {a.max_steps}" if a.max_steps else "") + (" --finished-only" if a.finished_only else ""),
         f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other jobs "
         "(loaded: the wall times say nothing; the verdicts do not depend on load)",
         f"# demo store (10 QM9 molecules, 7 train / 3 val), preset tiny, "
         f"{'its own budget' if not a.max_steps else f'at most {a.max_steps} steps'}; fail = NaN/Inf or a step's "
         f"loss > {SPIKE:g}x the first epoch's mean loss", "",
         "| model | seed | steps | starting loss | max loss / start | last val MAE (meV) | verdict | wall s |",
         "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mae = "–" if r.get("val_mae_meV") is None else f"{r['val_mae_meV']:.1f}"
        start = "–" if r["start"] is None else f"{r['start']:.4g}"
        ratio = "–" if r["max_ratio"] is None else f"{r['max_ratio']:.3g}"
        L.append(f"| {r['model']} | {r['seed']} | {r['steps']} | {start} | {ratio} | {mae} | "
                 f"{'ok' if r['ok'] else ('NaN' if r['diverged'] else 'spike')} | {r['wall_s']:.0f} |")
    bad = [r for r in rows if not r["ok"]]
    L += ["", f"{len(rows) - len(bad)} of {len(rows)} runs ok" + (": failures " + ", ".join(
        f"{r['model']} s{r['seed']}" for r in bad) if bad else ".")]
    text = "\n".join(L) + "\n"
    print(text)
    if a.report is not None:
        a.report.write_text(text)


if __name__ == "__main__":
    main()

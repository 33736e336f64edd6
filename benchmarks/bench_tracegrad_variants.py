"""Which TraceGrad fix of v's scale to make the default: zero_init, NextHAM's ‖f‖/‖v‖ rescaling or a scale-aware φ,
each against its backbone (qhnet), several seeds, paired differences with a 95 % interval (issue 32 item 3).

Store: ``--data``, a molecule store without splits (e.g. PySCF water conformers from
``benchmarks/water_conformers.py``); the benchmark writes its own copy with a split ``bench`` (numpy
``default_rng(0)`` permutation, 60 / 20 / 20 %). Models (``--preset tiny`` sizes, ``--set`` overrides in
``SETS``; every run of a seed has the same data order and backbone initialisation):

    qhnet          the backbone
    zero_init      tracegrad-qhnet, model.tracegrad.zero_init=true (φ's last affine zeroed: starts as qhnet)
    norm_ratio     tracegrad-qhnet, residual=norm_ratio (NextHAM: f + 0.2·(‖f‖/(‖v‖+1e-5)).detach()·v per edge)
    scale_aware    tracegrad-qhnet, scale_aware=true (φ reads f/σ, v = σ·∂z/∂(f/σ): |v| ∝ |f|)
    plain          tracegrad-qhnet as shipped before issue 32 (f + v), for reference (last: dropped first when
                   the budget is short)

Metric: H MAE (meV) on ``bench:test`` of the best-validation checkpoint (``hambench score``). For each variant and
seed the paired difference d = MAE(variant) − MAE(qhnet) (same seed); mean of d and its 95 % interval
(Student t with n−1 degrees of freedom), and the relative change. A diverged run counts as a failure of its
variant (listed, never dropped silently).

Resumable: each finished run leaves ``OUT/<variant>/s<seed>/result.json``; a second invocation skips those. The
report (``--report``, .md and .json) is rewritten after every run from all finished runs under ``--out``
(``--only-seed K`` runs one seed, so seeds can run as separate processes).

Run:  nice -n 5 .venv/bin/python benchmarks/bench_tracegrad_variants.py --data /tmp/water.zarr --out /tmp/tgv \\
          --seeds 3 --steps 300 --batch 8 --report benchmarks/results/bench_tracegrad_variants
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_seed_claims as bsc  # noqa: E402  (store_with_splits, train_one, machine: the same machinery)

VARIANTS = {
    "qhnet": ("qhnet", []),
    "zero_init": ("tracegrad-qhnet", ["model.tracegrad.zero_init=true"]),
    "norm_ratio": ("tracegrad-qhnet", ["model.tracegrad.residual=norm_ratio", "model.tracegrad.zero_init=false"]),
    "scale_aware": ("tracegrad-qhnet", ["model.tracegrad.scale_aware=true", "model.tracegrad.zero_init=false"]),
    "plain": ("tracegrad-qhnet", ["model.tracegrad.zero_init=false"]),
}
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def interval(d: list[float]):
    """Mean of the paired differences and its 95 % Student-t interval (None for n < 2)."""
    n = len(d)
    m = float(np.mean(d))
    if n < 2:
        return m, None
    h = T975.get(n - 1, 1.96) * float(np.std(d, ddof=1)) / math.sqrt(n)
    return m, (m - h, m + h)


def one_run(name, seed, args, data: Path) -> dict:
    rdir = args.out / name / f"s{seed}"
    done = rdir / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    from hambench.models.run import predict_store
    from hambench.scoring._score import score
    from hambench.training import TrainingDiverged

    model, sets = VARIANTS[name]
    sets = list(args.sets) + sets
    over = {"seed": seed, "split": "bench", "max_steps": args.steps, "max_epochs": 1 << 30,
            "val_interval": max(1, args.steps // 6), "log_every": 50, "warmup_steps": args.steps // 15,
            "decay_steps": args.steps, "lr": args.lr, "batch_size": args.batch}
    cmds = [shlex.join(map(str, bsc.cli_train_cmd(model, data, rdir / "run", args.preset, sets, over)))]
    bsc.log(f"{name} s{seed}: train {args.steps} steps")
    t0 = time.perf_counter()
    try:
        s = bsc.train_one(model, data, rdir / "run", args.preset, sets, over, 1e9)
    except TrainingDiverged as e:
        res = {"variant": name, "seed": seed, "diverged": str(e), "H_mae": None, "commands": cmds}
        bsc.write_json(done, res)
        return res
    p = predict_store(rdir / "run", data, rdir / "preds.zarr", split="bench:test", device="cpu", overwrite=True)
    sc = score(rdir / "preds.zarr", output=rdir / "scores.json", quiet=True)
    curve = []
    mfile = rdir / "run" / "metrics.jsonl"
    if mfile.is_file():
        for line in mfile.read_text().splitlines():
            r = json.loads(line)
            if "val_mae" in r or r.get("kind") == "val":
                curve.append(r)
    res = {"variant": name, "seed": seed, "model": model, "sets": sets, "steps": s["steps"],
           "reason": s.get("reason"), "best_val": s.get("best"), "wall_s": time.perf_counter() - t0,
           "train_wall_s": s["wall_s"], "parameters": s.get("parameters"), "n_test": p["structures"],
           "H_mae": sc["metrics"].get("H_mae"), "metrics": {k: v for k, v in sc["metrics"].items()
                                                             if isinstance(v, (int, float))},
           "val_curve": curve, "commands": cmds}
    bsc.write_json(done, res)
    bsc.log(f"{name} s{seed}: test H MAE {res['H_mae']:.3f} meV, {res['wall_s']:.0f} s")
    return res


def report(args, runs: dict, header: list[str]) -> None:
    seeds = list(range(args.seeds))
    lines = header + ["", f"H MAE on bench:test (meV), best-validation checkpoint; {args.steps} steps; "
                      "paired d = variant − qhnet of the same seed, 95 % Student-t interval", "",
                      "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | d mean [95 % CI] (meV) "
                      "| d relative | better on |",
                      "|---|" + "---|" * len(seeds) + "---|---|---|---|"]
    out = {"steps": args.steps, "seeds": seeds, "variants": {}}
    base = {s: runs.get(("qhnet", s), {}).get("H_mae") for s in seeds}
    for name in VARIANTS:
        vals = {s: runs.get((name, s), {}).get("H_mae") for s in seeds if (name, s) in runs}
        if not vals:
            continue
        div = [s for s in vals if runs[(name, s)].get("diverged")]
        cells = [("DIVERGED" if s in div else f"{vals[s]:.3f}") if s in vals else "–" for s in seeds]
        ok = [v for s, v in vals.items() if v is not None]
        mean = float(np.mean(ok)) if ok else None
        d = [vals[s] - base[s] for s in vals if vals[s] is not None and base.get(s) is not None]
        rel = [(vals[s] - base[s]) / base[s] for s in vals if vals[s] is not None and base.get(s)]
        dm, ci = interval(d) if d and name != "qhnet" else (None, None)
        better = sum(1 for x in d if x < 0)
        ci_s = "–" if dm is None else (f"{dm:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""))
        rel_s = "–" if not rel or name == "qhnet" else f"{100 * np.mean(rel):+.1f} %"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'–' if mean is None else f'{mean:.3f}'} | {ci_s} "
                     f"| {rel_s} | {'–' if name == 'qhnet' else f'{better}/{len(d)}'}" + (f", {len(div)} diverged"
                                                                                       if div else "") + " |")
        out["variants"][name] = {"H_mae": vals, "diverged_seeds": div, "d_mean": dm, "d_ci95": ci,
                                 "d_relative_mean": float(np.mean(rel)) if rel and name != "qhnet" else None,
                                 "commands": {s: runs[(name, s)].get("commands") for s in vals}}
    names = [n for n in VARIANTS if n not in ("qhnet",) and n in out["variants"]]
    lines += ["", "Between the variants (row − column, paired by seed, mean [95 % CI] meV):", "",
              "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for a in names:
        row = []
        for b in names:
            va, vb = out["variants"][a]["H_mae"], out["variants"][b]["H_mae"]
            d = [va[s] - vb[s] for s in va if s in vb and va[s] is not None and vb[s] is not None]
            m, ci = interval(d) if d and a != b else (None, None)
            row.append("–" if m is None else f"{m:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""))
        lines.append(f"| {a} | " + " | ".join(row) + " |")
    lines += ["", "Validation MAE (eV) along each run (has it got past its first descent?):", ""]
    for (name, seed), r in sorted(runs.items(), key=lambda kv: (list(VARIANTS).index(kv[0][0]), kv[0][1])):
        curve = [c for c in r.get("val_curve", []) if "val_mae" in c]
        lines.append(f"- {name} s{seed}: " + ", ".join(f"{c['step']}: {c['val_mae']:.3g}" for c in curve))
    lines += ["", "Wall time per run (s, loaded machine, one thread): " + ", ".join(
        f"{n}: {np.mean([r['wall_s'] for (k, _), r in runs.items() if k == n and 'wall_s' in r]):.0f}"
        for n in VARIANTS if any(k == n and "wall_s" in r for (k, _), r in runs.items()))]
    bsc.write_text(Path(str(args.report) + ".md"), "\n".join(lines) + "\n")
    bsc.write_json(Path(str(args.report) + ".json"), out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=8, help="batch size (the tiny preset's 8)")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="config overrides (repeatable)")
    ap.add_argument("--variants", default="qhnet,zero_init,norm_ratio,scale_aware")
    ap.add_argument("--report-only", action="store_true", help="only rewrite the report from the finished runs")
    ap.add_argument("--only-seed", type=int, default=None,
                    help="run only this seed (one process per seed may share --out; the report reads them all)")
    ap.add_argument("--report", type=Path, default=Path("benchmarks/results/bench_tracegrad_variants"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "store.zarr"
    if not data.exists():
        from hambench.store._store import open_store

        n = len(open_store(args.data))
        codes = np.zeros(n, np.int8)
        perm = np.random.default_rng(0).permutation(n)
        codes[perm[int(0.6 * n):int(0.8 * n)]] = 1
        codes[perm[int(0.8 * n):]] = 2
        bsc.store_with_splits(args.data, data, {"bench": codes})
    header = ["# TraceGrad v-scale variants vs qhnet (issue 32 item 3)", "",
              "$ " + shlex.join(["nice", "-n", "5", ".venv/bin/python", "benchmarks/bench_tracegrad_variants.py",
                                 *_run_argv()]),
              "(the runs were made by one such process per seed, `--only-seed K`, sharing --out; each run's own "
              "`hambench train` command is in its result.json and in the .json report)",
              f"machine: {json.dumps(bsc.machine())} (shared and loaded: 2 cores, several jobs; times are noisy)",
              f"store: {args.data} ({'copied with split bench 60/20/20'}), preset {args.preset}, sets {args.sets}, "
              f"lr {args.lr}, batch {args.batch}, warm-up steps/15 then linear decay; loss in eV (the engine's unit on "
              "this branch: train.loss_unit was not merged yet), clip_grad_norm 5 (joint)"]
    if args.report_only:
        report(args, _finished(args), header)
        return
    names = args.variants.split(",")
    seeds = range(args.seeds) if args.only_seed is None else [args.only_seed]
    for seed in seeds:  # seed-major: every finished seed gives complete pairs
        for name in names:
            one_run(name, seed, args, data)
            report(args, _finished(args), header)


def _run_argv() -> list[str]:
    """This process's arguments without the per-process ones (--only-seed K, --variants, --report-only)."""
    out, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a in ("--only-seed", "--variants"):
            skip = True
            continue
        if a != "--report-only":
            out.append(a)
    return out


def _finished(args) -> dict:
    """Every finished run under ``--out`` (several processes, one per seed, may share it)."""
    runs = {}
    for name in VARIANTS:
        for seed in range(args.seeds):
            f = args.out / name / f"s{seed}" / "result.json"
            if f.is_file():
                runs[(name, seed)] = json.loads(f.read_text())
    return runs


if __name__ == "__main__":
    main()

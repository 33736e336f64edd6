"""``hambench demo``: the whole main job on the embedded demo data, end to end, on the CPU.

Data: the real DFT results shipped with the package (``hambench/data/demo_qm9``: PySCF B3LYP5/def2-SVP runs of
the 10 smallest QM9 molecules, made by ``hambench prepare --source pyscf/qm9``; its README gives the command),
so the demo runs no DFT. The molecules are split **by molecule**, not by conformation, so the test set holds
chemistry the models never saw: QM9 1–7 (CH4, NH3, H2O, C2H2, HCN, H2CO, C2H6) train, QM9 8–10 (CH3OH, propyne,
acetonitrile) test. Both stores carry two seeded rotated copies of every molecule; the test store's copies
give the equivariance error of the predictions.

Steps (each one is skipped when a previous run of the same budget left its result in ``-o``):

1. prepare ``qm9_demo_train.zarr`` and ``qm9_demo_test.zarr``;
2. train ``qhnet`` and ``tracegrad-qhnet`` (``tiny`` presets, step count of the budget) into ``runs/``;
3. predict the test store into ``preds/``;
4. submit both to the local board ``board/`` (``datasets.yml`` names the test store's checksum), which
   recomputes the scores with ``hambench score``: H, ε, ψ, HOMO/LUMO/gap, worst structure and block, a short
   SCF-acceleration run (QH9's protocol) on a few test molecules, the equivariance error, and the plots;
5. build the static site ``site/`` and print one summary table and where everything is.

Budgets: ``full`` (``make demo``; the README gives its measured time) and ``ci`` (a few training steps, one
SCF molecule: the CI test). Like ``cli.py`` this module only orchestrates library calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path

import click
import torch
from rich.markup import escape
from threadpoolctl import threadpool_limits

from hambench.atomic import write_json, write_text
from hambench.errors import InputError
from hambench.leaderboard.board import open_board
from hambench.leaderboard.schema import dump_yaml
from hambench.leaderboard.site import build_site
from hambench.leaderboard.submit import submit
from hambench.models.run import predict_store, train_run
from hambench.pipelines import prepare
from hambench.scoring._catalogue import CATALOGUE, label_of
from hambench.scoring._console import TextColumn, fit_tables, make_console
from hambench.scoring._format import format_column
from hambench.store import open_predictions, open_store, store_checksum

__all__ = ["run_demo", "DEMO_OPTIONS", "BUDGETS", "Budget", "DEMO_MODELS", "TRAIN_IDS", "TEST_IDS"]

#: the exact prepare options the demo data were generated with (see hambench/data/demo_qm9/README.md)
DEMO_OPTIONS = {"max_heavy": 3, "limit": 10}
#: QM9 indices of the training and the test molecules (a split by molecule)
TRAIN_IDS = "1,2,3,4,5,6,7"
TEST_IDS = "8,9,10"
AUGMENT = 2
DATASET = "qm9-demo"
#: wall time (s) of `hambench demo` (full budget): 160 s of CPU on one thread, 4.3 min of wall time with the other
#: core busy (measured 2026-12-07; README "What the demo does")
EXPECTED_FULL_S = 240.0


@dataclass(frozen=True)
class Budget:
    """How much work the demo does: training steps per model, SCF molecules, plots; ``expected_s`` is the wall time
    measured on an idle 2-core machine (printed up front)."""

    name: str
    max_steps: int
    val_interval: int | None
    scf: int
    expected_s: float
    plots: bool = True


BUDGETS = {
    "full": Budget("full", max_steps=300, val_interval=50, scf=2, expected_s=EXPECTED_FULL_S),
    "ci": Budget("ci", max_steps=4, val_interval=None, scf=1, expected_s=60.0),
}
#: the demo's threads: one torch/BLAS thread per process. Tiny models gain nothing from a second thread, and
#: spinning OpenMP threads made e3nn steps ~30x slower on a busy 2-core machine (tests/conftest.py)
DEMO_THREADS = 1
#: a line at least this often (s) while a step runs silently (SCF, scoring, a training step under load)
HEARTBEAT_S = 10.0

#: model → (display name, paper, code)
DEMO_MODELS = {
    "qhnet": ("QHNet (tiny)", "https://arxiv.org/abs/2306.04922", "https://github.com/divelab/AIRS"),
    "tracegrad-qhnet": ("QHNet + TraceGrad (tiny)", "https://arxiv.org/abs/2405.05722",
                        "https://github.com/DavidYin94/NextHAM"),
}


def demo_raw_dir() -> Path:
    return Path(str(resources.files("hambench") / "data" / "demo_qm9"))


_last_said = [time.monotonic()]


def _say(msg: str) -> None:
    click.echo(msg)
    _last_said[0] = time.monotonic()


@contextlib.contextmanager
def _heartbeat(label: list[str], t0: float, every: float = HEARTBEAT_S):
    """While the body runs, print ``… <label[0]>: N s so far`` whenever nothing was said for ``every`` seconds."""
    stop = threading.Event()

    def beat():
        while not stop.wait(0.5):
            if time.monotonic() - _last_said[0] >= every:
                _say(f"      … {label[0]}: {time.perf_counter() - t0:.0f} s since the demo started")

    th = threading.Thread(target=beat, daemon=True, name="hambench-demo-heartbeat")
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join()


@contextlib.contextmanager
def _demo_threads(n: int = DEMO_THREADS):
    """torch and the BLAS/OpenMP pools at ``n`` threads for the demo, restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(old)


def _hardware() -> str:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    cpu = platform.processor() or platform.machine()
    return f"{n} CPU core{'s' if n != 1 else ''} ({cpu}, {platform.system()})"


def _prepare(out: Path, ids: str, quiet: bool) -> tuple[Path, bool]:

    if out.exists():
        try:
            open_store(out)
            return out, True
        except Exception:  # an unreadable leftover: make it again
            shutil.rmtree(out)
    prepare("pyscf/qm9", None, out, quiet=quiet, augment=AUGMENT, seed=0, raw_dir=demo_raw_dir(), ids=ids)
    return out, False


def _train(model: str, store: Path, run_dir: Path, budget: Budget, quiet: bool) -> tuple[dict, bool]:

    done = run_dir / "demo_train.json"
    if done.is_file():
        return json.loads(done.read_text()), True
    overrides = {"train": {"max_steps": budget.max_steps, "val_interval": budget.val_interval}}
    resume = (run_dir / "last.pt").is_file()  # an interrupted run continues
    t0 = time.perf_counter()
    summary = train_run(model, store, run_dir, preset="tiny", overrides=overrides, resume=resume, device="cpu",
                        quiet=quiet, log=_say)
    summary = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, type(None)))}
    summary["wall_s"] = time.perf_counter() - t0
    write_json(done, summary, indent=1)
    return summary, False


def _predict(run_dir: Path, store: Path, out: Path) -> tuple[dict, bool]:

    done = out.with_name(out.name + ".json")
    if out.exists() and done.is_file():
        try:
            open_predictions(out, truth=store)
            return json.loads(done.read_text()), True
        except Exception:
            pass
    if out.exists():
        shutil.rmtree(out)
    res = predict_store(run_dir / "best.pt", store, out, device="cpu")
    write_json(done, res, indent=1)
    return res, False


def _flat_scalars(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_scalars(v, key + "."))
        elif isinstance(v, (str, int, float, bool)) or v is None:
            out[key] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v):
            out[key] = list(v)
    return out


def _meta(model: str, run_dir: Path, train_summary: dict, pred: dict, train_checksum: str, budget: Budget) -> dict:
    display, paper, code = DEMO_MODELS[model]
    cfg = json.loads((run_dir / "config.json").read_text())
    tr = cfg["train"]
    hyper = {"preset": cfg.get("preset") or "tiny", "budget": budget.name}
    hyper.update(_flat_scalars(cfg["model"], "model."))
    hyper.update({f"train.{k}": tr[k] for k in ("optimizer", "lr", "scheduler", "loss", "batch_size", "max_steps",
                                                 "dtype", "val_fraction") if k in tr})
    n_struct = max(int(pred["structures"]), 1)
    return {
        "meta_version": 1,
        "model": model,
        "dataset": DATASET,
        "display_name": display,
        "architecture": model,
        "authors": ["hambench demo"],
        "paper": paper,
        "code": code,
        "license": "MIT",
        "date": date.today().isoformat(),
        "hyperparameters": hyper,
        "training": {"store_checksum": train_checksum, "seeds": [int(tr.get("seed", 0))], "hardware": _hardware(),
                     "time_s": float(train_summary.get("seconds", train_summary.get("wall_s", 0.0))),
                     "steps": int(train_summary.get("steps", 0)), "epochs": int(train_summary.get("epochs", 0))},
        "parameters": int(train_summary["parameters"]),
        "inference": {"time_per_structure_s": max(float(pred["seconds"]) / n_struct, 1e-9),
                      "hardware": _hardware(), "batch_size": 8},
        "inputs": ["geometry"],
        "notes": (f"Trained by `hambench demo --budget {budget.name}` ({int(train_summary.get('steps', 0))} steps "
                  "on QM9 1-7 with rotated copies); tested on QM9 8-10. A check of the whole pipeline, not a "
                  "benchmark result."),
    }


def _board(board_dir: Path, test_store: Path, budget: Budget) -> None:


    board_dir.mkdir(parents=True, exist_ok=True)
    datasets = {"datasets_version": 1, "title": "hambench demo leaderboard", "datasets": {DATASET: {
        "title": "QM9 demo (3 unseen molecules × 3 orientations)",
        "description": ("Real PySCF B3LYP5/def2-SVP Hamiltonians of QM9 molecules 8-10 (CH3OH, propyne, "
                        "acetonitrile), each with two rotated copies; models trained on QM9 1-7. Made by "
                        "`hambench demo`."),
        "kind": "molecule", "truth_checksum": store_checksum(test_store),
        "store": os.path.relpath(test_store.resolve(), board_dir.resolve()), "primary": "H_mae",
        "score": {"scf": budget.scf},
    }}}
    text = dump_yaml(datasets)
    path = board_dir / "datasets.yml"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text(path, text)


def _submit(board_dir: Path, model: str, preds: Path, meta: dict, plots: bool) -> tuple[dict, bool]:


    board = open_board(board_dir)
    dest = board.submission_dir(model, DATASET)
    checksum = open_predictions(preds).checksum
    if (dest / "scores.json").is_file():
        try:  # reused only if its record still checks out (an older demo's submission has none: resubmitted)
            old = board.read_submission(model, DATASET).scores
        except InputError:
            old = {}
        if (old.get("predictions") or {}).get("checksum") == checksum:
            return old, True
    meta_path = preds.with_name(f"{model}.meta.yml")
    meta_path.write_text(dump_yaml(meta), encoding="utf-8")
    sub, line = submit(preds, meta_path, board=board, replace=dest.exists(), plots=plots)
    _say(line)
    return sub.scores, False


def _summary_tables(scores: dict[str, dict], metas: dict[str, dict]) -> list:
    """The demo's one summary (the catalogue's labels, one number format per column, at most 100 columns; the
    training times were printed as each run ended)."""
    keys = ["H_mae", "eps_mae", "psi", "H_mae_max", "scf_achieved_ratio_minao", "equivariance_error"]
    order = sorted(scores, key=lambda m: scores[m]["metrics"].get("H_mae") or float("inf"))

    def number(v):
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    cols = []
    for key in keys:
        vals = [number(scores[m]["metrics"].get(key)) for m in order]
        unit = CATALOGUE[key].unit
        cols.append(TextColumn(label_of(key) + (f" [{unit}]" if unit != "1" else ""), format_column(vals)))
    cols.append(TextColumn("parameters", format_column([metas[m]["parameters"] for m in order], integer=True)))
    return fit_tables("hambench demo — test set QM9 8–10 (3 molecules × 3 orientations)",
                      [TextColumn("model", [escape(m) for m in order], justify="left", plain=order)], cols)


def run_demo(output: Path, quiet: bool = False, budget: str = "full") -> dict:
    """Run the demo into ``output``; returns {stores, runs, preds, board, site, scores}. Reruns reuse results."""
    if budget not in BUDGETS:
        raise InputError(None, f"unknown demo budget {budget!r} (known: {', '.join(BUDGETS)})")
    b = BUDGETS[budget]
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    _say(f"hambench demo ({b.name} budget): about {b.expected_s / 60:.0f} min on an idle 2-core machine "
         f"(less when a previous run left results in {out}); {DEMO_THREADS} torch/BLAS thread")
    step = ["prepare"]
    with _demo_threads(), _heartbeat(step, t_start):
        return _run(out, b, quiet, t_start, step)


def _run(out: Path, b: Budget, quiet: bool, t_start: float, step: list[str]) -> dict:
    """The demo's five steps (``step[0]`` names the current one for the heartbeat)."""
    done = lambda reused: " (reused)" if reused else ""  # noqa: E731

    _say(f"[1/5] prepare the demo stores (embedded PySCF results, no DFT run), budget {b.name}")
    train_store, r1 = _prepare(out / "qm9_demo_train.zarr", TRAIN_IDS, quiet)
    test_store, r2 = _prepare(out / "qm9_demo_test.zarr", TEST_IDS, quiet)
    _say(f"      train {train_store}{done(r1)}; test {test_store}{done(r2)}")
    train_checksum = store_checksum(train_store)

    runs, preds, metas, scores = {}, {}, {}, {}
    for k, model in enumerate(DEMO_MODELS, 1):
        run_dir = out / "runs" / f"{model}-{b.name}"
        step[0] = f"training {model}"
        _say(f"[2/5] train {model} ({k}/{len(DEMO_MODELS)}, tiny preset, {b.max_steps} steps) → {run_dir}")
        summary, reused = _train(model, train_store, run_dir, b, quiet)
        _say(f"      {summary.get('steps')} steps in {summary.get('seconds', 0):.0f} s, best val MAE "
             f"{summary.get('best', float('nan')):.4g} eV{done(reused)}")
        runs[model] = run_dir
        p = out / "preds" / f"{model}-{b.name}.zarr"
        p.parent.mkdir(parents=True, exist_ok=True)
        step[0] = f"predicting with {model}"
        _say(f"[3/5] predict the test store with {model} → {p}")
        pred, reused = _predict(run_dir, test_store, p)
        _say(f"      {pred['structures']} structures in {pred['seconds']:.1f} s{done(reused)}")
        preds[model] = p
        metas[model] = _meta(model, run_dir, summary, pred, train_checksum, b)

    board_dir = out / "board"
    _board(board_dir, test_store, b)
    for model in DEMO_MODELS:
        step[0] = f"scoring {model} (SCF runs, plots)"
        _say(f"[4/5] submit {model} to {board_dir} (scores recomputed: H, ε, ψ, SCF on {b.scf} molecule"
             f"{'s' if b.scf != 1 else ''}, equivariance)")
        scores[model], reused = _submit(board_dir, model, preds[model], metas[model], b.plots)
        if reused:
            _say("      already on the board with these predictions (reused)")

    site = out / "site"
    step[0] = "building the site"
    _say(f"[5/5] build the leaderboard site → {site}")
    _say("      " + build_site(board_dir, site, overwrite=True))  # the demo's own folder, whatever an older run left
    console = make_console()
    for table in _summary_tables(scores, metas):
        console.print(table)
    _say("where everything is:")
    for label, path in [("train store", train_store), ("test store", test_store),
                        *[(f"run {m}", runs[m]) for m in runs], *[(f"predictions {m}", preds[m]) for m in preds],
                        ("board", board_dir), ("site", site / "index.html")]:
        _say(f"  {label:26s} {path}")
    _say(f"demo ({b.name} budget) finished in {time.perf_counter() - t_start:.0f} s; open {site / 'index.html'} "
         "in a browser (it works offline)")
    return {"stores": {"train": train_store, "test": test_store}, "runs": runs, "preds": preds, "board": board_dir,
            "site": site, "scores": scores}

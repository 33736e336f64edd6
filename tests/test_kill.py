"""kill -9 during train, predict and submit leaves the old state or the new one, never a half one.

A helper process (:mod:`_killer`) runs each command in a forked child and sends it SIGKILL just before or just
after its K-th publishing rename or swap, for every K the uninterrupted command makes: every point where a
half-written file or folder could become visible. After each kill:

* train: ``last.pt`` and ``best.pt`` are each absent or whole, and the run continued with ``--resume`` (or
  started again, when no ``last.pt`` was written yet) ends with checkpoints bit-identical to the uninterrupted
  run's (parameters, optimiser, engine counters);
* predict: ``preds.zarr`` is absent (or, with ``--overwrite``, byte for byte the old store) or the whole new one
  (it opens against its truth with the uninterrupted run's content checksum);
* submit: the board reads and verifies (``list``/``build`` would accept it) and holds either the old submissions
  byte for byte or the new one whole.

One more train is killed from outside at an arbitrary moment (whenever its log has grown), as a user would.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import _faults as F

KILLER = Path(__file__).with_name("_killer.py")


class Killer:
    """The helper process: ``run(argv, cwd, kill)`` → (its reply, the destinations it renamed to, in order)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.n = 0
        self.proc = subprocess.Popen([sys.executable, str(KILLER), str(tmp)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def run(self, argv, cwd: Path, kill: dict | None = None) -> tuple[dict, list[str]]:
        self.n += 1
        events = self.tmp / f"events-{self.n}"
        req = {"argv": [str(a) for a in argv], "cwd": str(cwd), "events": str(events), "kill": kill}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        return reply, events.read_text().splitlines() if events.exists() else []

    def log(self) -> str:
        return (self.tmp / f"events-{self.n}.log").read_text()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def killer(tmp_path_factory):
    k = Killer(tmp_path_factory.mktemp("killer"))
    yield k
    k.close()


KILLED = {"signal": signal.SIGKILL, "code": None}
DONE = {"signal": 0, "code": 0}


def points(events, under: Path) -> list[dict]:
    """Every kill point: before and after each rename or swap into ``under`` (a run folder, a store, a board)."""
    mine = [e for e in events if e.startswith(str(under))]
    return [{"at": k, "when": w, "under": str(under)} for k in range(len(mine)) for w in ("before", "after")]


def checkpoint_state(path: Path):
    """(engine counters, SHA-256 of every tensor of the model, optimiser and schedule) of a checkpoint file."""
    import torch

    from hambench.training import Checkpoint

    ck = Checkpoint.load(path)
    h = hashlib.sha256()

    def feed(x):
        if isinstance(x, torch.Tensor):
            h.update(x.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                h.update(str(k).encode())
                feed(x[k])
        elif isinstance(x, (list, tuple)):
            for v in x:
                feed(v)
        else:
            h.update(repr(x).encode())

    feed(ck.state)
    feed(ck.optimizer)
    feed(ck.schedule)
    return json.dumps(ck.engine, sort_keys=True), h.hexdigest()


def run_state(run: Path) -> dict:
    return {n: checkpoint_state(run / n) for n in ("last.pt", "best.pt") if (run / n).exists()}


# --- train --------------------------------------------------------------------------------------------------
def test_train_killed_at_every_checkpoint_write_resumes_to_the_same_run(killer, demo_store, tmp_path):
    def train(out, *extra):
        return ["train", "toy", "--data", demo_store, "-o", out, "--max-epochs", 3, *extra]

    reply, events = killer.run(train(tmp_path / "ref"), tmp_path)
    assert reply == DONE, killer.log()
    names = [Path(e).name for e in events if Path(e).parent == tmp_path / "ref"]
    assert names == ["config.json", "last.pt"] + ["best.pt", "last.pt"] * 3  # best before last: last commits
    want = run_state(tmp_path / "ref")
    for k, p in enumerate(points(events, tmp_path / "ref")):
        run = tmp_path / f"run-{k}"
        assert killer.run(train(run), tmp_path, kill={**p, "under": str(run)})[0] == KILLED
        left = run_state(run)  # each file absent or whole (a torn one would not load)
        assert "best.pt" not in left or "last.pt" in left, p
        resume = ("--resume",) if "last.pt" in left else ()
        assert killer.run(train(run, *resume), tmp_path)[0] == DONE, (p, killer.log())
        assert run_state(run) == want, p


def test_train_killed_from_outside_is_resumable(killer, demo_store, tmp_path):
    """SIGKILL from another process at whatever instant the run's log has grown to a few lines."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(KILLER), str(tmp_path), "--run", "-q", "train", "toy", "--data",
                             str(demo_store), "-o", str(run), "--max-epochs", "100000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = run / "metrics.jsonl"
    while proc.poll() is None and not (log.exists() and log.read_text().count("\n") >= 4):
        try:
            proc.wait(0.05)
        except subprocess.TimeoutExpired:
            pass
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    left = run_state(run)
    assert "last.pt" in left  # step 0 is saved before the first step
    epoch = json.loads(left["last.pt"][0])["epoch"]
    reply, _ = killer.run(["train", "toy", "--data", demo_store, "-o", run, "--max-epochs", epoch + 1, "--resume"],
                          tmp_path)
    assert reply == DONE, killer.log()
    assert json.loads(run_state(run)["last.pt"][0])["epoch"] == epoch + 1


# --- predict ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(killer, demo_store, tmp_path_factory):
    d = tmp_path_factory.mktemp("trained")
    assert killer.run(["train", "toy", "--data", demo_store, "-o", d / "run", "--max-epochs", 1], d)[0] == DONE
    return d / "run"


@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
def test_predict_killed_leaves_the_old_store_or_the_new_one(killer, demo_store, trained, tmp_path, overwrite):
    import shutil

    from hambench.leaderboard.testing import noisy_predictions
    from hambench.store import open_predictions

    def predict(out, *extra):
        return ["predict", trained, "--data", demo_store, "-o", out, *extra]

    assert killer.run(predict(tmp_path / "ref.zarr"), tmp_path)[0] == DONE
    want = open_predictions(tmp_path / "ref.zarr").checksum
    out = tmp_path / "preds.zarr"
    argv = predict(out, *(["--overwrite"] if overwrite else []))

    def fresh():
        """No preds.zarr (nor a killed run's staging folder), or the old store for --overwrite."""
        for p in tmp_path.glob("*preds.zarr*"):
            shutil.rmtree(p)
        if overwrite:
            noisy_predictions(demo_store, out, 0.01, seed=3)
            return F.snapshot(out)
        return None

    fresh()
    reply, events = killer.run(argv, tmp_path)
    assert reply == DONE, killer.log()
    assert Path(events[-1]) == out  # the store is published by its last rename or swap
    for p in points(events, out):
        old = fresh()
        assert killer.run(argv, tmp_path, kill=p)[0] == KILLED
        if overwrite and F.snapshot(out) == old:
            pass  # the old store, byte for byte
        elif out.exists() or overwrite:
            assert open_predictions(out, truth=demo_store).checksum == want, p  # the whole new one
        again = predict(out, "--overwrite") if out.exists() else predict(out)
        assert killer.run(again, tmp_path)[0] == DONE, (p, killer.log())  # and the next run succeeds
        assert open_predictions(out, truth=demo_store).checksum == want


# --- submit -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def board_world(demo_store, tmp_path_factory):
    from hambench.leaderboard.testing import example_meta, noisy_predictions, write_board, write_meta
    from hambench.leaderboard.submit import submit
    from hambench.store import store_checksum

    d = tmp_path_factory.mktemp("boardworld")
    noisy_predictions(demo_store, d / "alpha.zarr", 0.010, seed=1, model="alpha")
    noisy_predictions(demo_store, d / "beta.zarr", 0.002, seed=2, model="beta")
    write_board(d / "board", {"qm9": {"kind": "molecule", "truth_checksum": store_checksum(demo_store),
                                      "store": str(demo_store)}})
    for m in ("alpha", "beta"):
        write_meta(d / f"{m}.yml", example_meta(m, "qm9"))
    submit(d / "alpha.zarr", d / "alpha.yml", board=d / "board", plots=False)
    return d


def _submissions(board: Path) -> dict:
    """Every submission the board holds, verified against its record: {(model, dataset): {file: sha256}}."""
    from hambench.leaderboard.board import open_board

    return {(s.model, s.dataset): s.record["files"] for s in open_board(board).submissions()}


@pytest.mark.parametrize("mode", ["new", "replace"])
def test_submit_killed_leaves_the_old_board_or_the_new_one(killer, board_world, tmp_path, mode):
    import shutil

    meta = board_world / ("beta.yml" if mode == "new" else "alpha.yml")
    argv = ["leaderboard", "submit", board_world / "beta.zarr", "--meta", meta, "--board", tmp_path / "board",
            "--no-plots"] + (["--replace"] if mode == "replace" else [])
    shutil.copytree(board_world / "board", tmp_path / "board")
    old = _submissions(tmp_path / "board")
    reply, events = killer.run(argv, tmp_path)
    assert reply == DONE, killer.log()
    new = _submissions(tmp_path / "board")
    assert new != old and Path(events[-1]).name == "qm9"  # published by the last rename or swap
    for p in points(events, tmp_path / "board"):
        shutil.rmtree(tmp_path / "board")
        shutil.copytree(board_world / "board", tmp_path / "board")
        assert killer.run(argv, tmp_path, kill=p)[0] == KILLED
        assert _submissions(tmp_path / "board") in (old, new), p
        site = tmp_path / f"site-{p['at']}-{p['when']}"
        reply, _ = killer.run(["leaderboard", "build", "--board", tmp_path / "board", "-o", site], tmp_path)
        assert reply == DONE, (p, killer.log())

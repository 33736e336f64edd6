"""The training engine (hambench.training) and `hambench train`: losses and schedules against hand-computed values,
overfitting real molecules (PySCF labels) and the real MoTe2 crystal, bit-identical resume, NaN handling,
checkpoints, and every bad input as one line with a non-zero exit and an untouched run folder.

Stores are built from real data: the shipped PySCF demo molecules (no DFT run) and ../shared/realdata MoTe2.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from hambench.errors import InputError
from hambench.store._store import open_store
from hambench.app.testing import cli, one_line_error
from hambench.testing import TOL
from hambench.training import (Schedule, TrainConfig, TrainingDiverged, edge_cutoffs, load_checkpoint, loss_terms,
                               save_checkpoint)

from _toy_model import register_toy
from _train_data import mote2_store, with_split


@pytest.fixture(scope="module")
def demo(demo_store):
    return demo_store


@pytest.fixture(scope="module")
def mote2(tmp_path_factory):
    return mote2_store(tmp_path_factory)


@pytest.fixture(scope="module", autouse=True)
def toy(tmp_path_factory):
    from hambench.models import registry

    yield register_toy(tmp_path_factory.mktemp("toy"))
    registry._REGISTRY.pop("toy", None)  # tests only: leave the registry as the package has it


# --- losses and schedules vs hand-computed values ---------------------------------------------------------
class _B:  # the fields loss_terms reads
    def __init__(self, H, H_ptr, edge_batch, B):
        self.H, self.H_ptr, self.edge_batch = H, torch.tensor(H_ptr), torch.tensor(edge_batch)
        self.natoms = torch.ones(B, dtype=torch.long)


def test_losses_match_hand_computed():
    # two structures: structure 0 has edges 0, 1 (1 + 4 elements), structure 1 has edge 2 (4 elements)
    target = torch.tensor([1.0, 0, 0, 0, 0, 2, 2, 2, 2], dtype=torch.float64)
    pred = torch.tensor([2.0, 0, 0, 0, 1, 2, 2, 2, 0], dtype=torch.float64, requires_grad=True)
    b = _B(target, [0, 1, 5, 9], [0, 0, 1], 2)
    t = loss_terms(pred, b, TrainConfig(loss="mse", reduction="element"))
    assert t["num"].item() / t["den"] == pytest.approx((1 + 1 + 4) / 9)
    t = loss_terms(pred, b, TrainConfig(loss="mse+mae", reduction="structure"))
    # structure 0: mse (1+1)/5, mae (1+1)/5; structure 1: mse 4/4, mae 2/4 → mean over structures
    assert t["num"].item() / t["den"] == pytest.approx(((0.4 + 0.4) + (1.0 + 0.5)) / 2)
    # complex (spinful) targets: |Δ|² and |Δ|
    tc = torch.tensor([1 + 1j, 0j], dtype=torch.complex128)
    pc = torch.tensor([1 + 0j, 3 + 4j], dtype=torch.complex128)
    bc = _B(tc, [0, 2], [0], 1)
    t = loss_terms(pc, bc, TrainConfig(loss="mse+mae"))
    assert t["num"].item() / t["den"] == pytest.approx((1 + 25) / 2 + (1 + 5) / 2)


def test_loss_unit_hartree_scales_the_loss_not_the_reported_errors():
    """loss_unit Ha: the loss of ΔH / 27.211386245988 (QH9's unit), the reported Σ|Δ|², Σ|Δ| still in eV."""
    target = torch.tensor([1.0, 0, 0, 0, 0, 2, 2, 2, 2], dtype=torch.float64)
    pred = torch.tensor([2.0, 0, 0, 0, 1, 2, 2, 2, 0], dtype=torch.float64)
    b = _B(target, [0, 1, 5, 9], [0, 0, 1], 2)
    h = 27.211386245988
    ev = loss_terms(pred, b, TrainConfig(loss="mse+mae", reduction="structure"))
    ha = loss_terms(pred, b, TrainConfig(loss="mse+mae", reduction="structure", loss_unit="Ha"))
    # structure 0: Δ = (1, 0, 0, 0, 1) eV; structure 1: Δ = (0, 0, 0, -2) eV → in Hartree, then mse + mae each
    hand = ((2 / h**2 / 5 + 2 / h / 5) + (4 / h**2 / 4 + 2 / h / 4)) / 2
    assert ha["num"].item() / ha["den"] == pytest.approx(hand, rel=TOL.roundoff)
    assert (ha["sq"], ha["abs"], ha["n"]) == (ev["sq"], ev["abs"], ev["n"]) == (6.0, 4.0, 9)
    mse = loss_terms(pred, b, TrainConfig(loss="mse", loss_unit="Ha"))
    assert mse["num"].item() / mse["den"] == pytest.approx(6 / 9 / h**2, rel=TOL.roundoff)


def test_warmup_linear_schedule_hand_computed():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=5e-4)
    cfg = TrainConfig(optimizer="adamw", lr=5e-4, scheduler="warmup_linear", warmup_steps=10, decay_steps=110,
                      lr_end=1e-7)
    s = Schedule(opt, cfg, cfg.decay_steps)
    assert s.lr_at(0) == 0.0 and s.lr_at(5) == pytest.approx(2.5e-4) and s.lr_at(10) == pytest.approx(5e-4)
    assert s.lr_at(60) == pytest.approx(5e-4 - (5e-4 - 1e-7) * 0.5) and s.lr_at(110) == pytest.approx(1e-7)
    assert s.lr_at(10_000) == pytest.approx(1e-7)


def test_plateau_smoothing_and_revert():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1.0)
    cfg = TrainConfig(scheduler="plateau", plateau_patience=1, plateau_cooldown=0, plateau_threshold=0.0,
                      plateau_factor=0.5, plateau_smoothing=0.5, revert_threshold=2.0, revert_patience=2)
    s = Schedule(opt, cfg, None)
    assert s.validation(4.0, math.inf) is None and s.smoothed == 4.0
    assert s.validation(2.0, 4.0) is None and s.smoothed == 3.0  # 0.5·2 + 0.5·4
    s.validation(3.0, 2.0)  # smoothed 3.0: no improvement (1 bad epoch = patience → not yet)
    s.validation(3.0, 2.0)  # second bad epoch > patience 1 → lr halves
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    assert s.validation(5.0, 2.0) is None  # > 2 × best once
    assert s.validation(5.0, 2.0) == "revert"  # twice in a row → revert


# --- checkpoints --------------------------------------------------------------------------------------------
def test_checkpoint_contents_and_edge_cutoffs(demo, tmp_path):
    r = cli("train", "toy", "--data", demo, "-o", tmp_path / "run", "--max-epochs", 2)
    assert r.exit_code == 0, r.output
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    for key in ("model", "train_config", "state", "optimizer", "schedule", "engine", "rng", "layout", "store",
                "edge_cutoffs", "code"):
        assert key in ck
    from hambench.store import store_checksum

    st = open_store(demo)
    assert ck["store"]["checksum"] == store_checksum(st)
    assert ck["layout"]["species"] == {str(z): s for z, s in st.species.items()}
    assert ck["engine"]["epoch"] == 2 and ck["code"]["hambench"]
    assert not list((tmp_path / "run").glob("*.partial"))
    # edge cut-offs: the longest edge per element pair of the training structures, recomputed per structure
    tr = np.arange(len(st))
    cut = edge_cutoffs(st, tr)
    ref: dict = {}
    for k in tr:
        s = st[int(k)]
        v = s.pos[s.dst] + s.shift @ s.cell - s.pos[s.src]
        for zi, zj, d in zip(s.Z[s.src], s.Z[s.dst], np.linalg.norm(v, axis=1)):
            ref[f"{zi}-{zj}"] = max(ref.get(f"{zi}-{zj}", 0.0), float(d))
    assert cut.keys() == ref.keys() and all(abs(cut[k] - ref[k]) < TOL.exact64 for k in ref)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["event"] for x in lines if x["event"] == "val"] == ["val", "val"]


def test_corrupt_and_foreign_checkpoints(demo, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_checkpoint(bad)
    save_checkpoint(tmp_path / "foreign.pt", {"state": {}})
    with pytest.raises(InputError, match="not a hambench checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    r = cli("predict", bad, "--data", demo, "-o", tmp_path / "p.zarr")
    assert "corrupt" in one_line_error(r)
    assert not (tmp_path / "p.zarr").exists()


# --- overfitting real data -------------------------------------------------------------------------------------
def _losses(run):
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    first = next(x["loss"] for x in lines if x["event"] == "train")  # the initial model on the whole batch
    last = [x["val_loss"] for x in lines if x["event"] == "val"][-1]
    return first, last


@pytest.mark.parametrize("model,store,steps,sets,ratio", [
    # three molecules (CH4, NH3, H2O; PySCF B3LYP/def2-SVP labels), one batch per step
    ("deephe3", "mol3", 40, ["train.lr=0.05"], 0.1),
    # qhnet's loss is QH9's, in Hartree: MSE + MAE with |ΔH| ≪ 1 Ha, so the MAE term leads and falls as the square
    # root of an MSE (0.3 of MAE ≈ 0.09 of MSE)
    ("qhnet", "mol3", 40, ["train.lr=0.05", "train.warmup_steps=2"], 0.3),
    # the real MoTe2 monolayer (OpenMX), one structure, validated on itself
    ("deephe3", "mote2", 40, ["train.lr=0.02"], 0.15),
])
def test_tiny_model_overfits_real_data(demo, mote2, tmp_path, model, store, steps, sets, ratio):
    if store == "mol3":
        path = with_split(demo, tmp_path / "mol3.zarr", [0, 0, 0] + [1] * 7, ["train", "rest"], "overfit")
        sets = sets + ["train.split=overfit", "train.batch_size=3"]
    else:
        path = mote2
    args = [x for kv in sets for x in ("--set", kv)]
    r = cli("train", model, "--data", path, "-o", tmp_path / "run", "--preset", "tiny", "--max-steps", steps,
            "--set", "train.log_every=1", *args)
    assert r.exit_code == 0, r.output
    first, last = _losses(tmp_path / "run")
    assert last < ratio * first, (first, last)


# --- resume ---------------------------------------------------------------------------------------------------
def _params(path):
    return load_checkpoint(path)["state"]


def test_resume_is_bit_identical(demo, tmp_path):
    """2N steps in one go == N steps, then --resume to 2N: deephe3 tiny, N in the middle of an epoch, the plateau
    scheduler reducing the lr, rotation augmentation on (its RNG and the loader's order must both resume)."""
    common = ["--preset", "tiny", "--set", "train.plateau_patience=0", "--set", "train.plateau_cooldown=0",
              "--set", "train.augment_rotations=true", "--seed", "7"]
    r = cli("train", "deephe3", "--data", demo, "-o", tmp_path / "a", "--max-steps", 14, *common)
    assert r.exit_code == 0, r.output
    r = cli("train", "deephe3", "--data", demo, "-o", tmp_path / "b", "--max-steps", 7, *common)
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "b" / "last.pt")["engine"]["batch_in_epoch"] == 3  # mid-epoch stop
    r = cli("train", "deephe3", "--data", demo, "-o", tmp_path / "b", "--max-steps", 14, "--resume", *common)
    assert r.exit_code == 0, r.output
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["engine"] == b["engine"] and a["engine"]["step"] == 14
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    assert a["schedule"] == b["schedule"]
    assert torch.equal(a["optimizer"]["state"][0]["exp_avg"], b["optimizer"]["state"][0]["exp_avg"])
    assert a["optimizer"]["param_groups"][0]["lr"] < 5e-3  # the plateau scheduler did act (tiny lr 5e-3)
    # a resume without config options takes the run's own config
    r = cli("train", "deephe3", "--data", demo, "-o", tmp_path / "b", "--max-steps", 15, "--resume")
    assert r.exit_code == 0, r.output


def test_resume_refusals_leave_the_run_untouched(demo, tmp_path):
    run = tmp_path / "run"
    assert cli("train", "toy", "--data", demo, "-o", run, "--max-steps", 3).exit_code == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    msg = one_line_error(cli("train", "toy", "--data", demo, "-o", run, "--max-steps", 3))
    assert "--resume" in msg
    msg = one_line_error(cli("train", "toy", "--data", demo, "-o", run, "--resume", "--set", "train.lr=0.5"))
    assert "different config" in msg and "lr" in msg
    msg = one_line_error(cli("train", "toy", "--data", demo, "-o", run, "--resume", "--set", "model.hidden=3"))
    assert "different config" in msg and "hidden" in msg
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert before == after


def test_nan_loss_stops_and_keeps_last_good_checkpoint(demo, tmp_path):
    run = tmp_path / "run"
    r = cli("train", "toy", "--data", demo, "-o", run, "--set", "model.nan_at_call=7", "--max-epochs", 5)
    msg = one_line_error(r)
    assert "NaN" in msg and "last good checkpoint" in msg
    ck = load_checkpoint(run / "last.pt")
    assert ck["engine"]["step"] == 4  # the end of epoch 1 (4 batches); the NaN came in the first batch of epoch 2+
    assert all(torch.isfinite(v).all() for v in ck["state"].values())
    assert not list(run.glob("*.partial"))
    ev = [json.loads(x)["event"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert "diverged" in ev


def test_early_stop_and_min_lr_stop(demo, tmp_path):
    # an lr too small to change the loss: no validation improves after the first → early stop after 2 more
    r = cli("train", "toy", "--data", demo, "-o", tmp_path / "a", "--max-epochs", 20, "--set", "train.lr=1e-30",
            "--set", "train.early_stop_patience=2")
    assert r.exit_code == 0 and "3 epochs (early_stop)" in r.output, r.output
    # plateau with patience 0 and factor 0.1: 1e-7 → 1e-8 at the second validation (no 5 % gain), below min_lr
    r = cli("train", "toy", "--data", demo, "-o", tmp_path / "b", "--max-epochs", 20, "--set", "train.lr=1e-7",
            "--set", "train.scheduler=plateau", "--set", "train.plateau_patience=0", "--set",
            "train.plateau_cooldown=0", "--set", "train.plateau_factor=0.1", "--set", "train.min_lr=5e-8")
    assert r.exit_code == 0 and "2 epochs (min_lr)" in r.output, r.output


# --- bad inputs -----------------------------------------------------------------------------------------------
def test_bad_configs_are_one_line(demo, mote2, tmp_path):
    assert "unknown model" in one_line_error(cli("train", "nope", "--data", demo, "-o", tmp_path / "r"))
    assert "unknown preset" in one_line_error(cli("train", "toy", "--data", demo, "-o", tmp_path / "r",
                                                  "--preset", "huge"))
    assert "train.lrr" in one_line_error(cli("train", "toy", "--data", demo, "-o", tmp_path / "r",
                                             "--set", "train.lrr=1"))
    msg = one_line_error(cli("train", "qhnet", "--data", demo, "-o", tmp_path / "r", "--set", "train.loss_unit=Eh"))
    assert "train.loss_unit" in msg and "'Ha'" in msg
    assert "no such store" in one_line_error(cli("train", "toy", "--data", tmp_path / "x.zarr", "-o",
                                                 tmp_path / "r"))
    assert "trains on molecule stores" in one_line_error(cli("train", "qhnet", "--data", mote2, "-o", tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_wrong_store_version(demo, tmp_path):
    bad = tmp_path / "v9.zarr"
    shutil.copytree(demo, bad)
    meta = json.loads((bad / "zarr.json").read_text())
    meta["attributes"]["hambench_store_version"] = 9
    (bad / "zarr.json").write_text(json.dumps(meta))
    assert "store version 9" in one_line_error(cli("train", "toy", "--data", bad, "-o", tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_spinful_store_refused(tmp_path):
    from hambench.pipelines import prepare
    from hambench.testing import require_realdata

    src = require_realdata("openmx_bismuthene_soc_scfout", "deeph_dock_converted")
    soc = tmp_path / "bi.zarr"
    prepare("deeph/folder", src, soc, quiet=True)
    msg = one_line_error(cli("train", "toy", "--data", soc, "-o", tmp_path / "r"))
    assert "spinful" in msg
    assert not (tmp_path / "r").exists()

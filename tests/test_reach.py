"""Can a model represent the store's blocks (models/_reach.py)? The parts each block type needs against the
Clebsch-Gordan selection rule by hand, what QHNet and DeepH-E3 reach against hand-derived sets, the refusal of
`hambench train` (one line naming the block type, nothing written), and `--allow-partial` carried to the score."""

from __future__ import annotations

import json

import pytest

from hambench.app.testing import cli, one_line_error
from hambench.models._reach import reachable_irreps, required_parts, unreachable_parts
from hambench.models.run import build_model, resolve_config
from hambench.store._store import open_store

E, O = 1, -1


@pytest.fixture(scope="module")
def layout(demo_store):
    return open_store(demo_store).layout  # H, C, N, O in def2-SVP: s, p, d shells


def test_required_parts_follow_the_selection_rule(layout):
    # l1 ⊗ l2 = |l1 − l2| … l1 + l2, parity (−1)^(l1 + l2); l2 ⊗ l1 is listed once as l1 ≤ l2
    assert required_parts(layout) == {
        (0, 0): {(0, E)}, (0, 1): {(1, O)}, (0, 2): {(2, E)},
        (1, 1): {(0, E), (1, E), (2, E)}, (1, 2): {(1, O), (2, O), (3, O)},
        (2, 2): {(0, E), (1, E), (2, E), (3, E), (4, E)}}


def _model(name, layout, *sets):
    res = resolve_config(name, "tiny", sets=sets)
    return build_model(res.spec, res.model, layout, "float32", 0)


def test_qhnet_reaches_its_sh_lmax_of_either_parity(layout):
    m = _model("qhnet", layout, "model.sh_lmax=2")
    assert reachable_irreps(m) == {(L, p) for L in range(3) for p in (E, O)}
    assert unreachable_parts(m, layout) == [
        "p⊗d needs L ≤ 3 (missing 3o), the model's features reach 2",
        "d⊗d needs L ≤ 4 (missing 3e, 4e), the model's features reach 2"]
    assert unreachable_parts(_model("tracegrad-qhnet", layout), layout) == []  # the tiny preset fits


def test_deephe3_reach_by_the_tensor_products(layout):
    # scalars only, harmonics 0e + 1o: every update writes 0e (0e⊗0e) and 1o (0e⊗1o) of its output irreps; the
    # last edge update's outputs are the blocks' irreps, of which 0e and 1o are reachable
    m = _model("deephe3", layout, "model.irreps_mid=4x0e", "model.lmax=1")
    assert reachable_irreps(m) == {(0, E), (1, O)}
    gaps = unreachable_parts(m, layout)
    assert gaps[0] == "s⊗d needs L ≤ 2 (missing 2e), the model's features reach 1"
    assert len(gaps) == 4  # s⊗d, p⊗p, p⊗d, d⊗d
    assert unreachable_parts(_model("tracegrad-deephe3", layout), layout) == []


def test_train_refuses_a_model_that_cannot_fill_a_block_unless_allow_partial(demo_store, tmp_path):
    run = tmp_path / "run"
    args = ["train", "qhnet", "--data", demo_store, "-o", run, "--preset", "tiny", "--max-steps", 1,
            "--set", "model.sh_lmax=2"]
    msg = one_line_error(cli(*args))
    assert "p⊗d needs L ≤ 3 (missing 3o), the model's features reach 2 (and 1 more block types)" in msg
    assert "--allow-partial" in msg
    assert not run.exists()
    r = cli(*args, "--allow-partial")
    assert r.exit_code == 0, r.output
    r = cli("predict", run, "--data", demo_store, "-o", tmp_path / "preds.zarr")
    assert r.exit_code == 0, r.output
    r = cli("score", tmp_path / "preds.zarr", "-o", tmp_path / "scores.json")
    assert r.exit_code == 0, r.output
    assert "cannot represent every block" in r.output and "d⊗d needs L ≤ 4" in r.output
    assert len(json.loads((tmp_path / "scores.json").read_text())["model"]["unreachable"]) == 2

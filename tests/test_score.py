"""``hambench score`` end to end: real stores with known perturbations, worker independence, subsets, the
reference run's worst, the --bands/--plots/--scf wiring, and every bad input of issue 16 item 7."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr

from hambench.scoring import _score as scoring
from hambench.scoring._metrics import Evaluator
from hambench.pipelines import prepare
from hambench.store import StoreRange, StoreWriter, open_store, seal_store, write_predictions
from hambench.testing import TOL, require_realdata
from hambench.app.testing import cli


@pytest.fixture(scope="module")
def qm9(demo_store):
    return demo_store


@pytest.fixture(scope="module")
def soc(tmp_path_factory):
    out = tmp_path_factory.mktemp("soc") / "soc.zarr"
    prepare("synthetic/random", None, out, quiet=True, count=9, seed=3, spinful=True, natoms=4)
    return out


@pytest.fixture(scope="module")
def qm9_preds(qm9, tmp_path_factory):
    """Predictions of 8 molecules: H + δS (δ = 10 meV) plus small noise on molecule 3."""
    st = open_store(qm9)
    idx = [0, 1, 2, 3, 5, 6, 8, 9]
    rng = np.random.default_rng(1)
    blocks = []
    for k in idx:
        s = st[k]
        h = s.H + 0.01 * s.S
        if k == 3:
            h = h + rng.normal(size=h.size) * 1e-4
        blocks.append(h)
    out = tmp_path_factory.mktemp("p") / "preds.zarr"
    return write_predictions(st, idx, blocks, out, {"model": {"name": "shifted"}, "split": None})


def test_molecules_end_to_end(qm9, qm9_preds, tmp_path):
    out = tmp_path / "scores.json"
    r = cli("score", qm9_preds, "-o", out)
    assert r.exit_code == 0, r.output
    for word in ("eps_mae", "psi", "µEh", "worst structure", f"wrote {out}"):
        assert word in r.output
    sc = json.loads(out.read_text())
    assert sc["scores_version"] == 1 and sc["kind"] == "molecule" and sc["n_structures"] == 8
    assert sc["model"] == {"name": "shifted"} and sc["hambench_version"]
    st = open_store(qm9)
    from hambench.store import open_predictions, store_checksum

    assert sc["truth"]["checksum"] == store_checksum(st)
    assert sc["predictions"]["checksum"] == open_predictions(qm9_preds).checksum
    m = sc["metrics"]
    assert m["eps_mae"] == pytest.approx(10.0, abs=TOL.noise_orbitals)  # δS moves every level by δ (noise on one molecule)
    assert m["H_mae_gauge"] < TOL.noise_residual and m["gauge_mu_mean"] == pytest.approx(10.0, abs=TOL.noise_gauge)
    assert sc["units"]["eps_mae"] == "meV" and sc["units"]["eps_mae_uEh"] == "µEh" and sc["units"]["psi"] == "1"
    assert [row["index"] for row in sc["per_structure"]] == [0, 1, 2, 3, 5, 6, 8, 9]
    assert m["H_mae_gauge_max_id"] == st[3].id
    assert {b["pair"] for b in sc["per_block"]} >= {"C-H", "H-C", "O-O"}
    # the OGB-style evaluator in one's own loop gives the same numbers (the same functions)
    p = open_predictions(qm9_preds)
    pairs = [p.pair(k) for k in range(len(p))]
    ev = Evaluator("molecule").eval({"pred": [a.H for a, _ in pairs], "truth": [b for _, b in pairs]})
    for key in ("H_mae", "H_mae_onsite", "H_mae_offsite", "eps_mae", "psi", "gap_mae", "H_mae_block_max"):
        assert ev[key] == pytest.approx(m[key], rel=TOL.exact64, abs=TOL.few_ulp), key


@pytest.fixture(scope="module")
def cluster():
    """One local dask.distributed cluster of 2 worker processes, reached by its address (--scheduler)."""
    import logging

    from dask.distributed import LocalCluster

    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                     silence_logs=logging.ERROR)
    yield c.scheduler_address
    c.close()


def test_output_does_not_depend_on_workers(qm9_preds, tmp_path, monkeypatch, cluster):
    from hambench.store._predictions import open_predictions

    monkeypatch.setattr(scoring, "RANGE_STRUCTURES", 3)  # several ranges, some across holes of the truth indices
    assert scoring.plan_ranges(open_predictions(qm9_preds)) == [(0, 3), (3, 6), (6, 8)]
    a, b = tmp_path / "w1.json", tmp_path / "w2.json"
    assert cli("-q", "score", qm9_preds, "-o", a).exit_code == 0
    r = cli("-q", "score", qm9_preds, "-o", b, "--scheduler", cluster)  # 2 worker processes
    assert r.exit_code == 0, r.output
    assert a.read_bytes() == b.read_bytes()


def test_spinful_subsets_and_reference_run(soc, tmp_path):
    st = open_store(soc)
    rng = np.random.default_rng(5)
    n = len(st)
    base = [st[k].H + 1e-3 * (rng.normal(size=st[k].H.size) + 1j * rng.normal(size=st[k].H.size)) for k in range(n)]
    model = [st[k].H + (0.5e-3 if k != 4 else 3e-3) * (1 + 1j) for k in range(n)]
    pa = write_predictions(st, range(n), base, tmp_path / "a.zarr")
    pb = write_predictions(st, range(n), model, tmp_path / "b.zarr")
    sa, sb = tmp_path / "a.json", tmp_path / "b.json"
    assert cli("score", pa, "-o", sa).exit_code == 0
    r = cli("score", pb, "-o", sb, "--reference", sa)
    assert r.exit_code == 0, r.output
    A, B = json.loads(sa.read_text()), json.loads(sb.read_text())
    assert set(B["subsets"]) == {"random:train", "random:val", "random:test"}
    assert B["subsets"]["random:val"]["n_structures"] == 3
    mb = B["metrics"]
    # a uniform (1+i)·c error: modulus √2·c, Re/Im variant c; the worst structure is 4 (3 meV)
    assert mb["H_mae_max_id"] == st[4].id and mb["H_mae_max"] == pytest.approx(3 * np.sqrt(2), rel=TOL.by_hand)
    assert mb["H_mae_reim"] == pytest.approx((8 * 0.5 + 3) / 9, rel=TOL.by_hand)
    per = {row["id"]: row["H_mae"] for row in B["per_structure"]}
    wid = A["metrics"]["H_mae_max_id"]
    assert mb["H_mae_max_reference_id"] == wid and mb["H_mae_max_on_reference"] == per[wid]
    wb = A["metrics"]["H_mae_block_max_block"]
    assert mb["H_mae_block_max_reference_block"] == wb
    assert mb["H_mae_block_max_on_reference"] == next(
        b["mae"] for b in B["per_block"] if f"{b['pair']} {b['block']}" == wb)
    sub = B["subsets"]["random:test"]["metrics"]
    assert sub["H_mae_max_reference_id"] == A["subsets"]["random:test"]["metrics"]["H_mae_max_id"]
    # subset values are the subset's own structures
    test_ids = [row["id"] for row in B["per_structure"] if "random:test" in row.get("subsets", [])]
    assert sub["H_mae"] == pytest.approx(np.mean([per[i] for i in test_ids]), rel=TOL.exact64)


def test_real_mote2_with_bands_and_plots(tmp_path, monkeypatch):
    import hambench.scoring._plots

    def fake_plots(scores, truth, preds, out_dir):  # the plots themselves are tested in test_plots.py
        assert "bands" in scores and len(preds) == 1 and truth.attrs["kind"] == "crystal"
        out_dir.mkdir()
        files = [out_dir / "block_mae.png", out_dir / "block_mae.svg"]
        for f in files:
            f.write_text("x")
        return files

    monkeypatch.setattr(hambench.scoring._plots, "make_plots", fake_plots)
    truth = tmp_path / "mote2.zarr"
    prepare("deeph/folder", require_realdata("deeph_new_MoTe2_band_reference"), truth, quiet=True)
    st = open_store(truth)
    s = st[0]
    preds = write_predictions(st, [0], [s.H + 0.003 * s.S], tmp_path / "p.zarr")  # H + δS: bands move by δ
    out = tmp_path / "s.json"
    kpath = require_realdata("deeph_new_MoTe2_band_reference", "K_PATH")
    r = cli("-q", "score", preds, "-o", out, "--kpath", kpath, "--plots", tmp_path / "plots")
    assert r.exit_code == 0, r.output
    sc = json.loads(out.read_text())
    m = sc["metrics"]
    assert m["H_mae"] == pytest.approx(3 * np.abs(s.S).mean(), rel=TOL.exact64)
    assert m["gauge_mu_mean"] == pytest.approx(3.0, rel=TOL.exact64) and m["H_mae_gauge"] < TOL.by_hand
    assert "bands" in sc and m["bands_mae"] == pytest.approx(3.0, abs=TOL.level_shift)  # meV
    assert sc["plots"] == [str(tmp_path / "plots" / "block_mae.png"), str(tmp_path / "plots" / "block_mae.svg")]


def test_scf_wiring(qm9_preds, tmp_path, monkeypatch):
    import hambench.scoring._scf

    seen = {}

    def fake(truth, preds, n, seed=43, workers=1, scheduler=None, quiet=False, cache_dir=None):
        seen.update(n=n, seed=seed, workers=workers, kind=truth.attrs["kind"], npred=len(preds))
        return {"metrics": {"scf_achieved_ratio_minao": 0.7}, "units": {"scf_achieved_ratio_minao": "1"},
                "per_molecule": [], "settings": {}}

    monkeypatch.setattr(hambench.scoring._scf, "scf_acceleration", fake)
    out = tmp_path / "s.json"
    assert cli("-q", "score", qm9_preds, "--scf", 3, "-o", out).exit_code == 0
    sc = json.loads(out.read_text())
    assert seen == {"n": 3, "seed": 43, "workers": 1, "kind": "molecule", "npred": 8}
    assert sc["scf"]["metrics"]["scf_achieved_ratio_minao"] == 0.7
    assert sc["metrics"]["scf_achieved_ratio_minao"] == 0.7 and sc["units"]["scf_achieved_ratio_minao"] == "1"


# --- bad input: one line naming the file, exit 1, no scores.json ------------------------------------------
def _handmade(truth_path, like, out, edit):
    """A prediction store written with StoreWriter from edited structures (as a foreign tool might)."""
    truth, lk = open_store(truth_path), open_store(like)
    structs = [truth[k] for k in range(2)]
    sizes = edit(structs)
    H = [s.H for s in structs]
    for s in structs:
        s.H = None  # columns of the edited structures without blocks, then the edited H
    batch = StoreRange.from_structures(structs).columns()
    batch["blocks/H"] = np.concatenate(H)
    batch["edges/H_size"] = sizes if sizes is not None else np.concatenate([np.diff(s.block_ptr()) for s in structs])
    counts = {"structures": 2, "atoms": len(batch["atoms/Z"]), "edges": len(batch["edges/src"]),
              "H": len(batch["blocks/H"]), "S": 0, "T": 0}
    w = StoreWriter(out, counts, {k: v for k, v in lk.attrs.items() if k not in ("counts", "content_checksum")})
    w.append(batch)
    w.close()
    return out


def _drop_edge(structs):
    s = structs[1]
    n = int(s.block_ptr()[-2])
    s.src, s.dst, s.shift, s.H = s.src[:-1], s.dst[:-1], s.shift[:-1], s.H[:n]


def _extra_edge(structs):
    s = structs[0]
    s.src, s.dst, s.shift = np.append(s.src, 0), np.append(s.dst, 1), np.vstack([s.shift, [[0, 0, 0]]])
    s.H = np.concatenate([s.H, s.block(1).ravel()])


def _wrong_size(structs):
    s = structs[0]
    s.H = s.H[:-1]  # the last block one element short
    sizes = np.concatenate([np.diff(x.block_ptr()) for x in structs])
    sizes[s.nedges - 1] -= 1
    return sizes


@pytest.mark.parametrize("case, msg", [
    ("nan", "predicted H contains NaN/Inf"),
    ("inf", "predicted H contains NaN/Inf"),
    ("missing_edges", "(missing edges)"),
    ("extra_edges", "(extra edges)"),
    ("sizes", "block sizes differ from the truth's"),
    ("truth_changed", "changed since"),
    ("scf_on_crystal", "--scf (SCF acceleration) needs a molecule store; this is a crystal store"),
    ("bands_on_molecule", "--bands needs a crystal store; this is a molecule store"),
    ("store_version", "store version 2, this hambench reads version 1"),
    ("preds_version", "predictions version 9, this hambench reads version 1"),
    ("no_preds", "no such prediction store"),
    ("reference_missing", "no such scores file"),
    ("reference_not_json", "is not a JSON scores file"),
    ("workers", "Invalid value for '--workers'"),
    ("truth_edited", "is not what was written"),
])
def test_bad_input_one_line_exit_1_no_scores(qm9, soc, tmp_path, case, msg):
    truth = qm9 if case != "scf_on_crystal" else soc
    if case in ("truth_changed", "truth_edited"):  # the only cases that edit the truth: on a copy
        truth = tmp_path / "truth.zarr"
        shutil.copytree(qm9, truth)
    st = open_store(truth)
    preds = write_predictions(st, [0, 1], [st[0].H + 1e-3, st[1].H], tmp_path / "p.zarr")
    args = ["score", preds]
    named = preds
    if case in ("nan", "inf"):
        g = zarr.open_group(str(preds), mode="r+")
        g["blocks/H"][7] = np.nan if case == "nan" else np.inf
    elif case in ("missing_edges", "extra_edges", "sizes"):
        edit = {"missing_edges": _drop_edge, "extra_edges": _extra_edge, "sizes": _wrong_size}[case]
        args[1] = named = _handmade(truth, preds, tmp_path / "bad.zarr", edit)
    elif case in ("truth_changed", "truth_edited"):
        g = zarr.open_group(str(truth), mode="r+")
        g["blocks/H"][0] = g["blocks/H"][0] + 1e-6
        if case == "truth_changed":
            seal_store(truth)  # as if prepared again with other labels (an unsealed edit is damage: truth_edited)
        named = truth
    elif case == "scf_on_crystal":
        args += ["--scf", "2"]
        named = truth
    elif case == "bands_on_molecule":
        args += ["--bands"]
        named = truth
    elif case == "store_version":
        zarr.open_group(str(preds), mode="r+").attrs["hambench_store_version"] = 2
    elif case == "preds_version":
        zarr.open_group(str(preds), mode="r+").attrs["hambench_predictions_version"] = 9
    elif case == "no_preds":
        args[1] = named = tmp_path / "nothing.zarr"
    elif case == "reference_missing":
        args += ["--reference", tmp_path / "none.json"]
        named = tmp_path / "none.json"
    elif case == "reference_not_json":
        (tmp_path / "bad.json").write_text("{not json")
        args += ["--reference", tmp_path / "bad.json"]
        named = tmp_path / "bad.json"
    elif case == "workers":
        args += ["--workers", "0"]
        named = None
    out = tmp_path / "scores.json"
    r = cli(*args, "-o", out)
    assert r.exit_code == (2 if case == "workers" else 1), r.output  # a flag out of its range: usage, exit 2
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("hambench: error: "), r.stderr
    assert msg in lines[0]
    if named is not None:
        assert str(named) in lines[0]
    assert not out.exists() and not list(tmp_path.glob("scores.json*"))


def test_range_runner_returns_in_order_and_carries_worker_errors(tmp_path, cluster):
    """hambench.parallel.run_tasks: results in task order; an InputError raised in a Dask worker process comes
    back as the same one-line error (it does not survive pickling on its own)."""
    from hambench.errors import InputError
    from hambench.parallel import run_tasks

    assert run_tasks(divmod, [(7, 2), (9, 4), (1, 1)]) == [(3, 1), (2, 1), (1, 0)]
    missing = tmp_path / "missing.zarr"
    with pytest.raises(InputError, match="no such prediction store") as e:
        run_tasks(scoring.open_predictions, [(missing,)], scheduler=cluster)
    assert e.value.path == str(missing)
    with pytest.raises(InputError, match="--workers must be >= 1"):
        run_tasks(divmod, [(1, 1)], workers=0)

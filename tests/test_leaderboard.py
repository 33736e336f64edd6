"""The leaderboard: meta.yml schema, submit (validation, recomputed scores, atomic record), list, site build.

The truth store is the embedded demo data (10 real PySCF QM9 molecules and one rotated copy of each, no DFT
run); predictions of the 10 originals are the truth plus seeded Gaussian noise of a known scale, so the recorded
H MAE is checked against an independent NumPy mean over the same noise.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from hambench.app.cli import main
from hambench.errors import InputError
from hambench.leaderboard import board as board_mod
from hambench.leaderboard.board import open_board
from hambench.leaderboard.schema import load_yaml_strict, meta_schema, validate_meta
from hambench.leaderboard.site import build_site
from hambench.leaderboard.submit import submit
from hambench.leaderboard.testing import (EXAMPLE_META, example_meta, hand_submission, noisy_predictions, numpy_mae_scorer,
                                          write_board, write_meta)
from hambench.app.testing import demo_truth
from hambench.store import store_checksum
from hambench.testing import TOL

SUBMISSION_METAS = sorted(board_mod.DEFAULT_BOARD.glob("submissions/*/*/meta.yml"))


# --- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    return demo_truth(tmp_path_factory.getbasetemp() / "leaderboard-truth")  # shared with test_site_browser.py


@pytest.fixture(scope="module")
def preds(truth, tmp_path_factory):
    """Two prediction stores: noise 10 meV (alpha) and 2 meV (beta)."""
    d = tmp_path_factory.mktemp("preds")
    return {"alpha": noisy_predictions(truth, d / "alpha.zarr", 0.010, seed=1, model="alpha"),
            "beta": noisy_predictions(truth, d / "beta.zarr", 0.002, seed=2, model="beta")}


@pytest.fixture
def board(tmp_path, truth):
    return write_board(tmp_path / "board", {"qm9-mini": {"kind": "molecule", "truth_checksum": store_checksum(truth),
                                                         "store": str(truth), "title": "QM9 mini"}})


def meta_file(tmp_path, model="alpha", dataset="qm9-mini", **over):
    return write_meta(tmp_path / f"{model}-{dataset}.yml", example_meta(model, dataset, **over))


def do_submit(preds_path, meta_path, board, **kw):
    """submit with hambench's own scorer (no plots unless asked: they cost a second each)."""
    kw.setdefault("plots", False)
    return submit(preds_path, meta_path, board=board, **kw)


def written(board) -> list[str]:
    """Every path under the board except datasets.yml (what a refused submit must not leave)."""
    return sorted(str(p.relative_to(board)) for p in board.rglob("*") if p.name != "datasets.yml")


# --- schema ----------------------------------------------------------------------------------------------
def test_some_submission_is_shipped():
    assert EXAMPLE_META in SUBMISSION_METAS


@pytest.mark.parametrize("path", SUBMISSION_METAS, ids=[f"{p.parent.parent.name}/{p.parent.name}" for p in
                                                        SUBMISSION_METAS])
def test_shipped_meta_is_valid(path):
    m = validate_meta(load_yaml_strict(path), path)
    assert (m["model"], m["dataset"]) == (path.parent.parent.name, path.parent.name)


def _set(d, dotted, value):
    *head, last = dotted.split(".")
    for k in head:
        d = d[k]
    if value is _DELETE:
        del d[last]
    else:
        d[last] = value


_DELETE = object()

BAD_META = [  # (id, dotted key, value, message fragment)
    ("unknown-key", "gpu", "A100", "unknown key 'gpu'"),
    ("unknown-nested-key", "training.gpu_hours", 3, "training: unknown key 'gpu_hours'"),
    ("wrong-type-parameters", "parameters", "many", "parameters: 'many' is not of type 'integer'"),
    ("wrong-type-seeds", "training.seeds", "0", "training.seeds: '0' is not of type 'array'"),
    ("float-parameters", "parameters", 1.5, "parameters: 1.5 is not of type 'integer'"),
    ("missing-code", "code", _DELETE, "'code' is missing"),
    ("missing-training-checksum", "training.store_checksum", _DELETE, "'store_checksum' is missing"),
    ("missing-inference-time", "inference.time_per_structure_s", _DELETE, "'time_per_structure_s' is missing"),
    ("path-escape-dotdot", "model", "../evil", "model: '../evil' is not a valid name"),
    ("path-escape-slash", "dataset", "qm9/../../etc", "dataset: 'qm9/../../etc' is not a valid name"),
    ("path-escape-absolute", "model", "/etc/passwd", "model: '/etc/passwd' is not a valid name"),
    ("hidden-name", "model", ".hidden", "model: '.hidden' is not a valid name"),
    ("double-dot-inside", "model", "a..b", "model: 'a..b' is not a valid name"),
    ("javascript-url", "code", "javascript:alert(1)", "code: 'javascript:alert(1)' does not match"),
    ("negative-time", "training.time_s", -1.0, "training.time_s: -1.0 is less than the minimum of 0"),
    ("zero-inference-time", "inference.time_per_structure_s", 0, "less than or equal to the minimum of 0"),
    ("no-seeds", "training.seeds", [], "training.seeds: [] should be non-empty"),
    ("bad-checksum", "training.store_checksum", "abc", "training.store_checksum: 'abc' does not match"),
    ("inputs-without-geometry", "inputs", ["overlap"], "inputs"),
    ("unknown-input", "inputs", ["geometry", "dft-density"], "inputs.1: 'dft-density' is not one of"),
    ("nested-hyperparameter", "hyperparameters.optimizer", {"lr": 1e-3}, "hyperparameters.optimizer"),
    ("meta-version", "meta_version", 2, "meta_version: 1 was expected"),
    ("date-format", "date", "1 Dec 2026", "date: '1 Dec 2026' does not match"),
    ("metric-not-number", "metrics", {"H_mae": "small"}, "metrics.H_mae: 'small' is not of type 'number'"),
    ("nan-metric", "metrics", {"H_mae": float("nan")}, "metrics.H_mae: not a finite number"),
]


@pytest.mark.parametrize("key,value,fragment", [b[1:] for b in BAD_META], ids=[b[0] for b in BAD_META])
def test_schema_rejects_malformed_meta(tmp_path, key, value, fragment):
    m = example_meta("alpha", "qm9-mini")
    _set(m, key, value if value is _DELETE else copy.deepcopy(value))
    path = write_meta(tmp_path / "meta.yml", m)
    with pytest.raises(InputError, match=re.escape(fragment)) as e:
        validate_meta(load_yaml_strict(path), path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


@pytest.mark.parametrize("text,fragment", [
    ("meta_version: 1\nmodel: a\nmodel: b\n", "duplicate key 'model'"),
    ("- just\n- a list\n", "expected a YAML mapping at the top level, found list"),
    ("model: [unclosed\n", "not valid YAML"),
], ids=["duplicate-key", "not-a-mapping", "bad-yaml"])
def test_yaml_reader_rejects(tmp_path, text, fragment):
    path = tmp_path / "meta.yml"
    path.write_text(text)
    with pytest.raises(InputError, match=re.escape(fragment)):
        load_yaml_strict(path)


def test_unquoted_date_stays_a_string(tmp_path):
    m = load_yaml_strict(EXAMPLE_META)
    assert m["date"] == "2026-12-01"


# --- submit ----------------------------------------------------------------------------------------------
def test_submit_records_recomputed_scores(tmp_path, board, preds, truth):
    sub, line = do_submit(preds["alpha"], meta_file(tmp_path), board)  # plots: see the `two` board
    d = board / "submissions" / "alpha" / "qm9-mini"
    assert sorted(p.name for p in d.iterdir()) == ["meta.yml", "record.json", "scores.json"]
    assert (d / "meta.yml").read_bytes() == (tmp_path / "alpha-qm9-mini.yml").read_bytes()
    scores = json.loads((d / "scores.json").read_text())
    # the record: hashlib's SHA-256 of the two files, the stores' own content checksums, the board's options
    import hashlib

    record = json.loads((d / "record.json").read_text())
    assert record["files"] == {n: hashlib.sha256((d / n).read_bytes()).hexdigest() for n in ("meta.yml", "scores.json")}
    assert record["truth_checksum"] == store_checksum(truth) == scores["truth"]["checksum"]
    assert record["predictions"] == {"name": "alpha.zarr", "checksum": store_checksum(preds["alpha"])}
    assert record["score_options"] == {} and (record["model"], record["dataset"]) == ("alpha", "qm9-mini")
    body = json.dumps({k: v for k, v in record.items() if k != "digest"}, sort_keys=True, separators=(",", ":"))
    assert record["digest"] == hashlib.sha256(body.encode()).hexdigest()
    # independent reference: |noise| over every H element of the 10 molecules (molecules store every atom pair,
    # so the stored blocks are the full matrix), pooled and per structure, in meV
    from hambench.store._predictions import open_predictions

    p = open_predictions(preds["alpha"])
    per = [np.abs(p.pair(k)[0].H - p.pair(k)[1].H) * 1000 for k in range(len(p))]
    assert scores["metrics"]["H_mae_pooled"] == pytest.approx(np.concatenate(per).mean(), rel=TOL.reassociation)
    assert scores["metrics"]["H_mae"] == pytest.approx(np.mean([d.mean() for d in per]), rel=TOL.reassociation)
    assert scores["metrics"]["H_mae_max"] == pytest.approx(max(d.mean() for d in per), rel=TOL.reassociation)
    ref = numpy_mae_scorer(p, p.truth, {})
    assert scores["metrics"]["H_mae_pooled"] == pytest.approx(ref["metrics"]["H_mae"], rel=TOL.reassociation)
    # Gaussian noise σ = 10 meV: E|x| = σ √(2/π) = 7.98 meV, within 3 % for 19k elements
    assert scores["metrics"]["H_mae"] == pytest.approx(10 * np.sqrt(2 / np.pi), rel=TOL.sampling_mean)
    assert 0.5 < scores["metrics"]["psi"] < 1 and scores["metrics"]["eps_mae"] > 0
    assert scores["predictions"]["path"] == "alpha.zarr" and scores["truth"]["path"] == truth.name  # no local paths
    assert "H_mae" in line and "alpha on qm9-mini" in line
    assert not [p for p in (board / "submissions" / "alpha").iterdir() if p.name.startswith(".")]


def test_typed_in_score_is_refused(tmp_path, board, preds):
    meta = meta_file(tmp_path, metrics={"H_mae": 1.0})
    with pytest.raises(InputError, match=r"stated H_mae = 1.0 but hambench recomputes 7\.9\d* .*never typed in"):
        do_submit(preds["alpha"], meta, board)
    assert written(board) == []


def test_typed_in_scores_file_is_refused_and_a_true_one_accepted(tmp_path, board, preds):
    fake = tmp_path / "claimed.json"
    fake.write_text(json.dumps({"metrics": {"H_mae": 0.5}}))
    with pytest.raises(InputError, match="claimed.json: stated H_mae = 0.5 but hambench recomputes"):
        do_submit(preds["beta"], meta_file(tmp_path, "beta"), board, claimed=fake)
    assert written(board) == []
    # the submitter's own honest numbers (printed to 6 digits) pass
    sub, _ = do_submit(preds["beta"], meta_file(tmp_path, "beta"), board)
    honest = tmp_path / "honest.json"
    honest.write_text(json.dumps({"metrics": {"H_mae": float(f"{sub.scores['metrics']['H_mae']:.7g}")}}))
    do_submit(preds["beta"], meta_file(tmp_path, "beta"), board, claimed=honest, replace=True)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"metrics": {"accuracy": 0.99}}))
    with pytest.raises(InputError, match="states metric 'accuracy', which hambench does not compute"):
        do_submit(preds["beta"], meta_file(tmp_path, "beta"), board, claimed=unknown, replace=True)


def test_unknown_dataset_is_refused(tmp_path, board, preds):
    with pytest.raises(InputError, match=r"dataset 'qm9-other' is not on the board .* \(its datasets: qm9-mini\)"):
        do_submit(preds["alpha"], meta_file(tmp_path, dataset="qm9-other"), board)
    assert written(board) == []


def test_truth_checksum_other_than_the_boards_is_refused(tmp_path, truth, preds):
    b = write_board(tmp_path / "b2", {"qm9-mini": {"kind": "molecule", "truth_checksum": "0" * 64}})
    with pytest.raises(InputError, match=r"checksum [0-9a-f]{16}…, the board's dataset 'qm9-mini' is 0{16}…"):
        do_submit(preds["alpha"], meta_file(tmp_path), b)
    assert written(b) == []


def test_kind_other_than_the_boards_is_refused(tmp_path, truth, preds):
    b = write_board(tmp_path / "b3", {"qm9-mini": {"kind": "crystal", "truth_checksum": store_checksum(truth)}})
    with pytest.raises(InputError, match="predicts molecules, the board's dataset 'qm9-mini' holds crystals"):
        do_submit(preds["alpha"], meta_file(tmp_path), b)
    assert written(b) == []


def test_split_other_than_the_boards_is_refused(tmp_path, truth, preds):
    b = write_board(tmp_path / "b4", {"qm9-mini": {"kind": "molecule", "truth_checksum": store_checksum(truth),
                                                   "split": "random:test"}})
    with pytest.raises(InputError, match="predicts split None; the board's dataset 'qm9-mini' is scored on "
                                         "'random:test'"):
        do_submit(preds["alpha"], meta_file(tmp_path), b)


def test_malformed_predictions_are_refused(tmp_path, board, truth, preds):
    import shutil

    import zarr

    nan = tmp_path / "nan.zarr"
    shutil.copytree(preds["alpha"], nan)
    g = zarr.open_group(str(nan), mode="r+")
    h = g["blocks/H"][:]
    h[123] = np.nan
    g["blocks/H"][:] = h
    with pytest.raises(InputError, match=r"nan\.zarr.*(NaN|not finite|checksum)"):
        do_submit(nan, meta_file(tmp_path), board)
    with pytest.raises(InputError, match="not a prediction store"):
        do_submit(truth, meta_file(tmp_path), board)  # the truth store itself
    with pytest.raises(InputError, match="no such prediction store"):
        do_submit(tmp_path / "nothing.zarr", meta_file(tmp_path), board)
    # fewer structures than the truth holds is fine for a board without a split, but other edges are not:
    few = noisy_predictions(truth, tmp_path / "few.zarr", 0.01, ids=[0, 1])
    g = zarr.open_group(str(few), mode="r+")
    dst = g["edges/dst"][:]
    dst[3] = (dst[3] + 1) % 5
    g["edges/dst"][:] = dst
    with pytest.raises(InputError, match="few.zarr"):
        do_submit(few, meta_file(tmp_path), board)
    assert written(board) == []


def test_names_cannot_escape_the_board(tmp_path, board, preds):
    outside = tmp_path / "outside"
    outside.mkdir()
    (board / "submissions").mkdir()
    os.symlink(outside, board / "submissions" / "alpha")
    with pytest.raises(InputError, match="is a symbolic link"):
        do_submit(preds["alpha"], meta_file(tmp_path), board)
    assert list(outside.iterdir()) == []
    # a meta.yml with a path in its name never gets as far as the board
    m = example_meta("alpha", "qm9-mini")
    m["model"] = "../../outside"
    with pytest.raises(InputError, match="not a valid name"):
        do_submit(preds["alpha"], write_meta(tmp_path / "evil.yml", m), board)
    with pytest.raises(InputError, match="not a valid name"):
        open_board(board).submission_dir("..", "qm9-mini")


def test_existing_submission_needs_replace(tmp_path, board, preds):
    do_submit(preds["alpha"], meta_file(tmp_path), board)
    with pytest.raises(InputError, match="already on the board; pass --replace"):
        do_submit(preds["beta"], meta_file(tmp_path), board)
    do_submit(preds["beta"], meta_file(tmp_path), board, replace=True)
    s = open_board(board).read_submission("alpha", "qm9-mini")
    assert s.scores["metrics"]["H_mae"] == pytest.approx(2 * np.sqrt(2 / np.pi), rel=TOL.sampling_mean)  # beta's 2 meV noise
    assert sorted(p.name for p in (board / "submissions" / "alpha").iterdir()) == ["qm9-mini"]


def test_failing_scorer_leaves_nothing(tmp_path, board, preds):
    def broken(*a):
        raise InputError("scorer", "boom")

    with pytest.raises(InputError, match="boom"):
        do_submit(preds["alpha"], meta_file(tmp_path), board, scorer=broken)
    assert written(board) == []


# --- list and build --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two(tmp_path_factory, truth, preds):
    """A board of two submissions (with plots), shared by the list/build tests (which do not change it)."""
    d = tmp_path_factory.mktemp("two")
    board = write_board(d / "board", {"qm9-mini": {"kind": "molecule", "truth_checksum": store_checksum(truth),
                                                   "store": str(truth), "title": "QM9 mini"}})
    do_submit(preds["alpha"], meta_file(d, "alpha"), board)
    do_submit(preds["beta"], meta_file(d, "beta"), board, plots=True)  # plots cost seconds: one is enough here
    plots = board / "submissions" / "beta" / "qm9-mini" / "plots"
    assert {"block_mae.png", "parity.png"} <= {p.name for p in plots.iterdir()}
    assert all(p.suffix == ".png" for p in plots.iterdir())  # the SVG twins are not recorded
    return board


def test_cli_submit_list_and_errors(tmp_path, board, preds):
    r = CliRunner().invoke(main, ["leaderboard", "submit", str(preds["beta"]), "--meta",
                                  str(meta_file(tmp_path, "beta")), "--board", str(board), "--no-plots"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("leaderboard: recorded beta on qm9-mini") and r.output.count("\n") == 1
    r = CliRunner().invoke(main, ["leaderboard", "submit", str(preds["alpha"]), "--meta",
                                  str(meta_file(tmp_path, "alpha", metrics={"H_mae": 0.1})), "--board", str(board)])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "never typed in" in r.output
    r = CliRunner().invoke(main, ["leaderboard", "list", "--board", str(board)])
    assert r.exit_code == 0 and "beta" in r.output and "alpha" not in r.output and "H MAE" in r.output
    r = CliRunner().invoke(main, ["leaderboard", "list", "--board", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no such board folder" in r.output


def test_list_ranks_by_primary_metric(two):
    from rich.console import Console

    from hambench.leaderboard.listing import print_board

    console = Console(record=True, width=160)
    print_board(two, console=console)
    text = console.export_text()
    assert text.index("beta") < text.index("alpha")  # 2 meV noise ranks above 10 meV


def test_site_builds_from_two_submissions(tmp_path, two):
    out = tmp_path / "site"
    line = build_site(two, out)
    assert "2 submission(s) on 1 dataset(s)" in line
    index = (out / "index.html").read_text()
    rows = re.findall(r'<tr data-model="([^"]+)"', index)
    assert rows == ["beta", "alpha"]
    table = json.loads((out / "qm9-mini" / "table.json").read_text())
    assert [r["model"] for r in table["rows"]] == ["beta", "alpha"] and [r["rank"] for r in table["rows"]] == [1, 2]
    keys = [c["key"] for c in table["columns"]]
    for k in ("H_mae", "eps_mae", "psi", "H_mae_max", "H_mae_block_max", "parameters",
              "inference_time_per_structure_s"):  # what hambench score computes for molecules, plus meta
        assert k in keys
    assert keys.index("H_mae") < keys.index("eps_mae") < keys.index("psi") < keys.index("H_mae_max")
    h = {c["key"]: c for c in table["columns"]}["H_mae"]
    assert h["better"] == "lower" and h["unit"] == "meV"
    with open(out / "qm9-mini" / "table.csv", newline="") as f:
        data = list(csv.DictReader(f))
    assert [d["model"] for d in data] == ["beta", "alpha"]
    assert float(data[0]["H_mae [meV]"]) == table["rows"][0]["H_mae"]
    # the best H MAE (beta) is marked, alpha's is not
    best_cells = re.findall(r'<td class="num best" data-sort="([^"]+)"', index)
    assert str(table["rows"][0]["H_mae"]) in best_cells and str(table["rows"][1]["H_mae"]) not in best_cells
    for m in ("alpha", "beta"):
        page = (out / "qm9-mini" / m / "index.html").read_text()
        assert "Worst structures" in page and (out / "qm9-mini" / m / "scores.json").exists()
        for src in re.findall(r'<img src="([^"]+)"', page):
            assert (out / "qm9-mini" / m / src).stat().st_size > 0
    beta_page = (out / "qm9-mini" / "beta" / "index.html").read_text()
    assert {"block_mae.png", "parity.png"} <= set(re.findall(r'<img src="([^"]+)"', beta_page))
    # offline: no resource is loaded from elsewhere (only <a href> may point to paper/code sites)
    for f in out.rglob("*.html"):
        text = f.read_text()
        assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', text), f
        assert "@import" not in text
    assert "url(" not in (out / "assets" / "leaderboard.css").read_text()
    # rebuilding replaces the site whole and leaves no partial folders
    build_site(two, out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("site")) == ["site"]


def test_board_refuses_hand_made_entries(tmp_path, two):
    import shutil

    two = shutil.copytree(two, tmp_path / "board")  # the shared board stays intact
    d = two / "submissions" / "alpha" / "qm9-mini"
    (d / "scores.json").unlink()
    with pytest.raises(InputError, match="scores.json: recorded at submit but missing"):
        open_board(two).submissions()
    (d / "record.json").unlink()
    with pytest.raises(InputError, match="record.json: missing: `hambench leaderboard submit` records every"):
        open_board(two).submissions()
    wrong = two / "submissions" / "gamma" / "qm9-mini"
    wrong.mkdir(parents=True)
    write_meta(wrong / "meta.yml", example_meta("delta", "qm9-mini"))
    with pytest.raises(InputError, match="says model 'delta', dataset 'qm9-mini' but lies in submissions/gamma"):
        open_board(two).read_submission("gamma", "qm9-mini")


def test_datasets_yml_is_validated(tmp_path):
    b = tmp_path / "b"
    b.mkdir()
    (b / "datasets.yml").write_text(yaml.safe_dump({"datasets_version": 1, "datasets": {
        "x": {"kind": "molecule", "truth_checksum": "0" * 64, "typo": 1}}}))
    with pytest.raises(InputError, match="datasets.x: unknown key 'typo'"):
        open_board(b)
    (b / "datasets.yml").write_text(yaml.safe_dump({"datasets_version": 1, "datasets": {
        "../x": {"kind": "molecule", "truth_checksum": "0" * 64}}}))
    with pytest.raises(InputError, match="datasets.yml"):
        open_board(b)


def test_columns_directions_twins_and_notes(tmp_path):
    """A board written by hand with hambench's metric names: directions, µEh twins, tooltips, neutral columns."""
    b = write_board(tmp_path / "b", {"qm9-mini": {"kind": "molecule", "truth_checksum": "0" * 64}})
    rows = {"good": (1.0, 0.99, 0.8, 3), "bad": (4.0, 0.90, 0.5, 3)}
    for model, (h, psi, lvl, n) in rows.items():
        hand_submission(b, model, "qm9-mini", example_meta(model, "qm9-mini"), {"metrics": {
            "H_mae": h, "H_mae_uEh": h * 36.75, "psi": psi, "H_mae_max": 2 * h, "H_mae_max_id": f"mol-{model}",
            "scf_error_level_ratio_minao": lvl, "scf_n_molecules": n, "eps_mae": None},
            "units": {"H_mae": "meV", "H_mae_uEh": "µEh", "psi": "1", "H_mae_max": "meV"}})
    out = tmp_path / "site"
    build_site(b, out)
    table = json.loads((out / "qm9-mini" / "table.json").read_text())
    cols = {c["key"]: c for c in table["columns"]}
    assert [r["model"] for r in table["rows"]] == ["good", "bad"]
    assert cols["psi"]["better"] == "higher" and cols["scf_error_level_ratio_minao"]["better"] == "higher"
    assert cols["H_mae_max"]["label"] == "worst structure" and cols["scf_n_molecules"]["better"] == ""
    assert "eps_mae" not in cols  # null everywhere: no column
    assert "H_mae_uEh" in cols and table["rows"][0]["H_mae_uEh"] == pytest.approx(36.75)
    assert table["rows"][0]["notes"]["H_mae_max"] == "structure mol-good"
    index = (out / "index.html").read_text()
    assert 'data-key="H_mae_uEh"' not in index and 'data-key="H_mae"' in index  # twin only in JSON/CSV
    assert 'data-key="scf_n_molecules"' not in index and "scf_n_molecules" in cols  # a fact, not a score
    assert 'title="structure mol-good"' in index
    good_row = re.search(r'<tr data-model="good">(.*?)</tr>', index, re.S).group(1)
    bad_row = re.search(r'<tr data-model="bad">(.*?)</tr>', index, re.S).group(1)
    assert good_row.count('class="num best"') == 4  # H MAE, ψ (higher), worst structure, error-level (higher)
    assert bad_row.count('class="num best"') == 0  # scf_n_molecules is equal and neutral; meta columns equal


def test_equivariance_from_rotated_copies(tmp_path_factory, tmp_path):
    """Rotated copies among the predictions: exact truth → 0; one s–s element of one original off by δ → δ."""
    from hambench.leaderboard.equivariance import prediction_equivariance
    from hambench.store._predictions import open_predictions, write_predictions
    from hambench.store._store import open_store

    aug = demo_truth(tmp_path_factory.getbasetemp() / "leaderboard-truth")  # 10 originals + 10 rotated copies
    st = open_store(aug)
    blocks = [st[k].H.copy() for k in range(len(st))]
    exact = write_predictions(st, range(len(st)), blocks, tmp_path / "exact.zarr", {"model": {"name": "exact"}})
    eq = prediction_equivariance(open_predictions(exact))
    assert eq["metrics"]["equivariance_n_pairs"] == 10
    assert eq["metrics"]["equivariance_error"] <= TOL.by_hand  # the store's copies are rotated exactly (eV → meV)
    # structure 0 is an original; element 0 of its first edge is the (s, s) element of an on-site or s-s block,
    # which every rotation leaves alone (D⁰ = 1): the pair (copy of 0, 0) differs by exactly δ there
    parent = st.array("structures/parent")[:]
    assert parent[0] == -1 and list(parent).count(0) == 1
    delta = 0.05  # eV
    blocks[0][0] += delta
    off = write_predictions(st, range(len(st)), blocks, tmp_path / "off.zarr", {"model": {"name": "off"}})
    eq = prediction_equivariance(open_predictions(off))
    n_pair_elements = sum(st[k].H.size for k in range(len(st)) if parent[k] >= 0)
    assert eq["metrics"]["equivariance_error"] == pytest.approx(delta * 1000, rel=TOL.by_hand)
    assert eq["metrics"]["equivariance_mae"] == pytest.approx(delta * 1000 / n_pair_elements, rel=TOL.roundoff_of_roundoff)
    # only originals predicted: no pair, nothing reported
    only = write_predictions(st, [k for k in range(len(st)) if parent[k] < 0],
                             [blocks[k] for k in range(len(st)) if parent[k] < 0], tmp_path / "orig.zarr", {})
    assert prediction_equivariance(open_predictions(only)) is None
    # submit adds it to the recorded scores
    b = write_board(tmp_path / "b", {"aug": {"kind": "molecule", "truth_checksum": store_checksum(aug)}})
    sub, _ = do_submit(off, meta_file(tmp_path, "off", "aug"), b, plots=False)
    assert sub.scores["metrics"]["equivariance_error"] == pytest.approx(delta * 1000, rel=TOL.by_hand)
    assert sub.scores["units"]["equivariance_error"] == "meV"


def test_site_with_minimal_meta_and_sparse_scores(tmp_path):
    """Only the required meta.yml fields, scores with subsets and rows missing optional parts: the site builds."""
    b = write_board(tmp_path / "b", {"qm9-mini": {"kind": "molecule", "truth_checksum": "0" * 64}})
    full = example_meta("lean", "qm9-mini")
    required = {k: full[k] for k in meta_schema()["required"]}
    required["training"] = {k: full["training"][k] for k in ("store_checksum", "seeds", "hardware", "time_s")}
    required["inference"] = {k: full["inference"][k] for k in ("time_per_structure_s", "hardware")}
    hand_submission(b, "lean", "qm9-mini", required, {
        "metrics": {"H_mae": 1.5, "psi": None, "H_mae_max_id": "x"}, "subsets": {"s:test": {"n_structures": 1}},
        "per_structure": [{"H_mae": 1.5}], "per_block": [{"mae": 3.0}]})
    out = tmp_path / "site"
    build_site(b, out)
    page = (out / "qm9-mini" / "lean" / "index.html").read_text()
    assert "lean" in page and "s:test" in page and "paper" not in re.findall(r'class="ext"[^>]*>(\w+)<', page)


def test_repository_board_is_complete_and_builds(tmp_path):
    """The shipped board: datasets.yml valid, every submission recorded by `submit` against its dataset's truth
    (by checksum, no absolute paths), the example one with its SCF scores and plots."""
    b = open_board()
    subs = b.submissions()
    assert ("qhnet", "qm9-demo") in [(s.model, s.dataset) for s in subs]
    for s in subs:
        assert b.truth_matches(b.datasets[s.dataset], s.scores["truth"]["checksum"]), (s.model, s.dataset)
        assert not s.scores["truth"]["path"].startswith("/") and not s.scores["predictions"]["path"].startswith("/")
    s = next(s for s in subs if (s.model, s.dataset) == ("qhnet", "qm9-demo"))
    assert b.truth_matches(b.datasets["qm9-demo"], s.scores["truth"]["checksum"])
    assert s.scores["metrics"]["scf_n_molecules"] == b.datasets["qm9-demo"].score["scf"]
    assert s.scores["predictions"]["path"] == "qhnet-ci.zarr" and not s.scores["truth"]["path"].startswith("/")
    assert {p.name for p in s.plots} >= {"block_mae.png", "parity.png"}
    line = build_site(None, tmp_path / "site")
    assert f"{len(subs)} submission(s)" in line and (tmp_path / "site" / "qm9-demo" / "qhnet" / "parity.png").stat().st_size

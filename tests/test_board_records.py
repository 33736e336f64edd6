"""A board nobody can edit into a lie: records, re-derivation from predictions, and where `build` may write.

The one-line refusals (each damage to a board, each forbidden ``-o``) are cases of tests/test_faults.py; here are
the accepting paths and what a record can and cannot prove.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

import _faults as F
from _toy_model import register_toy
from hambench.app.testing import cli, one_line_error
from hambench.errors import InputError
from hambench.leaderboard.board import open_board
from hambench.leaderboard.site import SITE_MARK, build_site
from hambench.leaderboard.verify import first_difference
from hambench.testing import TOL


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_store):
    from hambench.models import registry

    register_toy(tmp_path_factory.mktemp("toy"))
    yield F.build_world(tmp_path_factory.mktemp("records") / "world", demo_store)
    registry._REGISTRY.pop("toy", None)


@pytest.fixture
def w(world, tmp_path):
    """A private copy of the world."""
    return shutil.copytree(world, tmp_path / "w", symlinks=True)


def test_build_rederives_every_recorded_score_from_the_predictions(w):
    line = build_site(w / "board", w / "site2", predictions=[w], strict=True)
    assert "1 submission(s)" in line and "every record checked, 1 re-derived from predictions" in line
    site = w / "site2" / "qm9" / "alpha"
    for name in ("scores.json", "meta.yml", "record.json"):  # the published site carries the record too
        assert (site / name).read_bytes() == (w / F.SUB / name).read_bytes()
    assert json.loads((w / "site2" / SITE_MARK).read_text())["built_by"] == "hambench leaderboard build"


def test_a_full_forgery_passes_the_seal_but_not_the_rederivation(w):
    """What a record cannot prove: every H MAE scaled consistently and the record recomputed (all public
    SHA-256) reads as a valid board; only scoring the recorded predictions again exposes it."""
    F.both(F.json_edit(f"{F.SUB}/scores.json", F.forge_per_structure),
           F.reseal())(w)
    sub = open_board(w / "board").read_submission("alpha", "qm9")
    assert sub.scores["metrics"]["H_mae"] < 1e-3  # 10 meV noise shown as ~8e-5 meV
    build_site(w / "board", w / "site2")  # no predictions at hand: the forgery is published
    with pytest.raises(InputError, match=r"scores.json: metrics.H_mae = 7\.\d+e-05 but scoring the recorded "
                                         r"predictions .*preds.zarr again gives 7\.9\d+"):
        build_site(w / "board", w / "site3", predictions=[w])
    assert not (w / "site3").exists()


def test_build_writes_into_new_empty_own_or_overwritten_outputs(w):
    b = w / "board"
    build_site(b, w / "deep" / "new")  # a new folder (parents made)
    (w / "empty").mkdir()
    build_site(b, w / "empty")
    assert (w / "empty" / "index.html").is_file()
    (w / "site" / "stale.html").write_text("from an older build")  # a marked site is rebuilt whole
    build_site(b, w / "site")
    assert not (w / "site" / "stale.html").exists() and (w / "site" / SITE_MARK).is_file()
    (w / "mine").mkdir()
    (w / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="neither empty nor a site"):
        build_site(b, w / "mine")
    assert (w / "mine" / "notes.txt").read_text() == "mine"
    build_site(b, w / "mine", overwrite=True)  # asked for: replaced
    assert not (w / "mine" / "notes.txt").exists() and (w / "mine" / "index.html").is_file()
    (w / "afile").write_text("x")
    build_site(b, w / "afile", overwrite=True)
    assert (w / "afile" / "index.html").is_file()
    assert not [p.name for p in w.iterdir() if ".partial" in p.name]


def test_cli_build_options(w):
    r = cli("leaderboard", "build", "--board", w / "board", "-o", w / "s", "--predictions", w, "--strict")
    assert r.exit_code == 0 and "1 re-derived from predictions" in r.output, r.output
    line = one_line_error(cli("leaderboard", "build", "--board", w / "board", "-o", w / "board", "--overwrite"))
    assert "-o would replace" in line and (w / "board" / "datasets.yml").is_file()


def test_submit_then_verify_round_trip_with_plots(w):
    """A submission with plots: every PNG is sealed in the record; the site shows them; replacing one is seen."""
    from hambench.leaderboard.submit import submit

    sub, _ = submit(w / "preds_beta.zarr", w / "beta.yml", board=w / "board", plots=True)
    pngs = sorted(p.name for p in sub.plots)
    assert pngs and sorted(k for k in sub.record["files"] if k.startswith("plots/")) == [f"plots/{n}" for n in pngs]
    (sub.path / "plots" / pngs[0]).write_bytes(b"\x89PNG another picture")
    with pytest.raises(InputError, match=f"plots/{pngs[0]}: changed after submit"):
        open_board(w / "board").submissions()


def test_benign_aliases_in_a_model_config_are_read(w):
    """hambench.config bounds alias expansion rather than refusing aliases: a config may reuse a block."""
    from hambench.config import load_yaml

    (w / "c.yaml").write_text("small: &s {hidden: 4}\nmodel: *s\n")
    assert load_yaml(w / "c.yaml") == {"small": {"hidden": 4}, "model": {"hidden": 4}}
    (w / "bomb.yaml").write_text(F.ALIAS_BOMB)
    with pytest.raises(InputError, match="expands to more than 100,000 values"):
        load_yaml(w / "bomb.yaml")


def test_first_difference_reads_like_a_diff():
    rec = {"metrics": {"H_mae": 1.0, "scf_t2_s": 3.0}, "per_structure": [{"id": "a", "H_mae": 1.0}]}
    same = {"metrics": {"H_mae": 1.0 * (1 + TOL.by_hand), "scf_t2_s": 9.0},
            "per_structure": [{"id": "a", "H_mae": 1.0}]}
    assert first_difference(rec, same) is None  # within submit's claim tolerance; wall times not compared
    assert first_difference(rec, {**same, "per_structure": [{"id": "b", "H_mae": 1.0}]}) == ("per_structure.0.id",
                                                                                              "a", "b")
    assert first_difference(rec, {**same, "metrics": {"H_mae": 1.1}}) == ("metrics.H_mae", 1.0, 1.1)
    more = {**same, "metrics": {**same["metrics"], "psi": 0.9}}
    assert first_difference(rec, more) == ("metrics.psi", "(missing)", 0.9)  # a number left out is a lie too
    assert first_difference(rec, more, same_version=False) is None  # a newer hambench computes more
    assert first_difference({"metrics": {"x": 1}}, {"metrics": {}}) == ("metrics.x", 1, "(not computed)")


def test_records_survive_a_yaml_round_trip_of_datasets(w):
    """Rewriting datasets.yml with the same content (another YAML layout) leaves every record valid."""
    d = yaml.safe_load((w / "board" / "datasets.yml").read_text())
    (w / "board" / "datasets.yml").write_text(yaml.safe_dump(d, default_flow_style=True))
    assert [s.model for s in open_board(w / "board").submissions()] == ["alpha"]


def test_submit_publishes_nothing_a_reader_would_refuse(w):
    """A scorer whose headline H MAE is not the mean of its per-structure ones: refused before publishing."""
    from hambench.leaderboard.submit import recompute_scores, submit

    def lying(preds, truth, options, plots_dir):
        s = recompute_scores(preds, truth, options, plots_dir)
        s["metrics"]["H_mae"] = 1e-4
        return s

    before = F.snapshot(w / "board")
    with pytest.raises(InputError, match=r"preds_beta.zarr: metrics.H_mae = 0.0001 is not the mean 1\.\d+ of its 10 "
                                         "per-structure H MAEs"):
        submit(w / "preds_beta.zarr", w / "beta.yml", board=w / "board", plots=False, scorer=lying)
    assert F.changes(before, F.snapshot(w / "board")) == []

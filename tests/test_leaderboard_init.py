"""``hambench leaderboard init``: a board made from a truth store, its meta template, and the refusals."""

from __future__ import annotations

import yaml

from hambench.app.testing import cli, one_line_error
from hambench.leaderboard.board import open_board
from hambench.leaderboard.testing import noisy_predictions
from hambench.store import open_store, store_checksum


def _filled(template: str, **values) -> dict:
    """The template as YAML with every placeholder replaced (as a submitter would)."""
    meta = yaml.safe_load(template)
    meta.update(model="noise-1mev", display_name="truth + 1 meV noise", architecture="none", authors=["Test"],
                code="https://example.org/code", license="MIT", date="2026-12-07", parameters=0,
                inference={"time_per_structure_s": 0.01, "hardware": "2 CPU cores"})
    meta["training"].update(store_checksum=store_checksum(values["train"]), hardware="2 CPU cores", time_s=1.0)
    return meta


def test_init_board_then_submit_list_build(demo_store, tmp_path):
    board = tmp_path / "myboard"
    r = cli("leaderboard", "init", "--board", board, "--dataset", "demo", "--truth", demo_store)
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load((board / "datasets.yml").read_text())
    entry = doc["datasets"]["demo"]
    # computed from the store itself, nothing typed
    assert entry["truth_checksum"] == store_checksum(demo_store)
    assert entry["kind"] == open_store(demo_store).attrs["kind"] == "molecule"
    assert (board / entry["store"]).resolve() == demo_store.resolve()
    ds = open_board(board).dataset("demo", None)
    assert ds.truth_checksum == entry["truth_checksum"] and ds.split is None
    template = (board / "templates" / "demo.meta.yml").read_text()
    preds = noisy_predictions(demo_store, tmp_path / "preds.zarr", scale=1e-3)
    # the unfilled template is refused, naming the first placeholder
    line = one_line_error(cli("leaderboard", "submit", preds, "--meta", board / "templates" / "demo.meta.yml",
                              "--board", board, "--no-plots"))
    assert "model: fill in the template's placeholder '<model-key>'" in line
    meta = tmp_path / "meta.yml"
    meta.write_text(yaml.safe_dump(_filled(template, train=demo_store)))
    r = cli("leaderboard", "submit", preds, "--meta", meta, "--board", board, "--no-plots")
    assert r.exit_code == 0, r.output
    assert (board / "submissions" / "noise-1mev" / "demo" / "scores.json").is_file()
    assert cli("leaderboard", "list", "--board", board).exit_code == 0
    r = cli("leaderboard", "build", "--board", board, "-o", tmp_path / "site")
    assert r.exit_code == 0 and (tmp_path / "site" / "index.html").is_file(), r.output
    # init again with the same store is harmless; the datasets file is unchanged
    before = (board / "datasets.yml").read_text()
    assert cli("leaderboard", "init", "--board", board, "--dataset", "demo", "--truth", demo_store).exit_code == 0
    assert (board / "datasets.yml").read_text() == before


def test_init_refusals(demo_store, tmp_path):
    board = tmp_path / "b"
    assert cli("leaderboard", "init", "--board", board, "--dataset", "demo", "--truth", demo_store).exit_code == 0
    before = (board / "datasets.yml").read_text()
    other = tmp_path / "other.zarr"
    from hambench.pipelines import prepare

    prepare("synthetic/random", None, other, quiet=True, count=2, seed=1)
    cases = [
        (["--dataset", "demo", "--truth", other], "dataset 'demo' is already on this board"),
        (["--dataset", "x", "--truth", demo_store, "--split", "nosuch:test"], "no split named 'nosuch'"),
        (["--dataset", "x", "--truth", tmp_path / "missing.zarr"], "missing.zarr"),
        (["--dataset", "../x", "--truth", demo_store], "is not a valid name"),
        (["--dataset", "x", "--truth", other, "--scf", "1"], "--scf 1"),
    ]
    for args, message in cases:
        line = one_line_error(cli("leaderboard", "init", "--board", board, *args))
        assert message in line, (args, line)
    assert (board / "datasets.yml").read_text() == before
    assert not (board / "templates" / "x.meta.yml").exists()
    (tmp_path / "file").write_text("")
    assert "is a file" in one_line_error(cli("leaderboard", "init", "--board", tmp_path / "file", "--dataset", "d",
                                             "--truth", demo_store))

"""The tables people read (issue 29 §3–4): the site's headline table and its "all columns" rest, one number format
per column, stars on accuracy metrics only, the load-dependent note, model pages grouped by topic with each
metric's definition; terminal tables (``hambench leaderboard list``, ``hambench score``) at most 100 columns wide
with every number whole. The browser half (fits 1,280 px, the toggle) is tests/test_site_browser.py."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
from rich.console import Console

from hambench.app.testing import cli
from hambench.leaderboard.site import build_site
from hambench.leaderboard.testing import write_catalogue_board
from hambench.scoring import CATALOGUE, CONSOLE_WIDTH, TextColumn, column_format, fit_tables

#: the issue's headline of a molecule dataset: model, H MAE, ε, ψ, SCF, equivariance error, parameters, a link
HEADLINE = ["rank", "model", "H_mae", "eps_mae", "psi", "scf_achieved_ratio_minao", "equivariance_error",
            "parameters", "links"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp("catalogue-site")
    board = write_catalogue_board(d / "board")
    build_site(board, d / "site")
    return board, d / "site"


def _headers(index: str) -> list[tuple[str, bool, str]]:
    """(data-key, extra, inner html) of every header cell of the key row."""
    row = re.search(r'<tr class="keys">(.*?)</tr>', index, re.S).group(1)
    out = []
    for tag, inner in re.findall(r"(<th [^>]*>)(.*?)</th>", row, re.S):
        out.append((re.search(r'data-key="([^"]+)"', tag).group(1), " data-extra" in tag, inner))
    return out


def _cells(index: str) -> dict[str, list[str]]:
    """{model: [cell texts]} of the table body (rank, model, then one per column, in header order)."""
    out = {}
    for model, body in re.findall(r'<tr data-model="([^"]+)">(.*?)</tr>', index, re.S):
        out[model] = [html.unescape(re.sub(r"<[^>]+>", "", c)).replace("★", "").strip()
                      for c in re.findall(r"<td[^>]*>(.*?)</td>", body, re.S)]
    return out


def test_headline_and_the_rest(site):
    _, out = site
    index = (out / "index.html").read_text()
    heads = _headers(index)
    assert [k for k, extra, _ in heads if not extra] == HEADLINE
    extra = [k for k, e, _ in heads if e]
    shown = {k for k, m in CATALOGUE.items() if m.better and m.topic != "bands" and not k.endswith("_uEh")}
    assert shown - set(HEADLINE) <= set(extra)  # every ranked or timed metric is one click away
    assert "inference_time_per_structure_s" in extra and "training_time_s" in extra
    assert f"All {len(heads) - 2} columns" in index  # the toggle names how many (the rank column aside)
    # labels and units are the catalogue's: no raw key is a header
    for key, _, inner in heads:
        if key in CATALOGUE:
            label = html.unescape(re.sub(r"<[^>]+>", " ", inner))
            assert CATALOGUE[key].label in label and "_" not in label, key


def test_one_format_per_column(site):
    _, out = site
    index = (out / "index.html").read_text()
    keys = [k for k, _, _ in _headers(index)]
    rows = list(_cells(index).values())
    checked = 0
    for j, key in enumerate(keys):
        texts = [r[j] for r in rows]
        if key in ("rank", "model", "links") or "—" in texts:
            continue
        sci = [bool(re.fullmatch(r"-?\d\.\d\de[+-]\d\d", t)) for t in texts]
        assert all(sci) or not any(sci), (key, texts)
        if not any(sci):
            decimals = {len(t.split(".")[1]) if "." in t else 0 for t in texts}
            assert len(decimals) == 1, (key, texts)
        checked += 1
    assert checked >= 25
    f = column_format([9437.0, 17640.0])  # the column: 9437 and 1.764e+04 in one format
    assert (f(9437.0), f(17640.0)) == ("9,437", "17,640")


def test_stars_only_on_accuracy_metrics(site):
    _, out = site
    index = (out / "index.html").read_text()
    keys = [k for k, _, _ in _headers(index)]
    starred = set()
    for _, body in re.findall(r'<tr data-model="([^"]+)">(.*?)</tr>', index, re.S):
        for j, td in enumerate(re.findall(r"<td[^>]*>", body)):
            if 'class="num best"' in td:
                starred.add(keys[j])
    assert {"H_mae", "psi", "eps_mae"} <= starred
    for key in starred:
        assert CATALOGUE[key].role == "accuracy", key
    # parameters and wall times differ between the models, yet carry no star
    assert not starred & {"parameters", "inference_time_per_structure_s", "training_time_s", "scf_t2_s", "scf_t3_s"}
    params = [r[keys.index("parameters")] for r in _cells(index).values()]
    assert len(set(params)) == 3


def test_load_dependent_columns_carry_a_note(site):
    _, out = site
    index = (out / "index.html").read_text()
    note = re.search(r'<p class="note load-note"[^>]*>(.*?)</p>', index, re.S).group(1)
    note = html.unescape(re.sub(r"\s+", " ", note))
    for key in ("scf_t2_s", "scf_t3_s", "scf_t_dft_model_s"):
        assert CATALOGUE[key].label in note
    assert "inference time" in note and "training time" in note and "load" in note.lower()
    marked = re.findall(r'data-key="([^"]+)"[^>]*data-load', index)
    assert set(marked) == {"scf_t2_s", "scf_t_dft_model_s", "scf_t3_s", "inference_time_per_structure_s",
                           "training_time_s"}


def test_model_page_grouped_by_topic_with_definitions(site):
    _, out = site
    page = (out / "full" / "alpha" / "index.html").read_text()
    topics = re.findall(r'<h3 id="topic-([^"]+)">', page)
    assert topics == ["H", "orbitals", "SCF", "equivariance", "per-block", "per-structure"]
    rows = re.findall(r'<tr data-key="([^"]+)">(.*?)</tr>', page, re.S)
    assert {k for k, _ in rows} >= {"H_mae", "psi", "psi_subspace", "scf_achieved_ratio_minao", "equivariance_error"}
    for key, body in rows:
        definition = html.unescape(re.search(r'<td class="def">(.*?)</td>', body, re.S).group(1))
        want = CATALOGUE[key].definition or CATALOGUE[key].description
        assert want and want in definition, key
    psi_sub = html.unescape(dict(rows)["psi_subspace"])
    assert "‖C_trueᵀ S C_pred‖_F² / n_occ" in psi_sub
    assert "Worst structures" in page and "structure mol-0" in page  # the worst structure's id is its note


# --- terminal ------------------------------------------------------------------------------------------------
def _lines(text: str) -> list[str]:
    return [ln.rstrip() for ln in text.splitlines()]


def test_fit_tables_wraps_columns_and_never_cuts_a_number():
    values = [TextColumn(f"metric number {i} with a long header", [f"{(i + 1) * 123456.789:,.3f}", "—"])
              for i in range(12)]
    keys = [TextColumn("model", ["a-model-name", "b"], justify="left")]
    tables = fit_tables("title", keys, values, width=CONSOLE_WIDTH)
    assert len(tables) > 1
    console = Console(width=CONSOLE_WIDTH, record=True)
    for t in tables:
        console.print(t)
    text = console.export_text()
    assert max(len(ln) for ln in _lines(text)) <= CONSOLE_WIDTH
    for c in values:
        assert c.cells[0] in text  # whole
    assert text.count("a-model-name") == len(tables)  # the key columns repeat in every part
    assert "(columns 1–" in text and f"of {len(values)})" in text


def test_leaderboard_list_fits_100_columns(site):
    board, _ = site
    r = cli("leaderboard", "list", "--board", board)
    assert r.exit_code == 0, r.output
    assert max(len(ln) for ln in _lines(r.output)) <= CONSOLE_WIDTH
    assert "H MAE" in r.output and "ψ" in r.output and "more columns: hambench leaderboard list --all" in r.output
    assert "scf_t2" not in r.output and "inference time (t2)" not in r.output  # headline only
    r = cli("leaderboard", "list", "--board", board, "--all")
    assert r.exit_code == 0, r.output
    assert max(len(ln) for ln in _lines(r.output)) <= CONSOLE_WIDTH
    flat = re.sub(r"[\s│┃]+", " ", r.output)
    for label in ("inference time (t2)†", "SCF error-level ratio (1e)", "equivariance MAE", "training time†"):
        assert all(w in flat for w in label.split()), label
    assert "† wall time" in r.output and "…" not in r.output


def test_repository_board_lists_in_100_columns():
    for args in ([], ["--all"]):
        r = cli("leaderboard", "list", *args)
        assert r.exit_code == 0, r.output
        assert max(len(ln) for ln in _lines(r.output)) <= CONSOLE_WIDTH and "…" not in r.output


def test_score_table_fits_100_columns(demo_store, tmp_path):
    """A split with four subsets: the columns wrap into parts, every number whole; --all adds the facts."""
    import shutil

    import zarr

    from hambench.store import open_store, write_predictions

    store = shutil.copytree(demo_store, tmp_path / "split.zarr")
    g = zarr.open_group(str(store), mode="r+")
    n = g.attrs["counts"]["structures"]
    a = g.create_array("splits/parts", shape=(n,), dtype="int8", chunks=(n,))
    a[:] = np.arange(n) % 4
    parts = ["first-part", "second-part", "third-part", "fourth-part"]
    g.attrs["splits"] = {**g.attrs.get("splits", {}), "parts": parts}
    truth = open_store(store)
    rng = np.random.default_rng(0)
    blocks = [truth[k].H + rng.normal(size=truth[k].H.size) * 1e-3 for k in range(n)]
    preds = write_predictions(truth, range(n), blocks, tmp_path / "p.zarr", {"model": {"name": "noise"}})
    out = tmp_path / "scores.json"
    r = cli("score", preds, "-o", out)
    assert r.exit_code == 0, r.output
    assert max(len(ln) for ln in _lines(r.output)) <= CONSOLE_WIDTH and "…" not in r.output
    assert "(columns 1–" in r.output and "parts:fourth-part (2)" in r.output
    assert "psi_subspace" in r.output and "gauge_mu_mean" not in r.output and "more metrics: --all" in r.output
    r = cli("score", preds, "--truth", store, "--all")
    assert r.exit_code == 0, r.output
    assert "gauge_mu_mean" in r.output and max(len(ln) for ln in _lines(r.output)) <= CONSOLE_WIDTH

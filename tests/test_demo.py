"""``hambench demo`` end to end with the reduced budget (``--budget ci``): prepare, train qhnet and
tracegrad-qhnet, predict, score (H, ε, ψ, SCF, equivariance), submit, build the site; a rerun reuses it all;
the page it builds passes the browser checks in headless Chromium.
"""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from hambench.app.cli import main
from hambench.app.demo import DEMO_MODELS
from hambench.leaderboard.board import open_board
from hambench.leaderboard.testing import chromium_page, image_states, need_browser, serve_folder
from hambench.testing import TOL

pytestmark = pytest.mark.slow  # over 20 s (make test-fast leaves it out)

MODELS = list(DEMO_MODELS)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    r = CliRunner().invoke(main, ["-q", "demo", "-o", str(out), "--budget", "ci"])
    assert r.exit_code == 0, r.output
    return out, r.output


def test_demo_runs_the_main_job(demo):
    out, text = demo
    for step in ("[1/5] prepare", "[2/5] train qhnet", "[2/5] train tracegrad-qhnet", "[3/5] predict",
                 "[4/5] submit", "[5/5] build"):
        assert step in text
    assert "where everything is:" in text and str(out / "site" / "index.html") in text
    assert "(reused)" not in text
    subs = {s.model: s for s in open_board(out / "board").submissions()}
    assert sorted(subs) == sorted(MODELS)
    for s in subs.values():
        m = s.scores["metrics"]
        assert s.scores["n_structures"] == 9  # QM9 8-10, 3 orientations each
        for key in ("H_mae", "eps_mae", "psi", "H_mae_max", "H_mae_block_max", "scf_achieved_ratio_minao",
                    "equivariance_error"):
            assert isinstance(m[key], (int, float)), key
        assert m["scf_n_molecules"] == 1 and m["equivariance_n_pairs"] == 6
        # float32 models that are equivariant by construction: far below their H error
        assert m["equivariance_error"] < TOL.equivariance_vs_error * m["H_mae"]
        assert {"block_mae.png", "parity.png"} <= {p.name for p in s.plots}
        assert s.meta["training"]["store_checksum"] != open_board(out / "board").datasets["qm9-demo"].truth_checksum
        assert s.meta["parameters"] > 0 and s.meta["training"]["steps"] == 4
    # the one summary table (at most 100 columns) names both models with their H MAE, in the column's one format
    from hambench.scoring import CONSOLE_WIDTH, column_format

    h_mae = column_format([subs[model].scores["metrics"]["H_mae"] for model in MODELS])
    for model in MODELS:
        line = next(ln for ln in text.splitlines() if ln.startswith(f"│ {model} "))
        assert h_mae(subs[model].scores["metrics"]["H_mae"]) in line and len(line) <= CONSOLE_WIDTH
    index = (out / "site" / "index.html").read_text()
    assert sorted(re.findall(r'<tr data-model="([^"]+)"', index)) == sorted(MODELS)


def test_demo_rerun_reuses_everything(demo):
    out, _ = demo
    before = {p: p.stat().st_mtime_ns for p in [*out.glob("runs/*/last.pt"), *out.glob("board/submissions/*/*/*")]}
    assert len(before) >= 2 * 3
    r = CliRunner().invoke(main, ["-q", "demo", "-o", str(out), "--budget", "ci"])
    assert r.exit_code == 0, r.output
    assert r.output.count("(reused)") == 2 + 2 * 2 + 2  # stores (one line), 2 runs, 2 predictions, 2 submissions
    assert "recorded" not in r.output
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_demo_site_in_the_browser(demo):
    need_browser()
    out, _ = demo
    with serve_folder(out / "site") as url, chromium_page(url) as (page, outside, errors):
        page.goto(url + "index.html")
        page.wait_for_selector('table[data-sortable-ready="1"]')
        rows = page.eval_on_selector_all("#table-qm9-demo tbody tr", "rs => rs.map(r => r.dataset.model)")
        table = json.loads((out / "site" / "qm9-demo" / "table.json").read_text())
        assert rows == [r["model"] for r in table["rows"]] and sorted(rows) == sorted(MODELS)
        h = [r["H_mae"] for r in table["rows"]]
        assert h == sorted(h)  # ranked by H MAE
        n_images = 0
        for model in MODELS:
            page.goto(url + f"qm9-demo/{model}/index.html")
            page.wait_for_load_state("load")
            imgs = image_states(page)
            assert all(complete and width > 0 for _, complete, width in imgs), imgs
            n_images += len(imgs)
        assert n_images >= 2 * 2
        assert outside == [] and errors == []

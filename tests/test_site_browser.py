"""The leaderboard site in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

A board of three submissions (predictions = truth + 10, 2 and 5 meV noise) is built into a site, served by a
local http.server on 127.0.0.1; every request to any other host is aborted and counted (the site must work
offline). In CI (``CI=true``) a missing Chromium or Playwright fails the test: ``make test`` installs Debian's
``chromium`` when it is missing (as root), and Playwright comes with the ``test`` extra (its own browser
download is never used).
"""

from __future__ import annotations

import csv
import io
import json

import pytest

from hambench.leaderboard.site import build_site
from hambench.leaderboard.submit import submit
from hambench.leaderboard.testing import (chromium_page, example_meta, image_states, need_browser, noisy_predictions, numpy_mae_scorer, serve_folder, write_board, write_meta)
from hambench.app.testing import demo_truth
from hambench.store import store_checksum

#: model → (noise σ in eV, parameter count): H MAE order beta < gamma < alpha; parameters alpha < gamma < beta
MODELS = {"alpha": (0.010, 100), "beta": (0.002, 300), "gamma": (0.005, 200)}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser")
    truth = demo_truth(tmp_path_factory.getbasetemp() / "leaderboard-truth")  # shared with test_leaderboard.py
    board = write_board(d / "board", {"qm9-mini": {"kind": "molecule", "truth_checksum": store_checksum(truth),
                                                   "store": str(truth), "title": "QM9 mini"}})
    for k, (model, (sigma, n_params)) in enumerate(MODELS.items()):
        p = noisy_predictions(truth, d / f"{model}.zarr", sigma, seed=k, model=model)
        meta = write_meta(d / f"{model}.yml", example_meta(model, "qm9-mini", parameters=n_params))
        # hambench's own scores; the real plots (heat map, parity, error vs size) for alpha, a small
        # independent bar chart for the others (make_plots costs seconds per submission)
        submit(p, meta, board=board, plots=True, scorer=None if model == "alpha" else _scores_and_bar_chart)
    out = d / "site"
    build_site(board, out)
    return out


def _scores_and_bar_chart(preds, truth, options, plots_dir):
    from hambench.leaderboard.submit import recompute_scores

    scores = recompute_scores(preds, truth, options, None)
    numpy_mae_scorer(preds, truth, options, plots_dir)  # draws plots_dir/pair_mae.png
    return scores


@pytest.fixture(scope="module")
def server(site):
    with serve_folder(site) as url:
        yield url


@pytest.fixture(scope="module")
def browser_page(server):
    need_browser()
    with chromium_page(server) as page_outside_errors:
        yield page_outside_errors


def _order(page):
    return page.eval_on_selector_all("#table-qm9-mini tbody tr", "rows => rows.map(r => r.dataset.model)")


def _click(page, key):
    page.click(f'#table-qm9-mini thead th[data-key="{key}"] button')
    return _order(page)


def test_table_order_and_sorting(browser_page, server):
    page, outside, errors = browser_page
    page.goto(server + "index.html")
    page.wait_for_selector('table[data-sortable-ready="1"]')
    assert _order(page) == ["beta", "gamma", "alpha"]  # ranked by H MAE: 2 < 5 < 10 meV noise
    ranks = page.eval_on_selector_all("#table-qm9-mini tbody tr td:first-child", "c => c.map(x => x.textContent)")
    assert ranks == ["1", "2", "3"]
    best = page.eval_on_selector_all("#table-qm9-mini td.best", "c => c.map(x => x.closest('tr').dataset.model)")
    assert "beta" in best
    assert _click(page, "model") == ["alpha", "beta", "gamma"]
    assert page.get_attribute('th[data-key="model"]', "aria-sort") == "ascending"
    assert _click(page, "model") == ["gamma", "beta", "alpha"]
    assert _click(page, "H_mae") == ["beta", "gamma", "alpha"]  # lower is better: ascending first
    assert _click(page, "H_mae") == ["alpha", "gamma", "beta"]
    assert page.get_attribute('th[data-key="H_mae"]', "aria-sort") == "descending"
    assert page.get_attribute('th[data-key="model"]', "aria-sort") is None
    assert _click(page, "parameters") == ["alpha", "gamma", "beta"]  # 100 < 200 < 300
    assert _click(page, "rank") == ["beta", "gamma", "alpha"]
    assert outside == [] and errors == []


def test_model_pages_and_images_load(browser_page, server):
    page, outside, errors = browser_page
    page.goto(server + "index.html")
    hrefs = page.eval_on_selector_all("#table-qm9-mini td.model a", "a => a.map(x => x.getAttribute('href'))")
    assert sorted(hrefs) == [f"qm9-mini/{m}/index.html" for m in sorted(MODELS)]
    n_images = 0
    for href in hrefs:
        page.goto(server + href)
        page.wait_for_load_state("load")
        imgs = image_states(page)
        assert imgs, href
        for src, complete, width in imgs:
            assert complete and width > 0, (href, src)
        n_images += len(imgs)
        assert page.locator("#metrics").count() == 1
        back = page.get_attribute("header a", "href")
        page.goto(server + href.rsplit("/", 1)[0] + "/" + back)
        assert page.url.split("#")[0] == server + "index.html"
    assert n_images >= 3 + 2  # alpha: block_mae, parity, error_vs_size; beta, gamma: pair_mae
    assert outside == [] and errors == []


def test_json_and_csv_links_load(browser_page, server):
    page, outside, errors = browser_page
    page.goto(server + "index.html")
    links = page.eval_on_selector_all("a.data-link", "a => a.map(x => x.href)")
    assert sorted(u.rsplit("/", 1)[1] for u in links) == ["table.csv", "table.json"]
    for url in links:
        resp = page.request.get(url)
        assert resp.status == 200, url
        if url.endswith(".json"):
            data = json.loads(resp.text())
            assert [r["model"] for r in data["rows"]] == ["beta", "gamma", "alpha"]
        else:
            rows = list(csv.DictReader(io.StringIO(resp.text())))
            assert [r["model"] for r in rows] == ["beta", "gamma", "alpha"]
    # the browser itself also opens the JSON (same-origin fetch from the page)
    got = page.evaluate("fetch('qm9-mini/table.json').then(r => r.json()).then(d => d.rows.length)")
    assert got == len(MODELS)
    assert outside == [] and errors == []


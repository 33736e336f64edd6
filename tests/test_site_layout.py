"""The leaderboard's headline table at 1,280 px and its "All columns" toggle (issue 29 §3), in headless Chromium.

Two sites side by side under one local server: the repository's board, and a board whose submissions report every
metric of the catalogue with long model names (the widest headline the site can have). The headline must fit a
1,280 px window without horizontal scrolling; the toggle shows every other column, grouped by topic, in place.
The README's screenshots are made by the same code (``make screenshots``). Its own module: Playwright's sync API
runs one browser per thread, and tests/test_site_browser.py holds one for its module.
"""

from __future__ import annotations

import pytest

from hambench.leaderboard.site import build_site
from hambench.leaderboard.testing import chromium_page, need_browser, serve_folder


@pytest.fixture(scope="module")
def wide_sites(tmp_path_factory):
    """The repository's board and a board reporting every metric of the catalogue (long model names), built
    side by side and served together."""
    from hambench.leaderboard.testing import write_catalogue_board

    need_browser()
    d = tmp_path_factory.mktemp("wide")
    build_site(None, d / "sites" / "repo")
    build_site(write_catalogue_board(d / "full-board"), d / "sites" / "full")
    with serve_folder(d / "sites") as url, chromium_page(url) as page_outside_errors:
        yield url, page_outside_errors, d / "sites"


_VISIBLE_KEYS = """t => Array.from(t.querySelectorAll('tr.keys th')).filter(h => h.offsetParent !== null)
                         .map(h => h.dataset.key)"""
_FITS = """s => [s.scrollWidth, s.clientWidth]"""


def test_headline_fits_1280_px_without_scrolling(wide_sites):
    url, (page, outside, errors), _ = wide_sites
    page.set_viewport_size({"width": 1280, "height": 900})
    for site in ("repo", "full"):
        page.goto(url + f"{site}/index.html")
        page.wait_for_selector('table[data-sortable-ready="1"]')
        for section in page.query_selector_all("section.dataset"):
            scroll = section.query_selector(".scroll")
            if scroll is None:  # a dataset without submissions
                continue
            wide, shown = scroll.evaluate(_FITS)
            assert wide <= shown, (site, section.get_attribute("id"), wide, shown)
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    # the widest headline: every headline metric of a molecule board, in the order
    visible = page.eval_on_selector("#table-full", _VISIBLE_KEYS)
    assert visible == ["rank", "model", "H_mae", "eps_mae", "psi", "scf_achieved_ratio_minao", "equivariance_error",
                       "parameters", "links"]
    assert outside == [] and errors == []


def test_all_columns_toggle_shows_the_rest(wide_sites):
    url, (page, outside, errors), _ = wide_sites
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(url + "full/index.html")
    page.wait_for_selector('table[data-sortable-ready="1"]')
    every = page.eval_on_selector_all("#table-full tr.keys th", "hs => hs.map(h => h.dataset.key)")
    assert not page.is_visible("#table-full tr.groups") and not page.is_visible("#ds-full .load-note")
    button = page.locator("#ds-full button.more-toggle")
    assert button.get_attribute("aria-expanded") == "false" and button.inner_text() == f"All {len(every) - 2} columns"
    button.click()
    assert button.get_attribute("aria-expanded") == "true" and button.inner_text() == "Headline columns only"
    assert page.eval_on_selector("#table-full", _VISIBLE_KEYS) == every  # the rest, in place
    assert {"psi_subspace", "scf_t3_s", "training_time_s", "H_mae_onsite"} <= set(every)
    groups = page.eval_on_selector_all("#table-full tr.groups th.group", "hs => hs.map(h => h.textContent)")
    assert groups[:3] == ["Hamiltonian", "orbitals", "worst structure"] and groups[-1] == "model"
    assert page.is_visible("#ds-full .load-note")
    # the extra columns sort like the others (a wall time: ascending first, no star)
    order = _click_order(page, "full", "scf_t3_s")
    times = page.eval_on_selector_all('#table-full td:nth-child(%d)' % (every.index("scf_t3_s") + 1),
                                      "cs => cs.map(c => parseFloat(c.dataset.sort))")
    assert times == sorted(times) and len(order) == 3
    assert page.locator("#table-full td.best").count() > 0
    wide, shown = page.eval_on_selector("#ds-full .scroll", _FITS)
    assert wide > shown  # the rest scrolls inside its box; the page itself does not
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    button.click()
    assert page.eval_on_selector("#table-full", _VISIBLE_KEYS) == [
        "rank", "model", "H_mae", "eps_mae", "psi", "scf_achieved_ratio_minao", "equivariance_error", "parameters",
        "links"]
    # a wide screen is used whole (the page is not capped at 1,400 px)
    page.set_viewport_size({"width": 2800, "height": 900})
    button.click()
    assert page.eval_on_selector("#ds-full .scroll", "s => s.clientWidth") > 2400
    assert outside == [] and errors == []


def _click_order(page, ds, key):
    page.click(f'#table-{ds} thead th[data-key="{key}"] button')
    return page.eval_on_selector_all(f"#table-{ds} tbody tr", "rows => rows.map(r => r.dataset.model)")


def test_readme_screenshots(wide_sites, tmp_path):
    """The README's screenshots are made by site_screenshots (``make screenshots``): small PNGs, and the ones
    committed under docs/ are those the README shows."""
    import re
    from pathlib import Path

    from hambench.leaderboard.testing import SCREENSHOTS, take_screenshots

    url, (page, outside, errors), _ = wide_sites
    files = take_screenshots(page, url + "repo/", tmp_path)
    assert outside == [] and errors == []
    assert sorted(f.name for f in files) == sorted(SCREENSHOTS)
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size < 500_000
    root = Path(__file__).resolve().parents[1]
    shown = re.findall(r"!\[[^\]]*\]\((docs/[^)]+\.png)\)", (root / "README.md").read_text())
    # the site's screenshots (leaderboard-*.png) are exactly those make screenshots makes; other figures (a band
    # plot) are the README's own
    assert sorted(Path(s).name for s in shown if Path(s).name.startswith("leaderboard-")) == sorted(SCREENSHOTS)
    assert all(name.startswith("leaderboard-") for name in SCREENSHOTS)
    for s in shown:
        assert (root / s).stat().st_size < 500_000

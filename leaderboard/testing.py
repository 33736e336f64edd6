"""Helpers for tests of the leaderboard (and for people trying a board out): boards, metadata, predictions.

``example_meta()`` is the shipped example ``meta.yml`` as a dict; ``write_board()`` writes a board's
``datasets.yml``; ``noisy_predictions()`` writes a prediction store = truth + seeded Gaussian noise;
``numpy_mae_scorer()`` is an independent, minimal scorer (H MAE overall, per structure, per element pair) used
to check the leaderboard machinery against hambench's real scorer; ``write_catalogue_board()`` a board whose
submissions report every metric of the catalogue (values spanning decades, long display names): the widest table
the site can show; ``hand_submission()`` writes a submission by hand, record included, as anyone who edits a board
can (for tests of the site's rendering: such a record proves nothing about its numbers, which is why ``build
--predictions`` re-derives them).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import http.server
import json
import os
import threading
from pathlib import Path

import numpy as np

from hambench.basis._conventions import z_to_symbol
from hambench.store._predictions import write_predictions
from hambench.store._store import Store, open_store

from .board import DEFAULT_BOARD, open_board
from .record import make_record, write_record
from .schema import dump_yaml, load_yaml_strict

__all__ = ["EXAMPLE_META", "original_indices", "example_meta", "write_meta", "write_board", "hand_submission",
           "noisy_predictions", "numpy_mae_scorer", "write_catalogue_board", "CHROMIUM", "CHROMIUM_ARGS",
           "need_browser", "serve_folder", "chromium_page", "image_states", "take_screenshots", "site_screenshots",
           "SCREENSHOTS"]

EXAMPLE_META = DEFAULT_BOARD / "submissions" / "qhnet" / "qm9-demo" / "meta.yml"


def example_meta(model: str | None = None, dataset: str | None = None, **override) -> dict:
    """The shipped example ``meta.yml`` (a fresh copy), with ``model``/``dataset``/top-level keys replaced."""
    m = copy.deepcopy(load_yaml_strict(EXAMPLE_META))
    if model is not None:
        m["model"] = model
        m["display_name"] = model
    if dataset is not None:
        m["dataset"] = dataset
    m.update(override)
    return m


def write_meta(path, meta: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_yaml(meta), encoding="utf-8")
    return path


def write_board(path, datasets: dict, title: str = "test board") -> Path:
    """A board folder with ``datasets.yml`` = ``{datasets_version: 1, title, datasets}``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "datasets.yml").write_text(
        dump_yaml({"datasets_version": 1, "title": title, "datasets": datasets}),
        encoding="utf-8")
    return path


def hand_submission(board, model: str, dataset: str, meta: dict, scores: dict,
                    predictions_checksum: str = "f" * 64) -> Path:
    """``submissions/<model>/<dataset>/`` written by hand: ``meta.yml``, ``scores.json`` (given the board dataset's
    truth checksum and ``predictions_checksum`` where it names none) and a ``record.json`` sealing them."""
    b = open_board(board)
    ds = b.datasets[dataset]
    d = b.submission_dir(model, dataset)
    write_meta(d / "meta.yml", meta)
    scores = {"truth": {"path": "truth.zarr", "checksum": ds.truth_checksum},
              "predictions": {"path": "hand.zarr", "checksum": predictions_checksum}, **scores}
    (d / "scores.json").write_text(json.dumps(scores, indent=1), encoding="utf-8")
    write_record(d, make_record(d, model, dataset, scores["truth"]["checksum"], scores["predictions"]["path"],
                                scores["predictions"]["checksum"], ds.score))
    return d


def original_indices(truth) -> list[int]:
    """Indices of the structures of a store that are not rotated copies (``structures/parent`` = −1)."""
    st = truth if isinstance(truth, Store) else open_store(truth)
    return [int(k) for k in np.flatnonzero(st.array("structures/parent")[:] < 0)]


def noisy_predictions(truth, out, scale: float, seed: int = 0, ids=None, model: str = "noisy",
                      split: str | None = None) -> Path:
    """Predictions = true H + N(0, scale²) noise (eV) for ``ids`` (default: the originals) of the truth store."""
    st = truth if isinstance(truth, Store) else open_store(truth)
    ids = original_indices(st) if ids is None else list(ids)
    rng = np.random.default_rng(seed)
    blocks = []
    for k in ids:
        h = st[int(k)].H
        blocks.append(h + rng.normal(scale=scale, size=h.shape))
    return write_predictions(st, ids, blocks, out, {"model": {"name": model}, "split": split})


def numpy_mae_scorer(preds, truth, options: dict, plots_dir=None) -> dict:
    """Minimal independent scorer: mean |ΔH| over all elements (meV), per structure and per element pair."""
    abs_sum = n = 0.0
    per_structure, pair_sum, pair_n = [], {}, {}
    for k in range(len(preds)):
        p, t = preds.pair(k)
        d = np.abs(p.H - t.H) * 1000.0
        abs_sum += d.sum()
        n += d.size
        per_structure.append({"id": t.id, "H_mae": float(d.mean())})
        ptr = t.block_ptr()
        for e, (i, j) in enumerate(zip(t.src, t.dst)):
            key = f"{z_to_symbol(int(t.Z[i]))}-{z_to_symbol(int(t.Z[j]))}"
            blk = d[ptr[e] : ptr[e + 1]]
            pair_sum[key] = pair_sum.get(key, 0.0) + blk.sum()
            pair_n[key] = pair_n.get(key, 0) + blk.size
    if plots_dir is not None:
        _pair_plot(plots_dir, {k: pair_sum[k] / pair_n[k] for k in sorted(pair_sum)})
    return {
        "scores_version": 1, "kind": preds.kind, "n_structures": len(preds),
        "truth": {"path": str(truth.path), "checksum": preds.truth_checksum},
        "predictions": {"path": str(preds.path), "checksum": preds.checksum},
        "model": preds.model, "split": preds.split, "units": {"H_mae": "meV", "worst": "meV"},
        "metrics": {"H_mae": abs_sum / n},
        "per_block": [{"pair": k, "block": "all", "mae": pair_sum[k] / pair_n[k]} for k in sorted(pair_sum)],
        "per_structure": per_structure,
    }


def _catalogue_value(m, rng) -> float:
    """A plausible value of catalogue metric ``m`` (errors spanning decades, similarities near 1, counts)."""
    if m.unit in ("meV", "µEh", "eV²"):
        return float(10 ** rng.uniform(-1, 5))
    if m.unit == "s":
        return float(10 ** rng.uniform(-1, 2))
    if m.role == "fact" and m.unit != "1":
        return float(rng.integers(1, 500))
    return float(rng.uniform(0.5, 1.0)) if m.key.startswith("psi") else float(rng.uniform(0.1, 1.6))


def write_catalogue_board(path, models=("alpha", "beta", "gamma"), kind: str = "molecule", seed: int = 0) -> Path:
    """A board (dataset ``full``) whose submissions report every metric of the catalogue for ``kind`` stores
    (seeded values spanning decades), with long display names and differing parameter counts and wall times."""
    from hambench.scoring._catalogue import CATALOGUE, TWIN_SUFFIX

    rng = np.random.default_rng(seed)
    board = write_board(path, {"full": {"kind": kind, "truth_checksum": "0" * 64, "title": "every metric"}})
    skip = "bands" if kind == "molecule" else "SCF"
    for k, model in enumerate(models):
        metrics = {key: _catalogue_value(m, rng) for key, m in CATALOGUE.items()
                   if m.topic != skip and not key.endswith(TWIN_SUFFIX)}
        for key in list(metrics):
            if key + TWIN_SUFFIX in CATALOGUE and kind == "molecule":
                metrics[key + TWIN_SUFFIX] = metrics[key] * 36.749
        metrics["H_mae_max_id"] = f"mol-{k}"
        meta = example_meta(model, "full", parameters=int(10 ** rng.uniform(4, 7)))
        meta["display_name"] = f"{model} with a long display name (tiny, 40 s budget)"
        meta["training"]["time_s"] = float(10 ** rng.uniform(1, 4))
        meta["inference"]["time_per_structure_s"] = float(10 ** rng.uniform(-2, 0))
        units = {key: CATALOGUE[key].unit for key in metrics if key in CATALOGUE}
        per_structure = [{"id": f"mol-{i}", "natoms": 3 + i, "H_mae": float(10 ** rng.uniform(0, 3))}
                         for i in range(4)]
        # the headline is the mean (and the worst structure the max) of its own per-structure numbers, as the
        # board's records check
        metrics["H_mae"] = float(np.mean([r["H_mae"] for r in per_structure]))
        metrics["H_mae_max"] = float(max(r["H_mae"] for r in per_structure))
        per_block = [{"pair": "C-H", "block": "s1-s1", "mae": float(10 ** rng.uniform(0, 3))}]
        hand_submission(board, model, "full", meta, {"kind": kind, "metrics": metrics, "units": units,
                                                     "per_structure": per_structure, "per_block": per_block})
    return board


def _pair_plot(plots_dir, maes: dict) -> None:
    """A bar chart of the per-element-pair MAE (a real PNG for the site's image checks)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    Path(plots_dir).mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(4, 2.5), dpi=80)
    ax = fig.subplots()
    ax.bar(list(maes), list(maes.values()))
    ax.set_ylabel("H MAE (meV)")
    fig.tight_layout()
    fig.savefig(Path(plots_dir) / "pair_mae.png")


# --- the site in a real browser ----------------------------------------------------------------------------
#: Debian's Chromium (``make test`` installs it when missing, as root); Playwright's own browsers are never used
CHROMIUM = Path(os.environ.get("HAMBENCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def need_browser() -> None:
    """Skip (locally) or fail (``CI=true``) when Playwright or Chromium is missing."""
    import pytest

    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "the Python package playwright is not installed (pip install -e '.[test]')"
    if problem is None and not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (make test installs Debian's chromium as root: apt-get install chromium)"
    if problem:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"browser test cannot run in CI: {problem}")
        pytest.skip(problem)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_folder(folder):
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) in a thread; yields the base URL ending in '/'."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def chromium_page(base_url: str):
    """A Playwright page in headless Chromium whose requests outside ``base_url`` are aborted and recorded.

    Yields ``(page, outside, errors)``: ``outside`` lists the refused URLs, ``errors`` the page's JavaScript
    errors and console errors.
    """
    from playwright.sync_api import sync_playwright

    outside, errors = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context()

            def guard(route):
                if route.request.url.startswith(base_url):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            context.route("**/*", guard)
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            yield page, outside, errors
            context.close()
        finally:
            browser.close()


def image_states(page) -> list:
    """``[src, complete, naturalWidth]`` of every ``<img>`` of the loaded page."""
    return page.eval_on_selector_all("img", "ims => ims.map(i => [i.getAttribute('src'), i.complete, "
                                            "i.naturalWidth])")


#: the README's screenshots of the repository's site: file → (page, dataset whose "All columns" is clicked, crop
#: height in px at 1,280 px wide; 0 = the dataset's section only)
SCREENSHOTS = {
    "leaderboard-headline.png": ("index.html", None, 1150),
    "leaderboard-all-columns.png": ("index.html", "qm9-demo", 0),
    "leaderboard-model-page.png": ("qm9-demo/qhnet/index.html", None, 1300),
}


def take_screenshots(page, base_url: str, out_dir, width: int = 1280) -> list[Path]:
    """:data:`SCREENSHOTS` of the site served at ``base_url``, taken with a Playwright ``page`` at ``width`` px and
    reduced to 128 colours (a few hundred KB each); returns the files written."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    page.set_viewport_size({"width": width, "height": 900})
    for name, (path, expand, height) in SCREENSHOTS.items():
        page.goto(base_url + path)
        page.wait_for_load_state("load")
        target = out_dir / name
        if expand:
            page.click(f"#ds-{expand} button.more-toggle")
            page.locator(f"#ds-{expand}").screenshot(path=str(target))
        else:
            full = page.evaluate("document.documentElement.scrollHeight")
            page.screenshot(path=str(target), clip={"x": 0, "y": 0, "width": width, "height": min(height, full)},
                            full_page=True)
        Image.open(target).convert("RGB").quantize(colors=128).save(target, optimize=True)
        written.append(target)
    return written


def site_screenshots(site, out_dir, width: int = 1280) -> list[Path]:
    """:func:`take_screenshots` of a built site folder in headless Chromium (``make screenshots`` runs it on the
    repository's board for the README); refuses a site that loads anything from elsewhere or raises errors."""
    with serve_folder(site) as url, chromium_page(url) as (page, outside, errors):
        written = take_screenshots(page, url, out_dir, width)
        if outside or errors:
            raise RuntimeError(f"the site loaded {outside} or raised {errors}")
    return written

"""Plots (hambench.scoring._plots): the files exist and are valid PNG/SVG, the heat map shows exactly the per-block
scores, the parity subsample is what it claims (on the real MoTe2 DFT matrices)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from hambench.testing import TOL, require_realdata

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from hambench.scoring._plots import (  # noqa: E402
    block_heatmap_data,
    make_plots,
    orbital_heatmap_data,
    parity_data,
    plot_block_heatmap,
)

OFFSET = 0.01  # eV added to every predicted element

#: per-block scores as scores.json holds them (hand-made values; columns deliberately out of order)
PER_BLOCK = [
    {"pair": "C-C", "block": "s2-d1", "mae": 7.0},
    {"pair": "C-C", "block": "s1-s1", "mae": 1.25},
    {"pair": "C-H", "block": "p1-s1", "mae": 2.5},
    {"pair": "C-H", "block": "s1-s1", "mae": 1.5},
    {"pair": "H-H", "block": "s1-s1", "mae": 0.5},
]


@pytest.fixture(scope="module")
def mote2(tmp_path_factory):
    from hambench.pipelines import prepare
    from hambench.store._predictions import open_predictions, write_predictions
    from hambench.store._store import open_store

    folder = require_realdata("deeph_new_MoTe2_band_reference")
    d = tmp_path_factory.mktemp("plots")
    prepare("deeph/folder", folder, d / "truth.zarr", quiet=True)
    truth = open_store(d / "truth.zarr")
    write_predictions(truth, [0], [truth[0].H + OFFSET], d / "preds.zarr", {"model": {"name": "offset"}})
    return folder, truth, open_predictions(d / "preds.zarr"), d


def test_heatmap_data_are_the_per_block_scores():
    scores = {"per_block": PER_BLOCK, "units": {"H_mae": "meV"}}
    pairs, cols, M = block_heatmap_data(scores)
    assert pairs == ["C-C", "C-H", "H-H"]
    assert cols == ["s1-s1", "s2-d1", "p1-s1"]  # sorted by (l, n) of the shell of i, then of j
    want = np.full((3, 3), np.nan)
    want[0, 0], want[0, 1], want[1, 2], want[1, 0], want[2, 0] = 1.25, 7.0, 2.5, 1.5, 0.5
    np.testing.assert_array_equal(M, want)
    fig, ax = plt.subplots()
    im = plot_block_heatmap(scores, ax)
    arr = im.get_array()
    np.testing.assert_array_equal(np.ma.filled(arr.astype(float), np.nan), want)  # what is drawn
    assert [t.get_text() for t in ax.get_yticklabels()] == pairs
    assert [t.get_text() for t in ax.get_xticklabels()] == cols
    assert sorted(float(t.get_text()) for t in ax.texts) == sorted(r["mae"] for r in PER_BLOCK)
    plt.close(fig)


def test_parity_subsample(mote2):
    _, truth, preds, _ = mote2
    H = truth[0].H
    t, p = parity_data(preds, max_points=10**9)
    np.testing.assert_array_equal(t, H)  # everything, in store order, when under the limit
    t, p = parity_data(preds, max_points=1000, seed=3)
    assert t.size == p.size == 1000
    np.testing.assert_allclose(p - t, OFFSET, rtol=0, atol=TOL.exact64)  # pairs stay aligned
    assert np.isin(t, H).all()
    t2, _ = parity_data(preds, max_points=1000, seed=3)
    np.testing.assert_array_equal(t, t2)  # seeded


def test_orbital_heatmap_is_deeph_e3s_per_pair_mean(mote2):
    """Element-wise MAE per ordered element pair = the mean over that pair's edges of |ΔH_block| (one
    structure), by a plain loop over edges."""
    from hambench.store._predictions import open_predictions, write_predictions

    _, truth, _, d = mote2
    s = truth[0]
    dH = np.random.default_rng(5).standard_normal(len(s.H)) * 1e-3
    write_predictions(truth, [0], [s.H + dH], d / "random.zarr", {"model": {"name": "random"}})
    got = orbital_heatmap_data(open_predictions(d / "random.zarr"))
    ptr = s.block_ptr()
    ni, nj = s.block_shapes()
    want: dict = {}
    for e in range(s.nedges):
        key = (int(s.Z[s.src[e]]), int(s.Z[s.dst[e]]))
        want.setdefault(key, []).append(np.abs(dH[ptr[e]:ptr[e + 1]]).reshape(ni[e], nj[e]))
    assert list(got) == sorted(want) == [(42, 42), (42, 52), (52, 42), (52, 52)]  # Mo-Mo, Mo-Te, Te-Mo, Te-Te
    for key, blocks in want.items():
        np.testing.assert_allclose(got[key]["mae"], 1e3 * np.mean(blocks, axis=0), rtol=TOL.exact64)
        assert got[key]["mae"].shape == (19, 19) and got[key]["n_structures"] == 1


def test_make_plots_writes_valid_png_and_svg(mote2):
    from hambench.scoring._bands import band_errors

    folder, truth, preds, d = mote2
    kpath = d / "K_PATH"  # DeepH-dock format, coarser than the fixture's 140 points
    kpath.write_text("12 0 0 0 0.5 0 0 GAMMA M\n8 0.5 0 0 0.3333333333 0.3333333333 0 M K\n"
                     "14 0.3333333333 0.3333333333 0 0 0 0 K GAMMA\n")
    bands = band_errors(truth, preds, kpath=kpath, quiet=True)
    scores = {
        "kind": "crystal",
        "units": {"H_mae": "meV"},
        "metrics": {"H_mae": 10.0, "scf_achieved_ratio_minao": 0.7, "scf_achieved_ratio_minao_std": 0.03,
                    "scf_error_level_ratio_minao": 0.4, "scf_error_level_ratio_minao_std": 0.02,
                    "scf_n_molecules": 50},
        "per_block": PER_BLOCK,
        "per_structure": [{"id": truth[0].id, "natoms": 3, "H_mae": 10.0}, {"id": "other", "natoms": 7, "H_mae": 4.0}],
        "bands": bands,
    }
    out = d / "plots"
    files = make_plots(scores, truth, preds, out)
    names = sorted(f.name for f in files)
    assert names == sorted(f"{n}.{e}" for n in ("block_mae", "orbital_mae", "parity", "error_vs_size", "bands",
                                                 "scf") for e in ("png", "svg"))
    assert sorted(f.name for f in out.iterdir()) == names  # no .partial left behind
    for f in files:
        data = f.read_bytes()
        if f.suffix == ".png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
            img = matplotlib.image.imread(f)
            assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        else:
            root = ET.fromstring(data)
            assert root.tag.endswith("svg")
    # a scores dict without blocks, bands or SCF gives just the plots made from the predictions and sizes
    files = make_plots({"per_structure": [{"id": truth[0].id, "H_mae": 1.0}]}, truth, preds, d / "plots2")
    assert sorted({f.stem for f in files}) == ["error_vs_size", "orbital_mae", "parity"] and len(files) == 6


def test_heatmap_colour_scale_is_logarithmic_when_values_span_decades():
    """One block 10⁴ times worse than the rest: a log scale (every block its own colour); 0.5–7 meV: linear."""
    from matplotlib.colors import LogNorm

    wide = [dict(r) for r in PER_BLOCK]
    wide[0]["mae"] = 3.0e4  # 30 eV: shown in eV
    fig, ax = plt.subplots()
    im = plot_block_heatmap({"per_block": wide, "units": {"H_mae": "meV"}}, ax)
    assert isinstance(im.norm, LogNorm)
    assert im.norm.vmin == pytest.approx(0.5e-3, rel=TOL.few_ulp)  # 0.5 meV … 30 eV
    assert im.norm.vmax == pytest.approx(30.0, rel=TOL.few_ulp)
    colours = {tuple(np.round(im.cmap(im.norm(v)), 3)) for v in np.ma.compressed(im.get_array())}
    assert len(colours) == len(wide)  # every block distinguishable
    assert "eV, log scale" in fig.axes[-1].get_ylabel()  # the colour bar: eV from 1000 meV on
    plt.close(fig)
    fig, ax = plt.subplots()
    im = plot_block_heatmap({"per_block": PER_BLOCK, "units": {"H_mae": "meV"}}, ax)
    assert not isinstance(im.norm, LogNorm) and fig.axes[-1].get_ylabel() == "MAE (meV)"
    plt.close(fig)


def test_scf_chart_has_a_line_at_one_and_clips_no_bar(tmp_path):
    """A model slower than the baseline (ratio 1.6 ± 0.2) keeps its whole bar; the dashed line marks 1."""
    from hambench.scoring._plots import _plot_scf

    fig, ax = plt.subplots()
    assert _plot_scf({"scf_achieved_ratio_minao": 1.6, "scf_achieved_ratio_minao_std": 0.2,
                      "scf_error_level_ratio_minao": 0.1, "scf_n_molecules": 2}, ax)
    assert ax.get_ylim()[1] >= 1.6 + 0.2
    ones = [ln for ln in ax.get_lines() if np.allclose(ln.get_ydata(), 1.0, rtol=0, atol=TOL.exact64)]
    assert len(ones) == 1 and ones[0].get_linestyle() == "--"
    plt.close(fig)


def test_titles_say_ev_from_1000_mev():
    from hambench.scoring import energy_scale, energy_text

    assert energy_text(1763.2) == "1.76 eV" and energy_text(999.4) == "999 meV" and energy_text(12.345) == "12.3 meV"
    assert energy_scale([5.0, 999.0]) == (1.0, "meV") and energy_scale([5.0, 1000.0]) == (1e-3, "eV")

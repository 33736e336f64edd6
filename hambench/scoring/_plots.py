"""Plots of a scoring run (``hambench score --plots DIR``): matplotlib (Agg), each figure as PNG and SVG.

* ``block_mae``: heat map of the MAE per basic block — rows element pairs (``"C-H"``), columns shell pairs
  (``"s2-p1"``: the 2nd s shell of i with the 1st p shell of j), colour = ``per_block[].mae`` of the scores (the
  TraceGrad paper's Fig. 5 / DeepH-E3's analyzer view); blank where an element pair has no such block.
* ``orbital_mae``: one heat map per ordered element pair of the element-wise MAE over its (n_i, n_j) blocks, shell
  boundaries drawn (DeepH-E3's per-orbital analyzer view; per structure over edges, then over structures).
* ``parity``: predicted vs true matrix elements (eV), a seeded subsample of at most 200,000 elements drawn
  over all predicted structures in proportion to their sizes (spinful: real and imaginary parts as two
  series).
* ``error_vs_size``: per-structure H MAE against the number of atoms.
* ``bands``: true (black) and predicted (red, dashed) bands of the structure with the largest band error,
  E − E_F, with the window of the band metric shaded — when the scores hold a band section.
* ``scf``: achieved and error-level ratios per baseline with their std, a reference line at 1 (the baseline's own
  cycles) and room for every bar — when the scores hold an SCF section.

Colour scales are logarithmic where the values span :data:`LOG_DECADES` decades or more (one bad block must not
paint every other one the same colour), linear otherwise; energies are shown in eV from 1000 meV on (titles,
colour bars and axes: ``1.76 eV``, never ``1.76e+03 meV``).

Every file is written atomically (``NAME.partial`` then rename). :func:`make_plots` returns the paths written.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from hambench.atomic import atomic_path
from hambench.basis._conventions import z_to_symbol
from ._bands import KPath, band_structure, read_k_path
from ._catalogue import EV_TO_MEV, SCF_GUESSES
from ._errors import shell_names
from ._format import energy_scale, energy_text

__all__ = ["make_plots", "block_heatmap_data", "plot_block_heatmap", "orbital_heatmap_data", "parity_data",
           "color_norm", "MAX_PARITY_POINTS", "LOG_DECADES"]

MAX_PARITY_POINTS = 200_000
#: a colour scale (or error axis) is logarithmic when the positive values span at least this many decades
LOG_DECADES = 2.0
_LETTERS = "spdfghi"


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)  # never opens a window; a caller's non-interactive backend is kept
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    """``name.png`` and ``name.svg``, each written to ``.partial`` and renamed."""
    paths = []
    for ext in ("png", "svg"):
        path = out_dir / f"{name}.{ext}"
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            fig.savefig(f, format=ext, dpi=150, bbox_inches="tight")
        paths.append(path)
    return paths


# --- per-block heat map ----------------------------------------------------------------------------------
def _shell_key(label: str):
    """Sort key of a shell-pair label ``"s2-p1"``: (l_i, n_i, l_j, n_j); unknown forms sort last by name."""
    m = re.fullmatch(r"([spdfghi])(\d+)-([spdfghi])(\d+)", label)
    if not m:
        return (99, 0, 99, 0, label)
    return (_LETTERS.index(m.group(1)), int(m.group(2)), _LETTERS.index(m.group(3)), int(m.group(4)), label)


def block_heatmap_data(scores: dict, key: str = "mae") -> tuple[list[str], list[str], np.ndarray]:
    """(element pairs, shell pairs, (n_pairs, n_shell_pairs) matrix of ``per_block[][key]``, NaN where absent).

    Rows keep the order of ``scores["per_block"]`` (sorted Z pairs), columns are sorted by (l, n) of the shell
    of i, then of j.
    """
    rows_in = [r for r in scores.get("per_block") or [] if r.get(key) is not None]
    pairs: list[str] = []
    for r in rows_in:
        if r["pair"] not in pairs:
            pairs.append(r["pair"])
    cols = sorted({r["block"] for r in rows_in}, key=_shell_key)
    M = np.full((len(pairs), len(cols)), np.nan)
    ip = {p: i for i, p in enumerate(pairs)}
    ic = {c: j for j, c in enumerate(cols)}
    for r in rows_in:
        M[ip[r["pair"]], ic[r["block"]]] = float(r[key])
    return pairs, cols, M


def color_norm(values):
    """The colour normalisation of a heat map of ``values`` (NaN ignored): ``LogNorm`` when the positive values
    span :data:`LOG_DECADES` decades or more, else a linear ``Normalize`` (one value: from 0 to 5 % above it)."""
    from matplotlib.colors import LogNorm, Normalize

    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    pos = finite[finite > 0]
    if pos.size and finite.min() >= 0 and np.log10(pos.max() / pos.min()) >= LOG_DECADES:
        return LogNorm(vmin=float(pos.min()), vmax=float(pos.max()), clip=True)
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo <= 1e-6 * max(abs(hi), 1e-300):  # (nearly) one value: no colour noise, no offset ticks
        lo, hi = min(0.0, lo), (hi if hi > 0 else 1.0) * 1.05
    return Normalize(vmin=lo, vmax=hi)


def _text_colour(value: float, norm) -> str:
    """White on the dark half of viridis, black on the light half (the middle taken on the norm's scale)."""
    return "white" if norm(value) < 0.5 else "black"


def plot_block_heatmap(scores: dict, ax, key: str = "mae"):
    """Draw the per-block heat map on ``ax``; returns the ``AxesImage`` (its array is the data in the colour bar's
    unit — meV, or eV from 1000 meV on — NaN masked)."""
    pairs, cols, M = block_heatmap_data(scores, key)
    unit = (scores.get("units") or {}).get("per_block", (scores.get("units") or {}).get("H_mae", "meV"))
    import matplotlib

    if unit == "meV":
        factor, unit = energy_scale(M[np.isfinite(M)].tolist())
        M = M * factor
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#eeeeee")
    norm = color_norm(M)
    im = ax.imshow(np.ma.masked_invalid(M), aspect="auto", cmap=cmap, interpolation="nearest", norm=norm)
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
    ax.set_yticks(range(len(pairs)), pairs, fontsize=8)
    ax.set_xlabel("shell pair (shell of i - shell of j)")
    ax.set_ylabel("element pair (i-j)")
    log = type(norm).__name__ == "LogNorm"
    cbar = ax.figure.colorbar(im, ax=ax, label=f"MAE ({unit}{', log scale' if log else ''})")
    if not log:
        cbar.formatter.set_useOffset(False)
        cbar.update_ticks()
    if M.size <= 400:
        for i in range(M.shape[0]):
            for j in range(M.shape[1]):
                if np.isfinite(M[i, j]):
                    ax.text(j, i, f"{M[i, j]:.3g}", ha="center", va="center", fontsize=6,
                            color=_text_colour(M[i, j], norm))
    return im


# --- per-orbital heat maps (DeepH-E3's analyzer view) ----------------------------------------------------
def orbital_heatmap_data(preds) -> dict:
    """Per ordered element pair (Z_i, Z_j): the element-wise MAE (meV) over the (n_i, n_j) block — per structure
    the mean |ΔH| over that pair's edges, then the mean over the structures that have the pair (DeepH-E3's
    ``error_plot``; SOC: (2n_i, 2n_j) by complex modulus).

    Returns ``{(zi, zj): {"mae": (n_i, n_j) array, "n_structures": int}}`` in sorted pair order.
    """
    acc: dict = {}
    for k in range(len(preds)):
        pred, true = preds.pair(k)
        d = np.abs(np.asarray(pred.H) - np.asarray(true.H))
        ni, nj = true.block_shapes()
        ptr = true.block_ptr()
        zs, zd = true.Z[true.src].astype(np.int64), true.Z[true.dst].astype(np.int64)
        for zi, zj in sorted(set(zip(zs.tolist(), zd.tolist()))):
            edges = np.flatnonzero((zs == zi) & (zd == zj))
            a, b = int(ni[edges[0]]), int(nj[edges[0]])
            block = d[ptr[edges][:, None] + np.arange(a * b)[None, :]].mean(axis=0).reshape(a, b)
            if (zi, zj) in acc:
                acc[(zi, zj)]["sum"] += block
                acc[(zi, zj)]["n"] += 1
            else:
                acc[(zi, zj)] = {"sum": block.copy(), "n": 1}
    return {key: {"mae": EV_TO_MEV * v["sum"] / v["n"], "n_structures": v["n"]} for key, v in sorted(acc.items())}


def _shell_ticks(shells, spinful: bool):
    """(boundaries, centres, names) of an atom's shells along its orbital axis (↑ then ↓ when spinful)."""
    names = shell_names(shells)
    sizes = [2 * l + 1 for l in shells]
    if spinful:
        names = [f"{n}↑" for n in names] + [f"{n}↓" for n in names]
        sizes = sizes + sizes
    edges = np.concatenate([[0], np.cumsum(sizes)])
    return edges, 0.5 * (edges[:-1] + edges[1:]) - 0.5, names


def _plot_orbital_heatmaps(data: dict, species: dict, spinful: bool, plt):
    keys = list(data)
    ncol = int(np.ceil(np.sqrt(len(keys))))
    nrow = int(np.ceil(len(keys) / ncol))
    every = np.concatenate([np.ravel(v["mae"]) for v in data.values()])
    factor, unit = energy_scale(every.tolist())
    norm = color_norm(every * factor)  # one scale for every pair, logarithmic when the errors span decades
    if type(norm).__name__ != "LogNorm":
        norm.vmin = 0.0
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol + 1.0, 3.0 * nrow), squeeze=False)
    im = None
    for ax, key in zip(axes.flat, keys):
        zi, zj = key
        im = ax.imshow(data[key]["mae"] * factor, cmap="viridis", norm=norm, interpolation="nearest")
        ei, ci, ni = _shell_ticks(species[zi], spinful)
        ej, cj, nj = _shell_ticks(species[zj], spinful)
        for e in ei[1:-1]:
            ax.axhline(e - 0.5, color="w", lw=0.5)
        for e in ej[1:-1]:
            ax.axvline(e - 0.5, color="w", lw=0.5)
        ax.set_yticks(ci, ni, fontsize=6)
        ax.set_xticks(cj, nj, fontsize=6, rotation=90)
        ax.set_title(f"{z_to_symbol(zi)}-{z_to_symbol(zj)}", fontsize=9)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    log = type(norm).__name__ == "LogNorm"
    fig.colorbar(im, ax=axes.ravel().tolist(), label=f"MAE ({unit}{', log scale' if log else ''})")
    fig.suptitle("MAE per orbital pair (rows: orbitals of i, columns: of j)", fontsize=10, y=1.02)
    return fig


# --- parity ----------------------------------------------------------------------------------------------
def parity_data(preds, max_points: int = MAX_PARITY_POINTS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) matrix elements (eV): all of them when there are at most ``max_points``, else a seeded
    subsample drawn in proportion to each structure's element count. Complex (spinful) elements come back
    complex."""
    sizes = []
    for k in range(len(preds)):
        e0, e1 = int(preds.store.ptr.edge[k]), int(preds.store.ptr.edge[k + 1])
        sizes.append(int(preds.store.ptr.H[e1] - preds.store.ptr.H[e0]))
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    rng = np.random.default_rng(seed)
    if total <= max_points:
        take = sizes
    else:  # largest-remainder apportionment of max_points over the structures
        quota = sizes * (max_points / total)
        take = np.floor(quota).astype(np.int64)
        rest = max_points - int(take.sum())
        if rest > 0:
            take[np.argsort(-(quota - take), kind="stable")[:rest]] += 1
    t_out, p_out = [], []
    for k in range(len(preds)):
        if take[k] == 0:
            continue
        pred, true = preds.pair(k)
        idx = np.arange(sizes[k]) if take[k] == sizes[k] else np.sort(rng.choice(sizes[k], take[k], replace=False))
        t_out.append(np.asarray(true.H)[idx])
        p_out.append(np.asarray(pred.H)[idx])
    if not t_out:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(t_out), np.concatenate(p_out)


def _plot_parity(preds, ax, max_points: int):
    t, p = parity_data(preds, max_points)
    series = [("Re", t.real, p.real), ("Im", t.imag, p.imag)] if np.iscomplexobj(t) else [("", t, p)]
    lo = min(float(np.min(s[1])) for s in series) if t.size else -1.0
    hi = max(float(np.max(s[1])) for s in series) if t.size else 1.0
    for name, x, y in series:
        ax.scatter(x, y, s=3, alpha=0.5, linewidths=0, rasterized=True, label=name or None)
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
    ax.set_xlabel("true H element (eV)")
    ax.set_ylabel("predicted H element (eV)")
    mae = float(np.mean(np.abs(p - t))) * EV_TO_MEV if t.size else float("nan")
    ax.set_title(f"{t.size:,} elements, MAE {energy_text(mae)}")
    if len(series) > 1:
        ax.legend(markerscale=8)
    return t.size


# --- error vs size ---------------------------------------------------------------------------------------
def _plot_error_vs_size(scores: dict, truth_store, ax) -> bool:
    rows = [r for r in scores.get("per_structure") or [] if r.get("H_mae") is not None]
    if not rows:
        return False
    if all("natoms" in r for r in rows):
        n = np.array([r["natoms"] for r in rows], float)
    else:  # look the sizes up in the truth store
        ids = {str(s): k for k, s in enumerate(truth_store.group["structures/id"][:])}
        nat = truth_store.group["structures/natoms"][:]
        n = np.array([nat[ids[r["id"]]] for r in rows], float)
    y = np.array([r["H_mae"] for r in rows], float)
    unit = (scores.get("units") or {}).get("H_mae", "meV")
    if unit == "meV":
        factor, unit = energy_scale(y.tolist())
        y = y * factor
    ax.scatter(n, y, s=10, alpha=0.7)
    pos = y[np.isfinite(y) & (y > 0)]
    if pos.size and np.log10(pos.max() / pos.min()) >= LOG_DECADES:
        ax.set_yscale("log")
    ax.set_xlabel("atoms per structure")
    ax.set_ylabel(f"H MAE ({unit})")
    ax.set_title(f"{len(rows)} structures")
    return True


# --- bands -----------------------------------------------------------------------------------------------
def _band_section(scores: dict) -> dict | None:
    b = scores.get("bands")
    if isinstance(b, dict) and b.get("per_structure"):
        return b
    return None


def _path_length(kfrac: np.ndarray, cell) -> np.ndarray:
    """Cumulative length (1/Å, 2π included) along fractional k-points; a repeated point adds nothing."""
    cell = np.asarray(cell, float)
    kc = np.asarray(kfrac, float) @ (2 * np.pi * np.linalg.inv(cell).T) if abs(np.linalg.det(cell)) > 1e-12 \
        else np.asarray(kfrac, float)
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(kc, axis=0), axis=1))])


def _plot_bands(section: dict, preds, ax) -> bool:
    per = section["per_structure"]
    worst = max(range(len(per)), key=lambda i: -1.0 if per[i].get("mae_meV") is None else per[i]["mae_meV"])
    settings = section.get("settings") or {}
    pos = {sid: k for k, sid in enumerate(preds.ids)}
    if per[worst]["id"] not in pos:
        return False
    pred, true = preds.pair(pos[per[worst]["id"]])
    kp = settings.get("kpath") or {}
    if kp.get("file"):
        kpath = read_k_path(kp["file"])
    elif kp.get("kpts") is not None:
        kpath = KPath(np.asarray(kp["kpts"], float), [tuple(t) for t in kp.get("ticks", [])], None, "k-points given")
    else:
        kpath = None
    bs = band_structure(true, pred.H, kpath, int(settings.get("npoints", 100)))
    x = bs["kpath"].x if bs["kpath"].x is not None else _path_length(bs["kpath"].kpts, true.cell)
    ef = bs["fermi"]
    w = float(settings.get("window_eV", 2.0))
    ax.axhspan(-w, w, color="#ffeeaa", alpha=0.5, lw=0)
    ax.plot(x, bs["true"] - ef, color="k", lw=1.0)
    ax.plot(x, bs["pred"] - ef, color="tab:red", lw=0.8, ls="--")
    ax.plot([], [], color="k", label="DFT")
    ax.plot([], [], color="tab:red", ls="--", label="predicted")
    ax.axhline(0, color="gray", lw=0.5)
    ticks = []  # segment ends and starts at one k-point share a tick ("K|K'" when the labels differ)
    for i, lab in bs["kpath"].ticks:
        lab = "Γ" if lab.upper() in ("G", "GAMMA") else lab
        if ticks and abs(ticks[-1][0] - x[i]) < 1e-9:
            if lab and lab not in ticks[-1][1].split("|"):
                ticks[-1] = (ticks[-1][0], f"{ticks[-1][1]}|{lab}" if ticks[-1][1] else lab)
        else:
            ticks.append((x[i], lab))
    if ticks:
        tx = [t for t, _ in ticks]
        ax.set_xticks(tx, [lab for _, lab in ticks])
        for v in tx:
            ax.axvline(v, color="gray", lw=0.4)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(-w - 1.5, w + 1.5)
    ax.set_ylabel("E - E_F (eV)")
    mae = per[worst].get("mae_meV")
    ax.set_title(f"{true.id}: band MAE {energy_text(mae)} in ±{w:g} eV" if mae is not None else true.id)
    ax.legend(loc="upper right", fontsize=8)
    return True


# --- SCF -------------------------------------------------------------------------------------------------
def _plot_scf(metrics: dict, ax) -> bool:
    """Bars of the SCF ratios per baseline, a line at 1 (as many cycles as the baseline) and room for every bar."""
    gs = [g for g in SCF_GUESSES if metrics.get(f"scf_achieved_ratio_{g}") is not None]
    if not gs:
        return False
    x = np.arange(len(gs))
    top = 1.0
    for off, name, color in ((-0.2, "achieved_ratio", "tab:blue"), (0.2, "error_level_ratio", "tab:orange")):
        vals = [metrics.get(f"scf_{name}_{g}") or 0.0 for g in gs]
        errs = [metrics.get(f"scf_{name}_{g}_std") or 0.0 for g in gs]
        ax.bar(x + off, vals, 0.4, yerr=errs, color=color, capsize=3, label=name.replace("_", " "))
        top = max([top] + [v + e for v, e in zip(vals, errs)])
    ax.axhline(1.0, color="k", lw=0.9, ls="--", label="1 = the baseline's cycles")
    ax.set_xticks(x, [f"guess {g}" for g in gs])
    ax.set_ylim(0, 1.15 * top)  # never clips a bar (a model slower than the baseline has a ratio above 1)
    ax.set_ylabel("ratio")
    ax.set_title(f"SCF acceleration, {metrics.get('scf_n_molecules')} molecules")
    ax.legend(fontsize=8)
    return True


def make_plots(scores: dict, truth_store, preds, out_dir, max_parity_points: int = MAX_PARITY_POINTS) -> list[Path]:
    """Write every plot the scores (and predictions) support into ``out_dir``; returns the files written.

    ``scores``: the scores dict (``metrics``, ``units``, ``per_block``, ``per_structure``, optional ``bands`` =
    :func:`hambench.scoring._bands.band_errors`'s result); ``preds``: the :class:`~hambench.store._predictions.Predictions`
    (None skips the parity and band plots).
    """
    plt = _mpl()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if scores.get("per_block"):
        pairs, cols, _ = block_heatmap_data(scores)
        fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(cols) + 2.5), max(2.5, 0.35 * len(pairs) + 1.8)))
        plot_block_heatmap(scores, ax)
        ax.set_title("MAE per basic block")
        written += _save(fig, out, "block_mae")
        plt.close(fig)
    if preds is not None and len(preds):
        fig, ax = plt.subplots(figsize=(5, 5))
        _plot_parity(preds, ax, max_parity_points)
        written += _save(fig, out, "parity")
        plt.close(fig)
        data = orbital_heatmap_data(preds)
        if data:
            fig = _plot_orbital_heatmaps(data, preds.truth.species, preds.truth.spinful, plt)
            written += _save(fig, out, "orbital_mae")
            plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if _plot_error_vs_size(scores, truth_store, ax):
        written += _save(fig, out, "error_vs_size")
    plt.close(fig)
    section = _band_section(scores)
    if section is not None and preds is not None:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        if _plot_bands(section, preds, ax):
            written += _save(fig, out, "bands")
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    if _plot_scf(scores.get("metrics") or {}, ax):
        written += _save(fig, out, "scf")
    plt.close(fig)
    return written

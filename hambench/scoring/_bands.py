"""Band structures of crystals (``hambench score --bands``): predicted vs DFT bands along a k-path.

Bands: H(k) = Σ_R e^{+2πi k·R} H(R), S(k) likewise (k fractional, R integer; DeepH-dock's convention, verified
on the MoTe2 band fixture), the generalized eigenvalues of (H(k), S(k)) in eV — spinful structures give
2 n_orb bands with S(k) ⊗ I₂. The prediction's bands use the predicted H with the **true** S (prediction stores
carry no S), so to first order a band moves by ⟨ψ|ΔH(k)|ψ⟩ (ΔS = 0).

k-path: a DeepH-dock ``K_PATH`` file (one segment per line: ``npts k1 k2 k3 k1' k2' k3' label label'``, npts
points with both ends included) or, by default, ASE's band path of the cell (``Cell.bandpath``), where a
lattice direction along which no edge has R ≠ 0 counts as non-periodic (slabs and monolayers get their 2-D
path even when the cell is marked periodic).

Band-energy error: bands are matched by index (ascending at each k). The window keeps every (k, band) value
whose **true** energy lies in [E_F − w, E_F + w] (default w = 2 eV): a band crossing the window edge counts at
the k-points where it is inside and nowhere else, and the same entries are compared for the prediction.
E_F is the structure's Fermi level from the store; when unknown, the midpoint between the highest occupied and
lowest empty true band energy on the path (occupation from the electron count); neither → error. Reported
(meV): per structure MAE and max over the window, their mean over structures (``bands_mae``, ``bands_max`` is the
largest), the MAE pooled over all windowed values, and the MAE over all bands without a window.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hambench.basis._conventions import n_orbitals
from hambench.errors import InputError
from ._catalogue import EV_TO_MEV, units_of
from ._dense import blas_threads, dense_matrices, threads_for

__all__ = ["KPath", "read_k_path", "ase_k_path", "k_path_for", "band_energies", "generalized_eigh", "HERMITIAN",
           "band_structure", "window_mask", "fermi_level_of", "band_errors", "DEFAULT_WINDOW_EV"]

DEFAULT_WINDOW_EV = 2.0


@dataclass
class KPath:
    """k-points (fractional, (nk, 3)), the index and label of each special point, and a plot axis."""

    kpts: np.ndarray
    ticks: list = field(default_factory=list)  # [(index into kpts, label)]
    x: np.ndarray | None = None  # cumulative path length (1/Å incl. 2π) when the cell is known
    source: str = ""

    def to_dict(self) -> dict:
        return {"source": self.source, "nk": int(len(self.kpts)), "ticks": [[int(i), str(l)] for i, l in self.ticks]}


def read_k_path(path) -> KPath:
    """A DeepH-dock ``K_PATH`` file → :class:`KPath` (each segment's npts points, both ends included)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(path, f"cannot read the k-path file ({e.strerror or e})") from None
    pts, ticks, n = [], [], 0
    for lineno, line in enumerate(text.splitlines(), 1):
        w = line.split("#", 1)[0].split()
        if not w:
            continue
        if len(w) not in (7, 9):
            raise InputError(path, f"line {lineno}: expected 'npts k1 k2 k3 k1' k2' k3' [label label']', got {line!r}")
        try:
            npts = int(w[0])
            a, b = np.array(w[1:4], float), np.array(w[4:7], float)
        except ValueError:
            raise InputError(path, f"line {lineno}: not numbers: {line!r}") from None
        if npts < 2:
            raise InputError(path, f"line {lineno}: a segment needs at least 2 points, got {npts}")
        la, lb = (w[7], w[8]) if len(w) == 9 else ("", "")
        seg = a + np.linspace(0.0, 1.0, npts)[:, None] * (b - a)
        ticks += [(n, la), (n + npts - 1, lb)]
        pts.append(seg)
        n += npts
    if not pts:
        raise InputError(path, "no k-path segment in the file")
    return KPath(np.concatenate(pts), ticks, None, f"K_PATH {path}")


def _periodic_dirs(s) -> np.ndarray:
    """Directions that count as periodic for the band path: pbc and at least one edge with R ≠ 0 along it."""
    used = np.abs(np.asarray(s.shift)).max(axis=0) > 0 if len(s.shift) else np.zeros(3, bool)
    return np.asarray(s.pbc, bool) & used


def ase_k_path(cell, pbc, npoints: int = 100) -> KPath:
    """ASE's band path of ``cell`` (rows are lattice vectors, Å) with ``npoints`` points."""
    from ase.cell import Cell

    pbc = np.asarray(pbc, bool)
    if not pbc.any():
        raise InputError(None, "a band path needs at least one periodic direction")
    try:
        bp = Cell(np.asarray(cell, float)).bandpath(npoints=int(npoints), pbc=pbc)
    except Exception as e:  # ASE raises various errors for odd cells
        raise InputError(None, f"ASE cannot build a band path for this cell ({type(e).__name__}: {e})") from None
    x, X, labels = bp.get_linear_kpoint_axis()
    ticks = [(int(np.argmin(np.abs(x - xx))), lab) for xx, lab in zip(X, labels)]
    return KPath(np.asarray(bp.kpts, float), ticks, np.asarray(x, float), f"ASE bandpath {bp.path}")


def k_path_for(s, kpath=None, npoints: int = 100) -> KPath:
    """The k-path of structure ``s``: a :class:`KPath`, a K_PATH file, an (nk, 3) array, or None (ASE's path)."""
    if isinstance(kpath, KPath):
        return kpath
    if kpath is None:
        return ase_k_path(s.cell, _periodic_dirs(s), npoints)
    if isinstance(kpath, (str, Path)):
        return read_k_path(kpath)
    k = np.asarray(kpath, dtype=float).reshape(-1, 3)
    return KPath(k, [], None, "k-points given")


def _bloch(s, H_flat, kpts) -> tuple[np.ndarray, np.ndarray]:
    """H(k), S(k) of structure ``s`` with blocks ``H_flat`` (the one Bloch sum, :mod:`hambench.scoring._dense`)."""
    return dense_matrices(s, np.asarray(kpts, float).reshape(-1, 3), H=H_flat)


#: how :func:`generalized_eigh` makes each matrix exactly Hermitian
HERMITIAN = ("mean", "lower")


def _hermitian(M: np.ndarray, how: str) -> np.ndarray:
    """½(M + Mᴴ) (``"mean"``), or the lower triangle mirrored (``"lower"``: what LAPACK's solvers read)."""
    Mh = np.conj(np.swapaxes(M, -1, -2))
    if how == "mean":
        return 0.5 * (M + Mh)
    lower = np.tril(np.ones(M.shape[-2:], dtype=bool))
    return np.where(lower, M, Mh)


def generalized_eigh(Hk: np.ndarray, Sk: np.ndarray, vectors: bool = False, hermitian: str = "mean"):
    """Eigenvalues (ascending) of H c = ε S c for a stack of Hermitian pairs, by the Cholesky reduction
    LAPACK's ``hegv`` does (S = L Lᴴ, A = L⁻¹ H L⁻ᴴ), batched over k. With ``vectors``, also the S-orthonormal
    eigenvectors C = L⁻ᴴ Y.

    Each matrix is made exactly Hermitian first. ``hermitian="mean"`` (scores) takes ½(M + Mᴴ): DFT files pair
    H_ij(R) with H_ji(−R)ᴴ only to ~1e-8 eV, and a prediction need not pair its blocks at all. ``"lower"`` reads
    the lower triangle only, as LAPACK's ``hegv`` (scipy's ``eigh``) and DeepH-dock's band code do.
    """
    if hermitian not in HERMITIAN:
        raise ValueError(f"hermitian must be one of {HERMITIAN}, got {hermitian!r}")
    with blas_threads(threads_for(Hk.shape[-1])):  # small matrices: threads only contend
        return _generalized_eigh(Hk, Sk, vectors, hermitian)


def _generalized_eigh(Hk, Sk, vectors, hermitian):
    H = _hermitian(Hk, hermitian)
    S = _hermitian(Sk, hermitian)
    try:
        L = np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        raise InputError(None, "S(k) is not positive definite at some k-point (overlap blocks are inconsistent)")
    X = np.linalg.solve(L, H)  # L⁻¹ H
    A = np.conj(np.swapaxes(np.linalg.solve(L, np.conj(np.swapaxes(X, -1, -2))), -1, -2))  # L⁻¹ H L⁻ᴴ
    A = 0.5 * (A + np.conj(np.swapaxes(A, -1, -2)))
    if not vectors:
        return np.linalg.eigvalsh(A)
    ev, Y = np.linalg.eigh(A)
    C = np.linalg.solve(np.conj(np.swapaxes(L, -1, -2)), Y)
    return ev, C


#: complex matrix elements of one k-chunk of H(k) (S(k) and the reduction take a few times more): ~128 MiB
CHUNK_ELEMENTS = 8_000_000


def band_energies(s, kpts, H_flat=None, vectors: bool = False, hermitian: str = "mean"):
    """Band energies (eV), (nk, n_bands) ascending at each k, of ``s`` (or of blocks ``H_flat`` on its edges and
    true S). With ``vectors``, also the S(k)-orthonormal eigenvectors (nk, n, n). ``hermitian``: see
    :func:`generalized_eigh`.

    Dense: H(k) and S(k) are built for a chunk of k-points at a time (:data:`CHUNK_ELEMENTS`), so memory stays
    bounded; time grows as n³ per k-point (a few thousand orbitals are practical).

    >>> band_energies(s, [[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])  # doctest: +SKIP
    """
    if s.S is None or len(s.S) == 0:
        raise InputError(None, f"structure {s.id!r} has no overlap: bands need S(k)")
    H = s.H if H_flat is None else H_flat
    k = np.asarray(kpts, float).reshape(-1, 3)
    n = sum(n_orbitals(s.species[int(z)], s.spinful) for z in s.Z)
    step = max(1, CHUNK_ELEMENTS // max(n * n, 1))
    parts = [generalized_eigh(*_bloch(s, H, k[a:a + step]), vectors, hermitian) for a in range(0, len(k), step)]
    if not vectors:
        return np.concatenate(parts) if parts else np.zeros((0, n))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def fermi_level_of(s, true_bands: np.ndarray, where=None) -> float:
    """The structure's Fermi level (eV), or the mid-gap of the path's bands from the electron count."""
    if np.isfinite(s.fermi_level):
        return float(s.fermi_level)
    if np.isfinite(s.nelectron):
        nocc = int(round(s.nelectron)) if s.spinful else int(round(s.nelectron / 2))
        if 0 < nocc < true_bands.shape[1]:
            return 0.5 * float(true_bands[:, nocc - 1].max() + true_bands[:, nocc].min())
    raise InputError(where, f"structure {s.id!r}: no Fermi level and no electron count in the store; bands need E_F")


def window_mask(true_bands: np.ndarray, fermi: float, window_eV: float) -> np.ndarray:
    """(nk, nb) bool: true energy within [E_F − w, E_F + w] (each (k, band) value on its own)."""
    return np.abs(true_bands - fermi) <= float(window_eV)


def band_structure(true, pred_H, kpath=None, npoints: int = 100, where=None) -> dict:
    """True and predicted bands of one structure along its k-path (for errors and plots).

    Returns ``{"kpath": KPath, "true": (nk, nb), "pred": (nk, nb), "fermi": E_F}`` (eV).
    """
    kp = k_path_for(true, kpath, npoints)
    tb = band_energies(true, kp.kpts)
    pb = band_energies(true, kp.kpts, H_flat=pred_H)
    return {"kpath": kp, "true": tb, "pred": pb, "fermi": fermi_level_of(true, tb, where)}


def _errors(bs: dict, window_eV: float) -> dict:
    d = np.abs(bs["pred"] - bs["true"])
    mask = window_mask(bs["true"], bs["fermi"], window_eV)
    inside = d[mask]
    return {
        "mae": float(inside.mean()) if inside.size else float("nan"),
        "max": float(inside.max()) if inside.size else float("nan"),
        "sum": float(inside.sum()),
        "n_values": int(inside.size),
        "n_bands_in_window": int(mask.any(axis=0).sum()),
        "mae_all_bands": float(d.mean()),
    }


def _kpath_settings(arg, fixed: KPath | None, npoints: int) -> dict:
    """What :func:`band_errors` used, enough to redo it (plots): a K_PATH file, explicit k-points, or ASE."""
    if fixed is None:
        return {"source": f"ASE bandpath per cell, {npoints} points", "file": None}
    d = fixed.to_dict()
    if isinstance(arg, (str, Path)):
        d["file"] = str(Path(arg).resolve())
    else:
        d["file"] = None
        d["kpts"] = np.asarray(fixed.kpts, float).tolist()
    return d


def band_errors(truth_store, preds, kpath=None, window_eV=DEFAULT_WINDOW_EV, quiet=False, npoints: int = 100,
                indices=None) -> dict:
    """Band-energy errors of a prediction store of crystals (see the module docstring).

    Parameters
    ----------
    truth_store : :class:`hambench.store._store.Store` (crystals)
    preds : :class:`hambench.store._predictions.Predictions`
    kpath : None (ASE's path per cell), a K_PATH file, an (nk, 3) array of fractional k-points, or a KPath
    window_eV : half width of the window around E_F, eV
    npoints : points of ASE's path;  indices : prediction-store positions to use (default all)

    Returns ``{"metrics": {...}, "units": {...}, "per_structure": [...], "settings": {...}}``; metrics (meV):
    ``bands_mae`` (mean over structures of the windowed MAE), ``bands_mae_pooled``, ``bands_max``,
    ``bands_mae_all``, and ``bands_n_structures``, ``bands_n_values``.
    """
    where = getattr(truth_store, "path", None)
    if truth_store.kind != "crystal":
        raise InputError(where, f"--bands needs a crystal store; {where} holds {truth_store.kind!r} structures")
    if not window_eV > 0:
        raise InputError("--window", f"the band window must be positive, got {window_eV}")
    fixed = None if kpath is None else (kpath if isinstance(kpath, KPath) else
                                        read_k_path(kpath) if isinstance(kpath, (str, Path)) else
                                        k_path_for(None, kpath))
    order = range(len(preds)) if indices is None else [int(i) for i in indices]
    per = []
    for n_done, k in enumerate(order):
        pred, true = preds.pair(k)
        bs = band_structure(true, pred.H, fixed, npoints, where)
        e = _errors(bs, window_eV)
        per.append(_structure_row(true, bs, e))
        if not quiet:
            print(f"bands: {n_done + 1}/{len(order)} {true.id}: MAE {EV_TO_MEV * e['mae']:.3f} meV in ±{window_eV} "
                  f"eV ({e['n_bands_in_window']} bands)", file=sys.stderr, flush=True)
    metrics = _band_metrics(per)
    for r in per:
        r.pop("_sum")
        for f in ("mae_meV", "max_meV"):
            if isinstance(r[f], float) and math.isnan(r[f]):
                r[f] = None
    settings = {
        "window_eV": float(window_eV),
        "kpath": _kpath_settings(kpath, fixed, npoints),
        "npoints": int(npoints),
        "bloch": "H(k) = sum_R exp(+2 pi i k.R) H(R), k fractional; predicted H with the true S",
        "matching": "bands matched by index (ascending eigenvalues at each k)",
        "window": "(k, band) values whose true energy is within E_F +- window count; a band crossing the edge "
                  "counts where it is inside",
        "fermi_level": "the store's structures/fermi_level; else mid-gap from the electron count",
    }
    return {"metrics": metrics, "units": units_of(metrics), "per_structure": per, "settings": settings}


def _structure_row(true, bs: dict, e: dict) -> dict:
    """One structure's entry of ``per_structure`` (meV; ``_sum``, eV, until the pooled mean is taken)."""
    return {"id": true.id, "natoms": int(true.natoms), "nk": int(len(bs["kpath"].kpts)),
            "n_bands": int(bs["true"].shape[1]), "fermi_level_eV": bs["fermi"], "kpath": bs["kpath"].source,
            **{f: e[f] for f in ("n_values", "n_bands_in_window")}, "mae_meV": EV_TO_MEV * e["mae"],
            "max_meV": EV_TO_MEV * e["max"], "mae_all_bands_meV": EV_TO_MEV * e["mae_all_bands"], "_sum": e["sum"]}


def _band_metrics(per: list[dict]) -> dict:
    """The flat band metrics (meV) over the structures' rows."""
    n_val = sum(r["n_values"] for r in per)
    maes = [r["mae_meV"] for r in per if r["n_values"]]
    return {
        "bands_mae": float(np.mean(maes)) if maes else None,
        "bands_mae_pooled": EV_TO_MEV * sum(r["_sum"] for r in per) / n_val if n_val else None,
        "bands_max": max((r["max_meV"] for r in per if r["n_values"]), default=None),
        "bands_mae_all": float(np.mean([r["mae_all_bands_meV"] for r in per])) if per else None,
        "bands_n_structures": len(per),
        "bands_n_values": int(n_val),
    }

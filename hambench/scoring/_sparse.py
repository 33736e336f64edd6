"""Bands of large structures: sparse H(k), S(k) straight from the edge blocks and shift-invert near a target.

A dense ``eigh`` of H(k) costs n³ and n² memory: at 10⁴ atoms (4·10⁴ orbitals, 13 GB per complex matrix) it is
out of reach. The Hamiltonian is sparse in a localised basis — each row couples an orbital with the orbitals of
its neighbours only — so H(k) and S(k) are built as sparse matrices, Σ_R e^{+2πi k·R} M(R), with the same entries
and phases as the dense Bloch sum (:func:`hambench.scoring._dense.bloch_sum`), and the ``n`` eigenvalues nearest
a target energy σ are found by shift-invert Lanczos: ARPACK (scipy's ``eigsh``) on (H − σS)⁻¹S, the inverse
applied through one sparse LU factorisation (SuperLU) per k-point.

The Fermi level is the structure's own (DFT) when the store has it, else ``fermi`` given by the caller, else —
for structures small enough for one dense solve at Γ (:data:`DENSE_FERMI_MAX` orbitals) — the mid-gap of the
occupied and empty levels from the electron count. A large structure without either is refused (the count of
levels below an energy needs an LDLᵀ inertia that SuperLU does not give).
"""

from __future__ import annotations

import time

from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from hambench.errors import InputError

from ._bands import generalized_eigh
from ._dense import _entries_for, orbital_offsets

__all__ = ["sparse_bloch", "sparse_matrices", "bands_near", "fermi_for", "sparse_band_structure", "plot_sparse_bands",
           "DENSE_FERMI_MAX"]

#: largest matrix (orbitals) whose Fermi level is found by one dense solve at Γ from the electron count
DENSE_FERMI_MAX = 6000


def sparse_bloch(blocks, Z, src, dst, shift, layout, kfrac, *, overlap: bool = False) -> sp.csr_matrix:
    """Sparse M(k) = Σ_R e^{+2πi k·R} M(R) (N, N) complex CSR from flat edge blocks, for one fractional k-point.

    The entries and phases of :func:`hambench.scoring._dense.bloch_sum` (``overlap``: spinless overlap blocks,
    expanded to S ⊗ I₂ for a spinful layout); entries of repeated (row, column) pairs are summed.
    """
    blocks = np.asarray(blocks).reshape(-1)
    Z = np.asarray(Z, dtype=np.int64).reshape(-1)
    (edge, row, col), dup = _entries_for(Z, src, dst, layout, overlap)
    vals = np.concatenate([blocks, blocks]) if dup else blocks
    if vals.size != edge.size:
        raise ValueError(f"{blocks.size} block elements, the edges' orbital counts need {edge.size // (dup or 1)}")
    N = int(orbital_offsets(Z, layout)[-1])
    k = np.asarray(kfrac, dtype=np.float64).reshape(3)
    phase = np.exp(2j * np.pi * (np.asarray(shift, dtype=np.float64).reshape(-1, 3) @ k))  # (E,)
    return sp.csr_matrix((vals * phase[edge], (row, col)), shape=(N, N), dtype=np.complex128)


def _require_overlap(s, where) -> None:
    """Bands need S(k): refuse a structure without an overlap (a prediction made with ``--structures``)."""
    if s.S is None or np.asarray(s.S).size == 0:
        raise InputError(where, f"structure {s.id!r} has no overlap S: bands need S(k) (predict --structures gives S "
                                "only for models trained on Gaussian-basis (PySCF) data; numerical orbitals of "
                                "OpenMX/ABACUS/SIESTA have none here)")


def sparse_matrices(s, kfrac, H=None, where=None) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(H(k), S(k)) of a structure as sparse Hermitian matrices (H: its blocks, or ``H`` e.g. a prediction,
    made exactly Hermitian by ½(H + Hᴴ), as the dense scorer does)."""
    _require_overlap(s, where)
    Hk = sparse_bloch(s.H if H is None else H, s.Z, s.src, s.dst, s.shift, s.layout, kfrac)
    Sk = sparse_bloch(s.S, s.Z, s.src, s.dst, s.shift, s.layout, kfrac, overlap=True)
    return ((Hk + Hk.getH()) * 0.5).tocsc(), ((Sk + Sk.getH()) * 0.5).tocsc()


#: factorise H − σS densely (LAPACK) below this many orbitals or above this fill: SuperLU loses to LAPACK there
DENSE_LU_MAX, DENSE_LU_FILL = 3000, 0.05


def _shifted_solver(A, solver: str = "auto"):
    """x ↦ A⁻¹x for the sparse matrix A = H − σS, by one factorisation: LAPACK's LU for small or dense-ish A,
    SuperLU (with a symmetric-structure ordering, MMD on Aᵀ + A: 5x faster than COLAMD on these matrices,
    measured) otherwise."""
    N = A.shape[0]
    if solver == "dense" or (solver == "auto" and (N <= DENSE_LU_MAX or A.nnz > DENSE_LU_FILL * N * N)):
        lu = scipy.linalg.lu_factor(A.toarray(), check_finite=False)
        return lambda x: scipy.linalg.lu_solve(lu, x, check_finite=False)
    return spla.splu(A.tocsc(), permc_spec="MMD_AT_PLUS_A").solve


def _near(Hk, Sk, sigma: float, n: int, solver: str = "auto") -> np.ndarray:
    """The ``n`` generalized eigenvalues of (Hk, Sk) nearest ``sigma``, ascending (shift-invert)."""
    op = spla.LinearOperator(Hk.shape, matvec=_shifted_solver(Hk - sigma * Sk, solver), dtype=np.complex128)
    # (H − σS)⁻¹ S x = ν x  ⇔  H x = (σ + 1/ν) S x; ARPACK finds the largest |ν|, i.e. the λ nearest σ
    nu = spla.eigs(op @ spla.aslinearoperator(Sk), k=n, which="LM", return_eigenvectors=False, tol=0.0,
                   maxiter=max(1000, 20 * n))
    lam = sigma + 1.0 / nu
    return np.sort(lam.real)


def bands_near(s, kpts, sigma: float, n: int, H=None, progress=None, solver: str = "auto",
               where=None) -> np.ndarray:
    """(nk, n) eigenvalues (eV) nearest ``sigma`` at each fractional k-point of ``kpts``, ascending per k.

    ``progress(k, nk, seconds)`` is called after each k-point; ``solver``: ``auto`` | ``dense`` | ``splu`` (how
    H − σS is factorised, :func:`_shifted_solver`). Refuses ``n`` not below the matrix size."""
    kpts = np.asarray(kpts, dtype=np.float64).reshape(-1, 3)
    N = int(orbital_offsets(s.Z, s.layout)[-1])
    if not 1 <= n < N - 1:
        raise InputError("--around-fermi", f"asks for {n} bands; the structure has {N} orbitals (at most {N - 2})")
    out = np.empty((len(kpts), n))
    t0 = time.perf_counter()
    for i, k in enumerate(kpts):
        Hk, Sk = sparse_matrices(s, k, H, where)
        out[i] = _near(Hk, Sk, float(sigma), int(n), solver)
        if progress is not None:
            progress(i + 1, len(kpts), time.perf_counter() - t0)
    return out


def fermi_for(s, fermi: float | None = None, H=None, where=None) -> tuple[float, str]:
    """(E_F in eV, how it was found): ``fermi`` when given, the store's DFT Fermi level, else (≤
    :data:`DENSE_FERMI_MAX` orbitals) the mid-gap at Γ from the electron count."""
    if fermi is not None:
        return float(fermi), "given (--fermi)"
    if np.isfinite(s.fermi_level):
        return float(s.fermi_level), "the store's DFT Fermi level"
    N = int(orbital_offsets(s.Z, s.layout)[-1])
    if np.isfinite(s.nelectron) and N <= DENSE_FERMI_MAX:
        Hk, Sk = sparse_matrices(s, np.zeros(3), H, where)
        ev = generalized_eigh(Hk.toarray()[None], Sk.toarray()[None])[0]
        nocc = int(round(s.nelectron)) if s.spinful else int(round(s.nelectron / 2))
        if 0 < nocc < N:
            return 0.5 * float(ev[nocc - 1] + ev[nocc]), f"mid-gap at Γ of {nocc} occupied levels (electron count)"
    raise InputError(where, f"structure {s.id!r}: no Fermi level in the store and {N:,} orbitals (more than "
                            f"{DENSE_FERMI_MAX:,} for a dense count at Γ): give --fermi E (eV)")


def _structure_of(path, structure, where):
    """(the structure with H and S, the predicted H or None, description) of a store or a prediction store."""
    from hambench.store import open_predictions, open_store

    st = open_store(path)
    if st.meta.predictions_version is not None and st.meta.truth is not None:
        p = open_predictions(path)
        k = _pick(p.ids, structure, path)
        pred, true = p.pair(k)
        return true, pred.H, f"predictions {path} (structure {p.ids[k]!r}, S from the truth store)"
    k = _pick([str(x) for x in st.array("structures/id")[:]], structure, path)
    return st[k], None, f"store {path} (structure {st[k].id!r})"


def _pick(ids, structure, where) -> int:
    if not len(ids):
        raise InputError(where, "holds no structure")
    if structure is None:
        return 0
    if str(structure) in ids:
        return ids.index(str(structure))
    if str(structure).isdigit() and int(structure) < len(ids):
        return int(structure)
    raise InputError("--structure", f"{structure!r} is neither an id nor an index of {where} ({len(ids)} structures)")


def _check_k_path(s, kp, kpath) -> None:
    """A k-path made for another cell (a bulk path on a layer: k along a lattice vector the structure is not
    periodic along, where every R is 0) is refused: its bands would repeat, and its labels would be wrong."""
    from ._bands import _periodic_dirs

    k = np.asarray(kp.kpts, float).reshape(-1, 3)
    off = ~_periodic_dirs(s) & (np.abs(k).max(axis=0, initial=0.0) > 0)
    if kpath is not None and off.any():
        d = int(np.flatnonzero(off)[0])
        raise InputError(kpath if isinstance(kpath, (str, Path)) else "--kpath",
                         f"k-points with k{d + 1} ≠ 0, but structure {s.id!r} is not periodic along lattice vector "
                         f"{d + 1}: a k-path for another cell")


def sparse_band_structure(path, structure=None, kpath=None, npoints: int = 60, n: int = 20,
                          fermi: float | None = None, progress=None) -> dict:
    """``hambench bands``: the ``n`` bands nearest E_F along a k-path of one structure of a store or prediction
    store (predicted H with the truth's S). Returns {"kpath", "bands" (nk, n) eV, "fermi", "fermi_from",
    "source", "orbitals", "seconds_per_k"}."""
    from ._bands import k_path_for

    s, H, source = _structure_of(path, structure, path)
    _require_overlap(s, path)  # before E_F, which a structure without S may also lack
    if not np.asarray(s.pbc, bool).any():
        raise InputError(path, f"structure {s.id!r} is a molecule (no periodic direction): bands need a crystal")
    kp = k_path_for(s, kpath, npoints)
    _check_k_path(s, kp, kpath)
    ef, how = fermi_for(s, fermi, H, path)
    t0 = time.perf_counter()
    bands = bands_near(s, kp.kpts, ef, n, H=H, progress=progress, where=path)
    return {"kpath": kp, "bands": bands, "fermi": ef, "fermi_from": how, "source": source,
            "orbitals": int(orbital_offsets(s.Z, s.layout)[-1]), "atoms": int(s.natoms),
            "seconds_per_k": (time.perf_counter() - t0) / max(len(kp.kpts), 1)}


def plot_sparse_bands(res: dict, out) -> None:
    """The bands of :func:`sparse_band_structure` relative to E_F, written to ``out`` (PNG/PDF/SVG, atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from hambench.atomic import atomic_path

    kp, b = res["kpath"], res["bands"] - res["fermi"]
    x = kp.x if kp.x is not None and len(kp.x) == len(b) else np.arange(len(b))
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    ax.plot(x, b, color="C0", lw=1)
    ax.axhline(0.0, color="0.5", lw=0.8, ls="--")
    ax.set_xticks([x[i] for i, _ in kp.ticks], [lab or "" for _, lab in kp.ticks])
    ax.set_xlim(x[0], x[-1])
    ax.set_ylabel("E − E$_F$ (eV)")
    ax.set_title(f"{res['atoms']:,} atoms, {res['orbitals']:,} orbitals: {b.shape[1]} bands nearest E$_F$", fontsize=9)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120)

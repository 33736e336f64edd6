"""Molecule metrics of the full matrices (QH9): |ΔH| over the whole matrix, on-site and off-site blocks, and the
orbital energies and coefficients.

Per molecule the mean |ΔH| over the full n_ao × n_ao matrix, over the on-site blocks and over the off-site blocks
(all ordered pairs i ≠ j), then the mean over molecules. Orbital energies by canonical orthogonalisation with the
*true* S (S = U s Uᵀ, s clamped at 1e-8, X = U s^{-1/2}, eigh of XᵀHX, C = X V), n_occ = ΣZ/2, ε = MAE over the
occupied orbitals; ψ = mean over occupied orbitals of |cos| between the plain (not S-weighted) predicted and true
coefficient vectors; ψ_subspace = ‖C_occ,trueᵀ S C_occ,pred‖_F² / n_occ, the overlap of the occupied subspaces;
HOMO, LUMO and gap errors. Everything is in eV here.

A prediction need not be symmetric: :func:`orbitals` diagonalises its symmetric part (H + Hᵀ)/2 (QH9's code hands
the matrix to ``torch.linalg.eigh``, which reads one triangle). Within a degenerate level any rotation of the
eigenvectors is an equally valid answer, and eigensolvers differ in the one they return: ψ compares single
vectors and so depends on that choice (acetylene's occupied π pair), ψ_subspace compares the occupied spaces and
does not.
"""

from __future__ import annotations

import numpy as np

__all__ = ["S_CLAMP", "canonical_orthogonalization", "orbitals", "n_occupied", "orbital_errors", "subspace_overlap",
           "molecule_h_errors"]

#: eigenvalues of S below this are clamped before S^{-1/2} (QH9's ``cal_orbital_and_energies``)
S_CLAMP = 1e-8
#: torch.cosine_similarity's eps (QH9's ψ)
COS_EPS = 1e-8


def canonical_orthogonalization(S, clamp: float = S_CLAMP) -> np.ndarray:
    """X = U s^{-1/2} with S = U diag(s) Uᵀ and s clamped below at ``clamp`` (no columns dropped); batched."""
    s, U = np.linalg.eigh(np.asarray(S, dtype=np.float64))
    s = np.where(s > clamp, s, clamp)
    return U / np.sqrt(s)[..., None, :]


def orbitals(H, X, eigh=np.linalg.eigh) -> tuple[np.ndarray, np.ndarray]:
    """Orbital energies (ascending) and MO coefficients C = X V from XᵀH̄X = V diag(ε) Vᵀ, H̄ = (H + Hᵀ)/2; batched.

    ``eigh``: the symmetric eigensolver (``(..., N, N)`` → ascending eigenvalues, eigenvectors as columns); NumPy's
    by default. Another one may return another basis inside a degenerate level (what ψ_subspace is immune to).
    """
    Xt = np.swapaxes(X, -1, -2)
    F = Xt @ np.asarray(H, dtype=np.float64) @ X
    F = (F + np.swapaxes(F, -1, -2)) / 2  # = Xᵀ (H + Hᵀ)/2 X: a non-symmetric prediction is symmetrised
    eps, V = eigh(F)
    return eps, X @ np.asarray(V, dtype=np.float64)


def n_occupied(Z) -> int:
    """Doubly occupied orbitals of a neutral closed-shell molecule: ΣZ // 2 (QH9)."""
    return int(np.sum(np.asarray(Z, dtype=np.int64)) // 2)


def subspace_overlap(C_true, C_pred, S, n_occ) -> np.ndarray:
    """‖C_trueᵀ S C_pred‖_F² / n_occ over the first ``n_occ`` columns of each (the occupied orbitals); batched.

    With S-orthonormal columns (Cᵀ S C = I) this is the mean squared cosine of the principal angles between the two
    occupied subspaces: 1 when they coincide, 0 when orthogonal, and unchanged by any rotation of the columns within
    either subspace (so by an eigensolver's choice of basis inside a degenerate level).

    ``C_true``, ``C_pred``, ``S``: (N, N) or (B, N, N) float64; ``n_occ``: int or (B,). Returns (B,) (NaN where
    n_occ = 0), or a float for one molecule.

    >>> c, s = np.cos(0.3), np.sin(0.3)  # the lowest orbital turned by 0.3 rad: overlap cos²(0.3)
    >>> print(f"{subspace_overlap(np.eye(2), np.array([[c, -s], [s, c]]), np.eye(2), 1):.6f} {c * c:.6f}")
    0.912668 0.912668
    """
    single = np.ndim(C_true) == 2
    Ct = np.asarray(C_true, dtype=np.float64).reshape((-1,) + np.shape(C_true)[-2:])
    Cp = np.asarray(C_pred, dtype=np.float64).reshape(Ct.shape)
    S = np.asarray(S, dtype=np.float64).reshape(Ct.shape)
    nocc = np.broadcast_to(np.asarray(n_occ, dtype=np.int64), (Ct.shape[0],))
    occ = np.arange(Ct.shape[-1])[None, :] < nocc[:, None]  # (B, N)
    O = np.swapaxes(Ct, -1, -2) @ S @ Cp  # (B, N, N): ⟨true i | S | pred j⟩
    sq = (O * O * occ[:, :, None] * occ[:, None, :]).sum(axis=(1, 2))
    with np.errstate(invalid="ignore"):
        out = np.where(nocc > 0, sq / np.maximum(nocc, 1), np.nan)
    return float(out[0]) if single else out


def orbital_errors(H_pred, H_true, S, n_occ, eigh=np.linalg.eigh) -> dict[str, np.ndarray]:
    """QH9's orbital metrics for one molecule or a stack of molecules of one size.

    ``H_pred``, ``H_true``, ``S``: (N, N) or (B, N, N) real (eV; a non-symmetric ``H_pred`` is symmetrised);
    ``n_occ``: int or (B,); ``eigh``: the eigensolver of :func:`orbitals`. Returns per molecule (arrays of shape
    (B,), or floats for one molecule): ``eps_mae`` (MAE of the occupied orbital energies, eV), ``homo_err``,
    ``lumo_err``, ``gap_err`` (|Δ|, eV; NaN when there is no virtual orbital), ``psi`` (QH9: mean |cos| of the
    occupied coefficient vectors) and ``psi_subspace`` (:func:`subspace_overlap` of the same coefficients and
    the true S), all in float64.
    """
    single = np.ndim(H_true) == 2
    Hp = np.asarray(H_pred, dtype=np.float64).reshape((-1,) + np.shape(H_true)[-2:])
    Ht = np.asarray(H_true, dtype=np.float64).reshape(Hp.shape)
    S = np.asarray(S, dtype=np.float64).reshape(Hp.shape)
    B, N = Hp.shape[0], Hp.shape[-1]
    nocc = np.broadcast_to(np.asarray(n_occ, dtype=np.int64), (B,))
    X = canonical_orthogonalization(S)
    ep, Cp = orbitals(Hp, X, eigh)
    et, Ct = orbitals(Ht, X, eigh)
    out = {k: np.full(B, np.nan) for k in ("eps_mae", "homo_err", "lumo_err", "gap_err", "psi", "psi_subspace")}
    # cosines of all orbitals, then means over the occupied ones
    dots = np.abs(np.einsum("bai,bai->bi", Cp, Ct))
    norms = np.linalg.norm(Cp, axis=1) * np.linalg.norm(Ct, axis=1)
    cos = dots / np.maximum(norms, COS_EPS)
    occ = np.arange(N)[None, :] < nocc[:, None]
    de = np.abs(ep - et)
    with np.errstate(invalid="ignore"):
        out["eps_mae"] = np.where(nocc > 0, (de * occ).sum(axis=1) / np.maximum(nocc, 1), np.nan)
        out["psi"] = np.where(nocc > 0, (cos * occ).sum(axis=1) / np.maximum(nocc, 1), np.nan)
    out["psi_subspace"] = subspace_overlap(Ct, Cp, S, nocc)
    b = np.arange(B)
    h = np.clip(nocc - 1, 0, N - 1)
    l = np.clip(nocc, 0, N - 1)
    has_h, has_l = nocc > 0, nocc < N
    out["homo_err"] = np.where(has_h, de[b, h], np.nan)
    out["lumo_err"] = np.where(has_l, de[b, l], np.nan)
    gp = ep[b, l] - ep[b, h]
    gt = et[b, l] - et[b, h]
    out["gap_err"] = np.where(has_h & has_l, np.abs(gp - gt), np.nan)
    if single:
        return {k: float(v[0]) for k, v in out.items()}
    return out


def molecule_h_errors(H_pred, H_true, atom_offsets) -> dict[str, float]:
    """Sums and counts of |ΔH| over the full matrix, the on-site blocks and the off-site blocks of one molecule
    (dense (N, N) matrices; ``atom_offsets`` (natoms+1,)). Returns MAEs ``all``, ``onsite``, ``offsite`` and the
    raw ``sum_*``/``n_*``."""
    d = np.abs(np.asarray(H_pred, dtype=np.float64) - np.asarray(H_true, dtype=np.float64))
    off = np.asarray(atom_offsets, dtype=np.int64)
    total = float(d.sum())
    on = 0.0
    n_on = 0
    for a, b in zip(off[:-1], off[1:]):
        on += float(d[a:b, a:b].sum())
        n_on += int((b - a) ** 2)
    n_all = d.size
    n_off = n_all - n_on
    return {
        "all": total / n_all if n_all else float("nan"),
        "onsite": on / n_on if n_on else float("nan"),
        "offsite": (total - on) / n_off if n_off else float("nan"),
        "sum_all": total, "n_all": n_all, "sum_onsite": on, "n_onsite": n_on,
    }


"""The field's metrics, computed one way for everyone: pure float64 functions of flat edge blocks.

Definitions (FACTS.md §6; research/qh9.md §3, deeph.md §4, tracegrad_harmose.md §5):

* **Crystals (meV)** — per structure the mean |Ĥ − H| over every matrix element of every stored edge, then the
  plain mean over structures (DeepH-E3's analyzer); the pooled mean over all elements alongside. Spinful (SOC)
  elements count by their complex modulus |ΔH| (DeepH-E3); the Re/Im variant counts Re and Im as two elements.
  The worst structure's MAE. Per basic block b = (element pair, shell p of i, shell q of j; spinful: the whole
  spinor sub-block): per structure the mean |ΔH_b| over its edges of that element pair, then the mean over the
  structures that have b (DeepH-E3's heat map); the pooled mean alongside; the worst block. Gauge-fixed
  variants remove the best μS per structure, μ = ⟨ΔH, S⟩/⟨S, S⟩ (S ⊗ I₂ for spinful blocks).
* **Molecules (µEh and meV)** — per molecule the mean |ΔH| over the full n_ao × n_ao matrix, over the on-site
  blocks and over the off-site blocks (all ordered pairs i ≠ j), then the mean over molecules (QH9). Orbital
  energies by canonical orthogonalisation with the *true* S (S = U s Uᵀ, s clamped at 1e-8, X = U s^{-1/2},
  eigh of XᵀHX, C = X V), n_occ = ΣZ/2, ε = MAE over the occupied orbitals; ψ = mean over occupied orbitals of
  |cos| between the plain (not S-weighted) predicted and true coefficient vectors; HOMO, LUMO and gap errors.
* **Dense assembly** — edge blocks → M(k) = Σ_R e^{+2πi k·R} M(R) (k fractional, no atomic-position phase;
  molecules: k = Γ, real). Orbitals are atom-major in the structure's atom order; spinful matrices have each
  atom's 2n orbitals as in its blocks (↑ then ↓) and S(k) ⊗ I₂ inside each atom. One implementation: the
  pipelines' band checks import it from here.

Everything is in eV inside; :data:`UNITS` names the unit of every reported key (meV, µEh, dimensionless).
Reductions run per structure in a fixed order, so results never depend on how structures are grouped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hambench.basis._conventions import HARTREE_EV, z_to_symbol
from hambench.basis._layout import BasicBlock, BasisLayout
from hambench.store import StoreRange, edge_endpoints

__all__ = [
    "EV_TO_MEV",
    "EV_TO_UEH",
    "S_CLAMP",
    "UNITS",
    "blas_threads",
    "orbital_offsets",
    "block_entries",
    "bloch_sum",
    "real_space_matrices",
    "bloch_matrices",
    "dense_matrices",
    "abs_error",
    "mae",
    "expand_overlap",
    "gauge_mu",
    "gauge_fixed_mae",
    "mean_and_pooled",
    "worst",
    "block_index",
    "block_label",
    "block_error_sums",
    "block_mae",
    "canonical_orthogonalization",
    "orbitals",
    "n_occupied",
    "orbital_errors",
    "molecule_h_errors",
    "range_partial",
    "aggregate",
    "Evaluator",
]

EV_TO_MEV = 1e3
EV_TO_UEH = 1e6 / HARTREE_EV
#: eigenvalues of S below this are clamped before S^{-1/2} (QH9's ``cal_orbital_and_energies``)
S_CLAMP = 1e-8
#: torch.cosine_similarity's eps (QH9's ψ)
COS_EPS = 1e-8


#: below this matrix size LAPACK runs on one thread (threads only add spin-waiting on small matrices)
SMALL_MATRIX = 512


def blas_threads(n: int | None = 1):
    """Context limiting BLAS/LAPACK to ``n`` threads (threadpoolctl; no-op without it or for ``None``)."""
    from contextlib import nullcontext

    if n is None:
        return nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency; be lenient in foreign environments
        return nullcontext()
    return threadpool_limits(limits=int(n), user_api="blas")


def _threads_for(N: int):
    return 1 if N < SMALL_MATRIX else None


# =========================================================================================================
# dense assembly
# =========================================================================================================
def orbital_offsets(Z, layout: BasisLayout, spinful: bool | None = None) -> np.ndarray:
    """First row of each atom's orbitals in the full matrix, (natoms + 1,) int64 (doubled sizes if spinful)."""
    n = np.asarray(layout.norb(np.asarray(Z, dtype=np.int64).reshape(-1), spinful), dtype=np.int64).reshape(-1)
    off = np.zeros(n.size + 1, dtype=np.int64)
    np.cumsum(n, out=off[1:])
    return off


def block_entries(Z, src, dst, layout: BasisLayout, spinful: bool | None = None):
    """Edge, full-matrix row and column of every element of the flat edge-block array.

    Returns ``(edge, row, col)``, each of the flat array's length. With ``spinful`` the blocks are
    (2n_i, 2n_j) and the offsets are the spinful ones.
    """
    Z = np.asarray(Z, dtype=np.int64).reshape(-1)
    src = np.asarray(src, dtype=np.int64).reshape(-1)
    dst = np.asarray(dst, dtype=np.int64).reshape(-1)
    off = orbital_offsets(Z, layout, spinful)
    ni, nj = layout.block_sizes(Z[src], Z[dst], spinful)
    sizes = ni * nj
    ptr = layout.block_ptr(Z[src], Z[dst], spinful)
    edge = np.repeat(np.arange(src.size, dtype=np.int64), sizes)
    local = np.arange(int(ptr[-1]), dtype=np.int64) - ptr[edge]
    w = nj[edge]
    row = off[src][edge] + local // w
    col = off[dst][edge] + local % w
    return edge, row, col


def _entries_for(Z, src, dst, layout: BasisLayout, overlap: bool):
    """Entries of H-layout blocks, or of overlap blocks placed into the (spinful, S ⊗ I₂) H-layout matrix."""
    if not overlap or not layout.spinful:
        return block_entries(Z, src, dst, layout, None if not overlap else False), None
    Z = np.asarray(Z, dtype=np.int64).reshape(-1)
    src = np.asarray(src, dtype=np.int64).reshape(-1)
    dst = np.asarray(dst, dtype=np.int64).reshape(-1)
    edge, row, col = block_entries(Z, src, dst, layout, False)
    off1, off2 = orbital_offsets(Z, layout, False), orbital_offsets(Z, layout, True)
    ni, nj = layout.block_sizes(Z[src], Z[dst], False)
    r = row - off1[src][edge] + off2[src][edge]
    c = col - off1[dst][edge] + off2[dst][edge]
    # the ↓↓ copy sits n_i rows and n_j columns further inside each atom
    return (np.concatenate([edge, edge]), np.concatenate([r, r + ni[edge]]), np.concatenate([c, c + nj[edge]])), 2


def bloch_sum(blocks, Z, src, dst, shift, layout: BasisLayout, kfrac=None, *, overlap: bool = False) -> np.ndarray:
    """Dense M(k) = Σ_R e^{+2πi k·R} M(R) from flat edge blocks.

    Parameters
    ----------
    blocks : flat edge blocks in hambench order (H layout; with ``overlap=True`` the spinless overlap blocks)
    Z, src, dst, shift : atoms and edges (local atom indices, integer lattice vectors R)
    layout : the store's :class:`~hambench.basis._layout.BasisLayout` (its ``spinful`` decides the H layout)
    kfrac : None for Γ with a real result when the blocks are real (molecules), else (3,) or (nk, 3) fractional
        k-points (complex result)
    overlap : the blocks are overlaps; for a spinful layout they are expanded to S ⊗ I₂ inside each atom

    Returns (N, N) or (nk, N, N).
    """
    blocks = np.asarray(blocks).reshape(-1)
    Z = np.asarray(Z, dtype=np.int64).reshape(-1)
    (edge, row, col), dup = _entries_for(Z, src, dst, layout, overlap)
    vals = np.concatenate([blocks, blocks]) if dup else blocks
    if vals.size != edge.size:
        raise ValueError(f"{blocks.size} block elements, the edges' orbital counts need "
                         f"{edge.size // (dup or 1)}")
    N = int(orbital_offsets(Z, layout)[-1])
    lin = row * N + col
    if kfrac is None:
        out = np.bincount(lin, weights=vals.real, minlength=N * N)
        if np.iscomplexobj(vals):
            out = out + 1j * np.bincount(lin, weights=vals.imag, minlength=N * N)
        return out.reshape(N, N)
    import scipy.sparse as sp

    k = np.asarray(kfrac, dtype=np.float64)
    single = k.ndim == 1
    k = k.reshape(-1, 3)
    shift = np.asarray(shift, dtype=np.float64).reshape(-1, 3)
    phase = np.exp(2j * np.pi * (k @ shift.T))  # (nk, E)
    uniq, inv = np.unique(lin, return_inverse=True)
    A = sp.csr_matrix((vals, (inv.reshape(-1), edge)), shape=(uniq.size, shift.shape[0]))
    V = np.asarray(A @ phase.T)  # (n_pairs, nk)
    out = np.zeros((k.shape[0], N * N), dtype=np.complex128)
    out[:, uniq] = V.T
    out = out.reshape(-1, N, N)
    return out[0] if single else out


def real_space_matrices(blocks, Z, src, dst, shift, layout: BasisLayout, *, overlap: bool = False):
    """Full matrices M(R) for each lattice vector R present: ``(shifts (nR, 3) int, M (nR, N, N))``."""
    blocks = np.asarray(blocks).reshape(-1)
    Z = np.asarray(Z, dtype=np.int64).reshape(-1)
    (edge, row, col), dup = _entries_for(Z, src, dst, layout, overlap)
    vals = np.concatenate([blocks, blocks]) if dup else blocks
    N = int(orbital_offsets(Z, layout)[-1])
    uniq, inv = np.unique(np.asarray(shift, dtype=np.int64).reshape(-1, 3), axis=0, return_inverse=True)
    lin = (inv.reshape(-1)[edge] * N + row) * N + col
    size = uniq.shape[0] * N * N
    out = np.bincount(lin, weights=vals.real, minlength=size)
    if np.iscomplexobj(vals):
        out = out + 1j * np.bincount(lin, weights=vals.imag, minlength=size)
    return uniq, out.reshape(-1, N, N)


def dense_matrices(s, kfrac=None, H=None) -> tuple[np.ndarray, np.ndarray]:
    """(H(k), S(k)) of a :class:`~hambench.store._structure.Structure` (``H`` overrides its blocks, e.g. a
    prediction). ``kfrac=None``: Γ, real for spinless structures (molecules)."""
    lay = s.layout
    blocks = s.H if H is None else H
    Hk = bloch_sum(blocks, s.Z, s.src, s.dst, s.shift, lay, kfrac)
    if s.S is None or np.asarray(s.S).size == 0:
        raise ValueError(f"structure {s.id!r} has no overlap; S(k) cannot be formed")
    Sk = bloch_sum(s.S, s.Z, s.src, s.dst, s.shift, lay, kfrac, overlap=True)
    return Hk, Sk


def bloch_matrices(s, kfrac) -> tuple[np.ndarray, np.ndarray]:
    """H(k) and S(k) of a structure at fractional k (complex128; (nk, N, N) for several k, DeepH-dock's
    e^{+2πik·R} convention, spinful S expanded by I₂). The generalized eigenvalues are the bands (eV).

    >>> Hk, Sk = bloch_matrices(s, [0.0, 0.0, 0.0])  # doctest: +SKIP
    """
    k = np.asarray(kfrac, dtype=np.float64)
    return dense_matrices(s, k)


def _generalized_eigvalsh(Hk: np.ndarray, Sk: np.ndarray) -> np.ndarray:
    """Eigenvalues of H c = ε S c for each Hermitian pair of a stack (LAPACK's generalized solver per k)."""
    import scipy.linalg

    with blas_threads(_threads_for(Hk.shape[-1])):
        ev = [scipy.linalg.eigh(h, o, eigvals_only=True) for h, o in zip(Hk, Sk)]
    return np.array(ev).reshape(len(Hk), -1)


def band_energies(s, kfrac, H=None) -> np.ndarray:
    """Band energies (eV), (nk, N) ascending, at fractional k-points from a structure's H(R), S(R) blocks."""
    k = np.asarray(kfrac, dtype=np.float64).reshape(-1, 3)
    Hk, Sk = dense_matrices(s, k, H=H)
    return _generalized_eigvalsh(Hk, Sk)


# =========================================================================================================
# element-wise errors (crystals and molecules alike)
# =========================================================================================================
def abs_error(pred, true, reim: bool = False) -> np.ndarray:
    """|Ĥ − H| per element (complex modulus); with ``reim`` the |ΔRe| and |ΔIm| of complex elements as two
    elements each (real inputs: unchanged)."""
    d = np.asarray(pred) - np.asarray(true)
    if reim and np.iscomplexobj(d):
        return np.concatenate([np.abs(d.real).reshape(-1), np.abs(d.imag).reshape(-1)])
    return np.abs(d).reshape(-1)


def mae(pred, true, reim: bool = False) -> float:
    """Mean absolute error over all elements (see :func:`abs_error`)."""
    e = abs_error(pred, true, reim)
    return float(np.mean(e)) if e.size else float("nan")


def expand_overlap(S, Z_src, Z_dst, layout: BasisLayout) -> np.ndarray:
    """Overlap blocks in the H layout: unchanged when spinless, S ⊗ I₂ per block (spin-outer) when spinful."""
    S = np.asarray(S, dtype=np.float64).reshape(-1)
    if not layout.spinful:
        return S
    ni, nj = layout.block_sizes(Z_src, Z_dst, False)
    sptr = layout.block_ptr(Z_src, Z_dst, False)
    hptr = layout.block_ptr(Z_src, Z_dst, True)
    out = np.zeros(int(hptr[-1]))
    for a, b in {(int(x), int(y)) for x, y in zip(ni, nj)}:
        e = np.flatnonzero((ni == a) & (nj == b))
        blk = S[sptr[e][:, None] + np.arange(a * b)].reshape(-1, a, b)
        big = np.zeros((e.size, 2, a, 2, b))
        big[:, 0, :, 0, :] = blk
        big[:, 1, :, 1, :] = blk
        out[hptr[e][:, None] + np.arange(4 * a * b)] = big.reshape(e.size, -1)
    return out


def gauge_mu(pred, true, S_h) -> float:
    """The best uniform shift μ (eV) of ΔH = Ĥ − H along S: μ = Re⟨ΔH, S⟩ / ⟨S, S⟩ (S in the H layout)."""
    d = np.asarray(pred).reshape(-1) - np.asarray(true).reshape(-1)
    S_h = np.asarray(S_h, dtype=np.float64).reshape(-1)
    ss = float(np.sum(S_h * S_h))  # numpy's own pairwise sums, not BLAS: the same bits in every process
    return float(np.sum(d.real * S_h) / ss) if ss > 0 else 0.0


def gauge_fixed_mae(pred, true, S_h, reim: bool = False) -> tuple[float, float]:
    """(MAE of ΔH − μS, μ) with μ from :func:`gauge_mu`."""
    mu = gauge_mu(pred, true, S_h)
    return mae(np.asarray(pred).reshape(-1) - mu * np.asarray(S_h).reshape(-1), true, reim), mu


def mean_and_pooled(sums, counts) -> tuple[float, float]:
    """(mean over structures of sum/count, pooled Σsum/Σcount); structures with count 0 are left out."""
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    ok = counts > 0
    if not ok.any():
        return float("nan"), float("nan")
    return float(np.mean(sums[ok] / counts[ok])), float(np.sum(sums[ok]) / np.sum(counts[ok]))


def worst(values, ids) -> tuple[float, str | None]:
    """(largest value, its id); the first one on ties; NaNs ignored."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or np.all(np.isnan(v)):
        return float("nan"), None
    k = int(np.nanargmax(v))
    return float(v[k]), ids[k]


# =========================================================================================================
# basic blocks (element pair × shell pair)
# =========================================================================================================
def block_index(layout: BasisLayout) -> list[tuple[int, int, BasicBlock]]:
    """Every basic block of the layout in a fixed order: element pairs (sorted Z), then p-major, q."""
    return [(zi, zj, b) for zi, zj in layout.pair_types() for b in layout.basic_blocks(zi, zj)]


def _shell_names(shells: Sequence[int]) -> list[str]:
    seen: dict[int, int] = {}
    out = []
    for l in shells:
        seen[l] = seen.get(l, 0) + 1
        out.append(f"{'spdfghi'[l]}{seen[l]}")
    return out


def block_label(layout: BasisLayout, zi: int, zj: int, b: BasicBlock) -> tuple[str, str]:
    """("C-H", "s2-p1"): element pair and shell pair (the n-th shell of that l of each element)."""
    return (f"{z_to_symbol(zi)}-{z_to_symbol(zj)}",
            f"{_shell_names(layout.species[zi])[b.p]}-{_shell_names(layout.species[zj])[b.q]}")


def _block_offsets(layout: BasisLayout):
    """Start of each element pair's basic blocks in :func:`block_index` order."""
    start, k = {}, 0
    for zi, zj in layout.pair_types():
        start[(zi, zj)] = k
        k += len(layout.basic_blocks(zi, zj))
    return start, k


def block_error_sums(pred, true, Z_src, Z_dst, layout: BasisLayout, owner=None, nstruct: int = 1,
                     H_ptr=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per structure and basic block: Σ|ΔH_b| over its edges, the number of elements, the number of edges.

    ``owner`` (E,) gives each edge's structure (0..nstruct-1; default all 0). Returns three (nstruct, G)
    arrays in :func:`block_index` order (sums float64, element counts and edge counts int64). Spinful: the
    complex modulus over the whole spinor sub-block (four spin parts).
    """
    Z_src = np.asarray(Z_src, dtype=np.int64).reshape(-1)
    Z_dst = np.asarray(Z_dst, dtype=np.int64).reshape(-1)
    E = Z_src.size
    owner = np.zeros(E, np.int64) if owner is None else np.asarray(owner, dtype=np.int64)
    ni, nj = layout.block_sizes(Z_src, Z_dst)
    if H_ptr is None:
        H_ptr = layout.block_ptr(Z_src, Z_dst)
    diff = np.asarray(pred).reshape(-1) - np.asarray(true).reshape(-1)
    start, G = _block_offsets(layout)
    sums = np.zeros((nstruct, G))
    nel = np.zeros((nstruct, G), np.int64)
    ned = np.zeros((nstruct, G), np.int64)
    f = 2 if layout.spinful else 1
    pair_code = Z_src * (layout.zmax + 1) + Z_dst
    for code in np.unique(pair_code):
        zi, zj = divmod(int(code), layout.zmax + 1)
        e = np.flatnonzero(pair_code == code)
        a, b = int(ni[e[0]]), int(nj[e[0]])
        X = np.abs(diff[H_ptr[e][:, None] + np.arange(a * b)])  # (Ne, a*b)
        if f == 2:
            X = X.reshape(-1, 2, a // 2, 2, b // 2).sum(axis=(1, 3))
        else:
            X = X.reshape(-1, a, b)
        si = layout.shell_offsets(zi)
        sj = layout.shell_offsets(zj)
        Xb = np.add.reduceat(np.add.reduceat(X, si, axis=1), sj, axis=2).reshape(e.size, -1)  # (Ne, nb)
        g0 = start[(zi, zj)]
        nb = Xb.shape[1]
        acc = np.zeros((nstruct, nb))
        o = owner[e]
        if o.size and np.all(o[1:] >= o[:-1]):  # edges grouped by structure: one segment sum per structure
            starts = np.flatnonzero(np.concatenate([[True], o[1:] != o[:-1]]))
            acc[o[starts]] = np.add.reduceat(Xb, starts, axis=0)
        else:
            np.add.at(acc, o, Xb)
        sums[:, g0 : g0 + nb] += acc
        cnt = np.bincount(owner[e], minlength=nstruct)
        sizes = np.array([bb.shape[0] * bb.shape[1] * f * f for bb in layout.basic_blocks(zi, zj)], np.int64)
        ned[:, g0 : g0 + nb] += cnt[:, None]
        nel[:, g0 : g0 + nb] += cnt[:, None] * sizes[None, :]
    return sums, nel, ned


def block_mae(sums, nel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From per-structure block sums (nstruct, G): (mean over the structures that have the block of their
    block MAE, pooled MAE, number of structures that have it). NaN where no structure has the block."""
    sums = np.asarray(sums, dtype=np.float64)
    nel = np.asarray(nel, dtype=np.float64)
    have = nel > 0
    n = have.sum(axis=0)
    per = np.where(have, sums / np.where(have, nel, 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, per.sum(axis=0) / np.maximum(n, 1), np.nan)
        pooled = np.where(n > 0, sums.sum(axis=0) / np.maximum(nel.sum(axis=0), 1), np.nan)
    return mean, pooled, n.astype(np.int64)


# =========================================================================================================
# molecules: orbital energies and coefficients (QH9)
# =========================================================================================================
def canonical_orthogonalization(S, clamp: float = S_CLAMP) -> np.ndarray:
    """X = U s^{-1/2} with S = U diag(s) Uᵀ and s clamped below at ``clamp`` (no columns dropped); batched."""
    s, U = np.linalg.eigh(np.asarray(S, dtype=np.float64))
    s = np.where(s > clamp, s, clamp)
    return U / np.sqrt(s)[..., None, :]


def orbitals(H, X) -> tuple[np.ndarray, np.ndarray]:
    """Orbital energies (ascending) and MO coefficients C = X V from XᵀHX = V diag(ε) Vᵀ; batched."""
    Xt = np.swapaxes(X, -1, -2)
    F = Xt @ np.asarray(H, dtype=np.float64) @ X
    F = (F + np.swapaxes(F, -1, -2)) / 2
    eps, V = np.linalg.eigh(F)
    return eps, X @ V


def n_occupied(Z) -> int:
    """Doubly occupied orbitals of a neutral closed-shell molecule: ΣZ // 2 (QH9)."""
    return int(np.sum(np.asarray(Z, dtype=np.int64)) // 2)


def orbital_errors(H_pred, H_true, S, n_occ) -> dict[str, np.ndarray]:
    """QH9's orbital metrics for one molecule or a stack of molecules of one size.

    ``H_pred``, ``H_true``, ``S``: (N, N) or (B, N, N) real (eV); ``n_occ``: int or (B,). Returns per molecule
    (arrays of shape (B,), or floats for one molecule): ``eps_mae`` (MAE of the occupied orbital energies, eV),
    ``homo_err``, ``lumo_err``, ``gap_err`` (|Δ|, eV; NaN when there is no virtual orbital) and ``psi``
    (mean |cos| of the occupied coefficient vectors).
    """
    single = np.ndim(H_true) == 2
    Hp = np.asarray(H_pred, dtype=np.float64).reshape((-1,) + np.shape(H_true)[-2:])
    Ht = np.asarray(H_true, dtype=np.float64).reshape(Hp.shape)
    S = np.asarray(S, dtype=np.float64).reshape(Hp.shape)
    B, N = Hp.shape[0], Hp.shape[-1]
    nocc = np.broadcast_to(np.asarray(n_occ, dtype=np.int64), (B,))
    X = canonical_orthogonalization(S)
    ep, Cp = orbitals(Hp, X)
    et, Ct = orbitals(Ht, X)
    out = {k: np.full(B, np.nan) for k in ("eps_mae", "homo_err", "lumo_err", "gap_err", "psi")}
    # cosines of all orbitals, then means over the occupied ones
    dots = np.abs(np.einsum("bai,bai->bi", Cp, Ct))
    norms = np.linalg.norm(Cp, axis=1) * np.linalg.norm(Ct, axis=1)
    cos = dots / np.maximum(norms, COS_EPS)
    occ = np.arange(N)[None, :] < nocc[:, None]
    de = np.abs(ep - et)
    with np.errstate(invalid="ignore"):
        out["eps_mae"] = np.where(nocc > 0, (de * occ).sum(axis=1) / np.maximum(nocc, 1), np.nan)
        out["psi"] = np.where(nocc > 0, (cos * occ).sum(axis=1) / np.maximum(nocc, 1), np.nan)
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


# =========================================================================================================
# one range of structures → partial results; partials → metrics
# =========================================================================================================
#: unit of every metric key (flat snake_case; the leaderboard shows whichever exist)
UNITS = {
    "H_mae": "meV", "H_mae_pooled": "meV", "H_mae_max": "meV", "H_mae_gauge": "meV", "H_mae_gauge_pooled": "meV",
    "H_mae_gauge_max": "meV", "H_mae_reim": "meV", "H_mae_reim_pooled": "meV", "H_mae_block_max": "meV",
    "H_mae_max_on_reference": "meV", "H_mae_block_max_on_reference": "meV", "gauge_mu_mean": "meV",
    "H_mae_onsite": "meV", "H_mae_offsite": "meV", "eps_mae": "meV", "homo_mae": "meV", "lumo_mae": "meV",
    "gap_mae": "meV", "H_mae_uEh": "µEh", "H_mae_onsite_uEh": "µEh", "H_mae_offsite_uEh": "µEh",
    "eps_mae_uEh": "µEh", "homo_mae_uEh": "µEh", "lumo_mae_uEh": "µEh", "gap_mae_uEh": "µEh", "psi": "1",
    "T_mae": "eV²",
}


@dataclass
class RangeArrays:
    """Flat arrays of a range of structures (a truth :class:`~hambench.store.StoreRange` plus the predicted H,
    see :meth:`of`): local offsets ``atom_ptr``, ``edge_ptr`` (n+1) and ``H_ptr``, ``S_ptr`` (E+1)."""

    ids: Sequence[str]
    Z: np.ndarray
    atom_ptr: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    shift: np.ndarray
    edge_ptr: np.ndarray
    H_pred: np.ndarray
    H_true: np.ndarray
    S: np.ndarray
    H_ptr: np.ndarray
    S_ptr: np.ndarray
    groups: Sequence[Sequence[str]] | None = None   # subset keys ("split:subset") of each structure
    index: Sequence[int] | None = None              # truth indices (reported)
    T_pred: np.ndarray | None = None
    T_true: np.ndarray | None = None

    @classmethod
    def of(cls, truth: StoreRange, H_pred: np.ndarray, T_pred: np.ndarray | None = None,
           index: bool = False) -> "RangeArrays":
        """The arrays of the truth range ``truth`` (with H and S) and the predictions on its edges; the groups
        are its split subsets; ``index``: report the truth's store indices."""
        return cls(
            ids=[str(x) for x in truth.ids], Z=truth.Z, atom_ptr=truth.atom_ptr, src=truth.src, dst=truth.dst,
            shift=truth.shift, edge_ptr=truth.edge_ptr, H_pred=H_pred, H_true=truth.H, S=truth.S,
            H_ptr=truth.H_ptr, S_ptr=truth.S_ptr, groups=truth.split_groups(),
            index=[int(x) for x in truth.index] if index else None,
            T_pred=T_pred, T_true=truth.T if T_pred is not None else None,
        )


def range_partial(r: RangeArrays, layout: BasisLayout, kind: str) -> dict:
    """Per-structure records and per-block sums of one range of structures (see :func:`aggregate`).

    LAPACK/BLAS run on one thread here, as in every Dask worker, so the results carry the same bits whichever
    process computes them.
    """
    with blas_threads(1):
        return _range_partial(r, layout, kind)


def _range_partial(r: RangeArrays, layout: BasisLayout, kind: str) -> dict:
    n = len(r.ids)
    natoms = np.diff(r.atom_ptr)
    nedges = np.diff(r.edge_ptr)
    atom_owner = np.repeat(np.arange(n), natoms)
    edge_owner = np.repeat(np.arange(n), nedges)
    Zg = np.asarray(r.Z, dtype=np.int64)
    i, j = edge_endpoints(r.atom_ptr, r.edge_ptr, r.src, r.dst)
    Zs, Zd = Zg[i], Zg[j]
    S_h = expand_overlap(r.S, Zs, Zd, layout)
    groups = [list(g) for g in (r.groups or [[] for _ in range(n)])]
    records = []
    mol = kind == "molecule"
    dense_jobs: dict[int, list[int]] = {}
    mats: dict[int, tuple] = {}
    for k in range(n):
        e0, e1 = int(r.edge_ptr[k]), int(r.edge_ptr[k + 1])
        h0, h1 = int(r.H_ptr[e0]), int(r.H_ptr[e1])
        hp, ht, sh = r.H_pred[h0:h1], r.H_true[h0:h1], S_h[h0:h1]
        err = np.abs(hp - ht)
        rec = {"id": str(r.ids[k]), "natoms": int(natoms[k]), "nedges": int(nedges[k]), "n_elements": int(err.size),
               "H_sum": float(err.sum())}
        rec["H_mae"] = rec["H_sum"] / err.size if err.size else float("nan")
        g, mu = gauge_fixed_mae(hp, ht, sh)
        rec["H_mae_gauge"], rec["gauge_mu"] = g, mu
        rec["H_sum_gauge"] = g * err.size
        if layout.spinful:
            d = hp - ht
            s2 = float(np.abs(d.real).sum() + np.abs(d.imag).sum())
            rec["H_sum_reim"], rec["H_mae_reim"] = s2, s2 / (2 * err.size) if err.size else float("nan")
        if r.index is not None:
            rec["index"] = int(r.index[k])
        rec["groups"] = groups[k]
        if mol:
            a0, a1 = int(r.atom_ptr[k]), int(r.atom_ptr[k + 1])
            Zk = Zg[a0:a1]
            lay_args = (Zk, r.src[e0:e1], r.dst[e0:e1], r.shift[e0:e1], layout)
            Hp = bloch_sum(hp, *lay_args)
            Ht = bloch_sum(ht, *lay_args)
            S = bloch_sum(r.S[int(r.S_ptr[e0]) : int(r.S_ptr[e1])], *lay_args, overlap=True)
            he = molecule_h_errors(Hp, Ht, orbital_offsets(Zk, layout))
            rec.update(H_mae=he["all"], H_mae_onsite=he["onsite"], H_mae_offsite=he["offsite"],
                       n_occ=n_occupied(Zk), n_ao=int(Hp.shape[0]))
            mats[k] = (Hp, Ht, S)
            dense_jobs.setdefault(Hp.shape[0], []).append(k)
        records.append(rec)
    # orbital metrics, batched over molecules of one size
    for N, ks in sorted(dense_jobs.items()):
        Hp = np.stack([mats[k][0] for k in ks])
        Ht = np.stack([mats[k][1] for k in ks])
        S = np.stack([mats[k][2] for k in ks])
        o = orbital_errors(Hp, Ht, S, np.array([records[k]["n_occ"] for k in ks]))
        for j, k in enumerate(ks):
            for key in ("eps_mae", "homo_err", "lumo_err", "gap_err", "psi"):
                records[k][key] = float(o[key][j])
    if r.T_pred is not None and r.T_true is not None:
        tp_ptr = layout.trace_ptr(Zs, Zd)
        for k in range(n):
            e0, e1 = int(r.edge_ptr[k]), int(r.edge_ptr[k + 1])
            t0, t1 = int(tp_ptr[e0]), int(tp_ptr[e1])
            d = np.abs(r.T_pred[t0:t1] - r.T_true[t0:t1])
            records[k]["T_mae"] = float(d.mean()) if d.size else float("nan")
    sums, nel, _ = block_error_sums(r.H_pred, r.H_true, Zs, Zd, layout, edge_owner, n, H_ptr=r.H_ptr)
    # per group: Σ over structures of block MAE, structures having the block, pooled sums and counts
    keys = ["all"] + sorted({g for gs in groups for g in gs})
    blocks = {}
    have = nel > 0
    per = np.where(have, sums / np.where(have, nel, 1), 0.0)
    for key in keys:
        m = np.array([key == "all" or key in groups[k] for k in range(n)], dtype=bool)
        blocks[key] = {"mae_sum": per[m].sum(axis=0), "n_struct": have[m].sum(axis=0).astype(np.int64),
                       "sum": sums[m].sum(axis=0), "count": nel[m].sum(axis=0).astype(np.int64)}
    return {"records": records, "blocks": blocks}


def _merge_blocks(partials: Sequence[dict]) -> dict:
    out: dict = {}
    for p in partials:  # in range order: deterministic
        for key, b in p["blocks"].items():
            if key not in out:
                out[key] = {k: np.array(v, copy=True) for k, v in b.items()}
            else:
                for k, v in b.items():
                    out[key][k] = out[key][k] + v
    return out


def _scalar_metrics(recs: list[dict], kind: str, spinful: bool) -> dict:
    m: dict = {}
    if not recs:
        return m
    ids = [r["id"] for r in recs]
    col = lambda k: np.array([r.get(k, np.nan) for r in recs], dtype=np.float64)  # noqa: E731
    n_el = col("n_elements")
    if kind == "molecule":
        for key, name in (("H_mae", "H_mae"), ("H_mae_onsite", "H_mae_onsite"), ("H_mae_offsite", "H_mae_offsite"),
                          ("eps_mae", "eps_mae"), ("homo_err", "homo_mae"), ("lumo_err", "lumo_mae"),
                          ("gap_err", "gap_mae")):
            v = float(np.nanmean(col(key))) if np.any(~np.isnan(col(key))) else float("nan")
            m[name] = v * EV_TO_MEV
            m[name + "_uEh"] = v * EV_TO_UEH
        m["psi"] = float(np.nanmean(col("psi")))
        mx, who = worst(col("H_mae"), ids)
        m["H_mae_max"] = mx * EV_TO_MEV
        m["H_mae_max_id"] = who
        m["H_mae_pooled"] = float(np.sum(col("H_sum")) / np.sum(n_el)) * EV_TO_MEV
    else:
        mean, pooled = mean_and_pooled(col("H_sum"), n_el)
        m["H_mae"], m["H_mae_pooled"] = mean * EV_TO_MEV, pooled * EV_TO_MEV
        mx, who = worst(col("H_mae"), ids)
        m["H_mae_max"], m["H_mae_max_id"] = mx * EV_TO_MEV, who
        if spinful:
            mean, pooled = mean_and_pooled(col("H_sum_reim"), 2 * n_el)
            m["H_mae_reim"], m["H_mae_reim_pooled"] = mean * EV_TO_MEV, pooled * EV_TO_MEV
    mean, pooled = mean_and_pooled(col("H_sum_gauge"), n_el)
    m["H_mae_gauge"], m["H_mae_gauge_pooled"] = mean * EV_TO_MEV, pooled * EV_TO_MEV
    mx, who = worst(col("H_mae_gauge"), ids)
    m["H_mae_gauge_max"], m["H_mae_gauge_max_id"] = mx * EV_TO_MEV, who
    m["gauge_mu_mean"] = float(np.mean(col("gauge_mu"))) * EV_TO_MEV
    if any("T_mae" in r for r in recs):
        m["T_mae"] = float(np.nanmean(col("T_mae")))
    return m


def _block_table(b: dict, layout: BasisLayout) -> tuple[list[dict], dict | None]:
    mean = np.where(b["n_struct"] > 0, b["mae_sum"] / np.maximum(b["n_struct"], 1), np.nan)
    pooled = np.where(b["count"] > 0, b["sum"] / np.maximum(b["count"], 1), np.nan)
    rows = []
    for g, (zi, zj, bb) in enumerate(block_index(layout)):
        if b["n_struct"][g] == 0:
            continue
        pair, label = block_label(layout, zi, zj, bb)
        rows.append({"pair": pair, "block": label, "Z": [zi, zj], "shells": [bb.p, bb.q], "l": [bb.lp, bb.lq],
                     "mae": float(mean[g]) * EV_TO_MEV, "mae_pooled": float(pooled[g]) * EV_TO_MEV,
                     "n_structures": int(b["n_struct"][g]), "n_elements": int(b["count"][g])})
    if not rows:
        return rows, None
    k = int(np.argmax([r["mae"] for r in rows]))
    return rows, rows[k]


def aggregate(partials: Sequence[dict], layout: BasisLayout, kind: str, reference: dict | None = None) -> dict:
    """Combine range partials (in range order) into ``metrics``, ``subsets``, ``per_block``, ``per_structure``.

    ``reference``: a scores dict of another run (e.g. the baseline); adds ``H_mae_max_on_reference`` (this
    run's MAE on the reference's worst structure) and ``H_mae_block_max_on_reference`` (on its worst block),
    overall and per subset where the reference has that subset.
    """
    recs = [r for p in partials for r in p["records"]]
    blocks = _merge_blocks(partials)
    metrics = _scalar_metrics(recs, kind, layout.spinful)
    per_block, worst_block = _block_table(blocks["all"], layout) if "all" in blocks else ([], None)
    if worst_block is not None:
        metrics["H_mae_block_max"] = worst_block["mae"]
        metrics["H_mae_block_max_block"] = f"{worst_block['pair']} {worst_block['block']}"
    subsets = {}
    for key in sorted(k for k in blocks if k != "all"):
        srecs = [r for r in recs if key in r["groups"]]
        sm = _scalar_metrics(srecs, kind, layout.spinful)
        rows, wb = _block_table(blocks[key], layout)
        if wb is not None:
            sm["H_mae_block_max"] = wb["mae"]
            sm["H_mae_block_max_block"] = f"{wb['pair']} {wb['block']}"
        subsets[key] = {"n_structures": len(srecs), "metrics": sm, "per_block": rows}
    if reference is not None:
        _apply_reference(metrics, recs, per_block, reference, None)
        for key, sub in subsets.items():
            if key in reference.get("subsets", {}):
                _apply_reference(sub["metrics"], [r for r in recs if key in r["groups"]], sub["per_block"],
                                 reference["subsets"][key], key)
    per_structure = []
    for r in recs:
        row = {"id": r["id"]}
        if "index" in r:
            row["index"] = r["index"]
        row.update(natoms=r["natoms"], nedges=r["nedges"], n_elements=r["n_elements"],
                   H_mae=r["H_mae"] * EV_TO_MEV, H_mae_gauge=r["H_mae_gauge"] * EV_TO_MEV,
                   gauge_mu=r["gauge_mu"] * EV_TO_MEV)
        for key in ("H_mae_reim", "H_mae_onsite", "H_mae_offsite", "eps_mae", "homo_err", "lumo_err", "gap_err"):
            if key in r:
                row[key] = r[key] * EV_TO_MEV
        for key in ("psi", "n_occ", "n_ao", "T_mae"):
            if key in r:
                row[key] = r[key]
        if r["groups"]:
            row["subsets"] = r["groups"]
        per_structure.append(row)
    return {"metrics": metrics, "subsets": subsets, "per_block": per_block, "per_structure": per_structure}


def _apply_reference(metrics: dict, recs: list[dict], per_block: list[dict], ref: dict, key) -> None:
    from hambench.errors import InputError

    where = ref.get("_path", "--reference")
    rm = ref.get("metrics", {})
    wid = rm.get("H_mae_max_id")
    if wid is None:
        raise InputError(where, "names no worst structure (metrics.H_mae_max_id)" + (f" in subset {key}" if key else ""))
    mine = {r["id"]: r for r in recs}
    if wid not in mine:
        raise InputError(where, f"its worst structure {wid!r} is not among the scored predictions")
    metrics["H_mae_max_on_reference"] = mine[wid]["H_mae"] * EV_TO_MEV
    metrics["H_mae_max_reference_id"] = wid
    wb = rm.get("H_mae_block_max_block")
    if wb:
        row = next((b for b in per_block if f"{b['pair']} {b['block']}" == wb), None)
        if row is None:
            raise InputError(where, f"its worst block {wb!r} does not occur in the scored predictions")
        metrics["H_mae_block_max_on_reference"] = row["mae"]
        metrics["H_mae_block_max_reference_block"] = wb


# =========================================================================================================
# OGB-style evaluator for people's own training loops
# =========================================================================================================
class Evaluator:
    """Scores predictions held in memory with the same functions as ``hambench score``.

    >>> ev = Evaluator("molecule")                                   # doctest: +SKIP
    >>> ev.eval({"pred": [H_flat_0, H_flat_1], "truth": [s0, s1]})   # doctest: +SKIP
    {'H_mae': ..., 'eps_mae': ..., 'psi': ..., ...}

    ``truth``: :class:`~hambench.store._structure.Structure` objects (hambench order, eV, with S); ``pred``: for each,
    its predicted flat H blocks on the same edges (or a Structure whose ``H`` is the prediction). All molecules
    or crystals must share one layout (the union of their species is used). Returns the ``metrics`` dict of
    scores.json (units in :data:`UNITS`); ``eval(..., full=True)`` returns the whole result (per block, per
    structure).
    """

    def __init__(self, kind: str):
        if kind not in ("molecule", "crystal"):
            raise ValueError(f"kind must be 'molecule' or 'crystal', got {kind!r}")
        self.kind = kind

    @property
    def expected_input_format(self) -> str:
        return ("input_dict = {'pred': [flat H blocks (or Structure) per structure], "
                "'truth': [hambench.store._structure.Structure with H and S]}")

    @property
    def expected_output_format(self) -> str:
        return "dict of metric name -> float (units: hambench.scoring._metrics.UNITS)"

    def eval(self, input_dict: dict, full: bool = False) -> dict:
        preds, truths = list(input_dict["pred"]), list(input_dict["truth"])
        if len(preds) != len(truths):
            raise ValueError(f"{len(preds)} predictions for {len(truths)} structures")
        if not truths:
            raise ValueError("nothing to evaluate")
        truth = StoreRange.from_structures(truths)  # the union of their species; other shells are refused
        for p, s in zip(preds, truths):
            if np.size(getattr(p, "H", p)) != s.H.size:
                raise ValueError(f"structure {s.id!r}: {np.size(getattr(p, 'H', p))} predicted elements, its edges "
                                 f"need {s.H.size}")
            if s.S is None:
                raise ValueError(f"structure {s.id!r} has no overlap S")
        layout = truth.layout
        r = RangeArrays.of(truth, np.concatenate([np.asarray(getattr(p, "H", p)).reshape(-1) for p in preds]))
        out = aggregate([range_partial(r, layout, self.kind)], layout, self.kind)
        return out if full else out["metrics"]

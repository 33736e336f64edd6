"""Dense assembly: flat edge blocks → full matrices M(R) and Bloch sums M(k), the one implementation.

M(k) = Σ_R e^{+2πi k·R} M(R) (k fractional, no atomic-position phase; molecules: k = Γ, real). Orbitals are
atom-major in the structure's atom order; spinful matrices have each atom's 2n orbitals as in its blocks (↑ then
↓) and S(k) ⊗ I₂ inside each atom. The molecule metrics, the SCF acceleration, the band structures and the
pipelines' band checks all assemble their matrices here.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from hambench.basis._layout import BasisLayout

__all__ = ["SMALL_MATRIX", "blas_threads", "threads_for", "orbital_offsets", "block_entries", "bloch_sum",
           "real_space_matrices", "dense_matrices", "bloch_matrices"]

#: below this matrix size LAPACK runs on one thread (threads only add spin-waiting on small matrices)
SMALL_MATRIX = 512


def blas_threads(n: int | None = 1):
    """Context limiting BLAS/LAPACK to ``n`` threads (threadpoolctl; no-op for ``None``)."""
    if n is None:
        return nullcontext()
    return threadpool_limits(limits=int(n), user_api="blas")


def threads_for(N: int) -> int | None:
    """BLAS threads for (N, N) matrices: one below :data:`SMALL_MATRIX`, else the library's choice (None)."""
    return 1 if N < SMALL_MATRIX else None


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


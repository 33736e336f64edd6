"""SO(3) algebra of orbital blocks in hambench order: Wigner-D, block rotation, CG decomposition, traces.

Conventions (DESIGN.md §4, FACTS.md §2)
    A shell of angular momentum l holds the real spherical harmonics m = -l..l (p: y, z, x). A rotation R
    (3x3, acting on column vectors, r -> R r) acts on a shell by ``D_l(R)`` defined by
    ``Y_l(R r) = D_l(R) Y_l(r)``. For a structure rotated by R, every edge block becomes
    ``H'_ij = D_i(R) H_ij D_j(R)^†`` where ``D_i`` is block-diagonal over the shells of atom i.
    Spinful blocks (spin-outer, ``[[uu, ud], [du, dd]]``) rotate with ``kron(U(R), D_i(R))``, U the SU(2)
    matrix of R (``U (v·σ) U^† = (R v)·σ``).

e3nn is the one source of Wigner matrices and 3j symbols: this module is the only place that calls it.
e3nn's harmonics use y as the polar axis; in the frame (y, z, x) they are the standard ones, so
``D_l(R) = Irrep(l, (-1)^l).D_from_matrix(P R Pᵀ)`` with ``P = eye(3)[[1, 2, 0]]`` (:func:`wigner_D_e3nn`).
e3nn builds its matrices in torch's *default* dtype, so every call runs under a float64 default (restored
afterwards). :func:`wigner_D` returns the same matrices (tested to 1e-12, l <= 8) 20-30x faster, built from
D_1 and e3nn's 3j symbols instead of e3nn's per-call matrix exponentials.

Flat block arrays
    ``blocks`` is the concatenation over edges of row-major ``(n_i, n_j)`` blocks (``(2n_i, 2n_j)`` complex
    when spinful), ``n = n_orbitals(species[Z])``. Bulk functions run one Numba pass over the flat array,
    shell pair by shell pair (``_so3_kernels``); ``*_grouped`` are the NumPy versions (one batched matmul per
    (Z_i, Z_j) group) and ``*_loop`` the straightforward per-edge loops, kept as references and baselines.
"""

from __future__ import annotations

import contextlib
import importlib
from functools import lru_cache

import numpy as np

from hambench.basis._conventions import n_orbitals
from hambench.basis._layout import layout_of

__all__ = [
    "wigner_D",
    "wigner_D_e3nn",
    "spin_half_D",
    "orbital_D",
    "random_rotation",
    "block_offsets",
    "rotate_edge_blocks",
    "rotate_edge_blocks_grouped",
    "rotate_edge_blocks_loop",
    "edge_traces",
    "edge_traces_grouped",
    "edge_traces_loop",
    "cg_basis",
    "decompose_block",
    "compose_block",
    "decompose_blocks",
    "compose_blocks",
]

#: e3nn's frame in hambench coordinates: (x_e, y_e, z_e) = (y, z, x)
_P = np.eye(3)[[1, 2, 0]]


# --- e3nn access (float64 everywhere) --------------------------------------------------------------------
def _heavy(name: str):
    """The one accessor of this module's heavy imports (torch, e3nn's o3, the Numba kernels): imported on first
    use, so reading and writing stores never imports torch or compiles kernels."""
    return importlib.import_module({"torch": "torch", "o3": "e3nn.o3",
                                    "kernels": "hambench.basis._so3_kernels"}[name])


@contextlib.contextmanager
def _float64_default():
    torch = _heavy("torch")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield torch
    finally:
        torch.set_default_dtype(old)


def _as_rotation(R, batch: bool = False) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3) or (not batch and R.ndim != 2):
        raise ValueError(f"a rotation must be a 3x3 matrix{' (or a stack of them)' if batch else ''}, got shape {R.shape}")
    if not np.allclose(R @ np.swapaxes(R, -1, -2), np.eye(3), atol=1e-6):
        raise ValueError("matrix is not orthogonal (R Rᵀ ≠ 1 to 1e-6)")
    return R


def wigner_D_e3nn(l: int, R) -> np.ndarray:
    """``wigner_D`` straight from e3nn: ``Irrep(l, (-1)^l).D_from_matrix(P R Pᵀ)`` under a float64 default.

    The definition :func:`wigner_D` must equal (tested to 1e-12 for l <= 8); ≈4 ms per call.
    """
    l = int(l)
    if l < 0:
        raise ValueError(f"angular momentum must be >= 0, got {l}")
    R = _as_rotation(R, batch=True)
    o3 = _heavy("o3")
    with _float64_default() as torch:
        Re = torch.as_tensor(_P @ R @ _P.T, dtype=torch.float64)
        D = o3.Irrep(l, (-1) ** l).D_from_matrix(Re)
        return D.detach().cpu().numpy().astype(np.float64, copy=True)


@lru_cache(maxsize=64)
def _ladder(l: int) -> np.ndarray:
    """Orthonormal columns (from e3nn's wigner_3j) projecting (l-1) ⊗ 1 onto L = l: ((2l-1)*3, 2l+1)."""
    Q, Ls = cg_basis(l - 1, 1)
    C = np.ascontiguousarray(Q[:, -(2 * l + 1) :])  # L = l is the last (largest) irrep of (l-1) ⊗ 1
    C.setflags(write=False)
    return C


def wigner_D(l: int, R) -> np.ndarray:
    """Real Wigner matrix ``(2l+1, 2l+1)`` float64 of a 3x3 rotation R in hambench order.

    ``Y_l(R r) = D_l(R) Y_l(r)`` for the real spherical harmonics m = -l..l; equal to e3nn's
    ``Irrep(l, (-1)^l).D_from_matrix(P R Pᵀ)`` (:func:`wigner_D_e3nn`, tested to 1e-12 for l <= 8). Built
    without e3nn's per-call matrix exponentials: D_1 = R in (y, z, x) order and, with e3nn's orthonormal
    3j columns C_l of (l-1) ⊗ 1 → l, ``D_l = C_lᵀ (D_{l-1} ⊗ D_1) C_l`` (exact: C_l intertwines), ~20 µs
    instead of ~4 ms. An improper R (det -1) gives the parity-correct ``(-1)^l D_l(-R)``.
    A stack ``(..., 3, 3)`` gives ``(..., 2l+1, 2l+1)``.
    """
    l = int(l)
    if l < 0:
        raise ValueError(f"angular momentum must be >= 0, got {l}")
    R = _as_rotation(R, batch=True)
    if l == 0:
        return np.ones(R.shape[:-2] + (1, 1))
    D1 = R[..., [1, 2, 0], :][..., :, [1, 2, 0]]
    D = D1
    for L in range(2, l + 1):
        C = _ladder(L)
        d = 2 * L - 1
        K = (D[..., :, None, :, None] * D1[..., None, :, None, :]).reshape(*R.shape[:-2], 3 * d, 3 * d)
        D = np.swapaxes(C, 0, 1) @ K @ C
    return np.ascontiguousarray(D)


def _quaternion(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a proper rotation (Shepperd's method, stable for all angles)."""
    t = np.trace(R)
    diag = np.array([t, R[0, 0], R[1, 1], R[2, 2]])
    k = int(np.argmax(diag))
    if k == 0:
        w = 0.5 * np.sqrt(1.0 + t)
        q = np.array([w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)])
    elif k == 1:
        x = 0.5 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = np.array([(R[2, 1] - R[1, 2]) / (4 * x), x, (R[0, 1] + R[1, 0]) / (4 * x), (R[0, 2] + R[2, 0]) / (4 * x)])
    elif k == 2:
        y = 0.5 * np.sqrt(1.0 - R[0, 0] + R[1, 1] - R[2, 2])
        q = np.array([(R[0, 2] - R[2, 0]) / (4 * y), (R[0, 1] + R[1, 0]) / (4 * y), y, (R[1, 2] + R[2, 1]) / (4 * y)])
    else:
        z = 0.5 * np.sqrt(1.0 - R[0, 0] - R[1, 1] + R[2, 2])
        q = np.array([(R[1, 0] - R[0, 1]) / (4 * z), (R[0, 2] + R[2, 0]) / (4 * z), (R[1, 2] + R[2, 1]) / (4 * z), z])
    return q / np.linalg.norm(q)


_SIGMA = np.array([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], dtype=np.complex128)


def spin_half_D(R) -> np.ndarray:
    """SU(2) matrix ``(2, 2)`` complex of a proper rotation R: ``U (v·σ) U^† = (R v)·σ``.

    For an improper R the spin part of ``-R`` is used (spin is a pseudovector). The overall sign is
    arbitrary (SU(2) double cover); blocks use U twice, so it cancels.
    """
    R = _as_rotation(R)
    if np.linalg.det(R) < 0:
        R = -R
    w, x, y, z = _quaternion(R)
    return w * np.eye(2, dtype=np.complex128) - 1j * (x * _SIGMA[0] + y * _SIGMA[1] + z * _SIGMA[2])


def _shell_Ds(shells, R) -> dict[int, np.ndarray]:
    return {l: wigner_D(l, R) for l in sorted({int(l) for l in shells})}


def _block_diag(shells, Ds: dict[int, np.ndarray]) -> np.ndarray:
    n = n_orbitals(shells)
    out = np.zeros((n, n))
    start = 0
    for l in shells:
        d = 2 * int(l) + 1
        out[start : start + d, start : start + d] = Ds[int(l)]
        start += d
    return out


def orbital_D(shells, R, spinful: bool = False) -> np.ndarray:
    """Rotation of one atom's orbitals: block-diagonal ``D_l(R)`` over its shells, ``(n, n)`` float64.

    ``spinful``: ``kron(spin_half_D(R), D)``, ``(2n, 2n)`` complex, for the spin-outer layout.
    """
    D = _block_diag(shells, _shell_Ds(shells, R))
    return np.kron(spin_half_D(R), D) if spinful else D


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A proper rotation (det +1) drawn uniformly from SO(3) (normalised Gaussian quaternion)."""
    w, x, y, z = (q := rng.standard_normal(4)) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


# --- flat edge blocks ------------------------------------------------------------------------------------
def block_offsets(Z_src, Z_dst, species, spinful: bool = False):
    """``(ptr, n_i, n_j)``: offsets (E+1,) int64 of each edge's block in the flat array, and its shape
    (from :class:`hambench.basis._layout.BasisLayout`; ValueError for an element without shells)."""
    lay = layout_of(species, spinful)
    ni, nj = lay.block_sizes(Z_src, Z_dst)
    return lay.block_ptr(Z_src, Z_dst), ni, nj


def _groups(Z_src, Z_dst):
    """Edges grouped by (Z_i, Z_j): yields ``(zi, zj, edge_indices)``."""
    Z_src = np.asarray(Z_src, dtype=np.int64).reshape(-1)
    Z_dst = np.asarray(Z_dst, dtype=np.int64).reshape(-1)
    if Z_src.size == 0:
        return
    key = Z_src * 1024 + Z_dst
    order = np.argsort(key, kind="stable")
    ks = key[order]
    cuts = np.flatnonzero(np.diff(ks)) + 1
    for part in np.split(order, cuts):
        k = int(key[part[0]])
        yield k // 1024, k % 1024, part


def _gather_index(ptr: np.ndarray, edges: np.ndarray, size: int) -> np.ndarray:
    return ptr[edges][:, None] + np.arange(size, dtype=np.int64)[None, :]


def _check_flat(blocks, ptr, spinful: bool) -> np.ndarray:
    blocks = np.asarray(blocks).reshape(-1)
    if blocks.size != ptr[-1]:
        raise ValueError(f"flat blocks have {blocks.size} elements, the edges' orbital counts need {int(ptr[-1])}")
    if spinful and not np.iscomplexobj(blocks):
        blocks = blocks.astype(np.result_type(blocks.dtype, np.complex64))
    return blocks


def _packed_shells(species):
    """Tables for the Numba kernels: nsh[z], sh_l[z, p], sh_start[z, p], norb[z] (spinless), lmax."""
    return _packed_layout(layout_of(species))


@lru_cache(maxsize=64)
def _packed_layout(lay):
    zmax = lay.zmax + 1
    nsh = lay.nshell_table.astype(np.int64)  # writable copies: Numba types read-only arrays apart
    maxsh = int(nsh.max())
    sh_l = np.zeros((zmax, maxsh), np.int64)
    sh_start = np.zeros((zmax, maxsh), np.int64)
    for z, shells in lay.species.items():
        sh_l[z, : len(shells)] = shells
        sh_start[z, : len(shells)] = lay.shell_offsets(z)
    norb = lay.norb_table.astype(np.int64)
    return nsh, sh_l, sh_start, norb, lay.lmax


def rotate_edge_blocks(blocks, Z_src, Z_dst, species, R, spinful: bool = False) -> np.ndarray:
    """Rotate flat edge blocks: ``D_i(R) H_ij D_j(R)^†`` for every edge.

    One pass of a Numba kernel over the flat array, shell pair by shell pair (never a dense D). The result has
    the dtype of ``blocks`` (float32 stays float32; spinful real input becomes complex).
    """
    _so3_kernels = _heavy("kernels")
    ptr, _, _ = block_offsets(Z_src, Z_dst, species, spinful)
    blocks = np.ascontiguousarray(_check_flat(blocks, ptr, spinful))
    nsh, sh_l, sh_start, norb, lmax = _packed_shells(species)
    real = np.float32 if blocks.dtype in (np.float32, np.complex64) else np.float64
    Dl = np.zeros((lmax + 1, 2 * lmax + 1, 2 * lmax + 1), dtype=real)
    for l in sorted({int(l) for s in species.values() for l in s}):
        Dl[l, : 2 * l + 1, : 2 * l + 1] = wigner_D(l, R)
    out = np.empty_like(blocks)
    Zi = np.ascontiguousarray(np.asarray(Z_src, dtype=np.int64).reshape(-1))
    Zj = np.ascontiguousarray(np.asarray(Z_dst, dtype=np.int64).reshape(-1))
    if spinful:
        U = spin_half_D(R).astype(blocks.dtype)
        _so3_kernels.rotate_blocks_spinful(blocks, out, ptr, Zi, Zj, nsh, sh_l, sh_start, norb, Dl, U)
    else:
        _so3_kernels.rotate_blocks(blocks, out, ptr, Zi, Zj, nsh, sh_l, sh_start, norb, Dl)
    return out


def rotate_edge_blocks_grouped(blocks, Z_src, Z_dst, species, R, spinful: bool = False) -> np.ndarray:
    """NumPy version of :func:`rotate_edge_blocks`: one batched dense matmul per (Z_i, Z_j) group."""
    ptr, ni, nj = block_offsets(Z_src, Z_dst, species, spinful)
    blocks = _check_flat(blocks, ptr, spinful)
    dtype = blocks.dtype
    Dz = {int(z): orbital_D(sh, R, spinful).astype(dtype) for z, sh in species.items()}
    out = np.empty_like(blocks)
    for zi, zj, edges in _groups(Z_src, Z_dst):
        a, b = int(ni[edges[0]]), int(nj[edges[0]])
        idx = _gather_index(ptr, edges, a * b)
        X = blocks[idx].reshape(-1, a, b)
        Y = np.matmul(np.matmul(Dz[zi], X), Dz[zj].conj().T)
        out[idx] = Y.reshape(len(edges), a * b)
    return out


def rotate_edge_blocks_loop(blocks, Z_src, Z_dst, species, R, spinful: bool = False) -> np.ndarray:
    """Straightforward per-edge loop of :func:`rotate_edge_blocks` (reference and benchmark baseline)."""
    ptr, ni, nj = block_offsets(Z_src, Z_dst, species, spinful)
    blocks = _check_flat(blocks, ptr, spinful)
    out = np.empty_like(blocks)
    Z_src = np.asarray(Z_src).reshape(-1)
    Z_dst = np.asarray(Z_dst).reshape(-1)
    Dz = {int(z): orbital_D(sh, R, spinful) for z, sh in species.items()}
    for e in range(len(Z_src)):
        Di, Dj = Dz[int(Z_src[e])], Dz[int(Z_dst[e])]
        H = blocks[ptr[e] : ptr[e + 1]].reshape(ni[e], nj[e])
        out[ptr[e] : ptr[e + 1]] = (Di @ H @ Dj.conj().T).reshape(-1)
    return out


def _trace_ptr(Z_src, Z_dst, species) -> np.ndarray:
    """Offsets (E+1,) of each edge's trace labels (:meth:`hambench.basis._layout.BasisLayout.trace_ptr`)."""
    return layout_of(species).trace_ptr(Z_src, Z_dst)


def edge_traces(blocks, Z_src, Z_dst, species, spinful: bool = False):
    """TraceGrad labels ``T_b = tr(H_b H_b^†)`` for every basic block b of every edge.

    b = (shell p of atom i) x (shell q of atom j), p-major then q. For spinful blocks H_b is the whole
    spinor sub-block (its four spin parts). Returns ``(T, T_ptr)``: T flat float64 (accumulated in float64
    whatever the input dtype), T_ptr (E+1,) int64. One Numba pass over the flat array.
    """
    _so3_kernels = _heavy("kernels")
    ptr, _, _ = block_offsets(Z_src, Z_dst, species, spinful)
    blocks = np.ascontiguousarray(_check_flat(blocks, ptr, spinful))
    nsh, sh_l, sh_start, norb, _ = _packed_shells(species)
    T_ptr = _trace_ptr(Z_src, Z_dst, species)
    T = np.empty(int(T_ptr[-1]), dtype=np.float64)
    Zi = np.ascontiguousarray(np.asarray(Z_src, dtype=np.int64).reshape(-1))
    Zj = np.ascontiguousarray(np.asarray(Z_dst, dtype=np.int64).reshape(-1))
    _so3_kernels.block_traces(blocks, T, ptr, T_ptr, Zi, Zj, nsh, sh_l, sh_start, norb, bool(spinful))
    return T, T_ptr


def edge_traces_grouped(blocks, Z_src, Z_dst, species, spinful: bool = False):
    """NumPy version of :func:`edge_traces`: one vectorised reduction per (Z_i, Z_j) group."""
    ptr, ni, nj = block_offsets(Z_src, Z_dst, species, spinful)
    blocks = _check_flat(blocks, ptr, spinful)
    Z_src = np.asarray(Z_src, dtype=np.int64).reshape(-1)
    Z_dst = np.asarray(Z_dst, dtype=np.int64).reshape(-1)
    lay = layout_of(species)
    T_ptr = lay.trace_ptr(Z_src, Z_dst)
    T = np.empty(int(T_ptr[-1]), dtype=np.float64)
    for zi, zj, edges in _groups(Z_src, Z_dst):
        a, b = int(ni[edges[0]]), int(nj[edges[0]])
        idx = _gather_index(ptr, edges, a * b)
        X = blocks[idx]
        A2 = (X.real.astype(np.float64) ** 2 + (X.imag.astype(np.float64) ** 2 if np.iscomplexobj(X) else 0.0)).reshape(-1, a, b)
        if spinful:
            A2 = A2.reshape(-1, 2, a // 2, 2, b // 2).sum(axis=(1, 3))
        si, sj = lay.shell_offsets(zi), lay.shell_offsets(zj)
        Tb = np.add.reduceat(np.add.reduceat(A2, si, axis=1), sj, axis=2)  # (k, n_shell_i, n_shell_j)
        T[_gather_index(T_ptr, edges, len(si) * len(sj))] = Tb.reshape(len(edges), -1)
    return T, T_ptr


def edge_traces_loop(blocks, Z_src, Z_dst, species, spinful: bool = False):
    """Straightforward per-block loop of :func:`edge_traces` (reference and benchmark baseline)."""
    ptr, ni, nj = block_offsets(Z_src, Z_dst, species, spinful)
    blocks = _check_flat(blocks, ptr, spinful)
    lay = layout_of(species)
    T, T_ptr = [], [0]
    for e in range(len(ptr) - 1):
        H = blocks[ptr[e] : ptr[e + 1]].reshape(ni[e], nj[e])
        zi, zj = int(np.asarray(Z_src).reshape(-1)[e]), int(np.asarray(Z_dst).reshape(-1)[e])
        shi, shj = lay.shells(zi), lay.shells(zj)
        n_i, n_j = lay.norb(zi, False), lay.norb(zj, False)
        si, sj = lay.shell_offsets(zi), lay.shell_offsets(zj)
        for p, lp in enumerate(shi):
            rows = np.arange(si[p], si[p] + 2 * lp + 1)
            if spinful:
                rows = np.concatenate([rows, rows + n_i])
            for q, lq in enumerate(shj):
                cols = np.arange(sj[q], sj[q] + 2 * lq + 1)
                if spinful:
                    cols = np.concatenate([cols, cols + n_j])
                Hb = H[np.ix_(rows, cols)].astype(np.complex128 if spinful else np.float64)
                T.append(float(np.real(np.trace(Hb @ Hb.conj().T))))
        T_ptr.append(len(T))
    return np.asarray(T, dtype=np.float64), np.asarray(T_ptr, dtype=np.int64)


# --- Clebsch-Gordan decomposition of l1 ⊗ l2 blocks -----------------------------------------------------
@lru_cache(maxsize=256)
def _cg_basis_cached(l1: int, l2: int) -> tuple[np.ndarray, tuple[int, ...]]:
    o3 = _heavy("o3")
    cols = []
    Ls = tuple(range(abs(l1 - l2), l1 + l2 + 1))
    with _float64_default() as torch:
        for L in Ls:
            C = o3.wigner_3j(l1, l2, L, dtype=torch.float64).detach().cpu().numpy()  # ||C||_F = 1
            cols.append(C.reshape((2 * l1 + 1) * (2 * l2 + 1), 2 * L + 1) * np.sqrt(2 * L + 1))
    Q = np.concatenate(cols, axis=1)
    Q.setflags(write=False)
    return Q, Ls


def cg_basis(l1: int, l2: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Orthogonal change of basis ``Q`` ((2l1+1)(2l2+1), same) from a flattened l1⊗l2 block to irreps.

    Columns are grouped by L = |l1-l2|..l1+l2 (2L+1 each); ``parts = vec(block) @ Q`` and
    ``vec(block) = parts @ Qᵀ``. ``parts[L]`` rotates with ``wigner_D(L, R)`` when the block rotates as
    ``D_l1 H D_l2ᵀ``. Returns ``(Q, Ls)``; Q is read-only.
    """
    l1, l2 = int(l1), int(l2)
    if l1 < 0 or l2 < 0:
        raise ValueError(f"angular momenta must be >= 0, got ({l1}, {l2})")
    return _cg_basis_cached(l1, l2)


def decompose_blocks(blocks, l1: int, l2: int) -> np.ndarray:
    """Bulk decomposition: ``(..., 2l1+1, 2l2+1)`` → ``(..., (2l1+1)(2l2+1))`` irreps concatenated by L."""
    Q, _ = cg_basis(l1, l2)
    blocks = np.asarray(blocks)
    d1, d2 = 2 * l1 + 1, 2 * l2 + 1
    if blocks.shape[-2:] != (d1, d2):
        raise ValueError(f"block shape {blocks.shape} is not (..., {d1}, {d2}) for l1={l1}, l2={l2}")
    return blocks.reshape(*blocks.shape[:-2], d1 * d2) @ Q.astype(blocks.dtype if blocks.dtype == np.float32 else np.float64)


def compose_blocks(parts, l1: int, l2: int) -> np.ndarray:
    """Inverse of :func:`decompose_blocks`: ``(..., (2l1+1)(2l2+1))`` → ``(..., 2l1+1, 2l2+1)``."""
    Q, _ = cg_basis(l1, l2)
    parts = np.asarray(parts)
    d1, d2 = 2 * l1 + 1, 2 * l2 + 1
    if parts.shape[-1] != d1 * d2:
        raise ValueError(f"irrep vector length {parts.shape[-1]} is not {d1 * d2} for l1={l1}, l2={l2}")
    return (parts @ Q.T.astype(parts.dtype if parts.dtype == np.float32 else np.float64)).reshape(*parts.shape[:-1], d1, d2)


def decompose_block(block, l1: int, l2: int) -> dict[int, np.ndarray]:
    """Split a basic block ``(..., 2l1+1, 2l2+1)`` into irreps: ``{L: (..., 2L+1)}``, L = |l1-l2|..l1+l2."""
    flat = decompose_blocks(block, l1, l2)
    out, start = {}, 0
    for L in cg_basis(l1, l2)[1]:
        out[L] = flat[..., start : start + 2 * L + 1]
        start += 2 * L + 1
    return out


def compose_block(parts: dict[int, np.ndarray], l1: int, l2: int) -> np.ndarray:
    """Inverse of :func:`decompose_block`: ``{L: (..., 2L+1)}`` → ``(..., 2l1+1, 2l2+1)``."""
    Ls = cg_basis(l1, l2)[1]
    if sorted(int(k) for k in parts) != list(Ls):
        raise ValueError(f"irreps {sorted(parts)} do not match l1={l1} ⊗ l2={l2} (need L = {list(Ls)})")
    flat = np.concatenate([np.asarray(parts[L]) for L in Ls], axis=-1)
    return compose_blocks(flat, l1, l2)

"""SO(3) block algebra (hambench.basis._so3): Wigner-D, spin-1/2, block rotation, traces, CG decomposition.

References are independent of e3nn wherever possible: closed-form real spherical harmonics, scipy's complex
harmonics, Pauli-matrix algebra, the L·S operator, brute-force loops.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import sph_harm_y

from hambench.basis import _so3 as so3
from hambench.testing import TOL, assert_blocks_equivariant, random_edge_blocks, tol

DTYPES = [np.float32, np.float64]
# a small "structure": species with multiple zeta shells incl. f, and edges between all element pairs
SPECIES = {1: [0, 0, 1], 8: [0, 0, 0, 1, 1, 2], 42: [0, 0, 0, 1, 1, 2, 2], 73: [0, 1, 2, 3]}
ZS = np.array([1, 8, 42, 73, 8, 1])
SRC, DST = np.meshgrid(np.arange(len(ZS)), np.arange(len(ZS)), indexing="ij")
Z_SRC, Z_DST = ZS[SRC.ravel()], ZS[DST.ravel()]


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)


# --- independent real spherical harmonics ----------------------------------------------------------------
def real_sh_closed(l: int, r: np.ndarray) -> np.ndarray:
    """Real SH (unnormalised polynomials, constant factor per m irrelevant for D) for l <= 2, m = -l..l."""
    x, y, z = r[:, 0], r[:, 1], r[:, 2]
    if l == 0:
        return np.ones((len(r), 1))
    if l == 1:
        return np.stack([y, z, x], axis=1)
    if l == 2:
        s3 = np.sqrt(3.0)
        return np.stack([s3 * x * y, s3 * y * z, (2 * z * z - x * x - y * y) / 2, s3 * x * z, s3 / 2 * (x * x - y * y)], axis=1)
    raise ValueError(l)


def real_sh_scipy(l: int, r: np.ndarray) -> np.ndarray:
    """Standard (Wikipedia) real SH m = -l..l from scipy's complex Y_l^m (Condon-Shortley phase removed)."""
    r = r / np.linalg.norm(r, axis=1, keepdims=True)
    theta = np.arccos(np.clip(r[:, 2], -1, 1))
    phi = np.arctan2(r[:, 1], r[:, 0])
    out = []
    for m in range(-l, l + 1):
        Y = sph_harm_y(l, abs(m), theta, phi)  # includes (-1)^m
        if m < 0:
            out.append(np.sqrt(2) * (-1) ** m * Y.imag)
        elif m == 0:
            out.append(Y.real)
        else:
            out.append(np.sqrt(2) * (-1) ** m * Y.real)
    return np.stack(out, axis=1)


def test_real_sh_references_agree():
    pts = np.random.default_rng(1).standard_normal((50, 3))
    u = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    for l in (1, 2):
        a, b = real_sh_closed(l, u), real_sh_scipy(l, u)
        ratio = b / a  # same function up to one positive constant per l
        assert np.ptp(ratio) < TOL.exact64 and ratio.min() > 0


@pytest.mark.parametrize("l", [0, 1, 2])
def test_wigner_D_rotates_closed_form_harmonics(l, rng):
    for _ in range(3):
        R = so3.random_rotation(rng)
        r = rng.standard_normal((40, 3))
        D = so3.wigner_D(l, R)
        assert np.max(np.abs(real_sh_closed(l, r @ R.T) - real_sh_closed(l, r) @ D.T)) < TOL.exact64


@pytest.mark.parametrize("l", [3, 4, 5])
def test_wigner_D_rotates_scipy_harmonics(l, rng):
    R = so3.random_rotation(rng)
    r = rng.standard_normal((60, 3))
    D = so3.wigner_D(l, R)
    assert np.max(np.abs(real_sh_scipy(l, r @ R.T) - real_sh_scipy(l, r) @ D.T)) < TOL.exact64


@pytest.mark.parametrize("l", range(0, 7))
def test_wigner_D_homomorphism_and_orthogonality(l, rng):
    R1, R2 = so3.random_rotation(rng), so3.random_rotation(rng)
    D1, D2, D12 = so3.wigner_D(l, R1), so3.wigner_D(l, R2), so3.wigner_D(l, R1 @ R2)
    assert D12.dtype == np.float64 and D12.shape == (2 * l + 1, 2 * l + 1)
    assert np.max(np.abs(D12 - D1 @ D2)) < TOL.exact64  # fails at ~6e-7 if e3nn builds D in float32
    assert np.max(np.abs(D1 @ D1.T - np.eye(2 * l + 1))) < TOL.exact64
    assert np.max(np.abs(so3.wigner_D(l, R1.T) - D1.T)) < TOL.exact64
    assert abs(np.linalg.det(D1) - 1) < TOL.exact64


def test_wigner_D_batched_equals_single(rng):
    Rs = np.stack([so3.random_rotation(rng) for _ in range(6)]).reshape(2, 3, 3, 3)
    for l in (0, 1, 3):
        D = so3.wigner_D(l, Rs)
        assert D.shape == (2, 3, 2 * l + 1, 2 * l + 1)
        assert np.max(np.abs(D[1, 2] - so3.wigner_D(l, Rs[1, 2]))) < TOL.roundoff


def test_wigner_D_l1_is_R_in_yzx_order(rng):
    for _ in range(5):
        R = so3.random_rotation(rng)
        assert np.max(np.abs(so3.wigner_D(1, R) - R[np.ix_([1, 2, 0], [1, 2, 0])])) < TOL.roundoff


@pytest.mark.parametrize("l", range(0, 9))
def test_wigner_D_equals_e3nn_definition(l, rng):
    """The fast ladder construction equals e3nn's D_from_matrix(P R Pᵀ), proper and improper, batched."""
    Rs = np.stack([so3.random_rotation(rng) for _ in range(3)] + [-so3.random_rotation(rng)])
    assert np.max(np.abs(so3.wigner_D(l, Rs) - so3.wigner_D_e3nn(l, Rs))) < TOL.exact64


def test_wigner_D_e3nn_is_float64_whatever_the_torch_default(rng):
    """Precision trap (FACTS.md §2): e3nn builds D in torch's default dtype; so3 must force float64 and
    restore the caller's default."""
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    R1, R2 = so3.random_rotation(rng), so3.random_rotation(rng)
    try:
        torch.set_default_dtype(torch.float32)
        for l in (1, 2, 4):
            D1, D2, D12 = (so3.wigner_D_e3nn(l, R) for R in (R1, R2, R1 @ R2))
            assert np.max(np.abs(D12 - D1 @ D2)) < TOL.exact64  # ~6e-7 if built in float32
        assert np.max(np.abs(so3.wigner_D_e3nn(1, R1) - R1[np.ix_([1, 2, 0], [1, 2, 0])])) < TOL.roundoff
        assert torch.get_default_dtype() == torch.float32
    finally:
        torch.set_default_dtype(old)


def test_wigner_D_improper_rotation_has_orbital_parity(rng):
    R = so3.random_rotation(rng)
    for l in range(4):
        assert np.max(np.abs(so3.wigner_D(l, -R) - (-1) ** l * so3.wigner_D(l, R))) < TOL.exact64


def test_wigner_D_rejects_bad_input():
    with pytest.raises(ValueError, match="3x3"):
        so3.wigner_D(1, np.eye(2))
    with pytest.raises(ValueError, match="orthogonal"):
        so3.wigner_D(1, 2 * np.eye(3))
    with pytest.raises(ValueError, match=">= 0"):
        so3.wigner_D(-1, np.eye(3))


def test_random_rotation_is_proper_and_uniform():
    rng = np.random.default_rng(3)
    Rs = np.array([so3.random_rotation(rng) for _ in range(4000)])
    assert np.max(np.abs(np.einsum("nij,nkj->nik", Rs, Rs) - np.eye(3))) < TOL.exact64
    assert np.all(np.abs(np.linalg.det(Rs) - 1) < TOL.exact64)
    # Haar measure: E[R] = 0 and E[R_ij^2] = 1/3 (statistical tolerance ~5 sigma for 4000 samples)
    assert np.max(np.abs(Rs.mean(axis=0))) < 5 * np.sqrt(1 / 3 / 4000)
    assert np.max(np.abs((Rs**2).mean(axis=0) - 1 / 3)) < TOL.sampling_mean


# --- spin 1/2 --------------------------------------------------------------------------------------------
def test_spin_half_D_rotates_pauli_vector_and_is_a_projective_homomorphism(rng):
    R1, R2 = so3.random_rotation(rng), so3.random_rotation(rng)
    U1, U2, U12 = so3.spin_half_D(R1), so3.spin_half_D(R2), so3.spin_half_D(R1 @ R2)
    assert np.max(np.abs(U1 @ U1.conj().T - np.eye(2))) < TOL.roundoff and abs(np.linalg.det(U1) - 1) < TOL.roundoff
    for a in range(3):
        lhs = U1 @ so3._SIGMA[a] @ U1.conj().T
        rhs = np.einsum("b,bij->ij", R1[:, a], so3._SIGMA)  # (R e_a)·σ
        assert np.max(np.abs(lhs - rhs)) < TOL.roundoff
    prod = U1 @ U2
    sign = np.sign(np.real(np.trace(prod @ U12.conj().T)))
    assert np.max(np.abs(prod - sign * U12)) < TOL.roundoff


def test_spin_half_D_half_angle():
    # rotation by t about z: U = exp(-i t σz / 2)
    for t in (0.3, 2.0, np.pi - 1e-9, np.pi):
        R = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
        U = so3.spin_half_D(R)
        ref = np.diag([np.exp(-0.5j * t), np.exp(0.5j * t)])
        assert min(np.max(np.abs(U - ref)), np.max(np.abs(U + ref))) < TOL.exact64


def test_spin_orbit_operator_is_invariant(rng):
    """L·σ for a p shell (real basis y, z, x) commutes with kron(U, D_1): checks spin and orbit conventions together."""
    # Cartesian (x, y, z) angular momentum: (L_k)_ij = -i ε_kij ; reorder to hambench (y, z, x)
    eps = np.zeros((3, 3, 3))
    for i, j, k in [(0, 1, 2), (1, 2, 0), (2, 0, 1)]:
        eps[i, j, k], eps[i, k, j] = 1, -1
    L = -1j * eps[:, [1, 2, 0]][:, :, [1, 2, 0]]
    H = sum(np.kron(so3._SIGMA[k], L[k]) for k in range(3))
    for _ in range(3):
        R = so3.random_rotation(rng)
        W = so3.orbital_D([1], R, spinful=True)
        assert np.max(np.abs(W @ H @ W.conj().T - H)) < TOL.roundoff_long
    # and the wrong pairing (U with D of the inverse) breaks it: the test can fail
    R = so3.random_rotation(rng)
    W_bad = np.kron(so3.spin_half_D(R.T), so3.wigner_D(1, R))
    assert np.max(np.abs(W_bad @ H @ W_bad.conj().T - H)) > 1e-2


def test_orbital_D_block_structure(rng):
    R = so3.random_rotation(rng)
    shells = [0, 1, 1, 2, 3]
    D = so3.orbital_D(shells, R)
    assert D.shape == (1 + 3 + 3 + 5 + 7,) * 2
    assert np.max(np.abs(D[4:7, 4:7] - so3.wigner_D(1, R))) == 0 and np.all(D[1:4, 4:7] == 0)
    Ds = so3.orbital_D(shells, R, spinful=True)
    assert Ds.shape == (38, 38) and np.iscomplexobj(Ds)
    assert np.max(np.abs(Ds - np.kron(so3.spin_half_D(R), D))) == 0


# --- flat edge blocks ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spinful", [False, True])
def test_rotate_edge_blocks_matches_loop_and_composes(dtype, spinful, rng):
    H = random_edge_blocks(rng, Z_SRC, Z_DST, SPECIES, spinful, dtype)
    R1, R2 = so3.random_rotation(rng), so3.random_rotation(rng)
    fast = so3.rotate_edge_blocks(H, Z_SRC, Z_DST, SPECIES, R1, spinful)
    assert fast.dtype == H.dtype
    slow = so3.rotate_edge_blocks_loop(H.astype(np.complex128 if spinful else np.float64), Z_SRC, Z_DST, SPECIES, R1, spinful)
    grouped = so3.rotate_edge_blocks_grouped(H, Z_SRC, Z_DST, SPECIES, R1, spinful)
    assert grouped.dtype == H.dtype
    assert np.max(np.abs(fast - slow)) < 10 * tol(dtype)
    assert np.max(np.abs(grouped - slow)) < 10 * tol(dtype)
    # group property, Frobenius norm per edge preserved
    two = so3.rotate_edge_blocks(fast, Z_SRC, Z_DST, SPECIES, R2, spinful)
    once = so3.rotate_edge_blocks(H, Z_SRC, Z_DST, SPECIES, R2 @ R1, spinful)
    assert np.max(np.abs(two - once)) < 10 * tol(dtype)
    assert abs(np.linalg.norm(fast) - np.linalg.norm(H)) < 10 * tol(dtype) * np.linalg.norm(H)
    assert_blocks_equivariant(H, fast, Z_SRC, Z_DST, SPECIES, R1, atol=10 * tol(dtype), spinful=spinful)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_blocks_equivariant(H, fast, Z_SRC, Z_DST, SPECIES, R2, atol=10 * tol(dtype), spinful=spinful)


def test_rotate_edge_blocks_rejects_bad_sizes(rng):
    H = random_edge_blocks(rng, Z_SRC, Z_DST, SPECIES)
    with pytest.raises(ValueError, match="elements"):
        so3.rotate_edge_blocks(H[:-1], Z_SRC, Z_DST, SPECIES, np.eye(3))
    with pytest.raises(ValueError, match="no shells"):
        so3.rotate_edge_blocks(H, Z_SRC, Z_DST, {1: [0]}, np.eye(3))
    empty = so3.rotate_edge_blocks(np.zeros(0), np.zeros(0, int), np.zeros(0, int), SPECIES, np.eye(3))
    assert empty.size == 0


@pytest.mark.parametrize("spinful", [False, True])
def test_edge_traces_match_loop_and_are_invariant(spinful, rng):
    H = random_edge_blocks(rng, Z_SRC, Z_DST, SPECIES, spinful)
    T, T_ptr = so3.edge_traces(H, Z_SRC, Z_DST, SPECIES, spinful)
    T_ref, T_ptr_ref = so3.edge_traces_loop(H, Z_SRC, Z_DST, SPECIES, spinful)
    T_grp, T_ptr_grp = so3.edge_traces_grouped(H, Z_SRC, Z_DST, SPECIES, spinful)
    assert np.array_equal(T_ptr, T_ptr_ref) and np.array_equal(T_ptr_grp, T_ptr_ref) and T.dtype == np.float64
    assert np.max(np.abs(T_grp - T_ref) / T_ref) < TOL.roundoff_long
    nsh = {z: len(s) for z, s in SPECIES.items()}
    assert np.array_equal(np.diff(T_ptr), [nsh[a] * nsh[b] for a, b in zip(Z_SRC, Z_DST)])
    assert np.max(np.abs(T - T_ref) / T_ref) < TOL.roundoff_long
    # the traces add up to the Frobenius norm of each edge block
    ptr, _, _ = so3.block_offsets(Z_SRC, Z_DST, SPECIES, spinful)
    for e in (0, 7, 20):
        assert abs(T[T_ptr[e] : T_ptr[e + 1]].sum() - np.sum(np.abs(H[ptr[e] : ptr[e + 1]]) ** 2)) < TOL.reassociation
    for _ in range(3):
        Hr = so3.rotate_edge_blocks(H, Z_SRC, Z_DST, SPECIES, so3.random_rotation(rng), spinful)
        Tr, _ = so3.edge_traces(Hr, Z_SRC, Z_DST, SPECIES, spinful)
        assert np.max(np.abs(Tr - T) / T) < TOL.exact64
    # a non-rotation change (scaling one orbital) does change them: the test can fail
    H2 = H.copy()
    H2[0] *= 2
    assert not np.allclose(so3.edge_traces(H2, Z_SRC, Z_DST, SPECIES, spinful)[0], T, rtol=TOL.exact64)


def test_edge_traces_float32(rng):
    H = random_edge_blocks(rng, Z_SRC, Z_DST, SPECIES, dtype=np.float32)
    T, _ = so3.edge_traces(H, Z_SRC, Z_DST, SPECIES)
    Hr = so3.rotate_edge_blocks(H, Z_SRC, Z_DST, SPECIES, so3.random_rotation(rng))
    Tr, _ = so3.edge_traces(Hr, Z_SRC, Z_DST, SPECIES)
    assert np.max(np.abs(Tr - T) / T) < 10 * tol(np.float32)


# --- Clebsch-Gordan --------------------------------------------------------------------------------------
PAIRS = [(0, 0), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2), (3, 2), (3, 3), (4, 2)]


@pytest.mark.parametrize("l1,l2", PAIRS)
def test_cg_basis_orthogonal_and_equivariant(l1, l2, rng):
    Q, Ls = so3.cg_basis(l1, l2)
    n = (2 * l1 + 1) * (2 * l2 + 1)
    assert Q.shape == (n, n) and Ls == tuple(range(abs(l1 - l2), l1 + l2 + 1))
    assert np.max(np.abs(Q.T @ Q - np.eye(n))) < TOL.exact64
    R = so3.random_rotation(rng)
    X = rng.standard_normal((4, 2 * l1 + 1, 2 * l2 + 1))
    Xr = so3.wigner_D(l1, R) @ X @ so3.wigner_D(l2, R).T
    parts, parts_r = so3.decompose_block(X, l1, l2), so3.decompose_block(Xr, l1, l2)
    for L in Ls:
        assert parts[L].shape == (4, 2 * L + 1)
        assert np.max(np.abs(parts_r[L] - parts[L] @ so3.wigner_D(L, R).T)) < TOL.exact64


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l1,l2", PAIRS)
def test_cg_round_trip(l1, l2, dtype, rng):
    X = rng.standard_normal((100, 2 * l1 + 1, 2 * l2 + 1)).astype(dtype)
    flat = so3.decompose_blocks(X, l1, l2)
    assert flat.dtype == dtype
    assert np.max(np.abs(so3.compose_blocks(flat, l1, l2) - X)) < tol(dtype)
    assert np.max(np.abs(so3.compose_block(so3.decompose_block(X[0], l1, l2), l1, l2) - X[0])) < tol(dtype)
    # norm is preserved (orthonormal change of basis)
    assert abs(np.linalg.norm(flat) - np.linalg.norm(X)) < 10 * tol(dtype) * np.linalg.norm(X)


def test_cg_identity_block_is_pure_scalar():
    """The identity on an l⊗l block is the invariant L = 0 part only (an independent fact about 3j)."""
    for l in range(4):
        parts = so3.decompose_block(np.eye(2 * l + 1), l, l)
        assert abs(abs(parts[0][0]) - np.sqrt(2 * l + 1)) < TOL.exact64
        assert all(np.max(np.abs(parts[L])) < TOL.exact64 for L in parts if L > 0)


def test_cg_rejects_bad_shapes():
    with pytest.raises(ValueError, match="not"):
        so3.decompose_blocks(np.zeros((3, 5)), 1, 1)
    with pytest.raises(ValueError, match="do not match"):
        so3.compose_block({0: np.zeros(1)}, 1, 1)

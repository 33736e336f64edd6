"""Shared model parts (models/common.py): radial bases, edge SH, the irreps <-> blocks head (spinless and SOC),
partner edges and symmetrisation — against hand formulas, hambench.basis._so3 and real DFT blocks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hambench.basis import _so3 as so3
from hambench.training._data import batch_from_structures
from hambench.basis._layout import BasisLayout
from hambench.testing import TOL, require_realdata, tol
from hambench.models import common

F64 = torch.float64
_P = np.eye(3)[[1, 2, 0]]


def _irreps_D(irreps, R):
    """Block-diagonal D of e3nn ``irreps`` for a proper rotation R, from so3.wigner_D (= e3nn's
    ``D_from_matrix(P R Pᵀ)``, tested in test_so3), float64."""
    Ds = {l: so3.wigner_D(l, R) for l in {ir.l for _, ir in irreps}}
    return torch.block_diag(*[torch.tensor(Ds[ir.l]) for mul, ir in irreps for _ in range(mul)])


@pytest.fixture(scope="module")
def qm9(demo_store):
    from hambench.store._store import open_store

    st = open_store(demo_store)  # the session's demo store (real PySCF labels, no DFT)
    layout = BasisLayout(st.species, st.spinful)
    structs = [st[k] for k in range(len(st))]
    return layout, structs


@pytest.fixture(scope="module")
def mote2():
    from hambench.pipelines.deeph_format import read_new_folder

    s = read_new_folder(require_realdata("deeph_new_MoTe2"))
    return BasisLayout(s.species, s.spinful), s


@pytest.fixture(scope="module")
def bismuthene():
    from hambench.pipelines.openmx import scfout_to_structure

    s = scfout_to_structure(require_realdata("openmx_bismuthene_soc_scfout", "openmx.scfout"))
    assert s.spinful
    return BasisLayout(s.species, True), s


def _edge_Z(batch):
    return batch.Z[batch.edge_src], batch.Z[batch.edge_dst]


# --- radial bases ----------------------------------------------------------------------------------------
def test_gaussian_basis_hand_values():
    g = common.GaussianBasis(0.0, 2.0, 3).to(F64)  # centres 0, 1, 2; sigma = 1
    got = g(torch.tensor([0.5, 2.0], dtype=F64)).numpy()
    want = np.array([[math.exp(-0.125), math.exp(-0.125), math.exp(-1.125)],
                     [math.exp(-2.0), math.exp(-0.5), 1.0]])
    np.testing.assert_allclose(got, want, rtol=TOL.few_ulp, atol=0)
    assert not any(p.requires_grad for p in g.parameters())
    # DeepH-E3's two bases: 64 over 0-6 A (edge init), 128 over 0-7.2 A (TP weights)
    assert common.GaussianBasis(0, 6.0, 64)(torch.zeros(1)).shape == (1, 64)


def test_bernstein_basis_formula_and_partition_of_unity():
    K, c, alpha = 16, 15.0, 0.5
    with common.default_dtype(F64):
        b = common.BernsteinBasis(K, c, alpha)
    r = np.array([0.0, 0.3, 1.0, 4.0, 9.0, 14.9, 15.0, 20.0])
    got = b(torch.tensor(r, dtype=F64)).detach().numpy()
    for k, rr in enumerate(r):
        fc = math.exp(-rr * rr / ((c - rr) * (c + rr))) if rr < c else 0.0
        x = math.exp(-alpha * rr)
        want = [fc * math.comb(K - 1, v) * x ** (K - 1 - v) * (1 - x) ** v for v in range(K)]
        np.testing.assert_allclose(got[k], want, rtol=TOL.exact64, atol=TOL.underflow_floor)
        # binomial theorem: the basis sums to the envelope
        assert abs(got[k].sum() - fc) <= TOL.roundoff_long
    assert b.a.requires_grad  # alpha is trainable (softplus of a)


# --- edge spherical harmonics ---------------------------------------------------------------------------
def test_edge_sh_is_yzx_and_rotates_with_so3():
    rng = np.random.default_rng(1)
    r = rng.standard_normal((7, 3))
    Y = common.edge_sh(torch.tensor(r), 4).numpy()
    # l = 1, component normalisation: sqrt(3) * (y, z, x) / |r| — hambench's p order
    u = r / np.linalg.norm(r, axis=1, keepdims=True)
    np.testing.assert_allclose(Y[:, 1:4], math.sqrt(3) * u[:, [1, 2, 0]], rtol=0, atol=TOL.roundoff)
    np.testing.assert_allclose(Y[:, 0], 1.0, atol=TOL.few_ulp)
    R = so3.random_rotation(rng)
    YR = common.edge_sh(torch.tensor(r @ R.T), 4).numpy()
    start = 0
    for l in range(5):
        d = 2 * l + 1
        np.testing.assert_allclose(YR[:, start:start + d], Y[:, start:start + d] @ so3.wigner_D(l, R).T, atol=TOL.roundoff_long)
        start += d
    # a self edge (zero vector) has Y_0 only
    Y0 = common.edge_sh(torch.zeros(1, 3, dtype=F64), 4).numpy()
    assert Y0[0, 0] == 1.0 and np.all(Y0[0, 1:] == 0)


def test_edge_vectors_match_the_batch(mote2):
    layout, s = mote2
    b = batch_from_structures([s], layout)
    v = common.edge_vectors(b)
    np.testing.assert_allclose(v.numpy(), b.edge_vec.numpy(), atol=TOL.exact64)
    e = 5
    want = s.pos[s.dst[e]] + s.shift[e] @ s.cell - s.pos[s.src[e]]
    np.testing.assert_allclose(v[e].numpy(), want, atol=TOL.exact64)


# --- the head ---------------------------------------------------------------------------------------------
def test_head_targets_and_masks_qm9(qm9):
    layout, _ = qm9
    head = common.BlockHead(layout)
    # C/N/O (l, n) labels (0,0),(0,1),(0,2),(1,0),(1,1),(2,0); H's are a subset -> 6 x 6 targets, 14 x 14 dims
    assert len(head.targets) == 36 and head.dim == 14 * 14
    Z = {"H": 1, "C": 6}
    for (a, b), n in {("H", "H"): 25, ("C", "H"): 70, ("H", "C"): 70, ("C", "C"): 196}.items():
        m = head.mask(torch.tensor([Z[a]]), torch.tensor([Z[b]]))
        assert int(m.sum()) == n
    # each target holds L = |l1-l2|..l1+l2 with parity (-1)^(l1+l2), targets in order
    want = [(L, (-1) ** (l1 + l2)) for (l1, _, l2, _) in head.targets for L in range(abs(l1 - l2), l1 + l2 + 1)]
    assert [(ir.l, ir.p) for mul, ir in head.irreps_out for _ in range(mul)] == want
    assert head.targets[:3] == [(0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 0)]  # H-H first: s1 s1, s1 s2, s1 p1


def test_head_round_trip_real_blocks_against_so3(qm9):
    layout, structs = qm9
    b = batch_from_structures(structs, layout, dtype=F64)
    head = common.BlockHead(layout)
    zi, zj = _edge_Z(b)
    x, mask = head.to_irreps(b.H, zi, zj, b.H_ptr)
    assert torch.all(x[~mask] == 0)
    H2 = head(x, zi, zj, b.H_ptr)
    assert float((H2 - b.H).abs().max()) <= TOL.exact64 * float(b.H.abs().max())
    # the irreps of one target are so3.decompose_blocks of that sub-block
    labels = common.target_labels(layout)
    index = {t: k for k, t in enumerate(head.targets)}
    checked = 0
    for e in range(0, b.num_edges, 7):
        z1, z2 = int(zi[e]), int(zj[e])
        blk = b.blocks(e).numpy()
        for bb in layout.basic_blocks(z1, z2):
            t = index[labels[z1][bb.p] + labels[z2][bb.q]]
            sub = blk[bb.row:bb.row + 2 * bb.lp + 1, bb.col:bb.col + 2 * bb.lq + 1]
            o = head.target_offsets[t]
            want = so3.decompose_blocks(sub, bb.lp, bb.lq)
            np.testing.assert_allclose(x[e, o:o + want.size].numpy(), want, atol=TOL.exact64)
            checked += 1
    assert checked > 100
    # irreps -> blocks -> irreps on the used channels
    rng = torch.Generator().manual_seed(0)
    y = torch.randn(x.shape, generator=rng, dtype=F64) * mask
    y2, _ = head.to_irreps(head(y, zi, zj, b.H_ptr), zi, zj, b.H_ptr)
    assert float((y2 - y).abs().max()) <= TOL.roundoff_long


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_head_is_equivariant_spinless(mote2, dtype):
    layout, s = mote2
    head = common.BlockHead(layout)
    assert len(head.targets) == 49  # 7 x 7 (l, n) labels of Mo/Te s3p2d2
    b = batch_from_structures([s], layout, dtype=dtype)
    zi, zj = _edge_Z(b)
    R = so3.random_rotation(np.random.default_rng(3))
    D = _irreps_D(head.irreps_out, R).to(dtype)
    x = torch.randn(b.num_edges, head.dim, dtype=dtype, generator=torch.Generator().manual_seed(1))
    Hx = head(x, zi, zj, b.H_ptr).numpy()
    HRx = head(x @ D.T, zi, zj, b.H_ptr).numpy()
    expect = so3.rotate_edge_blocks(Hx, zi.numpy(), zj.numpy(), layout.species, R)
    err = np.abs(HRx - expect).max() / np.abs(expect).max()
    assert err <= (TOL.roundoff_long if dtype == torch.float64 else TOL.exact32), err


def test_spinful_head_real_soc_blocks(bismuthene):
    layout, s = bismuthene
    head = common.BlockHead(layout)
    b = batch_from_structures([s], layout, dtype=F64)
    assert b.H.is_complex()
    zi, zj = _edge_Z(b)
    # Bi [0,0,1,2]: 4 labels -> 16 targets, each (l1⊗½)⊗(l2⊗½) = 4 (2l1+1)(2l2+1) real dims, re + im
    assert len(head.targets) == 16 and head.dim == 2 * 4 * 10 * 10
    x, mask = head.to_irreps(b.H, zi, zj, b.H_ptr)
    H2 = head(x, zi, zj, b.H_ptr)
    assert H2.dtype == torch.complex128
    assert float((H2 - b.H).abs().max()) <= TOL.exact64 * float(b.H.abs().max())
    # rotating the irreps (e3nn D of the output irreps) rotates the spinor blocks by (U ⊗ D) H (U ⊗ D)^†
    R = so3.random_rotation(np.random.default_rng(5))
    D = _irreps_D(head.irreps_out, R)
    HR = head(x @ D.T, zi, zj, b.H_ptr).numpy()
    expect = so3.rotate_edge_blocks(b.H.numpy(), zi.numpy(), zj.numpy(), layout.species, R, spinful=True)
    assert np.abs(HR - expect).max() <= TOL.exact64 * np.abs(expect).max()


def test_spinful_assembly_hand_case():
    """A pure singlet s-s target (X⁰ = h) gives uu = dd = h/√2, ud = du = 0; a pure z spin vector gives
    uu = -dd = h/√2 (DeepH-E3's (h0·1 + h·σ)/√2)."""
    U, ls = common.spinful_cg(0, 0)
    assert ls == (0, 1)  # L = 0, then L' in 0 ⊗ 1 = 1
    c = np.zeros(4, complex)
    c[0] = 2.0
    np.testing.assert_allclose(c @ U, [2 / math.sqrt(2), 0, 0, 2 / math.sqrt(2)], atol=TOL.few_ulp)
    # spin vector in e3nn order (y, z, x): components 1..3; z is index 2
    c = np.zeros(4, complex)
    c[2] = 1.0  # hz
    np.testing.assert_allclose(c @ U, [1 / math.sqrt(2), 0, 0, -1 / math.sqrt(2)], atol=TOL.few_ulp)
    c = np.zeros(4, complex)
    c[3] = 1.0  # hx -> σx
    np.testing.assert_allclose(c @ U, [0, 1 / math.sqrt(2), 1 / math.sqrt(2), 0], atol=TOL.few_ulp)
    c = np.zeros(4, complex)
    c[1] = 1.0  # hy -> σy = [[0, -i], [i, 0]]
    np.testing.assert_allclose(c @ U, [0, -1j / math.sqrt(2), 1j / math.sqrt(2), 0], atol=TOL.few_ulp)
    for l1, l2 in [(1, 2), (2, 2), (0, 3)]:
        U, _ = common.spinful_cg(l1, l2)
        assert np.abs(U @ U.conj().T - np.eye(len(U))).max() <= TOL.roundoff


# --- partners and symmetrisation ----------------------------------------------------------------------------
def test_partner_edges_match_the_store(mote2, qm9):
    layout, s = mote2
    b = batch_from_structures([s], layout)
    p = common.partner_edges(b.edge_src, b.edge_dst, b.shift).numpy()
    np.testing.assert_array_equal(p, s.partner_index())
    lay2, structs = qm9
    b2 = batch_from_structures(structs, lay2)
    p2 = common.partner_edges(b2.edge_src, b2.edge_dst, b2.shift).numpy()
    want = np.concatenate([st.partner_index() + off for st, off in
                           zip(structs, np.cumsum([0] + [st.nedges for st in structs[:-1]]))])
    np.testing.assert_array_equal(p2, want)
    # a missing partner is -1: drop one hopping edge, its partner loses its partner
    e = int(np.flatnonzero(p != np.arange(len(p)))[0])
    keep = torch.tensor([k for k in range(len(p)) if k != e])
    p3 = common.partner_edges(b.edge_src[keep], b.edge_dst[keep], b.shift[keep]).numpy()
    assert np.flatnonzero(p3 < 0).tolist() == [int(p[e]) - (1 if p[e] > e else 0)]


@pytest.mark.parametrize("which", ["mote2", "bismuthene"])
def test_symmetrize_exact(which, request):
    layout, s = request.getfixturevalue(which)
    b = batch_from_structures([s], layout, dtype=F64)
    zi, zj = _edge_Z(b)
    partner = common.partner_edges(b.edge_src, b.edge_dst, b.shift)
    t = common.transpose_index(layout, zi, zj, b.H_ptr, partner)
    # DFT blocks already satisfy H_ji(-R) = H_ij(R)^† to the file's precision
    Hs = common.symmetrize_blocks(b.H, t)
    assert float((Hs - b.H).abs().max()) <= TOL.hermitian_pairs
    # random blocks: the result pairs exactly (bitwise)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(b.H.shape, dtype=F64, generator=g)
    if b.H.is_complex():
        X = torch.complex(X, torch.randn(b.H.shape, dtype=F64, generator=g))
    Y = common.symmetrize_blocks(X, t)
    ptr = b.H_ptr
    for e in range(b.num_edges):
        f = int(partner[e])
        ni, nj = b.blocks(e).shape
        Ye = Y[int(ptr[e]):int(ptr[e + 1])].reshape(ni, nj)
        Yf = Y[int(ptr[f]):int(ptr[f + 1])].reshape(nj, ni)
        assert torch.equal(Ye, Yf.T.conj() if Y.is_complex() else Yf.T)


def test_head_used_under_inference_mode_still_trains_afterwards():
    """The head caches its change-of-basis tensors; one first built under torch.inference_mode must not be an
    inference tensor, or the next training step fails ("Inference tensors cannot be saved for backward")."""
    from hambench.basis._layout import BasisLayout
    from hambench.models.common import BlockHead

    lay = BasisLayout({1: [0, 0, 1], 6: [0, 0, 0, 1, 1, 2]})
    head = BlockHead(lay).double()
    zs, zd = torch.tensor([1, 6]), torch.tensor([6, 6])
    ptr = torch.as_tensor(lay.block_ptr(zs.numpy(), zd.numpy()))
    with torch.inference_mode():
        head(torch.randn(2, head.dim, dtype=torch.float64), zs, zd, ptr)
    x = torch.randn(2, head.dim, dtype=torch.float64, requires_grad=True)
    head(x, zs, zd, ptr).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

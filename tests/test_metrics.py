"""hambench.scoring's metrics: every metric against a hand-computed value, then against independent references on real
matrices (PySCF's own integrals and orbital energies, scipy's generalized eigensolver, DeepH-dock's MoTe2 bands).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.linalg

from hambench import scoring as M
from hambench.basis._conventions import HARTREE_EV
from hambench.app.demo import demo_raw_dir
from hambench.basis._layout import BasisLayout
from hambench.pipelines import prepare
from hambench.store._store import open_store
from hambench.store._structure import Structure
from hambench.testing import TOL, require_realdata


# --- element-wise errors: hand-computed ------------------------------------------------------------------
def test_mae_real_and_complex_by_hand():
    assert M.mae([1.0, 2.0, 3.0], [1.0, 0.0, 0.0]) == pytest.approx(5 / 3, abs=TOL.few_ulp)
    # SOC: modulus |1+1j| = √2 vs Re/Im as two elements (1 + 1) / 2
    assert M.mae([1 + 1j, 2.0], [0.0, 2.0]) == pytest.approx(np.sqrt(2) / 2, abs=TOL.few_ulp)
    assert M.mae([1 + 1j, 2.0], [0.0, 2.0], reim=True) == pytest.approx(2 / 4, abs=TOL.few_ulp)
    assert M.mae([3.0], [1.0], reim=True) == 2.0  # real: unchanged


def test_mean_pooled_worst_by_hand():
    mean, pooled = M.mean_and_pooled([2.0, 9.0, 5.0], [2, 3, 0])  # per structure 1, 3; the empty one left out
    assert mean == pytest.approx(2.0, abs=TOL.few_ulp) and pooled == pytest.approx(11 / 5, abs=TOL.few_ulp)
    assert M.worst([1.0, 3.0, np.nan, 2.0], list("abcd")) == (3.0, "b")


def test_gauge_by_hand():
    S = np.array([1.0, 0.5])
    # ΔH = [1, 0]: μ = (1·1 + 0·0.5) / (1 + 0.25) = 0.8, residual [0.2, −0.4] → MAE 0.3
    assert M.gauge_mu([1.0, 0.0], [0.0, 0.0], S) == pytest.approx(0.8, abs=TOL.few_ulp)
    g, mu = M.gauge_fixed_mae([1.0, 0.0], [0.0, 0.0], S)
    assert (g, mu) == (pytest.approx(0.3, abs=TOL.few_ulp), pytest.approx(0.8, abs=TOL.few_ulp))
    g, mu = M.gauge_fixed_mae(np.array([3.0, 2.5]) + 0.25 * S, [3.0, 2.5], S)  # an exact shift is removed
    assert g == pytest.approx(0.0, abs=TOL.few_ulp) and mu == pytest.approx(0.25, abs=TOL.few_ulp)


def test_expand_overlap_spinful_by_hand():
    lay = BasisLayout({1: [0]}, spinful=True)
    got = M.expand_overlap([0.7, 0.2], [1, 1], [1, 1], lay)  # two s–s edges
    np.testing.assert_array_equal(got, [0.7, 0, 0, 0.7, 0.2, 0, 0, 0.2])
    np.testing.assert_array_equal(M.expand_overlap([0.7], [1], [1], BasisLayout({1: [0]})), [0.7])


def test_block_errors_by_hand():
    """One element with shells s, p (4 orbitals). Structure A: one on-site edge with ΔH[r, c] = 4r + c.
    Structure B: two on-site edges, the first like A's, the second exact."""
    lay = BasisLayout({1: [0, 1]})
    d = np.arange(16.0)
    pred = np.concatenate([d, d, np.zeros(16)])
    true = np.zeros(48)
    sums, nel, ned = M.block_error_sums(pred, true, [1, 1, 1], [1, 1, 1], lay, owner=[0, 1, 1], nstruct=2)
    # blocks s-s: {0}; s-p: {1,2,3}; p-s: {4,8,12}; p-p: {5,6,7,9,10,11,13,14,15}
    np.testing.assert_array_equal(sums, [[0, 6, 24, 90], [0, 6, 24, 90]])
    np.testing.assert_array_equal(nel, [[1, 3, 3, 9], [2, 6, 6, 18]])
    np.testing.assert_array_equal(ned, [[1, 1, 1, 1], [2, 2, 2, 2]])
    # edges not grouped by structure (the general path): the same sums
    s2, n2, _ = M.block_error_sums(pred, true, [1, 1, 1], [1, 1, 1], lay, owner=[1, 0, 1], nstruct=2)
    np.testing.assert_array_equal(s2, [[0, 6, 24, 90], [0, 6, 24, 90]])
    np.testing.assert_array_equal(n2, [[1, 3, 3, 9], [2, 6, 6, 18]])
    mean, pooled, n = M.block_mae(sums, nel)
    # per structure s-p: A 6/3 = 2, B 6/6 = 1 → mean 1.5; pooled 12/9
    np.testing.assert_allclose(mean, [0, 1.5, 6.0, 7.5], rtol=0, atol=TOL.few_ulp)
    np.testing.assert_allclose(pooled, [0, 12 / 9, 48 / 9, 180 / 27], rtol=0, atol=TOL.few_ulp)
    assert list(n) == [2, 2, 2, 2]
    assert [M.block_label(lay, z1, z2, b) for z1, z2, b in M.block_index(lay)] == [
        ("H-H", "s1-s1"), ("H-H", "s1-p1"), ("H-H", "p1-s1"), ("H-H", "p1-p1")]


def test_block_errors_spinful_sum_the_four_spin_parts():
    lay = BasisLayout({1: [0]}, spinful=True)
    pred = np.array([1j, 2.0, 0.0, 3.0 + 4j])  # one s-s edge, 2x2 spinor block
    sums, nel, _ = M.block_error_sums(pred, np.zeros(4, complex), [1], [1], lay)
    assert sums[0, 0] == pytest.approx(1 + 2 + 0 + 5, abs=TOL.few_ulp) and nel[0, 0] == 4


# --- molecules: orbitals by hand -------------------------------------------------------------------------
def test_canonical_orthogonalization_by_hand():
    X = M.canonical_orthogonalization(np.diag([4.0, 1.0]))
    np.testing.assert_allclose(np.abs(X), [[0, 0.5], [1, 0]], atol=TOL.few_ulp)  # eigenvalues ascending: 1, 4
    X = M.canonical_orthogonalization(np.diag([1.0, 0.0]))  # the null direction is clamped at 1e-8, not dropped
    np.testing.assert_allclose(np.abs(X), [[0, 1], [1e4, 0]], rtol=TOL.exact64)


def test_orbital_errors_by_hand():
    S = np.eye(2)
    o = M.orbital_errors(np.diag([-1.1, 1.3]), np.diag([-1.0, 1.0]), S, 1)
    assert o["eps_mae"] == pytest.approx(0.1, abs=TOL.roundoff) and o["homo_err"] == pytest.approx(0.1, abs=TOL.roundoff)
    assert o["lumo_err"] == pytest.approx(0.3, abs=TOL.roundoff) and o["gap_err"] == pytest.approx(0.4, abs=TOL.roundoff)
    assert o["psi"] == pytest.approx(1.0, abs=TOL.few_ulp)
    # the same spectrum with eigenvectors rotated by θ: ε exact, ψ = |cos θ|
    th = 0.3
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    o = M.orbital_errors(R @ np.diag([-1.0, 1.0]) @ R.T, np.diag([-1.0, 1.0]), S, 1)
    assert o["eps_mae"] == pytest.approx(0.0, abs=TOL.roundoff) and o["psi"] == pytest.approx(np.cos(th), abs=TOL.roundoff)
    # non-orthogonal 2x2: H = [[a, b], [b, a]], S = [[1, s], [s, 1]] → ε = (a+b)/(1+s), (a−b)/(1−s)
    a, b, s = -0.5, -0.2, 0.3
    Ht = np.array([[a, b], [b, a]])
    St = np.array([[1, s], [s, 1]])
    o = M.orbital_errors(Ht + np.diag([0.01, 0.0]), Ht, St, 1)
    ep = scipy.linalg.eigh(Ht + np.diag([0.01, 0.0]), St, eigvals_only=True)
    assert o["eps_mae"] == pytest.approx(abs(ep[0] - (a + b) / (1 + s)), abs=TOL.roundoff)
    assert o["lumo_err"] == pytest.approx(abs(ep[1] - (a - b) / (1 - s)), abs=TOL.roundoff)


def test_molecule_h_errors_and_occupation_by_hand():
    e = M.molecule_h_errors(np.array([[1.0, 2.0], [4.0, 8.0]]), np.zeros((2, 2)), [0, 1, 2])
    assert (e["all"], e["onsite"], e["offsite"]) == (3.75, 4.5, 3.0)
    assert M.n_occupied([6, 1, 1, 1, 1]) == 5 and M.n_occupied([8, 1, 1]) == 5 and M.n_occupied([1]) == 0


# --- dense assembly by hand ------------------------------------------------------------------------------
def chain(e0=-1.0, t=-0.3, spinful=False):
    """A 1-D chain of one s orbital per cell: edges R = 0, ±1."""
    H = np.array([e0, t, t], complex if spinful else float)
    if spinful:
        H = np.array([e0, 0.1j, -0.1j, e0 + 0.2, t, 0, 0, t, t, 0, 0, t], complex)
    return Structure(id="chain", Z=[1], pos=[[0, 0, 0]], cell=np.eye(3) * 2, pbc=[True, False, False],
                     src=[0, 0, 0], dst=[0, 0, 0], shift=[[0, 0, 0], [1, 0, 0], [-1, 0, 0]], H=H,
                     S=[1.0, 0.1, 0.1], species={1: [0]}, spinful=spinful)


def test_bloch_sum_chain_by_hand():
    s = chain()
    k = 0.1
    Hk, Sk = M.bloch_matrices(s, [k, 0, 0])
    assert Hk.shape == (1, 1)
    assert Hk[0, 0] == pytest.approx(-1.0 - 0.6 * np.cos(2 * np.pi * k), abs=TOL.few_ulp)
    assert Sk[0, 0] == pytest.approx(1.0 + 0.2 * np.cos(2 * np.pi * k), abs=TOL.few_ulp)
    e = M.band_energies(s, [[k, 0, 0], [0.5, 0, 0]])
    np.testing.assert_allclose(e[:, 0], [(-1 - 0.6 * np.cos(2 * np.pi * k)) / (1 + 0.2 * np.cos(2 * np.pi * k)),
                                         (-1 + 0.6) / (1 - 0.2)], rtol=0, atol=TOL.roundoff)
    H0, S0 = M.dense_matrices(s)  # Γ, real
    assert H0.dtype == np.float64 and H0[0, 0] == pytest.approx(-1.6, abs=TOL.few_ulp)
    assert S0[0, 0] == pytest.approx(1.2, abs=TOL.few_ulp)
    shifts, XR = M.real_space_matrices(s.H, s.Z, s.src, s.dst, s.shift, BasisLayout({1: [0]}))
    assert shifts.tolist() == [[-1, 0, 0], [0, 0, 0], [1, 0, 0]] and XR[:, 0, 0].tolist() == [-0.3, -1.0, -0.3]


def test_bloch_sum_spinful_chain_by_hand():
    s = chain(spinful=True)
    k = 0.2
    Hk, Sk = M.bloch_matrices(s, [k, 0, 0])
    c = np.cos(2 * np.pi * k)
    np.testing.assert_allclose(Hk, [[-1 - 0.6 * c, 0.1j], [-0.1j, -0.8 - 0.6 * c]], rtol=0, atol=TOL.few_ulp)
    np.testing.assert_allclose(Sk, np.eye(2) * (1 + 0.2 * c), rtol=0, atol=TOL.few_ulp)


def test_evaluator_chain_by_hand():
    s = chain()
    got = M.Evaluator("crystal").eval({"pred": [s.H + np.array([0.003, 0.0, 0.0])], "truth": [s]})
    assert got["H_mae"] == pytest.approx(1.0, abs=TOL.exact64)  # meV: 3 meV on one of three elements
    assert got["H_mae_block_max"] == pytest.approx(1.0, abs=TOL.exact64)
    # μ = 0.003·1 / (1 + 0.01 + 0.01); residual [0.003 − μ, −0.1μ, −0.1μ]
    mu = 0.003 / 1.02
    assert got["gauge_mu_mean"] == pytest.approx(mu * 1e3, abs=TOL.exact64)
    assert got["H_mae_gauge"] == pytest.approx((0.003 - mu + 0.2 * mu) / 3 * 1e3, abs=TOL.exact64)
    with pytest.raises(ValueError, match="kind must be"):
        M.Evaluator("solid")


# --- real PySCF molecules (the demo cache: no DFT is run) ------------------------------------------------
@pytest.fixture(scope="module")
def qm9(demo_store):
    return open_store(demo_store)


def raw_of(s):
    path = next(demo_raw_dir().glob(f"{s.id}_*.npz"))
    return np.load(path, allow_pickle=True)


def test_dense_assembly_equals_pyscf_matrices(qm9):
    from hambench.basis._pyscf import from_pyscf_matrix, mol_from_structure, protocol_from_attrs, shells_of_atoms

    protocol = protocol_from_attrs(qm9.kind, qm9.meta.dft)
    for k in (0, 4, 9):
        s = qm9[k]
        mol = mol_from_structure(s, protocol)
        H, S = M.dense_matrices(s)
        S_ref = from_pyscf_matrix(mol.intor("int1e_ovlp"), shells_of_atoms(mol), hartree=False)
        np.testing.assert_allclose(S, S_ref, rtol=0, atol=TOL.roundoff_long)
        # permutation-free check: the spectra of PySCF's S and of the assembled S
        np.testing.assert_allclose(np.linalg.eigvalsh(S), np.linalg.eigvalsh(mol.intor("int1e_ovlp")), atol=TOL.roundoff_long)
        F = from_pyscf_matrix(raw_of(s)["fock"], shells_of_atoms(mol))
        np.testing.assert_allclose(H, F, rtol=0, atol=TOL.exact64)  # eV


def test_orbital_energies_equal_pyscf_and_scipy(qm9):
    """ε from the stored blocks (canonical orthogonalisation) = PySCF's own mo_energy of the run and scipy's
    generalized eigenvalues."""
    for k in (0, 9):
        s = qm9[k]
        H, S = M.dense_matrices(s)
        eps, C = M.orbitals(H, M.canonical_orthogonalization(S))
        np.testing.assert_allclose(eps, scipy.linalg.eigh(H, S, eigvals_only=True), rtol=0, atol=TOL.eigensolver)
        # PySCF's mo_energy is the spectrum of the last-but-one Fock; the stored one differs at conv_tol level
        np.testing.assert_allclose(eps, raw_of(s)["mo_energy"] * HARTREE_EV, rtol=0, atol=TOL.scf_mo_energy)  # eV
        np.testing.assert_allclose(C.T @ S @ C, np.eye(len(eps)), atol=TOL.eigensolver)


def test_qh9_metrics_on_real_molecules(qm9):
    rng = np.random.default_rng(7)
    truths = list(qm9)
    ev = M.Evaluator("molecule")
    exact = ev.eval({"pred": [s.H for s in truths], "truth": truths})
    for key in ("H_mae", "H_mae_onsite", "H_mae_offsite", "eps_mae", "homo_mae", "lumo_mae", "gap_mae"):
        assert exact[key] == 0.0 and exact[key + "_uEh"] == 0.0, key
    assert exact["psi"] == pytest.approx(1.0, abs=TOL.exact64)
    # H + δS: every orbital energy moves by exactly δ, orbitals unchanged; the gauge fit finds δ
    delta = 0.01  # eV
    shifted = ev.eval({"pred": [s.H + delta * s.S for s in truths], "truth": truths}, full=True)
    m = shifted["metrics"]
    assert m["eps_mae"] == pytest.approx(10.0, abs=TOL.orbital_shift) and m["homo_mae"] == pytest.approx(10.0, abs=TOL.orbital_shift)
    assert m["eps_mae_uEh"] == pytest.approx(delta / HARTREE_EV * 1e6, abs=TOL.level_shift)
    assert m["gap_mae"] == pytest.approx(0.0, abs=TOL.orbital_shift)
    # ψ is 1 where the occupied spectrum is non-degenerate (within a degenerate level eigh picks any basis:
    # the known noise of ψ, research/tracegrad_harmose.md §5)
    n_plain = 0
    for s, row in zip(truths, shifted["per_structure"]):
        e = scipy.linalg.eigh(*M.dense_matrices(s), eigvals_only=True)[: M.n_occupied(s.Z)]
        if np.min(np.diff(e)) > 1e-3:
            n_plain += 1
            assert row["psi"] == pytest.approx(1.0, abs=TOL.eigensolver), s.id
        else:
            assert 0.3 < row["psi"] <= 1.0 + TOL.exact64
    assert n_plain >= 3
    assert m["gauge_mu_mean"] == pytest.approx(10.0, abs=TOL.by_hand) and m["H_mae_gauge"] == pytest.approx(0, abs=TOL.by_hand)
    # H MAE = δ·mean|S| per molecule, then the mean over molecules
    want = np.mean([delta * np.abs(M.dense_matrices(s)[1]).mean() for s in truths]) * 1e3
    assert m["H_mae"] == pytest.approx(want, rel=TOL.exact64)
    # a random symmetric perturbation: ε, ψ, HOMO/LUMO against scipy's generalized eigensolver, per molecule
    preds, eps_ref, psi_ref, lumo_ref = [], [], [], []
    for s in truths:
        H, S = M.dense_matrices(s)
        D = rng.normal(size=H.shape) * 2e-3
        D = D + D.T
        Hp = H + D
        # back to edge blocks: the assembly is a bijection for molecules (complete graph incl. self edges)
        edge, row, col = M.block_entries(s.Z, s.src, s.dst, BasisLayout(s.species))
        preds.append(Hp[row, col])
        et, Ct = scipy.linalg.eigh(H, S)
        ep, Cp = scipy.linalg.eigh(Hp, S)
        n = M.n_occupied(s.Z)
        eps_ref.append(np.abs(ep[:n] - et[:n]).mean())
        lumo_ref.append(abs(ep[n] - et[n]))
        cos = np.abs(np.sum(Cp * Ct, axis=0)) / (np.linalg.norm(Cp, axis=0) * np.linalg.norm(Ct, axis=0))
        psi_ref.append(cos[:n].mean())
    got = ev.eval({"pred": preds, "truth": truths}, full=True)
    assert got["metrics"]["eps_mae"] == pytest.approx(np.mean(eps_ref) * 1e3, rel=TOL.eigensolver_rel)
    assert got["metrics"]["lumo_mae"] == pytest.approx(np.mean(lumo_ref) * 1e3, rel=TOL.eigensolver_rel)
    for s, row, ref, psi in zip(truths, got["per_structure"], eps_ref, psi_ref):
        assert row["eps_mae"] == pytest.approx(ref * 1e3, rel=TOL.eigensolver_rel)
        e = scipy.linalg.eigh(*M.dense_matrices(s), eigvals_only=True)[: M.n_occupied(s.Z)]
        if np.min(np.diff(e)) > 1e-3:  # ψ is defined up to the basis of degenerate levels only
            assert row["psi"] == pytest.approx(psi, abs=TOL.eigensolver), s.id


def test_on_and_off_site_split_on_a_real_molecule(qm9):
    s = qm9[2]  # H2O: O (14 AOs) + 2 H (5 AOs)
    lay = BasisLayout(s.species)
    edge, row, col = M.block_entries(s.Z, s.src, s.dst, lay)
    pred = s.H + np.where(s.src[edge] == s.dst[edge], 0.002, 0.005)  # 2 meV on-site, 5 meV off-site
    m = M.Evaluator("molecule").eval({"pred": [pred], "truth": [s]})
    assert m["H_mae_onsite"] == pytest.approx(2.0, abs=TOL.by_hand) and m["H_mae_offsite"] == pytest.approx(5.0, abs=TOL.by_hand)
    n_on, n_all = 14 ** 2 + 2 * 5 ** 2, 24 ** 2
    assert m["H_mae"] == pytest.approx((2 * n_on + 5 * (n_all - n_on)) / n_all, abs=TOL.by_hand)


# --- the real MoTe2 crystal and SOC bismuthene -----------------------------------------------------------
def k_path_points(path):
    pts = []
    for line in path.read_text().splitlines():
        w = line.split()
        if w:
            n, a, b = int(w[0]), np.array(w[1:4], float), np.array(w[4:7], float)
            pts.append(a + np.linspace(0, 1, n)[:, None] * (b - a))
    return np.concatenate(pts)


def test_mote2_bands_equal_the_dock_band_fixture():
    from hambench.pipelines.deeph_format import read_new_folder

    folder = require_realdata("deeph_new_MoTe2_band_reference")
    s = read_new_folder(folder)
    with h5py.File(folder / "band.h5") as f:
        band, ef = f["band_data"][()], float(f["fermi_energy_before_shift_eV"][()])
    # DeepH-dock's band code reads the lower triangle of H(k), S(k) (as LAPACK's hegv does): solve the same problem
    ev = M.band_energies(s, k_path_points(folder / "K_PATH"), hermitian="lower") - ef
    assert ev.shape == (140, 57)
    assert np.abs(ev - band.T).max() < TOL.eigensolver  # eV (measured ~1e-12)


def test_mote2_crystal_metrics_by_brute_force():
    from hambench.pipelines.deeph_format import read_new_folder

    s = read_new_folder(require_realdata("deeph_new_MoTe2"))
    rng = np.random.default_rng(3)
    noise = rng.normal(size=s.H.size) * 1e-3
    pred = s.H + noise + 0.02 * s.S  # noise plus a uniform shift along S
    full = M.Evaluator("crystal").eval({"pred": [pred], "truth": [s]}, full=True)
    m = full["metrics"]
    assert m["H_mae"] == pytest.approx(np.abs(noise + 0.02 * s.S).mean() * 1e3, rel=TOL.exact64)
    mu = np.dot(noise + 0.02 * s.S, s.S) / np.dot(s.S, s.S)
    assert m["gauge_mu_mean"] == pytest.approx(mu * 1e3, rel=TOL.exact64) and abs(mu - 0.02) < TOL.noise_gauge_crystal
    assert m["H_mae_gauge"] == pytest.approx(np.abs(noise + (0.02 - mu) * s.S).mean() * 1e3, rel=TOL.reassociation)
    # per basic block: a plain loop over edges and shells
    lay = BasisLayout(s.species)
    acc: dict = {}
    for e in range(s.nedges):
        zi, zj = int(s.Z[s.src[e]]), int(s.Z[s.dst[e]])
        blk = (pred - s.H)[s.block_ptr()[e]:s.block_ptr()[e + 1]].reshape(s.block_shapes()[0][e], -1)
        for b in lay.basic_blocks(zi, zj):
            sub = np.abs(blk[b.row:b.row + 2 * b.lp + 1, b.col:b.col + 2 * b.lq + 1])
            key = M.block_label(lay, zi, zj, b)
            t = acc.setdefault(key, [0.0, 0])
            t[0] += sub.sum()
            t[1] += sub.size
    assert len(full["per_block"]) == len(acc) == 2 * 2 * 49 - 0  # Mo-Mo, Mo-Te, Te-Mo, Te-Te × 7×7 shells
    for row in full["per_block"]:
        ref = acc[(row["pair"], row["block"])]
        assert row["mae"] == pytest.approx(ref[0] / ref[1] * 1e3, rel=TOL.exact64)  # one structure: mean = pooled
    worst = max(full["per_block"], key=lambda r: r["mae"])
    assert m["H_mae_block_max"] == worst["mae"]


def test_spinful_bismuthene_modulus_reim_and_gauge():
    from hambench.pipelines.deeph_format import read_new_folder

    s = read_new_folder(require_realdata("openmx_bismuthene_soc_scfout", "deeph_dock_converted"))
    lay = BasisLayout(s.species, True)
    S_h = M.expand_overlap(s.S, s.Z[s.src], s.Z[s.dst], lay)
    m = M.Evaluator("crystal").eval({"pred": [s.H + 0.004 * (1 + 1j)], "truth": [s]})
    assert m["H_mae"] == pytest.approx(4 * np.sqrt(2), rel=TOL.exact64)    # meV, modulus of 4+4i meV
    assert m["H_mae_reim"] == pytest.approx(4.0, rel=TOL.exact64)           # Re and Im as two elements
    m = M.Evaluator("crystal").eval({"pred": [s.H - 0.05 * S_h], "truth": [s]})
    assert m["gauge_mu_mean"] == pytest.approx(-50.0, rel=TOL.exact64) and m["H_mae_gauge"] < TOL.by_hand
    # bands through the same assembly: Kramers pairs (inversion + time reversal)
    e = M.band_energies(s, [[0.1, 0.2, 0.0], [0.5, 0, 0]])
    assert e.shape == (2, 40) and np.abs(e[:, 0::2] - e[:, 1::2]).max() < TOL.kramers_loose

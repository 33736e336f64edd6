"""ψ_subspace (``psi_subspace``): the overlap of the occupied orbital spaces, beside QH9's ψ.

ψ compares single coefficient vectors, so inside a degenerate occupied level it depends on which basis the
eigensolver returns; ψ_subspace = ‖C_trueᵀ S C_pred‖_F² / n_occ compares the occupied spaces and does not. Checked
by hand on 2×2 and 3×3 cases, against SciPy's generalized eigensolver, and on acetylene (QM9 4, real PySCF
matrices of the shipped demo data) whose HOMO is the degenerate π pair: explicit rotations inside the pair change
ψ and leave ψ_subspace unchanged, and so does torch's eigensolver.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from hambench import scoring as M
from hambench.scoring import _orbitals
from hambench.store._store import open_store
from hambench.testing import TOL

#: two orbital energies closer than this (eV) belong to one degenerate level
DEGENERATE_EV = 1e-6


def _rotation2(th):
    return np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])


def test_by_hand_non_orthogonal_basis():
    """S = diag(4, 1), one occupied orbital. True H = diag(−4, 1) → c_t = (1/2, 0). The prediction
    H_p = S^½ R diag(−1, 1) Rᵀ S^½ (R a rotation by θ) has c_p = S^-½ R e₁ = (cos θ / 2, sin θ), so
    c_tᵀ S c_p = cos θ: ψ_subspace = cos² θ, while QH9's plain cosine is ψ = cos θ / √(cos² θ + 4 sin² θ)."""
    S = np.diag([4.0, 1.0])
    half = np.diag([2.0, 1.0])
    for th in (0.0, 0.3, 1.0):
        R = _rotation2(th)
        Hp = half @ R @ np.diag([-1.0, 1.0]) @ R.T @ half
        o = M.orbital_errors(Hp, np.diag([-4.0, 1.0]), S, 1)
        assert o["psi_subspace"] == pytest.approx(np.cos(th) ** 2, abs=TOL.roundoff)
        assert o["psi"] == pytest.approx(np.cos(th) / np.sqrt(np.cos(th) ** 2 + 4 * np.sin(th) ** 2), abs=TOL.roundoff)
        assert o["eps_mae"] == pytest.approx(0.0, abs=TOL.roundoff)


def test_by_hand_rotation_inside_the_occupied_space():
    """S = I, two of three orbitals occupied. Rotating the occupied pair by θ inside its own plane leaves the
    occupied space unchanged (ψ_subspace = 1) but moves each vector (ψ = |cos θ|); mixing the second occupied
    orbital with the virtual one by φ gives ψ_subspace = (1 + cos² φ) / 2."""
    S = np.eye(3)
    Ht = np.diag([-2.0, -1.0, 1.0])
    th, phi = 0.4, 0.7
    Rocc = np.eye(3)
    Rocc[:2, :2] = _rotation2(th)
    # a degenerate occupied pair: any basis of it is an eigenbasis; ours is rotated by θ from the true one's
    Hdeg = np.diag([-1.0, -1.0, 1.0])
    X = np.eye(3)
    _, Ct = M.orbitals(Hdeg, X)
    Cp = Ct @ Rocc
    assert M.subspace_overlap(Ct, Cp, S, 2) == pytest.approx(1.0, abs=TOL.roundoff)
    cos = np.abs(np.sum(Ct * Cp, axis=0))[:2]
    assert cos.mean() == pytest.approx(np.cos(th), abs=TOL.roundoff)
    Rmix = np.eye(3)
    Rmix[1:, 1:] = _rotation2(phi)
    o = M.orbital_errors(Rmix @ Ht @ Rmix.T, Ht, S, 2)
    assert o["psi_subspace"] == pytest.approx((1 + np.cos(phi) ** 2) / 2, abs=TOL.roundoff)
    assert o["psi"] == pytest.approx((1 + np.cos(phi)) / 2, abs=TOL.roundoff)
    assert np.isnan(M.subspace_overlap(Ct, Cp, S, 0))


# --- acetylene (QM9 4): the degenerate π pair ------------------------------------------------------------
@pytest.fixture(scope="module")
def acetylene(demo_store):
    s = open_store(demo_store)[3]
    assert s.id == "dsgdb9nsd_000004" and sorted(s.Z.tolist()) == [1, 1, 6, 6]  # C2H2
    H, S = M.dense_matrices(s)
    n = M.n_occupied(s.Z)
    D = np.random.default_rng(0).normal(size=H.shape) * 1e-2
    return H, S, n, H + D + D.T  # a prediction: truth + a seeded symmetric perturbation (~10 meV)


def _degenerate_groups(eps):
    """Index ranges [a, b) of levels that are degenerate to within :data:`DEGENERATE_EV`."""
    groups, a = [], 0
    for k in range(1, len(eps) + 1):
        if k == len(eps) or eps[k] - eps[k - 1] > DEGENERATE_EV:
            if k - a > 1:
                groups.append((a, k))
            a = k
    return groups


def rotating_eigh(theta):
    """NumPy's eigensolver, its eigenvectors then turned by ``theta`` inside every degenerate pair: an equally
    valid eigenbasis, as another eigensolver may return it."""

    def eigh(F):  # (..., N, N), as orbitals() batches molecules
        w, V = np.linalg.eigh(F)
        V = V.copy()
        for idx in np.ndindex(w.shape[:-1]):
            for a, b in _degenerate_groups(w[idx]):
                assert b - a == 2
                V[idx][:, a:b] = V[idx][:, a:b] @ _rotation2(theta)
        return w, V

    return eigh


def test_acetylene_has_a_degenerate_occupied_pi_pair(acetylene):
    H, S, n, _ = acetylene
    eps = scipy.linalg.eigh(H, S, eigvals_only=True)
    assert n == 7 and _degenerate_groups(eps[:n]) == [(5, 7)]  # HOMO = HOMO-1: the π pair
    assert eps[n] - eps[n - 1] > 1.0  # a clear gap (eV): the occupied space itself is well defined


def test_acetylene_psi_depends_on_the_eigensolver_psi_subspace_does_not(acetylene):
    H, S, n, Hp = acetylene
    got = [M.orbital_errors(Hp, H, S, n, eigh=rotating_eigh(th)) for th in np.linspace(0, np.pi / 2, 5)]
    psis = [o["psi"] for o in got]
    subs = [o["psi_subspace"] for o in got]
    assert max(psis) - min(psis) > 0.05  # the truth's π basis alone moves ψ by more than 5 %
    np.testing.assert_allclose(subs, subs[0], rtol=0, atol=TOL.eigensolver)
    assert all(o["eps_mae"] == pytest.approx(got[0]["eps_mae"], abs=TOL.eigensolver) for o in got)
    # an independent reference: SciPy's generalized eigensolver (LAPACK sygvd), its own degenerate basis
    _, Ct = scipy.linalg.eigh(H, S)
    _, Cp = scipy.linalg.eigh(Hp, S)
    O = Ct[:, :n].T @ S @ Cp[:, :n]
    assert subs[0] == pytest.approx(np.sum(O * O) / n, abs=TOL.eigensolver)
    assert 0.999 < subs[0] < 1.0  # a 10 meV perturbation barely turns the occupied space
    # torch's eigensolver, as QH9 uses it
    torch = pytest.importorskip("torch")

    def torch_eigh(F):
        w, V = torch.linalg.eigh(torch.from_numpy(np.ascontiguousarray(F)))
        return w.numpy(), V.numpy()

    o = M.orbital_errors(Hp, H, S, n, eigh=torch_eigh)
    assert o["psi_subspace"] == pytest.approx(subs[0], abs=TOL.eigensolver)
    assert min(psis) - TOL.eigensolver <= o["psi"] <= max(psis) + TOL.eigensolver  # one basis among the others'


def test_acetylene_exact_prediction_in_another_basis(acetylene):
    """The true H itself, diagonalised by a solver that returns the π pair turned by 45°: ψ < 1 for an exact
    prediction, ψ_subspace = 1."""
    H, S, n, _ = acetylene
    X = M.canonical_orthogonalization(S)
    _, Ct = M.orbitals(H, X)
    _, Cp = M.orbitals(H, X, eigh=rotating_eigh(np.pi / 4))
    cos = np.abs(np.sum(Ct * Cp, axis=0)) / (np.linalg.norm(Ct, axis=0) * np.linalg.norm(Cp, axis=0))
    assert cos[:n].mean() < 0.95
    assert M.subspace_overlap(Ct, Cp, S, n) == pytest.approx(1.0, abs=TOL.eigensolver)


def test_psi_and_psi_subspace_come_from_the_same_float64_matrices(acetylene, monkeypatch):
    """orbital_errors diagonalises each matrix once; ψ and ψ_subspace are both computed from those float64
    coefficients (and the true S in float64), even for float32 inputs."""
    H, S, n, Hp = acetylene
    seen = []
    real = _orbitals.orbitals

    def spy(Hm, X, eigh=np.linalg.eigh):
        out = real(Hm, X, eigh)
        seen.append((Hm, out[1]))
        return out

    monkeypatch.setattr(_orbitals, "orbitals", spy)
    o = M.orbital_errors(Hp.astype(np.float32), H.astype(np.float32), S.astype(np.float32), n)
    assert len(seen) == 2 and all(h.dtype == np.float64 and C.dtype == np.float64 for h, C in seen)
    (_, Cp), (_, Ct) = seen
    Cp, Ct = Cp[0], Ct[0]  # batch of one
    S64 = S.astype(np.float32).astype(np.float64)
    cos = np.abs(np.sum(Cp * Ct, axis=0)) / (np.linalg.norm(Cp, axis=0) * np.linalg.norm(Ct, axis=0))
    assert o["psi"] == pytest.approx(cos[:n].mean(), abs=TOL.roundoff)
    O = Ct[:, :n].T @ S64 @ Cp[:, :n]
    assert o["psi_subspace"] == pytest.approx(np.sum(O * O) / n, abs=TOL.roundoff)
    assert isinstance(o["psi_subspace"], float)


def test_scores_report_psi_subspace_per_molecule(demo_store):
    """The Evaluator (as hambench score) reports ψ_subspace per structure and its mean, beside ψ."""
    truths = list(open_store(demo_store))[:4]
    got = M.Evaluator("molecule").eval({"pred": [s.H for s in truths], "truth": truths}, full=True)
    assert got["metrics"]["psi_subspace"] == pytest.approx(1.0, abs=TOL.eigensolver)
    rows = got["per_structure"]
    assert all(r["psi_subspace"] == pytest.approx(1.0, abs=TOL.eigensolver) for r in rows)
    assert M.CATALOGUE["psi_subspace"].better == "higher" and "n_occ" in M.CATALOGUE["psi_subspace"].definition

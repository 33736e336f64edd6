"""The metric catalogue (hambench.scoring._catalogue): every number the scorer reports is catalogued, and what
scores.json, the console table and the leaderboard say about it comes from there; the one eigensolver's two
Hermitian readings against LAPACK."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from hambench import scoring
from hambench.scoring import CATALOGUE, TWIN_SUFFIX, Metric, better_of, label_of, units_of
from hambench.store._structure import Structure
from hambench.testing import tol


def _chain(spinful: bool = False) -> Structure:
    """A 1-D chain of H atoms (one s orbital, R = 0, ±1), as tests/test_metrics.py builds it."""
    H = np.array([-1.0, -0.3, -0.3])
    if spinful:
        H = np.array([-1.0, 0.1j, -0.1j, -0.8, -0.3, 0, 0, -0.3, -0.3, 0, 0, -0.3], complex)
    return Structure(id="chain", Z=[1], pos=[[0, 0, 0]], cell=np.eye(3) * 2, pbc=[True, False, False],
                     src=[0, 0, 0], dst=[0, 0, 0], shift=[[0, 0, 0], [1, 0, 0], [-1, 0, 0]], H=H,
                     S=[1.0, 0.1, 0.1], species={1: [0]}, spinful=spinful)


def _water() -> Structure:
    """H2O-like molecule: O (s, s, p) and two H (s), all pairs R = 0, random symmetric blocks and S = I + ε."""
    rng = np.random.default_rng(0)
    species = {8: [0, 0, 1], 1: [0]}
    n = {8: 5, 1: 1}
    Z = [8, 1, 1]
    src, dst = np.divmod(np.arange(9), 3)
    N = 7
    off = [0, 5, 6, 7]
    A = rng.normal(size=(N, N))
    Hd = (A + A.T) / 2
    B = rng.normal(size=(N, N)) * 0.05
    Sd = np.eye(N) + (B + B.T) / 2
    H = np.concatenate([Hd[off[i]:off[i] + n[Z[i]], off[j]:off[j] + n[Z[j]]].ravel() for i, j in zip(src, dst)])
    S = np.concatenate([Sd[off[i]:off[i] + n[Z[i]], off[j]:off[j] + n[Z[j]]].ravel() for i, j in zip(src, dst)])
    return Structure(id="w", Z=Z, pos=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], cell=np.zeros((3, 3)),
                     pbc=[False] * 3, src=src, dst=dst, shift=np.zeros((9, 3), int), H=H, S=S, species=species)


@pytest.mark.parametrize("kind, truth", [("molecule", _water()), ("crystal", _chain()), ("crystal", _chain(True))],
                         ids=["molecule", "crystal", "crystal-spinful"])
def test_every_reported_number_is_catalogued(kind, truth):
    pred = truth.H + 0.003
    m = scoring.Evaluator(kind).eval({"pred": [pred], "truth": [truth]})
    numbers = {k for k, v in m.items() if not isinstance(v, str)}
    assert numbers <= set(CATALOGUE), sorted(numbers - set(CATALOGUE))
    assert list(units_of(m)) == [k for k in m if k in numbers]  # scores.json's units: in the metrics' order
    for k in numbers:
        if k.endswith(TWIN_SUFFIX):  # µEh twins of meV molecule metrics
            assert CATALOGUE[k].unit == "µEh" and CATALOGUE[k[: -len(TWIN_SUFFIX)]].unit == "meV"
    shown = scoring.console_keys(kind)
    assert "H_mae" in shown and not any(k.endswith(TWIN_SUFFIX) for k in shown)


def test_catalogue_entries_are_consistent():
    for key, m in CATALOGUE.items():
        assert m.key == key and m.label and m.unit
        assert (m.role == "fact") == (m.better == "") or m.role == "timing", key
        assert (m.role == "timing") == (m.unit == "s"), key
        assert better_of(key) == m.better and label_of(key) == m.label
    assert scoring.is_timing("scf_t3_s") and not scoring.is_timing("H_mae")
    assert [m.key for m in CATALOGUE.values() if m.headline][:3] == ["H_mae", "eps_mae", "psi"]
    with pytest.raises(ValueError, match="an accuracy metric is ranked"):
        Metric("x", "meV", "H", "")


def test_keys_the_catalogue_does_not_know_are_judged_by_name():
    assert better_of("my_speedup") == "higher" and better_of("n_atoms") == "" and better_of("foo_mae") == "lower"
    assert better_of("foo_mae", {"foo_mae": "higher"}) == "higher"
    assert label_of("psi_new_eps") == "ψ new ε"


@pytest.mark.parametrize("hermitian", scoring.HERMITIAN)
def test_one_eigensolver_two_hermitian_readings(hermitian):
    """Batched Cholesky reduction = LAPACK's hegv on the Hermitian matrix it reads; 'lower' reads what LAPACK reads."""
    rng = np.random.default_rng(4)
    n = 6
    A = rng.normal(size=(3, n, n)) + 1j * rng.normal(size=(3, n, n))
    B = rng.normal(size=(3, n, n)) * 0.1
    S = np.eye(n) + B @ np.swapaxes(B, -1, -2)
    H = A + np.conj(np.swapaxes(A, -1, -2)) + 1e-3 * A  # not quite Hermitian, as a prediction may be
    got = scoring.generalized_eigh(H, S, hermitian=hermitian)
    Hh = 0.5 * (H + np.conj(np.swapaxes(H, -1, -2))) if hermitian == "mean" else H
    want = np.array([scipy.linalg.eigh(h, s, eigvals_only=True, lower=True) for h, s in zip(Hh, S)])
    np.testing.assert_allclose(got, want, rtol=0, atol=tol(np.float64))


def test_every_metric_reads_as_a_person_would_and_only_accuracy_is_ranked():
    """Labels are words (no raw keys), every entry says what it is; stars go to accuracy metrics only, never to
    facts or wall times, and wall times are the load-dependent ones (issue 29)."""
    for key, m in CATALOGUE.items():
        assert "_" not in m.label and m.description, key
        assert m.ranked == (m.role == "accuracy"), key
        assert m.load_dependent == (m.role == "timing") == (m.unit == "s"), key
        assert scoring.is_ranked(key) == m.ranked and scoring.is_load_dependent(key) == m.load_dependent
    assert not scoring.is_ranked("scf_t3_s") and scoring.is_load_dependent("training_time_s")
    assert scoring.is_ranked("foo_mae") and not scoring.is_ranked("foo_time_s")
    assert [k for k, m in CATALOGUE.items() if m.headline] == ["H_mae", "eps_mae", "psi", "scf_achieved_ratio_minao",
                                                                "bands_mae", "equivariance_error"]
    m = CATALOGUE["psi_subspace"]
    assert (m.unit, m.better, m.topic, m.label) == ("1", "higher", "orbitals", "ψ subspace")
    for key in ("eps_mae", "psi"):  # what QH9's code leaves implicit
        assert "symmetris" in CATALOGUE[key].definition
    assert "eigensolver" in CATALOGUE["psi"].definition and "degenerate" in m.definition

"""SCF acceleration (hambench.scoring._scf) on real PySCF runs of the smallest shipped demo molecules (CH4, NH3, H2O).

References: PySCF itself (its own SCF cycle count, its own converged MOs stored in the demo raw files), the
QH9 selection rule (numpy's default_rng(43).choice), and a perturbation of known size.
"""

from __future__ import annotations

import numpy as np
import pytest

pyscf = pytest.importorskip("pyscf")
from pyscf import dft, lib  # noqa: E402

from hambench.basis._conventions import HARTREE_EV  # noqa: E402
from hambench.errors import InputError  # noqa: E402
from hambench.basis import _pyscf as pyscf_mol  # noqa: E402
from hambench.scoring._scf import (  # noqa: E402
    dense_molecule,
    density_from_hamiltonian,
    scf_acceleration,
    scf_molecule,
    select_molecules,
)
from hambench.testing import TOL  # noqa: E402

DELTA_HA = 1e-4  # perturbation of every Fock element, Hartree (QHNet's MAE on QH9 is ~8e-5 Eh)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Truth store of CH4, NH3, H2O (the shipped PySCF results; no DFT runs) and a prediction store with every
    Fock element moved by ±DELTA_HA (symmetric)."""
    from hambench.app.demo import demo_raw_dir
    from hambench.pipelines import prepare
    from hambench.store._predictions import open_predictions, write_predictions
    from hambench.store._store import open_store

    d = tmp_path_factory.mktemp("scf")
    prepare("pyscf/qm9", None, d / "truth.zarr", raw_dir=demo_raw_dir(), max_heavy=3, limit=3, quiet=True)
    truth = open_store(d / "truth.zarr")
    rng = np.random.default_rng(7)
    blocks = []
    for k in range(len(truth)):
        s = truth[k]
        n = dense_molecule(s).shape[0]
        sign = np.sign(rng.standard_normal((n, n)))
        sign = np.triu(sign) + np.triu(sign, 1).T  # symmetric ±1
        dH = DELTA_HA * HARTREE_EV * sign  # eV, hambench order (a permutation does not change |ΔH|)
        off = np.concatenate([[0], np.cumsum([sum(2 * l + 1 for l in s.species[int(z)]) for z in s.Z])])
        blocks.append(np.concatenate([(s.block(e) + dH[off[i]:off[i + 1], off[j]:off[j + 1]]).ravel()
                                      for e, (i, j) in enumerate(zip(s.src, s.dst))]))
    write_predictions(truth, list(range(len(truth))), blocks, d / "preds.zarr", {"model": {"name": "truth+noise"}})
    return truth, open_predictions(d / "preds.zarr"), d


def test_protocol_from_store_attrs():
    qh9_stable = {"kind": "molecule", "dft": {"code": "PySCF", "method": "RKS", "basis": "def2-svp", "grid_level": 3,
                                              "conv_tol": 1e-9, "functional": "b3lyp (VWN5, = b3lyp5 today)"}}
    p = pyscf_mol.protocol_from_attrs(**qh9_stable)
    assert (p["xc"], p["basis"], p["grid_level"], p["conv_tol"], p["max_cycle"]) == ("b3lyp5", "def2-svp", 3, 1e-9, 50)
    dyn100k = {**qh9_stable, "dft": {**qh9_stable["dft"], "functional": "b3lyp (VWN-RPA, PySCF >= 2.3)"}}
    assert pyscf_mol.protocol_from_attrs(**dyn100k)["xc"] == "b3lyp"
    assert pyscf_mol.protocol_from_attrs(**qh9_stable, overrides={"grid_level": 1})["grid_level"] == 1
    for bad in ({"kind": "crystal", "dft": {}},
                {"kind": "molecule", "dft": {"code": "OpenMX", "functional": "GGA-PBE"}},
                {"kind": "molecule", "dft": {"code": "PySCF", "functional": "as in the chkfiles", "basis": "x"}}):
        with pytest.raises(InputError):
            pyscf_mol.protocol_from_attrs(**bad, where="store.zarr")


def test_model_guess_from_true_fock_is_pyscf_density(demo):
    """D0 from the stored (eV, hambench-order) Fock equals the density of PySCF's own converged MOs."""
    from hambench.app.demo import demo_raw_dir

    truth, _, _ = demo
    s = truth[2]  # H2O
    raw = np.load(next(demo_raw_dir().glob("dsgdb9nsd_000003_*.npz")))
    mol = pyscf_mol.mol_from_structure(s, pyscf_mol.DEFAULT_PROTOCOL)
    shells = pyscf_mol.shells_of_atoms(mol)
    F = pyscf_mol.to_pyscf_matrix(dense_molecule(s), shells)
    np.testing.assert_allclose(F, raw["fock"], rtol=0, atol=TOL.roundoff_long)  # Hartree: the store round trip is exact
    S = mol.intor("int1e_ovlp")
    D0 = density_from_hamiltonian(F, S, mol.nelectron // 2)
    C = raw["mo_coeff"][:, raw["mo_occ"] > 0]
    assert np.abs(D0 - 2 * C @ C.T).max() < TOL.scf_gradient  # F[D_final] → D_{final+1} ≈ D_final (conv_tol 1e-9)
    assert abs(np.trace(D0 @ S) - mol.nelectron) < TOL.scf_identity


def test_cycle_count_is_qh9s_and_matches_pyscf(demo):
    """QH9's count is the last 0-based callback cycle; PySCF's own mf.cycles is that + 1, and a plain PySCF run
    from its default (minao) guess takes the same number of iterations as hambench's minao run."""
    truth, _, _ = demo
    s = truth[2]
    res = scf_molecule(s, s.H, pyscf_mol.DEFAULT_PROTOCOL, guesses=("minao", "1e"))
    r = res["runs"]["minao"]
    assert r["converged"] and r["pyscf_cycles"] == r["cycles"] + 1 == len(r["fock_mae_ha"])
    mol = pyscf_mol.mol_from_structure(s, pyscf_mol.DEFAULT_PROTOCOL)
    mf = dft.RKS(mol)
    mf.xc, mf.grids.level, mf.conv_tol, mf.verbose = "b3lyp5", 3, 1e-9, 0
    seen = []
    mf.callback = lambda envs: seen.append(envs["cycle"])
    with lib.with_omp_threads(1):
        mf.kernel()  # init_guess 'minao'
    assert seen[-1] == r["cycles"] and mf.cycles == r["cycles"] + 1
    # every run ends at the stored Fock (this checks eV → Hartree and the hambench → PySCF AO order)
    for run in res["runs"].values():
        assert run["fock_mae_ha"][-1] < TOL.scf_fock_mae
    assert res["runs"]["model"]["cycles"] < r["cycles"] < res["runs"]["1e"]["cycles"]  # true H < minao < 1e
    # prediction = truth: the model run converges at once, the error level e = 0 is never reached
    assert res["runs"]["model"]["cycles"] <= 1 and res["error_level_ha"] == 0.0
    assert res["baselines"]["minao"]["n_err"] is None and res["baselines"]["minao"]["error_level_ratio"] == 1.0


def test_scf_acceleration_end_to_end(demo):
    truth, preds, d = demo
    cache = d / "scf_cache"
    out = scf_acceleration(truth, preds, 2, seed=43, quiet=True, cache_dir=cache, guesses=("minao",))
    chosen = np.random.default_rng(43).choice(np.arange(3), 2, replace=False)
    assert [r["id"] for r in out["per_molecule"]] == [truth[int(k)].id for k in chosen]
    np.testing.assert_array_equal(select_molecules(np.arange(3), 2), chosen)
    np.testing.assert_array_equal(select_molecules(np.arange(3), 5), np.arange(3))
    m = out["metrics"]
    ach, err = [], []
    for r in out["per_molecule"]:
        assert r["error_level_ha"] == pytest.approx(DELTA_HA, rel=TOL.exact64)  # |ΔH| of every element, Hartree
        n_model, n_minao = (r["runs"][g]["cycles"] for g in ("model", "minao"))
        assert n_model < n_minao  # the near-true guess saves cycles
        b = r["baselines"]["minao"]
        trace = r["runs"]["minao"]["fock_mae_ha"]
        assert b["n_err"] is not None and trace[b["n_err"]] < DELTA_HA <= min(trace[: b["n_err"]], default=np.inf)
        assert b["achieved_ratio"] == n_model / n_minao and b["error_level_ratio"] == b["n_err"] / n_minao
        ach.append(b["achieved_ratio"])
        err.append(b["error_level_ratio"])
        assert r["t2_s"] is None and r["t3_s"] is None  # no inference time recorded in these predictions
    assert m["scf_n_molecules"] == 2 and m["scf_n_unconverged"] == 0
    assert m["scf_achieved_ratio_minao"] == pytest.approx(np.mean(ach))
    assert m["scf_achieved_ratio_minao_std"] == pytest.approx(np.std(ach))
    assert m["scf_error_level_ratio_minao"] == pytest.approx(np.mean(err))
    assert 0 < m["scf_achieved_ratio_minao"] < 1 and m["scf_t1_minao_s"] > 0 and m["scf_t2_s"] is None
    assert out["units"]["scf_t1_minao_s"] == "s" and "0-based" in out["settings"]["cycle_convention"]
    assert "scf_achieved_ratio_1e" not in m  # only the baselines asked for
    # resumable: the cached per-molecule results come back unchanged (wall times included) without DFT
    files = sorted(cache.glob("scf_*.json"))
    assert len(files) == 2
    again = scf_acceleration(truth, preds, 2, seed=43, quiet=True, cache_dir=cache, guesses=("minao",))
    assert all(r["cached"] for r in again["per_molecule"])
    assert again["metrics"] == m

    class WithSplit:  # the truth store with a second split, as QH9's two test sets
        def __init__(self, st):
            self._st = st

        def __getattr__(self, name):
            return getattr(self._st, name)

        def split(self, name):
            assert name == "other"
            return {"train": np.array([0]), "test": np.array([1, 2])}

    sub = scf_acceleration(WithSplit(truth), preds, 5, quiet=True, cache_dir=cache, guesses=("minao",),
                           intersect="other:test")
    assert [r["id"] for r in sub["per_molecule"]] == [truth[1].id, truth[2].id]  # the pool ∩ split, all of it
    assert all(r["cached"] for r in sub["per_molecule"]) and sub["settings"]["pool_size"] == 2
    # inference time as `hambench predict` records it (meta.timing.seconds over 3 structures) → t2, t3
    from hambench.store._predictions import open_predictions, write_predictions

    timed = d / "timed.zarr"
    write_predictions(truth, [0, 1, 2], [preds.pair(k)[0].H for k in range(3)], timed,
                      {"model": {"name": "timed"}, "timing": {"seconds": 0.3, "structures_per_s": 10.0}})
    t = scf_acceleration(truth, open_predictions(timed), 2, quiet=True, cache_dir=cache, guesses=("minao",))
    assert all(r["cached"] for r in t["per_molecule"])
    assert t["metrics"]["scf_t2_s"] == pytest.approx(0.1)
    assert t["metrics"]["scf_t3_s"] == pytest.approx(0.1 + m["scf_t_dft_model_s"])
    assert t["settings"]["t2_source"] == "meta.timing.seconds / structures"
    with pytest.raises(InputError, match="no subset 'val'"):
        scf_acceleration(WithSplit(truth), preds, 1, quiet=True, intersect="other:val")
    with pytest.raises(InputError, match="no split named 'nope'"):
        scf_acceleration(truth, preds, 1, quiet=True, intersect="nope:test")


def test_scf_refuses_a_crystal_store(demo):
    _, preds, _ = demo

    class Crystal:
        path = "crystal.zarr"
        kind = "crystal"
        spinful = False

    with pytest.raises(InputError, match="crystal.zarr.*molecule store"):
        scf_acceleration(Crystal(), preds, 1)

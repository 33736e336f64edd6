"""Bands (hambench.scoring._bands) on real DFT crystals: DeepH-dock's MoTe2 band fixture (band.h5) and OpenMX SOC
bismuthene (spinful). Independent references: DeepH-dock's own band energies, first-order (quasi-degenerate)
perturbation theory for a small Hermitian ΔH, and hand-written K_PATH files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hambench.scoring import _bands as bands
from hambench.scoring._bands import (
    band_energies,
    band_errors,
    k_path_for,
    read_k_path,
    window_mask,
)
from hambench.errors import InputError
from hambench.testing import TOL, require_realdata


def _store(folder, out):
    from hambench.pipelines import prepare
    from hambench.store._store import open_store

    prepare("deeph/folder", folder, out, quiet=True)
    return open_store(out)


@pytest.fixture(scope="module")
def mote2(tmp_path_factory):
    folder = require_realdata("deeph_new_MoTe2_band_reference")
    d = tmp_path_factory.mktemp("bands_mote2")
    return folder, _store(folder, d / "truth.zarr"), d


@pytest.fixture(scope="module")
def bismuthene(tmp_path_factory):
    folder = require_realdata("openmx_bismuthene_soc_scfout", "deeph_dock_converted")
    d = tmp_path_factory.mktemp("bands_bi")
    return folder, _store(folder, d / "truth.zarr"), d


def _hermitian_perturbation(s, scale, seed):
    """Random ΔH on every edge with ΔH_ij(R) = ΔH_ji(−R)^† (so H(k) stays Hermitian), flat like s.H."""
    rng = np.random.default_rng(seed)
    ptr = s.block_ptr()
    ni, nj = s.block_shapes()
    X = rng.standard_normal(len(s.H)) * scale
    if s.spinful:
        X = X + 1j * rng.standard_normal(len(s.H)) * scale
    partner = s.partner_index()
    assert (partner >= 0).all()
    out = np.empty_like(X)
    for e in range(s.nedges):
        p = partner[e]
        a = X[ptr[e]:ptr[e + 1]].reshape(ni[e], nj[e])
        b = X[ptr[p]:ptr[p + 1]].reshape(ni[p], nj[p])
        out[ptr[e]:ptr[e + 1]] = (0.5 * (a + b.conj().T)).ravel()
    return out


def _write_preds(truth, H, path):
    from hambench.store._predictions import open_predictions, write_predictions

    write_predictions(truth, [0], [H], path, {"model": {"name": "test"}}, overwrite=True)
    return open_predictions(path)


def _first_order(s, dH, kpts, tol=1e-3):
    """Band shifts to first order: eigenvalues of diag(ε_c) + C_cᴴ ΔH(k) C_c − ε_c within each cluster c of
    levels closer than ``tol`` eV (quasi-degenerate perturbation theory; C S(k)-orthonormal, ΔS = 0)."""
    ev, vec = band_energies(s, kpts, vectors=True)
    Hk, _ = bands._bloch(s, s.H, kpts)
    dk = bands._bloch(s, dH, kpts)[0]
    assert np.allclose(Hk, Hk.conj().transpose(0, 2, 1), atol=TOL.hermitian_pairs)
    shift = np.empty_like(ev)
    for i in range(len(kpts)):
        c0 = 0
        e = ev[i]
        while c0 < len(e):
            c1 = c0 + 1
            while c1 < len(e) and e[c1] - e[c1 - 1] < tol:
                c1 += 1
            C = vec[i][:, c0:c1]
            M = np.diag(e[c0:c1]) + C.conj().T @ dk[i] @ C
            shift[i, c0:c1] = np.linalg.eigvalsh(0.5 * (M + M.conj().T)) - e[c0:c1]
            c0 = c1
    return ev, shift


def test_k_path_file_and_ase_path(mote2, tmp_path):
    folder, truth, _ = mote2
    kp = read_k_path(folder / "K_PATH")
    with h5py.File(folder / "band.h5") as f:
        kref = f["kpoints_frac_list"][()]
    np.testing.assert_allclose(kp.kpts, kref, rtol=0, atol=TOL.text_10_digits)  # K_PATH has 10 decimals
    assert [lab for _, lab in kp.ticks][:2] == ["GAMMA", "M"] and kp.ticks[-1] == (139, "GAMMA")
    p = tmp_path / "K_PATH"
    p.write_text("3 0 0 0 0.5 0 0 G M\n")
    np.testing.assert_allclose(read_k_path(p).kpts, [[0, 0, 0], [0.25, 0, 0], [0.5, 0, 0]])
    p.write_text("3 0 0 0 0.5 0\n")
    with pytest.raises(InputError, match="K_PATH.*line 1"):
        read_k_path(p)
    # ASE: the monolayer (no edge with R_3 != 0) gets the 2-D hexagonal path G-M-K-G with kz = 0
    s = truth[0]
    ase = k_path_for(s, None, npoints=60)
    assert ase.source == "ASE bandpath GMKG" and np.all(ase.kpts[:, 2] == 0)
    np.testing.assert_allclose(ase.kpts[ase.ticks[1][0]], [0.5, 0, 0], atol=TOL.exact64)


def test_bands_of_the_truth_equal_deeph_dock_band_h5(mote2, monkeypatch):
    folder, truth, d = mote2
    with h5py.File(folder / "band.h5") as f:
        band = f["band_data"][()]
        ef = float(f["fermi_energy_before_shift_eV"][()])
    s = truth[0]
    ev = band_energies(s, read_k_path(folder / "K_PATH").kpts)
    # eV: 1.7e-8 measured; DeepH-dock (like scipy's eigh, 1.4e-12 here) reads one triangle of H(k), we use
    # ½(H + Hᴴ): the file's H_ij(R), H_ji(-R) pairs differ by 9e-9 eV
    assert np.abs(ev - ef - band.T).max() < TOL.hermitian_pairs
    monkeypatch.setattr(bands, "CHUNK_ELEMENTS", 57 * 57 * 9)  # 9 k-points per chunk: same bands
    np.testing.assert_allclose(band_energies(s, read_k_path(folder / "K_PATH").kpts), ev, rtol=0, atol=TOL.reassociation)
    preds = _write_preds(truth, s.H, d / "same.zarr")
    out = band_errors(truth, preds, kpath=folder / "K_PATH", quiet=True)
    m = out["metrics"]
    assert m["bands_mae"] == 0.0 and m["bands_max"] == 0.0 and m["bands_mae_all"] == 0.0
    # the window: values of the true bands within ±2 eV of the store's E_F (= band.h5's, 8.894648 eV)
    assert s.fermi_level == pytest.approx(ef, abs=TOL.text_6_decimals)
    assert m["bands_n_values"] == int(np.sum(np.abs(band) <= 2.0)) > 0
    assert out["per_structure"][0]["n_bands_in_window"] == int(np.any(np.abs(band) <= 2.0, axis=1).sum())


def test_perturbed_bands_follow_first_order_perturbation_theory(mote2):
    """truth + small ΔH: the band error is |⟨ψ|ΔH(k)|ψ⟩| (quasi-degenerate first order); the 0.8 eV window
    holds only parts of the two band edges (E_F is mid-gap, the gap is 1.04 eV), so the partial counting of
    bands that cross the window edge is checked too."""
    folder, truth, d = mote2
    s = truth[0]
    dH = _hermitian_perturbation(s, 2e-6, seed=1)  # eV
    preds = _write_preds(truth, s.H + dH, d / "pert.zarr")
    k = read_k_path(folder / "K_PATH").kpts[::3]
    ev, shift = _first_order(s, dH, k)
    for w in (2.0, 0.8):
        out = band_errors(truth, preds, kpath=k, window_eV=w, quiet=True)
        mask = window_mask(ev, s.fermi_level, w)
        assert 0 < mask.sum() < mask.any(axis=0).sum() * len(k)  # some band is only partly inside
        want = 1e3 * np.abs(shift[mask])  # meV
        m = out["metrics"]
        assert m["bands_mae"] == pytest.approx(want.mean(), rel=TOL.first_order)
        assert m["bands_max"] == pytest.approx(want.max(), rel=TOL.first_order)
        assert m["bands_mae"] > 0 and m["bands_n_values"] == mask.sum()
        assert out["per_structure"][0]["n_bands_in_window"] == mask.any(axis=0).sum() == (2 if w < 1 else 6)


def test_spinful_bismuthene(bismuthene):
    """SOC: 40 bands (Kramers pairs) for 20 orbitals; zero error for the truth, first order for ΔH (complex,
    Hermitian-paired), on ASE's path."""
    _, truth, d = bismuthene
    s = truth[0]
    assert s.spinful
    same = band_errors(truth, _write_preds(truth, s.H, d / "same.zarr"), npoints=30, quiet=True)
    assert same["metrics"]["bands_mae"] == 0.0 and same["per_structure"][0]["n_bands"] == 40
    dH = _hermitian_perturbation(s, 2e-6, seed=2)
    out = band_errors(truth, _write_preds(truth, s.H + dH, d / "pert.zarr"), npoints=30, quiet=True)
    kp = k_path_for(s, None, npoints=30)
    ev, shift = _first_order(s, dH, kp.kpts)
    assert np.abs(ev[:, 0::2] - ev[:, 1::2]).max() < TOL.kramers  # Kramers pairs of the truth
    mask = window_mask(ev, s.fermi_level, 2.0)
    assert out["metrics"]["bands_mae"] == pytest.approx(1e3 * np.abs(shift[mask]).mean(), rel=TOL.first_order)


def test_bands_refuse_a_molecule_store(bismuthene):
    class Molecules:
        path = "mol.zarr"
        kind = "molecule"

    with pytest.raises(InputError, match="mol.zarr.*crystal store"):
        band_errors(Molecules(), None)

"""Sparse bands (``hambench bands``): shift-invert on sparse H(k), S(k) against dense ``eigh``, on real DFT blocks.

The large test structure is a supercell of the real MoTe2 monolayer built here by folding its blocks (each edge
(i, j, R) of the primitive cell repeated from every cell of the supercell): its bands are known independently,
since the supercell's Γ-point levels are the primitive cell's levels at the folded k-points.
"""

from __future__ import annotations

import numpy as np
import pytest

from hambench.app.testing import cli, one_line_error
from hambench.scoring import band_energies, bands_near, fermi_for, sparse_bloch
from hambench.scoring._dense import bloch_sum
from hambench.store import Structure, open_store
from hambench.testing import TOL, require_realdata


@pytest.fixture(scope="module")
def mote2(tmp_path_factory):
    from hambench.pipelines import prepare

    out = tmp_path_factory.mktemp("sparse") / "mote2.zarr"
    prepare("deeph/folder", require_realdata("deeph_new_MoTe2"), out, quiet=True)
    return out


def supercell(s: Structure, n1: int, n2: int) -> Structure:
    """The n1 × n2 in-plane supercell of ``s`` with its blocks folded (edge blocks copied from every cell)."""
    cells = [(a, b) for a in range(n1) for b in range(n2)]
    index = {c: k for k, c in enumerate(cells)}
    src, dst, shift = [], [], []
    for c in cells:
        t0 = np.asarray(c)[None, :] + s.shift[:, :2]                      # the partner's cell, unwrapped
        wrapped = np.mod(t0, [n1, n2])
        R = np.column_stack([np.floor_divide(t0[:, 0], n1), np.floor_divide(t0[:, 1], n2), s.shift[:, 2]])
        src.append(index[c] * s.natoms + s.src)
        dst.append(np.array([index[tuple(w)] for w in wrapped.tolist()]) * s.natoms + s.dst)
        shift.append(R)
    cell = np.asarray(s.cell).copy()
    pos = np.concatenate([s.pos + a * cell[0] + b * cell[1] for a, b in cells])
    cell[0] *= n1
    cell[1] *= n2
    return Structure(id=f"{s.id}-{n1}x{n2}", Z=np.tile(s.Z, len(cells)), pos=pos, cell=cell, pbc=s.pbc,
                     src=np.concatenate(src), dst=np.concatenate(dst), shift=np.concatenate(shift),
                     H=np.tile(s.H, len(cells)), S=np.tile(s.S, len(cells)), species=s.species, spinful=s.spinful,
                     fermi_level=s.fermi_level, nelectron=s.nelectron * len(cells))


def test_sparse_bloch_equals_dense_bloch_sum(mote2):
    s = open_store(mote2)[0]
    for k in ([0, 0, 0], [0.1, 0.37, 0.0], [1 / 3, 1 / 3, 0]):
        for M, ov in ((s.H, False), (s.S, True)):
            dense = bloch_sum(M, s.Z, s.src, s.dst, s.shift, s.layout, np.asarray([k], float), overlap=ov)[0]
            sparse = sparse_bloch(M, s.Z, s.src, s.dst, s.shift, s.layout, k, overlap=ov).toarray()
            assert np.abs(sparse - dense).max() <= TOL.roundoff * np.abs(dense).max()


@pytest.mark.slow
def test_shift_invert_equals_dense_on_a_supercell(mote2):
    """A 4×4 MoTe2 supercell (48 atoms, 912 orbitals): the 20 levels nearest E_F at Γ and at a general k by
    shift-invert (both factorisations: LAPACK and SuperLU) equal dense generalized eigh to 1e-8 eV; the Γ levels
    equal the primitive cell's at the 16 folded k-points."""
    s = open_store(mote2)[0]
    big = supercell(s, 4, 4)
    ef, how = fermi_for(big)
    assert how == "the store's DFT Fermi level"
    k = np.array([[0, 0, 0], [0.21, 0.05, 0]])
    near = bands_near(big, k, ef, 20, solver="dense")
    assert np.abs(bands_near(big, k[:1], ef, 20, solver="splu") - near[:1]).max() < 1e-8
    dense = band_energies(big, k)
    for i in range(len(k)):
        want = np.sort(dense[i][np.argsort(np.abs(dense[i] - ef))[:20]])
        assert np.abs(near[i] - want).max() < 1e-8  # issue 31: sparse against dense to 1e-8 eV
    folded = np.array([[a / 4, b / 4, 0] for a in range(4) for b in range(4)])
    prim = np.sort(band_energies(s, folded).reshape(-1))
    want = np.sort(prim[np.argsort(np.abs(prim - ef))[:20]])
    assert np.abs(near[0] - want).max() < 1e-8


def test_fermi_level_from_the_electron_count(mote2):
    """Without a DFT Fermi level, E_F is the mid-gap at Γ from the electron count (dense, small structures)."""
    s = open_store(mote2)[0]
    s.fermi_level = float("nan")
    s.nelectron = 2.0 * 13  # a count that puts E_F in a gap of the real levels at Γ (hand-checked below)
    ef, how = fermi_for(s)
    ev = band_energies(s, np.zeros((1, 3)))[0]
    assert "electron count" in how and ev[12] < ef < ev[13]
    assert abs(ef - 0.5 * (ev[12] + ev[13])) <= TOL.eigensolver


def test_cli_bands_and_refusals(mote2, tmp_path):
    r = cli("bands", mote2, "--around-fermi", 10, "--npoints", 12, "-o", tmp_path / "b.json", "--plot",
            tmp_path / "b.png")
    assert r.exit_code == 0, r.output
    assert "E_F = -4.1935 eV (the store's DFT Fermi level)" in r.output
    assert (tmp_path / "b.json").is_file() and (tmp_path / "b.png").stat().st_size > 1000
    import json

    got = np.asarray(json.loads((tmp_path / "b.json").read_text())["bands_eV"])
    s = open_store(mote2)[0]
    kpts = np.asarray(json.loads((tmp_path / "b.json").read_text())["kpts"])
    dense = band_energies(s, kpts)
    ef = s.fermi_level
    for i in range(len(kpts)):
        assert np.abs(got[i] - np.sort(dense[i][np.argsort(np.abs(dense[i] - ef))[:10]])).max() < 1e-8
    # refusals: one line, nothing written
    assert "--around-fermi" in one_line_error(cli("bands", mote2, "--around-fermi", 56, "-o", tmp_path / "x.json"))
    assert not (tmp_path / "x.json").exists()
    assert "--structure" in one_line_error(cli("bands", mote2, "--structure", "nosuch"))
    assert "cannot read the k-path file" in one_line_error(cli("bands", mote2, "--kpath", tmp_path / "missing"))
    bulk = tmp_path / "K_PATH"  # a 3-D path (Γ–A along k3) on the MoTe2 layer, periodic in-plane only
    bulk.write_text("10 0 0 0 0 0 0.5 G A\n")
    assert "a k-path for another cell" in one_line_error(cli("bands", mote2, "--kpath", bulk))
    assert "missing.zarr" in one_line_error(cli("bands", tmp_path / "missing.zarr"))


def test_structures_predictions_without_overlap_are_refused(mote2, tmp_path):
    """A prediction made with --structures has no S: bands refuse it in one line."""
    from hambench.store import StoreRange, write_predictions  # noqa: F401  (the API the CLI uses)

    run = tmp_path / "run"
    assert cli("train", "deephe3", "--data", mote2, "--preset", "tiny", "--max-steps", 2, "--threads", 1, "-o",
               run).exit_code == 0
    poscar = require_realdata("deeph_new_MoTe2", "POSCAR")
    preds = tmp_path / "new.zarr"
    r = cli("predict", run, "--structures", poscar, "-o", preds)
    assert r.exit_code == 0, r.output
    line = one_line_error(cli("bands", preds, "--around-fermi", 4))
    assert "no overlap S" in line


def test_kernel_polynomial_dos_equals_the_dense_spectrum(mote2):
    """KPM on sparse S⁻¹H (LU solves): its Chebyshev moments with the exact trace are those of the dense
    generalised eigenvalues, and the stochastic DOS integrates to one state per orbital."""
    from hambench.scoring._kpm import jackson, kpm_dos, kpm_moments, spectral_bounds
    from hambench.scoring._bands import generalized_eigh
    from hambench.scoring._sparse import sparse_matrices

    s = supercell(open_store(mote2)[0], 2, 2)
    k = np.array([0.1, 0.2, 0.0])
    Hk, Sk = sparse_matrices(s, k)
    ev = generalized_eigh(Hk.toarray()[None], Sk.toarray()[None])[0]
    b, a = spectral_bounds(Hk, Sk)
    assert ev.min() > b - a and ev.max() < b + a
    n = 64
    mu = kpm_moments(Hk, Sk, n, (b, a), vectors="exact")
    x = (ev - b) / a
    ref = np.polynomial.chebyshev.chebvander(x, n - 1).mean(axis=0)   # (1/N) Σ_i T_n(x_i)
    assert np.abs(mu - ref).max() < TOL.reassociation * len(ev)
    grid = np.linspace(b - a, b + a, 4001)[1:-1]
    rho = kpm_dos(kpm_moments(Hk, Sk, n, (b, a), n_random=4), (b, a), grid)
    assert abs(np.trapezoid(rho, grid) - 1) < TOL.stochastic_trace
    assert jackson(n)[0] == pytest.approx(1.0, abs=TOL.few_ulp)

"""pyscf/conformers: labels against direct PySCF, the sampled displacements against the harmonic expectation,
seeding and resume, refusals.

DFT is kept to water (24 AOs): one optimisation + Hessian per module (~15 s), then a few conformers.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pyscf = pytest.importorskip("pyscf")
from pyscf import dft, gto  # noqa: E402

from hambench.basis._conventions import BOHR_ANGSTROM, HARTREE_EV, from_hambench  # noqa: E402
from hambench.errors import InputError  # noqa: E402
from hambench.pipelines import get_source, prepare  # noqa: E402
from hambench.pipelines import pyscf_conformers as pc  # noqa: E402
from hambench.store import store_checksum  # noqa: E402
from hambench.store._store import open_store  # noqa: E402
from hambench.testing import TOL  # noqa: E402

#: samples per statistic: 5 standard errors of a mean of χ²₁/2 (relative SE √(2/n)) stay below TOL.sampling_mean
N_SAMPLES = 60_000


@pytest.fixture(scope="module")
def water(tmp_path_factory):
    """A water source (3 conformers, default MD17 protocol); its raw dir holds the cached modes."""
    raw = tmp_path_factory.mktemp("conformers") / "raw"
    return get_source("pyscf/conformers", molecule="water", count=3, seed=5, raw_dir=raw)


def direct_fock(symbols, xyz_ang, xc="pbe"):
    """The MD17 protocol written out by hand: PySCF RKS PBE/def2-SVP, grid level 3, conv_tol 1e-9."""
    mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(symbols, xyz_ang)], basis="def2-svp", unit="Angstrom", verbose=0)
    mf = dft.RKS(mol)
    mf.xc, mf.grids.level, mf.conv_tol = xc, 3, 1e-9
    e = mf.kernel()
    assert mf.converged
    return mol, e, mf.get_fock(), mf.get_ovlp()


def full_from_edges(s, which, mol):
    """The n_ao × n_ao matrix in PySCF order rebuilt block by block from a Structure (independent of the source)."""
    aos = mol.aoslice_by_atom()[:, 2:4]
    out = np.full((mol.nao_nr(), mol.nao_nr()), np.nan)
    for e, (i, j) in enumerate(zip(s.src, s.dst)):
        b = from_hambench(s.block(e, which), "pyscf", s.species[int(s.Z[i])], s.species[int(s.Z[j])])
        out[aos[i, 0]:aos[i, 1], aos[j, 0]:aos[j, 1]] = b
    assert not np.isnan(out).any()
    return out


def test_labels_match_direct_pyscf(water):
    item = water.items()[1]
    (s,) = water.read(item)
    assert s.id == "water_000001" and list(s.Z) == [8, 1, 1]
    np.testing.assert_allclose(s.pos, np.asarray(item[1]), rtol=0, atol=TOL.geometry)
    mol, e, fock, ovlp = direct_fock(["O", "H", "H"], s.pos)
    np.testing.assert_allclose(full_from_edges(s, "H", mol) / HARTREE_EV, fock, rtol=0, atol=TOL.pyscf_repeat)
    np.testing.assert_allclose(full_from_edges(s, "S", mol), ovlp, rtol=0, atol=TOL.integrals)
    assert abs(s.energy / HARTREE_EV - e) < TOL.pyscf_repeat
    # the conformer is displaced from the equilibrium and the equilibrium is a minimum of this protocol
    assert np.abs(s.pos - water.modes["xyz_eq"]).max() > 1e-3
    mf = dft.RKS(gto.M(atom=[(a, tuple(p)) for a, p in zip("OHH", water.modes["xyz_eq"])], basis="def2-svp",
                       unit="Angstrom", verbose=0), xc="pbe")
    mf.grids.level, mf.conv_tol = 3, 1e-9
    mf.kernel()
    assert np.abs(mf.nuc_grad_method().kernel()).max() < pc.GTOL


@pytest.mark.slow  # a B3LYP optimisation and Hessian (~100 s on the loaded 2-core machine)
def test_qh9_protocol_option(tmp_path, water):
    raw = tmp_path / "raw"
    src = get_source("pyscf/conformers", molecule="water", count=1, protocol="qh9", raw_dir=raw)
    assert src.protocol["xc"] == "b3lyp5" and "QH9" in src.attrs().dft["protocol"]
    (s,) = src.read(src.items()[0])
    mol, _, fock, _ = direct_fock(["O", "H", "H"], s.pos, xc="b3lyp5")
    np.testing.assert_allclose(full_from_edges(s, "H", mol) / HARTREE_EV, fock, rtol=0, atol=TOL.pyscf_repeat)


def test_frequencies_match_pyscf_harmonic_analysis(water):
    """The source's normal-mode analysis against PySCF's own (pyscf.hessian.thermo), same Hessian and masses."""
    from pyscf.hessian import thermo

    mol = gto.M(atom=[(a, tuple(p)) for a, p in zip("OHH", water.modes["xyz_eq"])], basis="def2-svp", verbose=0)
    hess = np.asarray(water.modes["hessian"]).reshape(3, 3, 3, 3).transpose(0, 2, 1, 3)
    ref = thermo.harmonic_analysis(mol, hess, mass=np.asarray(water.modes["masses"]))
    # PySCF's Hartree → cm⁻¹ and amu constants differ from CODATA 2018 by ~1e-9, relative
    np.testing.assert_allclose(water.modes["frequencies_cm1"], ref["freq_wavenumber"], rtol=TOL.unit_constants)
    assert 1500 < water.modes["frequencies_cm1"][0] < 1700 < 3500 < water.modes["frequencies_cm1"][1]  # bend, stretches


def _mass_weighted(water, disp_ang):
    m = np.repeat(np.asarray(water.modes["masses"]) * pc.AMU_ME, 3)
    return disp_ang.reshape(len(disp_ang), -1) / BOHR_ANGSTROM * np.sqrt(m)[None, :]


@pytest.mark.parametrize("distribution", ["classical", "quantum"])
def test_displacements_follow_the_harmonic_boltzmann_distribution(water, distribution):
    T = 300.0
    kt = pc.KB_HARTREE * T
    d = pc.sample_displacements(water.modes, T, seed=11, indices=range(N_SAMPLES), distribution=distribution)
    omega = np.asarray(water.modes["omega"])
    # mean potential energy of each mode against ½ k_B T (classical) or ¼ ħω coth(ħω / 2k_B T) (quantum)
    want = np.full(omega.size, kt / 2) if distribution == "classical" else omega / 4 / np.tanh(omega / (2 * kt))
    q = _mass_weighted(water, d) @ np.asarray(water.modes["modes"])
    np.testing.assert_allclose((0.5 * omega**2 * q**2).mean(0) / want, 1.0, rtol=0, atol=TOL.sampling_mean)
    # the same total through the Cartesian Hessian (Ha/Bohr²), which never sees the normal modes
    x = d.reshape(len(d), -1) / BOHR_ANGSTROM
    e_harm = 0.5 * np.einsum("ni,ij,nj->n", x, water.modes["hessian"], x)
    assert abs(e_harm.mean() / want.sum() - 1) < TOL.sampling_mean
    # no translation, no rotation (Eckart conditions at the equilibrium geometry)
    m = np.asarray(water.modes["masses"])
    r = water.modes["xyz_eq"] - (m[:, None] * water.modes["xyz_eq"]).sum(0) / m.sum()
    assert np.abs(np.einsum("a,nai->ni", m, d)).max() < TOL.exact64
    assert np.abs(np.einsum("a,ai,naj->nij", m, r, d) - np.einsum("a,aj,nai->nij", m, r, d)).max() < TOL.exact64


def test_low_temperature_dft_energy_is_harmonic(water):
    """At 20 K the DFT energy above the minimum of a few conformers matches ½ dᵀ H d (anharmonicity ~ amplitude)."""
    d = pc.sample_displacements(water.modes, 20.0, seed=3, indices=range(4))
    e0 = float(water.modes["e_eq"])
    for disp in d:
        _, e, _, _ = direct_fock(["O", "H", "H"], water.modes["xyz_eq"] + disp)
        x = disp.ravel() / BOHR_ANGSTROM
        harm = 0.5 * x @ water.modes["hessian"] @ x
        assert abs((e - e0) / harm - 1) < TOL.harmonic_dft


def test_seeded_store_is_byte_identical_and_resumes(tmp_path, water):
    raw = tmp_path / "raw"
    shutil.copytree(water.raw_dir, raw)  # the cached modes: no optimisation here
    a = prepare("pyscf/conformers", None, tmp_path / "a.zarr", quiet=True, molecule="water", count=3, seed=5,
                raw_dir=raw)
    assert "3 structures" in a
    for f in raw.glob("water_0*.npz"):  # recompute every conformer's DFT result: the same bytes
        f.unlink()
    prepare("pyscf/conformers", None, tmp_path / "b.zarr", quiet=True, molecule="water", count=3, seed=5, raw_dir=raw)
    sa, sb = open_store(tmp_path / "a.zarr"), open_store(tmp_path / "b.zarr")
    assert store_checksum(sa) == store_checksum(sb)
    # a larger --count keeps the first conformers (conformer k draws from rng([seed, k])) and reuses their DFT
    big = get_source("pyscf/conformers", molecule="water", count=5, seed=5, raw_dir=raw)
    assert big.items()[:3] == water.items()
    assert all(big.raw_path(i).exists() for i in big.items()[:3])
    assert not big.compute(big.items()[0])[2]
    other = get_source("pyscf/conformers", molecule="water", count=3, seed=6, raw_dir=raw)
    assert other.items()[0] != water.items()[0]
    assert sa.attrs["conformers"]["temperature_K"] == 500.0 and len(sa.attrs["conformers"]["frequencies_cm1"]) == 3


def test_xyz_file_and_bad_input(tmp_path, water):
    raw = water.raw_dir
    f = tmp_path / "w.xyz"
    f.write_text("3\nwater\n" + "\n".join(f"{s} {x:.10f} {y:.10f} {z:.10f}" for s, (x, y, z)
                                          in zip("OHH", pc.MOLECULES["water"][1])) + "\n")
    assert pc.read_xyz(f) == (("O", "H", "H"), pc.MOLECULES["water"][1])
    bad = tmp_path / "bad.xyz"
    for text, words in [("x\n", "number of atoms"), ("3\n\nO 0 0 0\nH 0 0\n", "says 3 atoms"),
                        ("2\n\nO 0 0 0\nQq 1 0 0\n", "line 4"), ("2\n\nO 0 0 0\nH 0 0 0.1\n", "apart")]:
        bad.write_text(text)
        with pytest.raises(InputError, match=words):
            get_source("pyscf/conformers", xyz=bad, raw_dir=raw)
    for opts, flag in [({"molecule": "benzene"}, "--molecule"), ({"temperature": 0.0}, "--temperature"),
                       ({"count": 0}, "--count"), ({"molecule": "water", "xyz": f}, "--molecule")]:
        with pytest.raises(InputError, match=flag):
            get_source("pyscf/conformers", raw_dir=raw, **opts)


def test_cli_refusals_write_nothing(tmp_path):
    from click.testing import CliRunner

    from hambench.app.cli import main

    out = tmp_path / "c.zarr"
    cases = [(["--molecule", "benzene"], 1, "--molecule"), (["--temperature", "0"], 1, "--temperature"),
             (["--temperature", "-5"], 2, "--temperature"), (["--count", "0"], 2, "--count"),
             (["--xyz", str(tmp_path / "none.xyz")], 1, "none.xyz"), (["--distribution", "x"], 2, "--distribution")]
    for args, code, word in cases:
        res = CliRunner().invoke(main, ["prepare", "--source", "pyscf/conformers", *args, "-o", str(out)])
        assert res.exit_code == code, (args, res.output)
        assert word in res.output and "Traceback" not in res.output
        assert len([x for x in res.output.strip().splitlines() if x.strip()]) <= 3  # click usage lines + error
        assert not list(tmp_path.glob("c.*"))


@pytest.mark.slow  # the water optimisation and Hessian again (~60 s on the loaded 2-core machine)
def test_geometry_work_regenerates_the_same_conformers(tmp_path, water):
    again = get_source("pyscf/conformers", molecule="water", count=3, seed=5, raw_dir=tmp_path / "raw")
    assert again.items() == water.items()
    assert np.array_equal(again.modes["hessian"], water.modes["hessian"])

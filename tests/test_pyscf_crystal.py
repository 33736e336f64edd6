"""pyscf/crystal: PySCF periodic DFT → real-space H(R), S(R) (issue 6).

One SCF (graphene, 2-atom cell, gth-szv, 3x3x1, ke_cutoff 100 Ha, 10 Å vacuum) is shared by the module; the
references are PySCF itself (its lattice-summed S(k), its SCF eigenvalues, its own ``get_bands`` at an off-mesh
k-point, a Fock build on a rotated cell) and exact integrals.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg

pytest.importorskip("pyscf")

from hambench.basis import _so3 as so3
from hambench.basis._conventions import HARTREE_EV, atom_permutation
from hambench.errors import InputError
from hambench.pipelines import pyscf_crystal as pc
from hambench.testing import TOL

FAST = dict(system="graphene", count=1, basis="gth-szv", kmesh="2x2x1", ke_cutoff=100, vacuum=10.0, threads=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    raw_dir = tmp_path_factory.mktemp("raw")
    src = pc.CrystalSource(None, raw_dir=raw_dir, **FAST)
    item = src.items()[0]
    raw, path, computed = src.compute(item)
    assert computed and bool(raw["converged"])
    s = src.read(item)[0]
    return src, item, raw, s


def _cell(item, protocol, R=np.eye(3)):
    sid, symbols, pos, cellv, pbc = item
    return pc.build_cell(symbols, np.asarray(pos) @ R.T, np.asarray(cellv) @ R.T, protocol)


# --- exact overlap vs the FFT of PySCF's S(k) --------------------------------------------------------------
def test_overlap_realspace_equals_dense_fft_and_coarse_mesh_aliases():
    src = pc.CrystalSource(None, system="graphene", basis="gth-szv", temperature=0.0, vacuum=10.0, ke_cutoff=100)
    item = src.items()[0]
    cell = _cell(item, src.protocol)
    shifts = np.array([[i, j, 0] for i in range(-3, 4) for j in range(-3, 4)])
    direct = pc.overlap_blocks(cell, shifts)
    assert np.abs(direct[shifts.tolist().index([0, 0, 0])] - cell.pbc_intor("int1e_ovlp")).max() > 1e-3  # Γ ≠ home

    def fft(mesh):
        kf = pc.frac_mesh(mesh)
        Sk = np.asarray(cell.pbc_intor("int1e_ovlp", hermi=1, kpts=cell.get_abs_kpts(kf)))
        return pc.lattice_transform(Sk, kf, shifts)

    dense = fft((15, 15, 1))
    assert np.abs(dense.imag).max() < TOL.exact64
    # one k-point along z folds in the images across the 10 Å vacuum: S(R ± c) ~ 4e-9 here
    across = pc.overlap_blocks(cell, shifts + [0, 0, 1]) + pc.overlap_blocks(cell, shifts - [0, 0, 1])
    assert 1e-10 < np.abs(across).max() < 1e-7
    # in-plane, S(R) beyond 7 lattice vectors is < 1e-13 for gth-szv carbon: 15x15 aliases at ~1e-12
    assert np.abs(dense.real - direct - across).max() < TOL.fft_alias
    coarse = fft((3, 3, 1))  # folds R ± 3: the aliasing the research note measured (0.17)
    assert np.abs(coarse.real - direct).max() > 1e-2


@pytest.mark.slow
def test_fft_mesh_choice_meets_alias_tol(run):
    src, item, raw, s = run
    mesh = tuple(int(x) for x in raw["fft_mesh"])
    assert mesh[2] == 1 and mesh[0] % 2 == 1 and mesh[1] % 2 == 1
    assert float(raw["alias_error_S"]) < src.protocol["alias_tol"]
    # every stored shift is unique modulo the mesh
    for d in range(3):
        assert np.abs(s.shift[:, d]).max() <= (mesh[d] - 1) // 2


# --- bands: stored blocks vs PySCF ------------------------------------------------------------------------
def test_bands_from_blocks_match_scf_eigenvalues(run):
    src, item, raw, s = run
    s.validate(hermitian_tol=TOL.hermitian_pairs_double)
    bands = pc.structure_bands(s, raw["kpts_frac"])
    err = np.abs(bands - np.asarray(raw["mo_energy"]) * HARTREE_EV).max()
    # measured 1.3e-5 eV (Fock lattice-sum precision + pairs beyond the 1e-8-overlap radius); tolerance 1e-4 eV
    assert err < TOL.pbc_bands, err


def test_bands_off_mesh_match_pyscf_get_bands(run):
    src, item, raw, s = run
    from pyscf.pbc import dft

    cell = _cell(item, src.protocol)
    kpts = cell.get_abs_kpts(raw["kpts_frac"])
    mf = dft.KRKS(cell, kpts).multigrid_numint()
    mf.xc = src.protocol["xc"]
    kfrac = np.array([[0.2113, 0.0571, 0.0]])  # on neither the SCF nor the transform mesh
    e_ref, _ = mf.get_bands(cell.get_abs_kpts(kfrac), cell, dm_kpts=raw["dm_k"], kpts=kpts)
    err = np.abs(pc.structure_bands(s, kfrac)[0] - np.asarray(e_ref[0]) * HARTREE_EV).max()
    assert err < TOL.pbc_bands, err  # eV; measured 3.8e-6
    assert pc.interpolation_residual(s, raw) < TOL.pbc_bands  # the per-structure check stored in the raw result


# --- equivariance: a rigidly rotated cell -----------------------------------------------------------------
def _pyscf_D(cell, species, R):
    """AO rotation matrix in PySCF order (hambench D_l per shell, with PySCF's p order)."""
    from hambench.basis._conventions import pyscf_atom_slices, symbol_to_z

    blocks = []
    for a, sl in enumerate(pyscf_atom_slices(cell)):
        shells = species[symbol_to_z(cell.atom_pure_symbol(a))]
        D = so3.orbital_D(shells, R)
        p, sg = atom_permutation("pyscf", shells)  # hambench = sign * pyscf[p]
        P = np.zeros((len(p), len(p)))
        P[np.arange(len(p)), p] = sg
        blocks.append(P.T @ D @ P)
    return scipy.linalg.block_diag(*blocks)


def test_rotated_cell_gives_rotated_blocks(run):
    src, item, raw, s = run
    from pyscf.pbc import dft

    rng = np.random.default_rng(5)
    R = so3.random_rotation(rng)
    cell = _cell(item, src.protocol, R)
    U = _pyscf_D(cell, s.species, R)
    kf = raw["kpts_frac"]
    kpts = cell.get_abs_kpts(kf)
    dm = np.einsum("ab,kbc,dc->kad", U, raw["dm_k"], U)  # the rotated converged density, same fractional k
    mf = dft.KRKS(cell, kpts).multigrid_numint()
    mf.xc = src.protocol["xc"]
    fock = np.asarray(mf.get_hcore(cell, kpts)) + np.asarray(mf.get_veff(cell, dm, kpts=kpts))
    # same transform (3x3 mesh, aliased alike) on both sides: equivariance holds exactly up to the DFT grid
    shifts = np.array([[i, j, 0] for i in (-1, 0, 1) for j in (-1, 0, 1)])
    rawr = dict(raw, pos_ang=np.asarray(item[2]) @ R.T, cell_ang=np.asarray(item[3]) @ R.T,
                fock_fft=fock, fft_kpts_frac=kf)
    raw0 = dict(raw, fock_fft=raw["fock_k"], fft_kpts_frac=kf)
    s0 = pc.raw_to_structure(raw0, "x", "x", src.protocol, cutoff=2.6)
    s1 = pc.raw_to_structure(rawr, "x", "x", src.protocol, cutoff=2.6)
    assert np.array_equal(s0.src, s1.src) and np.array_equal(s0.shift, s1.shift)
    assert set(map(tuple, s0.shift.tolist())) <= set(map(tuple, shifts.tolist()))
    Zs, Zd = s0.Z[s0.src], s0.Z[s0.dst]
    dS = np.abs(so3.rotate_edge_blocks(s0.S, Zs, Zd, s0.species, R) - s1.S).max()
    dH = np.abs(so3.rotate_edge_blocks(s0.H, Zs, Zd, s0.species, R) - s1.H).max()
    assert dS < TOL.pbc_overlap_rotation, dS  # exact integrals
    # the real-space grid is spanned by the lattice vectors, so it rotates with the cell: measured 2e-13 eV
    # (molecules on PySCF's lab-frame Becke grids: ~1e-5 eV). Tolerance 1e-8 eV.
    assert dH < TOL.pbc_grid_rotation, dH
    wrong = np.abs(s0.H - s1.H).max()  # not rotating the blocks is far off: the check has teeth
    assert wrong > 100 * max(dH, 1e-6)


# --- geometry ----------------------------------------------------------------------------------------------
def test_thermal_displacements_are_seeded_and_sized():
    a = pc.CrystalSource(None, system="graphene", count=3, supercell="8x8x1", seed=7)
    b = pc.CrystalSource(None, system="graphene", count=3, supercell="8x8x1", seed=7)
    c = pc.CrystalSource(None, system="graphene", count=3, supercell="8x8x1", seed=8)
    assert a.items() == b.items()
    assert a.items()[0][2] != c.items()[0][2]
    assert a.items()[0][2] != a.items()[1][2]  # structures differ from each other
    sym, pos0, cell0, pbc = pc.catalogue_structure("graphene", 12.0)
    _, ideal, _ = pc.make_supercell(sym, pos0, cell0, (8, 8, 1))
    disp = np.asarray(a.items()[0][2]) - ideal
    sigma = pc.thermal_sigma(["C"], 300.0)[0]
    assert 0.02 < sigma < 0.05  # Å; Einstein model, θ_E = 1100 K
    # 384 Gaussian samples: sample std within 15 % of sigma (5 standard errors)
    assert abs(disp.std() / sigma - 1) < TOL.sampling_std
    fixed = pc.CrystalSource(None, system="mos2", count=1, supercell="2x2x1", displacement=0.1, seed=1)
    sid, symbols, pos, cell, pbc = fixed.items()[0]
    assert sid == "mos2_2x2x1_0000" and symbols.count("Mo") == 4 and symbols.count("S") == 8
    assert np.allclose(np.asarray(cell)[0], [6.32, 0, 0])


def test_structures_file(tmp_path):
    ase = pytest.importorskip("ase")
    import ase.io
    from ase.build import graphene

    atoms = graphene(a=2.46, vacuum=5.0)
    f = tmp_path / "g.extxyz"
    ase.io.write(f, [atoms, atoms], format="extxyz")
    src = pc.CrystalSource(None, structures=f, displacement=0.0)
    items = src.items()
    assert len(items) == 2 and items[0][1] == ("C", "C") and items[0][4] == (True, True, False)
    mol = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    ase.io.write(tmp_path / "m.xyz", mol)
    with pytest.raises(InputError, match="not periodic"):
        pc.CrystalSource(None, structures=tmp_path / "m.xyz")


@pytest.mark.parametrize(
    "opts, msg",
    [
        ({"system": "diamond"}, "unknown system"),
        ({"kmesh": "6x6"}, "three positive integers"),
        ({"kmesh": "axbxc"}, "not a mesh"),
        ({"displacement": 0.1, "temperature": 300}, "not both"),
        ({"count": 0}, "positive"),
        ({"vacuum": 0}, "--vacuum: must be positive"),  # once silently replaced by 12 Å
        ({"structures": "/nonexistent/file.xyz", "system": None}, "no such"),
    ],
)
def test_bad_options(opts, msg):
    with pytest.raises(InputError, match=msg):
        pc.CrystalSource(None, **opts)


# --- caching, DeepH output, store --------------------------------------------------------------------------
def test_cache_is_reused_and_deeph_folder_round_trips(run, tmp_path):
    src, item, raw, s = run
    from hambench.pipelines import deeph_format

    again = pc.CrystalSource(None, raw_dir=src.raw_dir, deeph_dir=tmp_path / "deeph", **FAST)
    assert again.items() == src.items()
    _, _, computed = again.compute(item)
    assert not computed
    s2 = again.read(item)[0]
    assert np.array_equal(s2.H, s.H) and np.array_equal(s2.S, s.S)
    back = deeph_format.read_legacy_folder(tmp_path / "deeph" / item[0])
    idx = back.edge_index()
    order = [idx[(int(i), int(j), *map(int, r))] for i, j, r in zip(s.src, s.dst, s.shift)]
    assert len(order) == s.nedges == back.nedges
    for e, f in enumerate(order[:: max(1, s.nedges // 40)]):
        e = e * max(1, s.nedges // 40)
        assert np.allclose(back.block(f, "H"), s.block(e, "H"), atol=TOL.exact64)
        assert np.allclose(back.block(f, "S"), s.block(e, "S"), atol=TOL.exact64)


def test_deeph_folder_source_reads_the_written_folders(run, tmp_path):
    """Issue 6's route: pyscf/crystal writes DeepH legacy folders, ``deeph/folder`` turns them into a store."""
    src, item, raw, s = run
    import zarr

    from hambench.pipelines import prepare

    prepare("pyscf/crystal", None, tmp_path / "direct.zarr", quiet=True, raw_dir=src.raw_dir,
            deeph_dir=tmp_path / "deeph", **FAST)
    assert (tmp_path / "deeph" / item[0] / "hamiltonians.h5").exists()
    prepare("deeph/folder", tmp_path / "deeph", tmp_path / "via_deeph.zarr", quiet=True)
    a = zarr.open_group(str(tmp_path / "direct.zarr"), mode="r")
    b = zarr.open_group(str(tmp_path / "via_deeph.zarr"), mode="r")
    assert a["blocks/H"].shape == b["blocks/H"].shape
    # same edges, maybe in another order: compare sorted values (eV; the h5 files keep float64 exactly)
    assert np.array_equal(np.sort(np.asarray(a["blocks/H"][:])), np.sort(np.asarray(b["blocks/H"][:])))
    assert np.array_equal(np.sort(np.asarray(a["blocks/S"][:])), np.sort(np.asarray(b["blocks/S"][:])))


def test_prepare_store_from_cached_run(run, tmp_path):
    src, item, raw, s = run
    from hambench.pipelines import prepare

    out = tmp_path / "g.zarr"
    summary = prepare("pyscf/crystal", None, out, quiet=True, raw_dir=src.raw_dir, **FAST)
    assert out.exists() and "1" in summary
    import zarr

    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["kind"] == "crystal" and g.attrs["dft"]["basis"] == "gth-szv"
    assert np.array_equal(np.asarray(g["blocks/H"][:]), s.H)
    assert json.loads(json.dumps(g.attrs["dft"]))["functional"] == "pbe"




def _h2_box(path, a):
    ase = pytest.importorskip("ase")
    import ase.io
    ase.io.write(path, ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], cell=[a, a, a], pbc=True),
                 format="extxyz")
    return path


def _h2_chain(path, vacuum):
    """H2 molecules (along x) stacked every 2.5 Å along z: periodic along z only, ``vacuum`` Å box across."""
    ase = pytest.importorskip("ase")
    import ase.io
    ase.io.write(path, ase.Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]], cell=[vacuum, vacuum, 2.5],
                                 pbc=[False, False, True]), format="extxyz")
    return path


def test_too_little_vacuum_is_refused(tmp_path):
    # H atoms 4 Å apart across the "vacuum" overlap by ~1e-2: no k-mesh can remove that, so refuse clearly
    src = pc.CrystalSource(None, structures=_h2_chain(tmp_path / "c.extxyz", 4.0), basis="gth-szv", kmesh="1x1x3")
    with pytest.raises(InputError, match="add vacuum"):
        src.fft_mesh(src.items()[0])
    ok = pc.CrystalSource(None, structures=_h2_chain(tmp_path / "d.extxyz", 9.0), basis="gth-szv", kmesh="1x1x3")
    mesh, err = ok.fft_mesh(ok.items()[0])
    assert mesh[:2] == (1, 1) and mesh[2] % 2 == 1 and err < ok.protocol["alias_tol"]


@pytest.mark.slow
def test_cli_prepare_end_to_end(tmp_path):
    """``hambench prepare --source pyscf/crystal --structures FILE`` → a valid crystal store (a chain of H2,
    1x1x3 k-points: the cheapest real run through the CLI, ~15 s here)."""
    import zarr
    from click.testing import CliRunner

    from hambench.app.cli import main

    f = _h2_chain(tmp_path / "h2.extxyz", 9.0)
    out = tmp_path / "h2.zarr"
    r = CliRunner().invoke(main, ["-q", "prepare", "--source", "pyscf/crystal", "--structures", str(f),
                                  "--basis", "gth-szv", "--kmesh", "1x1x3", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "1 structure, 2 atoms" in r.output
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["kind"] == "crystal" and g.attrs["dft"]["code"] == "PySCF"
    raws = list((tmp_path / "h2.raw").glob("*.npz"))  # the driver's default raw_dir beside the store
    assert len(raws) == 1
    raw = pc._load_raw(raws[0])
    src = pc.CrystalSource(None, structures=f, basis="gth-szv", kmesh="1x1x3")
    s = pc.raw_to_structure(raw, "h2", raws[0], src.protocol)
    assert np.array_equal(np.asarray(g["blocks/H"][:]), s.H)
    assert np.all(s.shift[:, :2] == 0) and list(np.asarray(g["structures/pbc"][0])) == [False, False, True]
    # the SCF eigenvalues at its 3 k-points from the stored blocks (eV)
    bands = pc.structure_bands(s, raw["kpts_frac"])
    assert np.abs(bands - np.asarray(raw["mo_energy"]) * HARTREE_EV).max() < TOL.pbc_bands


def test_unconverged_scf_is_excluded(tmp_path):
    # one cycle from the minao guess cannot converge; H2 in a 4 Å box, Γ only, 40 Ha: a few seconds
    f = _h2_box(tmp_path / "h2.extxyz", 4.0)
    src = pc.CrystalSource(None, structures=f, basis="gth-szv", kmesh="1x1x1", ke_cutoff=40, max_cycle=1,
                           raw_dir=tmp_path, fft_mesh="3x3x3")
    with pytest.raises(pc.SCFNotConverged, match="did not converge"):
        src.read(src.items()[0])
    assert issubclass(pc.SCFNotConverged, InputError)


def test_catalogue_geometry():
    """Nearest-neighbour distances of the catalogue cells (Å, to 1e-3): C–C 1.420, Mo–S 2.417, AB interlayer 3.35."""

    def nearest(system, a, b):
        sym, pos, cell, pbc = pc.catalogue_structure(system, 12.0)
        shifts = np.array([[i, j, 0] for i in (-1, 0, 1) for j in (-1, 0, 1)]) @ cell
        best = np.inf
        for i, si in enumerate(sym):
            for j, sj in enumerate(sym):
                if (si, sj) == (a, b):
                    d = np.linalg.norm(pos[j] + shifts - pos[i], axis=1)
                    best = min(best, d[d > TOL.geometry].min())
        return best, pos, cell

    d, pos, cell = nearest("graphene", "C", "C")
    assert abs(d - 2.46 / np.sqrt(3)) < TOL.quoted_digits and abs(cell[2, 2] - 12.0) < TOL.exact64 and np.allclose(pos[:, 2], 6.0)
    d, pos, cell = nearest("mos2", "Mo", "S")
    assert abs(d - np.hypot(3.16 / np.sqrt(3), 1.586)) < TOL.quoted_digits and abs(cell[2, 2] - (3.172 + 12.0)) < TOL.geometry
    sym, pos, cell, pbc = pc.catalogue_structure("bilayer_graphene", 12.0)
    assert len(sym) == 4 and abs(pos[2, 2] - pos[0, 2] - 3.35) < TOL.exact64
    # AB stacking: exactly one atom of the top layer sits above an atom of the bottom layer
    above = [np.min(np.linalg.norm((pos[:2, :2] - p[:2]), axis=1)) < TOL.geometry for p in pos[2:]]
    assert sorted(above) == [False, True]

"""DeepH folder readers and writers on the real fixtures (realdata/README.md §1–3, 6–9, 11–12).

References are independent of hambench's conversion code: the OpenMX → hambench orbital index of MoTe2 written out
by hand (README §2), h5py reads of the files, DeepH-dock's own band.h5, and physics (Hermiticity, Kramers pairs).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.linalg

from hambench.errors import InputError
from hambench.pipelines.deeph_format import (
    bloch_matrices,
    detect_layout,
    read_legacy_folder,
    read_new_folder,
    read_poscar,
    write_legacy_folder,
    write_new_folder,
)
from hambench.testing import TOL, require_realdata

# every real folder in the DeepH-dock layout (README §2, 3, 6, 7, 8, 9, 10, 11, 12)
NEW_FOLDERS = [
    ("deeph_new_MoTe2",),
    ("deeph_new_MoTe2_band_reference",),
    ("deeph_new_H2O_equivariance", "0"),
    ("pyscf_H2O_MgO", "H2O"),
    ("pyscf_H2O_MgO", "MgO"),
    ("siesta_Si", "deeph_new"),
    ("abacus_MoS2", "deeph_new"),
    ("deeph_new_error_benchmark", "dft", "138"),
    ("openmx_graphene_scfout", "deeph_dock_converted"),
    ("openmx_bismuthene_soc_scfout", "deeph_dock_converted"),
]
NEW_IDS = ["/".join(p) for p in NEW_FOLDERS]

# README §2: OpenMX → Wikipedia index of one Mo/Te atom (s3p2d2), written out by hand
MOTE2_ORBITAL_INDEX = [0, 1, 2, 4, 5, 3, 7, 8, 6, 11, 13, 9, 12, 10, 16, 18, 14, 17, 15]


def h5_arrays(path):
    with h5py.File(path) as f:
        return {k: f[k][()] for k in ("atom_pairs", "chunk_boundaries", "chunk_shapes", "entries")}


def sorted_dock(arrays):
    """A DeepH-dock file's arrays with the pairs put in (i, j, R) order, bounds recomputed in the file's dtype."""
    pairs, bounds, shapes, entries = (arrays[k] for k in ("atom_pairs", "chunk_boundaries", "chunk_shapes",
                                                          "entries"))
    order = np.lexsort((pairs[:, 2], pairs[:, 1], pairs[:, 0], pairs[:, 4], pairs[:, 3]))
    blocks = [entries[bounds[e]:bounds[e + 1]] for e in order]
    sizes = np.array([b.size for b in blocks], dtype=bounds.dtype)
    return {"atom_pairs": pairs[order], "chunk_shapes": shapes[order],
            "chunk_boundaries": np.concatenate([np.zeros(1, bounds.dtype), np.cumsum(sizes, dtype=bounds.dtype)]),
            "entries": np.concatenate(blocks)}


def assert_same_structure(a, b, pos_atol=0.0):
    for name in ("Z", "src", "dst", "shift", "H", "S"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)  # exact: tolerance 0
    assert a.species == b.species and a.spinful == b.spinful
    np.testing.assert_allclose(a.pos, b.pos, rtol=0, atol=pos_atol)  # Å
    np.testing.assert_allclose(a.cell, b.cell, rtol=0, atol=pos_atol)  # Å


# --- readers on real data ----------------------------------------------------------------------------------
def test_legacy_and_new_mote2_read_to_identical_structures():
    """The proof that the OpenMX table is right: the legacy folder (OpenMX order, 1-based) and DeepH-dock's
    translation of it read to the same edges, in the same order, with bitwise equal blocks."""
    legacy = read_legacy_folder(require_realdata("deeph_legacy_MoTe2"))
    new = read_new_folder(require_realdata("deeph_new_MoTe2"))
    assert legacy.nedges == new.nedges == 131
    # positions: lat.dat/site_positions.dat and POSCAR are separate text renderings of one geometry
    assert_same_structure(legacy, new, pos_atol=TOL.geometry_text)
    assert np.max(np.abs(legacy.H - new.H)) == 0.0 and np.max(np.abs(legacy.S - new.S)) == 0.0
    assert legacy.fermi_level == new.fermi_level == pytest.approx(-4.19348, abs=TOL.text_5_decimals)  # eV
    legacy.validate()


def test_legacy_reader_matches_hand_written_openmx_index():
    """Every legacy block, read with h5py and permuted by README's hand-written index, equals the reader's."""
    folder = require_realdata("deeph_legacy_MoTe2")
    s = read_legacy_folder(folder)
    index = s.edge_index()
    p = np.array(MOTE2_ORBITAL_INDEX)
    for which, fname in (("H", "hamiltonians.h5"), ("S", "overlaps.h5")):
        with h5py.File(folder / fname) as f:
            assert len(f) == s.nedges
            for key in f:
                r1, r2, r3, i, j = json.loads(key)
                e = index[(i - 1, j - 1, r1, r2, r3)]
                np.testing.assert_array_equal(s.block(e, which), f[key][()][np.ix_(p, p)], err_msg=key)  # exact
    np.testing.assert_array_equal(s.cell, np.loadtxt(folder / "lat.dat").T)  # columns → rows, exact
    np.testing.assert_array_equal(s.pos, np.loadtxt(folder / "site_positions.dat").T)
    assert s.pbc.all() and np.isnan(s.energy) and np.isnan(s.nelectron)
    keys = list(zip(s.src.tolist(), s.dst.tolist(), *s.shift.T.tolist()))
    assert keys == sorted(keys)  # edges in (i, j, R) order


@pytest.mark.parametrize("parts", NEW_FOLDERS, ids=NEW_IDS)
def test_every_real_dock_folder_reads_and_validates(parts):
    folder = require_realdata(*parts)
    assert detect_layout(folder) == "new"
    s = read_new_folder(folder)
    s.validate()  # shapes, finiteness, and H_ji(-R) = H_ij(R)^H to 1e-5 eV for every pair
    info = json.loads((folder / "info.json").read_text())
    assert s.natoms == info["atoms_quantity"] and s.spinful == info["spinful"]
    assert sum(2 * l + 1 for z in s.Z for l in s.species[int(z)]) == info["orbits_quantity"]
    assert s.fermi_level == info["fermi_energy_eV"]
    assert s.pbc.all() and np.isnan(s.energy)
    assert s.H.dtype == (np.complex128 if s.spinful else np.float64)
    # every block equals the file's entries, looked up independently by its atom_pairs row (exact)
    index = s.edge_index()
    for which, fname in (("H", "hamiltonian.h5"), ("S", "overlap.h5")):
        a = h5_arrays(folder / fname)
        assert len(a["atom_pairs"]) == s.nedges
        for row, (lo, hi), shape in zip(a["atom_pairs"], zip(a["chunk_boundaries"], a["chunk_boundaries"][1:]),
                                        a["chunk_shapes"]):
            e = index[(int(row[3]), int(row[4]), int(row[0]), int(row[1]), int(row[2]))]
            np.testing.assert_array_equal(s.block(e, which), a["entries"][lo:hi].reshape(shape))
    # provenance: every file read, with its sha256
    assert {p.split("/")[-1] for p, _ in s.sources} == {"POSCAR", "info.json", "hamiltonian.h5", "overlap.h5"}
    for path, digest in s.sources:
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest


def test_molecule_in_pseudo_cell_keeps_pbc_and_only_r0():
    s = read_new_folder(require_realdata("pyscf_H2O_MgO", "H2O"))
    assert s.pbc.all() and not s.shift.any() and s.nedges == 9
    np.testing.assert_array_equal(s.cell, np.diag([31.7, 30.3, 30.4]))  # Å, as in the POSCAR


# --- Bloch sums and bands ----------------------------------------------------------------------------------
def k_path_points(path):
    """Fractional k-points of a DeepH-dock K_PATH file: each segment's npts points, both ends included."""
    pts = []
    for line in path.read_text().splitlines():
        w = line.split()
        if w:
            n, a, b = int(w[0]), np.array(w[1:4], float), np.array(w[4:7], float)
            pts.append(a + np.linspace(0, 1, n)[:, None] * (b - a))
    return np.concatenate(pts)


def test_bands_from_read_structure_reproduce_dock_band_h5():
    folder = require_realdata("deeph_new_MoTe2_band_reference")
    s = read_new_folder(folder)
    k = k_path_points(folder / "K_PATH")
    with h5py.File(folder / "band.h5") as f:
        band, kref = f["band_data"][()], f["kpoints_frac_list"][()]
        ef = float(f["fermi_energy_before_shift_eV"][()])
    assert k.shape == (140, 3)
    np.testing.assert_allclose(k, kref, rtol=0, atol=TOL.text_10_digits)  # K_PATH has 10 decimals
    Hk, Sk = bloch_matrices(s, k)
    assert Hk.shape == Sk.shape == (140, 57, 57)
    assert np.abs(Hk - Hk.conj().transpose(0, 2, 1)).max() < TOL.hermitian_pairs  # eV: file pairs agree to 9e-9
    ev = np.array([scipy.linalg.eigh(h, o, eigvals_only=True) for h, o in zip(Hk, Sk)]) - ef
    assert np.abs(ev - band.T).max() < TOL.eigensolver  # eV (measured 1.3e-12)
    # single k-point form, and the legacy folder gives the same H(k) (its H is not standardised: compare S)
    h0, s0 = bloch_matrices(s, k[5])
    np.testing.assert_array_equal(h0, Hk[5])
    legacy = read_legacy_folder(require_realdata("deeph_legacy_MoTe2"))
    np.testing.assert_allclose(bloch_matrices(legacy, k[5])[1], s0, rtol=0, atol=TOL.roundoff)


def test_bloch_matrices_brute_force():
    """The sparse assembly equals a plain loop over edges with explicit slices."""
    s = read_new_folder(require_realdata("siesta_Si", "deeph_new"))
    k = np.array([0.1, -0.27, 0.33])
    n = [13, 13]
    off = np.cumsum([0] + n)
    Hk = np.zeros((26, 26), complex)
    Sk = np.zeros((26, 26), complex)
    for e in range(s.nedges):
        ph = np.exp(2j * np.pi * k @ s.shift[e])
        i, j = s.src[e], s.dst[e]
        Hk[off[i]:off[i + 1], off[j]:off[j + 1]] += ph * s.block(e)
        Sk[off[i]:off[i + 1], off[j]:off[j + 1]] += ph * s.block(e, "S")
    h, o = bloch_matrices(s, k)
    np.testing.assert_allclose(h, Hk, rtol=0, atol=TOL.exact64)  # eV
    np.testing.assert_allclose(o, Sk, rtol=0, atol=TOL.roundoff)


def test_spinful_bismuthene_bands_are_kramers_pairs():
    s = read_new_folder(require_realdata("openmx_bismuthene_soc_scfout", "deeph_dock_converted"))
    assert s.spinful and s.H.dtype == np.complex128
    for k in ([0, 0, 0], [0.5, 0, 0], [1 / 3, 1 / 3, 0], [0.1, 0.2, 0]):
        Hk, Sk = bloch_matrices(s, k)
        assert Hk.shape == (40, 40)
        assert np.abs(Hk - Hk.conj().T).max() < TOL.hermitian_pairs_double  # eV (measured 8e-10)
        e = scipy.linalg.eigh(Hk, Sk, eigvals_only=True)
        # inversion + time reversal: every band doubly degenerate (measured ≤ 3.4e-7 eV at K)
        assert np.abs(e[0::2] - e[1::2]).max() < TOL.kramers_loose, k


# --- writers: round trips -----------------------------------------------------------------------------------
@pytest.mark.parametrize("parts", NEW_FOLDERS, ids=NEW_IDS)
def test_dock_round_trip_is_byte_equal(parts, tmp_path):
    """folder → Structure → write_new_folder: the same pairs and blocks, byte for byte, once both files are
    listed in (i, j, R) order (the reader sorts; the writer keeps the Structure's order)."""
    folder = require_realdata(*parts)
    s = read_new_folder(folder)
    out = write_new_folder(s, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["POSCAR", "hamiltonian.h5", "info.json", "overlap.h5"]
    for fname in ("hamiltonian.h5", "overlap.h5"):
        a, b = sorted_dock(h5_arrays(out / fname)), sorted_dock(h5_arrays(folder / fname))
        for k in a:
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, (fname, k)
            assert a[k].tobytes() == b[k].tobytes(), (fname, k)
    got, ref = json.loads((out / "info.json").read_text()), json.loads((folder / "info.json").read_text())
    for key in ("atoms_quantity", "orbits_quantity", "spinful", "fermi_energy_eV", "elements_orbital_map"):
        assert got[key] == ref[key], key
    sym_a, cell_a, pos_a = read_poscar(out / "POSCAR")
    sym_b, cell_b, pos_b = read_poscar(folder / "POSCAR")
    assert sym_a == sym_b
    np.testing.assert_array_equal(cell_a, cell_b)  # exact: floats written with repr()
    np.testing.assert_array_equal(pos_a, pos_b)
    assert_same_structure(read_new_folder(out), s)
    assert not list(tmp_path.glob("*.partial-*"))


def test_legacy_round_trip_has_equal_blocks(tmp_path):
    folder = require_realdata("deeph_legacy_MoTe2")
    s = read_legacy_folder(folder)
    out = write_legacy_folder(s, tmp_path / "out")
    for fname in ("hamiltonians.h5", "overlaps.h5"):
        with h5py.File(out / fname) as fa, h5py.File(folder / fname) as fb:
            assert sorted(fa) == sorted(fb)
            for k in fb:
                assert fa[k].dtype == fb[k].dtype and fa[k].shape == fb[k].shape
                np.testing.assert_array_equal(fa[k][()], fb[k][()], err_msg=k)  # exact
    for fname in ("element.dat", "lat.dat", "site_positions.dat"):
        np.testing.assert_array_equal(np.loadtxt(out / fname), np.loadtxt(folder / fname), err_msg=fname)
    assert (out / "orbital_types.dat").read_text().split() == (folder / "orbital_types.dat").read_text().split()
    assert json.loads((out / "info.json").read_text()) == json.loads((folder / "info.json").read_text())
    np.testing.assert_allclose(np.loadtxt(out / "rlat.dat"), np.loadtxt(folder / "rlat.dat"), rtol=0, atol=TOL.roundoff)
    with h5py.File(folder / "hamiltonians.h5") as f:
        r_keys = {tuple(json.loads(k)[:3]) for k in f}
    assert {tuple(r) for r in np.loadtxt(out / "R_list.dat", dtype=int)} == r_keys
    assert_same_structure(read_legacy_folder(out), s)


def test_spinful_through_legacy_and_dock_writers(tmp_path):
    s = read_new_folder(require_realdata("openmx_bismuthene_soc_scfout", "deeph_dock_converted"))
    leg = write_legacy_folder(s, tmp_path / "legacy")
    with h5py.File(leg / "hamiltonians.h5") as f:
        b = f["[0, 0, 0, 1, 1]"]
        assert b.dtype == np.complex128 and b.shape == (20, 20)  # (2n_i, 2n_j), spin-outer
    with h5py.File(leg / "overlaps.h5") as f:
        assert f["[0, 0, 0, 1, 1]"].dtype == np.float64 and f["[0, 0, 0, 1, 1]"].shape == (10, 10)
    assert json.loads((leg / "info.json").read_text())["isspinful"] is True
    back = read_legacy_folder(leg)
    assert_same_structure(back, s)
    (leg / "info.json").unlink()  # without info.json, complex blocks still mean spinful
    assert read_legacy_folder(leg).spinful
    assert_same_structure(read_new_folder(write_new_folder(back, tmp_path / "dock")), s)


def blocks_by_key(s):
    return {k: (s.block(e), s.block(e, "S")) for k, e in s.edge_index().items()}


def test_atoms_of_one_element_apart_keep_their_indices(tmp_path):
    """Atoms O H H reordered to H O H: the POSCAR lists runs 'H O H' / '1 1 1' and every block keeps its pair."""
    s = read_new_folder(require_realdata("pyscf_H2O_MgO", "H2O"))
    perm = np.array([1, 0, 2])
    inv = np.argsort(perm)
    t = type(s)(id="HOH", Z=s.Z[perm], pos=s.pos[perm], cell=s.cell, pbc=s.pbc, src=inv[s.src], dst=inv[s.dst],
                shift=s.shift, H=s.H, S=s.S, species=s.species, fermi_level=s.fermi_level)
    t.validate()
    out = write_new_folder(t, tmp_path / "hoh")
    assert (out / "POSCAR").read_text().splitlines()[5:7] == ["H O H", "1 1 1"]
    back = read_new_folder(out)
    np.testing.assert_array_equal(back.Z, [1, 8, 1])
    np.testing.assert_array_equal(back.pos, t.pos)
    got, ref = blocks_by_key(back), blocks_by_key(t)
    assert got.keys() == ref.keys()
    for k in ref:
        np.testing.assert_array_equal(got[k][0], ref[k][0])  # exact
        np.testing.assert_array_equal(got[k][1], ref[k][1])


def test_molecule_without_cell_gets_a_pseudo_cell(tmp_path):
    s = read_new_folder(require_realdata("pyscf_H2O_MgO", "H2O"))
    s.cell, s.pbc = np.zeros((3, 3)), np.zeros(3, bool)
    s.validate()
    box = np.diag(np.ptp(s.pos, axis=0) + 20.0)  # Å: extent + MOLECULE_VACUUM
    for write, read in ((write_new_folder, read_new_folder), (write_legacy_folder, read_legacy_folder)):
        back = read(write(s, tmp_path / write.__name__))
        np.testing.assert_allclose(back.cell, box, rtol=0, atol=TOL.exact64)
        np.testing.assert_array_equal(back.H, s.H)
        np.testing.assert_allclose(back.pos, s.pos, rtol=0, atol=TOL.exact64)
    s.shift[0] = [1, 0, 0]
    with pytest.raises(InputError, match="singular cell"):
        write_new_folder(s, tmp_path / "bad")


def test_writers_are_atomic(tmp_path):
    s = read_new_folder(require_realdata("deeph_new_MoTe2"))
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(InputError, match="exists already"):
        write_new_folder(s, target)
    broken = read_new_folder(require_realdata("deeph_new_MoTe2"))
    broken.species = {}  # fails half-way, after POSCAR is written
    with pytest.raises(KeyError):
        write_legacy_folder(broken, tmp_path / "never")
    with pytest.raises((KeyError, ValueError)):  # the layout of no species (info.json, after POSCAR)
        write_new_folder(broken, tmp_path / "never")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_direct_poscar_reads_like_cartesian(tmp_path):
    folder = require_realdata("deeph_new_MoTe2")
    sym, cell, pos = read_poscar(folder / "POSCAR")
    frac = pos @ np.linalg.inv(cell)
    lines = (folder / "POSCAR").read_text().splitlines()
    text = lines[:7] + ["Direct"] + [" ".join(f"{x:.17g}" for x in f) for f in frac]
    (tmp_path / "POSCAR").write_text("\n".join(text) + "\n")
    sym2, cell2, pos2 = read_poscar(tmp_path / "POSCAR")
    assert sym2 == sym
    np.testing.assert_allclose(pos2, pos, rtol=0, atol=TOL.exact64)  # Å


# --- bad input -----------------------------------------------------------------------------------------------
@pytest.fixture
def legacy_copy(tmp_path):
    dst = tmp_path / "legacy"
    shutil.copytree(require_realdata("deeph_legacy_MoTe2"), dst)
    return dst


@pytest.fixture
def dock_copy(tmp_path):
    dst = tmp_path / "dock"
    shutil.copytree(require_realdata("deeph_new_MoTe2"), dst)
    return dst


def replace_dataset(path, key, value):
    with h5py.File(path, "r+") as f:
        if key in f:
            del f[key]
        f[key] = value


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def assert_input_error(fn, folder, fname, match):
    with pytest.raises(InputError, match=match) as exc:
        fn(folder)
    assert exc.value.path == str(folder / fname), exc.value


KEY = "[0, 0, 0, 1, 3]"


@pytest.mark.parametrize("case", ["missing element.dat", "truncated h5", "NaN block", "wrong shape",
                                  "unknown element", "bad key", "shells differ", "missing overlaps",
                                  "bad info.json", "pairs differ"])
def test_bad_legacy_folders(legacy_copy, case):
    d, f = legacy_copy, "hamiltonians.h5"
    if case == "missing element.dat":
        (d / "element.dat").unlink()
        f, match = "element.dat", "missing file"
    elif case == "truncated h5":
        truncate(d / f)
        match = "cannot read HDF5"
    elif case == "NaN block":
        with h5py.File(d / f) as h:
            b = h[KEY][()]
        b[3, 4] = np.nan
        replace_dataset(d / f, KEY, b)
        match = r"block '\[0, 0, 0, 1, 3\]' contains NaN/Inf"
    elif case == "wrong shape":
        replace_dataset(d / f, KEY, np.zeros((19, 18)))
        match = r"shape \(19, 18\).*\(19, 19\)"
    elif case == "unknown element":
        (d / "element.dat").write_text("52\n52\n0\n")
        f, match = "element.dat", "unknown atomic number 0"
    elif case == "bad key":
        replace_dataset(d / f, "hello", np.zeros((19, 19)))
        match = "not of the form"
    elif case == "shells differ":
        (d / "orbital_types.dat").write_text("0 0 0 1 1 2 2\n0 0 1 1 2 2 2\n0 0 0 1 1 2 2\n")
        f, match = "orbital_types.dat", "different shells"
    elif case == "missing overlaps":
        (d / "overlaps.h5").unlink()
        f, match = "overlaps.h5", "missing file"
    elif case == "bad info.json":
        (d / "info.json").write_text("{not json")
        f, match = "info.json", "not valid JSON"
    elif case == "pairs differ":
        with h5py.File(d / "overlaps.h5", "r+") as h:
            del h[KEY]
        f, match = "overlaps.h5", "differ"
    assert_input_error(read_legacy_folder, d, f, match)


@pytest.mark.parametrize("case", ["truncated h5", "NaN entry", "shapes inconsistent", "unknown symbol",
                                  "missing overlap", "atom out of range", "no orbital map", "bad info.json",
                                  "missing dataset", "complex but spinless"])
def test_bad_dock_folders(dock_copy, case):
    d, f = dock_copy, "hamiltonian.h5"
    if case == "truncated h5":
        truncate(d / f)
        match = "cannot read HDF5"
    elif case == "NaN entry":
        with h5py.File(d / f) as h:
            e = h["entries"][()]
        e[1000] = np.inf
        replace_dataset(d / f, "entries", e)
        match = "contains NaN/Inf"
    elif case == "shapes inconsistent":
        with h5py.File(d / f) as h:
            sh = h["chunk_shapes"][()]
        sh[0] = [19, 18]
        replace_dataset(d / f, "chunk_shapes", sh)
        match = "chunk_shapes do not match"
    elif case == "unknown symbol":
        text = (d / "POSCAR").read_text().splitlines()
        text[5] = text[5].replace("Mo", "Xq")
        (d / "POSCAR").write_text("\n".join(text) + "\n")
        f, match = "POSCAR", "unknown element symbol"
    elif case == "missing overlap":
        (d / "overlap.h5").unlink()
        f, match = "overlap.h5", "missing file"
    elif case == "atom out of range":
        with h5py.File(d / f) as h:
            p = h["atom_pairs"][()]
        p[0, 4] = 7
        replace_dataset(d / f, "atom_pairs", p)
        match = "atom index out of 0..2"
    elif case == "no orbital map":
        info = json.loads((d / "info.json").read_text())
        del info["elements_orbital_map"]["Mo"]
        (d / "info.json").write_text(json.dumps(info))
        f, match = "info.json", "no entry for 'Mo'"
    elif case == "bad info.json":
        (d / "info.json").write_text("[1, 2")
        f, match = "info.json", "not valid JSON"
    elif case == "missing dataset":
        with h5py.File(d / "overlap.h5", "r+") as h:
            del h["chunk_shapes"]
        f, match = "overlap.h5", "missing dataset chunk_shapes"
    elif case == "complex but spinless":
        with h5py.File(d / f) as h:
            e = h["entries"][()]
        replace_dataset(d / f, "entries", e.astype(np.complex128))
        match = "complex but the structure is not spinful"
    assert_input_error(read_new_folder, d, f, match)


def test_detect_layout(tmp_path, legacy_copy, dock_copy):
    assert detect_layout(legacy_copy) == "legacy" and detect_layout(dock_copy) == "new"
    with pytest.raises(InputError, match="no hamiltonians.h5"):
        detect_layout(tmp_path)


# --- DeepH-dock itself reads what we write (optional: deepx-dock needs Python >= 3.12) ---------------------
ROOT = Path(__file__).resolve().parents[1]
#: where `make deepx-dock` (a dependency of `make test`) builds deepx-dock 0.9.11 in a throwaway Python 3.12 venv
BUILT_DOCK = ROOT / "build" / "deepx-dock"


def python312() -> str | None:
    """A Python 3.12 interpreter on this machine (PATH or pyenv), as the Makefile looks for one."""
    import glob
    import os
    import subprocess

    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for p in ["python3.12", *sorted(glob.glob(f"{pyenv}/versions/3.12*/bin/python3.12")), "/usr/bin/python3.12"]:
        try:
            if subprocess.run([p, "-c", "import venv"], capture_output=True, timeout=30).returncode == 0:
                return p
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


@pytest.fixture(scope="module")
def dock():
    """The ``dock`` command of deepx-dock: ``$HAMBENCH_DEEPX_DOCK``, the one `make deepx-dock` built, or ``dock`` on
    PATH. Without any: skip where no Python 3.12 exists (deepx-dock needs it); fail in CI where one does."""
    import os
    import subprocess

    built = BUILT_DOCK / "bin" / "dock"
    exe = os.environ.get("HAMBENCH_DEEPX_DOCK") or (str(built) if (BUILT_DOCK / ".installed").exists() else None) \
        or shutil.which("dock")
    if not exe:
        py = python312()
        msg = f"deepx-dock is not installed: `make deepx-dock` builds it in {BUILT_DOCK} (needs Python 3.12: {py})"
        if py and os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    r = subprocess.run([exe, "--help"], capture_output=True, text=True)
    if r.returncode != 0 or "DeepH-dock" not in r.stdout:
        pytest.fail(f"{exe} is not deepx-dock's dock command")
    return exe


def run_dock(dock, *args):
    import subprocess

    r = subprocess.run([dock, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def dock_band(dock, folder, k_path_text):
    (folder / "K_PATH").write_text(k_path_text)
    run_dock(dock, "compute", "eigen", "calc-band", folder, "-p", "1")
    with h5py.File(folder / "band.h5") as f:
        return f["band_data"][()] + f["fermi_energy_before_shift_eV"][()], f["kpoints_frac_list"][()]


@pytest.mark.parametrize("parts", [("deeph_new_MoTe2_band_reference",),
                                   ("openmx_bismuthene_soc_scfout", "deeph_dock_converted")],
                         ids=["MoTe2", "bismuthene-SOC"])
def test_deepx_dock_bands_of_our_folder_equal_ours(dock, parts, tmp_path):
    s = read_new_folder(require_realdata(*parts))
    folder = write_new_folder(s, tmp_path / "dft" / "x")
    k_path = ("20 0 0 0 0.5 0 0 G M\n15 0.5 0 0 0.3333333333 0.3333333333 0 M K\n"
              "20 0.3333333333 0.3333333333 0 0 0 0 K G\n")
    bands, k = dock_band(dock, folder, k_path)
    Hk, Sk = bloch_matrices(s, k)
    ours = np.array([scipy.linalg.eigh(h, o, eigvals_only=True) for h, o in zip(Hk, Sk)])
    assert bands.shape == (ours.shape[1], len(k)) == ((40 if s.spinful else 57), 55)
    assert np.abs(ours - bands.T).max() < TOL.eigensolver  # eV (measured 1.5e-12 for MoTe2)


def test_deepx_dock_converts_our_folders_both_ways(dock, tmp_path):
    """Our legacy folders → DeepH-dock's upgrade → identical Structures; our DeepH-dock folders → its downgrade →
    legacy folders our reader turns into identical Structures (spinless MoTe2 and spinful bismuthene)."""
    ref = {"mote2": read_legacy_folder(require_realdata("deeph_legacy_MoTe2")),
           "bi": read_new_folder(require_realdata("openmx_bismuthene_soc_scfout", "deeph_dock_converted"))}
    for name, s in ref.items():
        write_legacy_folder(s, tmp_path / "legacy" / name)
        write_new_folder(s, tmp_path / "new" / name)
    run_dock(dock, "convert", "deeph", "upgrade", tmp_path / "legacy", tmp_path / "up", "-p", "1")
    run_dock(dock, "convert", "deeph", "downgrade", tmp_path / "new", tmp_path / "down", "-p", "1")
    for name, s in ref.items():
        assert_same_structure(read_new_folder(tmp_path / "up" / name), s, pos_atol=TOL.exact64)
        assert_same_structure(read_legacy_folder(tmp_path / "down" / name), s, pos_atol=TOL.exact64)

"""Orbital-order tables per DFT code, proved on real files (realdata) and PySCF's own labels and integrals."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from hambench.basis import _conventions as cv
from hambench.testing import TOL, require_realdata

CODES = sorted(cv.CODES)


# --- table sanity ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("l", range(4))
def test_shell_permutation_is_signed_bijection(code, l):
    perm, sign = cv.shell_permutation(code, l)
    assert sorted(perm.tolist()) == list(range(2 * l + 1))
    assert set(np.abs(sign).tolist()) == {1.0}


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("spinful", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_from_hambench_inverts_to_hambench(code, spinful, dtype):
    rng = np.random.default_rng(0)
    si, sj = [0, 0, 1, 1, 2, 3], [0, 1, 2]
    ni, nj = cv.n_orbitals(si, spinful), cv.n_orbitals(sj, spinful)
    X = rng.standard_normal((ni, nj)).astype(dtype)
    if spinful:
        X = X + 1j * rng.standard_normal((ni, nj)).astype(dtype)
    Y = cv.to_hambench(X, code, si, sj, spinful)
    assert Y.dtype == X.dtype
    assert np.array_equal(cv.from_hambench(Y, code, si, sj, spinful), X)  # exact: permutation and ±1
    assert np.array_equal(cv.to_hambench(cv.from_hambench(X, code, si, sj, spinful), code, si, sj, spinful), X)
    # the same multiset of |entries|, and spin blocks stay spin blocks
    assert np.array_equal(np.sort(np.abs(Y).ravel()), np.sort(np.abs(X).ravel()))
    if spinful:
        h = cv.n_orbitals(si)
        assert np.array_equal(Y[:h, :nj // 2], cv.to_hambench(X[:h, :nj // 2], code, si, sj))


def test_to_hambench_rejects_wrong_shape():
    with pytest.raises(ValueError, match="does not match"):
        cv.to_hambench(np.zeros((3, 3)), "openmx", [0, 1], [0])
    with pytest.raises(ValueError, match="unknown orbital convention"):
        cv.to_hambench(np.zeros((1, 1)), "vasp", [0], [0])


def test_tables_move_the_named_functions():
    """Native labels (FACTS.md §2) land on the hambench labels y,z,x and xy,yz,z²,xz,x²-y²."""
    ham = {1: ["y", "z", "x"], 2: ["xy", "yz", "z2", "xz", "x2-y2"]}
    native = {
        "openmx": {1: ["x", "y", "z"], 2: ["z2", "x2-y2", "xy", "xz", "yz"]},
        "pyscf": {1: ["x", "y", "z"], 2: ["xy", "yz", "z2", "xz", "x2-y2"]},
        "siesta": {1: ["y", "z", "x"], 2: ["xy", "yz", "z2", "xz", "x2-y2"]},
        # ABACUS: m = 0, +1, -1, +2, -2 with real SH m>0 ~ cos, m<0 ~ sin
        "abacus": {1: ["z", "x", "y"], 2: ["z2", "xz", "yz", "x2-y2", "xy"]},
    }
    for code, per_l in native.items():
        for l, labels in per_l.items():
            perm, _ = cv.shell_permutation(code, l)
            assert [labels[k] for k in perm] == ham[l], (code, l)


# --- OpenMX basis strings --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec,shells",
    [
        ("C6.0-s2p2d1", [0, 0, 1, 1, 2]),
        ("Mo7.0-s3p2d2", [0, 0, 0, 1, 1, 2, 2]),
        ("H6.0-s2p1", [0, 0, 1]),
        ("Bi8.0-s2p1d1", [0, 0, 1, 2]),
        ("Pt7.0-s2p2d2f1", [0, 0, 1, 1, 2, 2, 3]),
    ],
)
def test_parse_openmx_basis(spec, shells):
    assert cv.parse_openmx_basis(spec) == shells


@pytest.mark.parametrize("bad", ["C6.0", "C-s2p2", "C6.0-s2x1", "", "C6.0-s"])
def test_parse_openmx_basis_rejects(bad):
    with pytest.raises(ValueError):
        cv.parse_openmx_basis(bad)


# --- PySCF ----------------------------------------------------------------------------------------------
pyscf = pytest.importorskip("pyscf")

_PYSCF_PART = {1: {"x": "x", "y": "y", "z": "z"}, 2: {"xy": "xy", "yz": "yz", "z^2": "z2", "xz": "xz", "x2-y2": "x2-y2"}}


@pytest.mark.parametrize("basis,expect", [("def2-svp", {1: [0, 0, 1], 6: [0, 0, 0, 1, 1, 2], 7: [0, 0, 0, 1, 1, 2],
                                                        8: [0, 0, 0, 1, 1, 2], 9: [0, 0, 0, 1, 1, 2]}),
                                          ("cc-pvdz", {1: [0, 0, 1], 6: [0, 0, 0, 1, 1, 2], 7: [0, 0, 0, 1, 1, 2],
                                                       8: [0, 0, 0, 1, 1, 2], 9: [0, 0, 0, 1, 1, 2]})])
def test_pyscf_shells_and_ao_labels(basis, expect):
    """Shells from bas_angular/bas_nctr agree with PySCF's ao_labels, and the table maps labels to hambench order."""
    from pyscf import gto

    mol = gto.M(atom="C 0 0 0; N 1.4 0 0; O 0 1.4 0; F 0 0 1.4; H 1 1 1", basis=basis, spin=1, verbose=0)
    species = cv.pyscf_species_shells(mol)
    assert species == expect
    labels = mol.ao_labels(fmt=False)  # (atom, symbol, nl, m-part)
    sl = cv.pyscf_atom_slices(mol)
    assert sum(s.stop - s.start for s in sl) == mol.nao == len(labels)
    for a in range(mol.natm):
        shells = cv.shells_from_pyscf(mol, a)
        atom_labels = labels[sl[a]]
        assert len(atom_labels) == cv.n_orbitals(shells)
        perm, _ = cv.atom_permutation("pyscf", shells)
        for l, s in zip(shells, cv.shell_slices(shells)):
            names = [atom_labels[k][3] for k in perm[s]]
            assert all(re.sub(r"\d", "", atom_labels[k][2]) == "spdfg"[l] for k in range(s.start, s.stop))
            if l in _PYSCF_PART:
                assert [_PYSCF_PART[l][n] for n in names] == {1: ["y", "z", "x"], 2: ["xy", "yz", "z2", "xz", "x2-y2"]}[l]


def test_pyscf_cartesian_rejected():
    from pyscf import gto

    mol = gto.M(atom="O 0 0 0", basis="def2-svp", cart=True, spin=2, verbose=0)
    with pytest.raises(ValueError, match="Cartesian"):
        cv.pyscf_species_shells(mol)


def _read_deeph_h5(path):
    import h5py

    with h5py.File(path, "r") as f:
        return f["atom_pairs"][:], f["entries"][:], f["chunk_boundaries"][:]


def _poscar(folder):
    lines = (folder / "POSCAR").read_text().splitlines()
    symbols, counts = lines[5].split(), [int(c) for c in lines[6].split()]
    syms = [s for s, c in zip(symbols, counts) for _ in range(c)]
    pos = np.array([[float(x) for x in lines[8 + k].split()[:3]] for k in range(len(syms))])
    return syms, pos


def test_pyscf_overlap_equals_deeph_dock_pyscf_output():
    """Our own PySCF integrals, converted with the 'pyscf' table, equal DeepH-dock's PySCF-route H2O overlap
    (cc-pVDZ, d shell on O). The overlap does not depend on the functional, so this is an independent run."""
    from pyscf import gto

    folder = require_realdata("pyscf_H2O_MgO", "H2O")
    syms, pos = _poscar(folder)
    info = json.loads((folder / "info.json").read_text())
    mol = gto.M(atom=list(zip(syms, map(tuple, pos))), basis=info["basis"], unit="Angstrom", verbose=0)
    S = mol.intor("int1e_ovlp")
    species = cv.pyscf_species_shells(mol)
    assert species == {cv.symbol_to_z(s): v for s, v in info["elements_orbital_map"].items()}
    Z = [cv.symbol_to_z(s) for s in syms]
    sl = cv.pyscf_atom_slices(mol)
    pairs, entries, bounds = _read_deeph_h5(folder / "overlap.h5")
    assert np.all(pairs[:, :3] == 0) and len(pairs) == 9
    err = wrong = 0.0
    for k, (_, _, _, i, j) in enumerate(pairs):
        ref = entries[bounds[k] : bounds[k + 1]]
        err = max(err, np.max(np.abs(cv.to_hambench(S[sl[i], sl[j]], "pyscf", species[Z[i]], species[Z[j]]).ravel() - ref)))
        wrong = max(wrong, np.max(np.abs(S[sl[i], sl[j]].ravel() - ref)))
    assert err < TOL.exact64  # measured 2.8e-16
    assert wrong > 1e-2  # PySCF's native order differs: the test can fail


# --- OpenMX / DeepH legacy -------------------------------------------------------------------------------
def test_deeph_legacy_mote2_converted_equals_new_format_exactly():
    """Legacy DeepH (OpenMX order, 1-based keys '[Rx, Ry, Rz, i, j]') → hambench equals DeepH-dock's new format
    bit for bit, for H and S."""
    import h5py

    legacy = require_realdata("deeph_legacy_MoTe2")
    new = require_realdata("deeph_new_MoTe2")
    Z_legacy = [int(x) for x in (legacy / "element.dat").read_text().split()]
    shells = [[int(x) for x in line.split()] for line in (legacy / "orbital_types.dat").read_text().splitlines() if line.strip()]
    syms, _ = _poscar(new)
    assert [cv.symbol_to_z(s) for s in syms] == Z_legacy
    info = json.loads((new / "info.json").read_text())
    assert all(info["elements_orbital_map"][cv.z_to_symbol(z)] == sh for z, sh in zip(Z_legacy, shells))
    for old_name, new_name in (("hamiltonians.h5", "hamiltonian.h5"), ("overlaps.h5", "overlap.h5")):
        pairs, entries, bounds = _read_deeph_h5(new / new_name)
        with h5py.File(legacy / old_name, "r") as f:
            keys = {tuple(json.loads(k)): k for k in f.keys()}
            assert len(keys) == len(pairs)
            n_diff_native = 0
            for p, (r1, r2, r3, i, j) in enumerate(pairs):
                old = f[keys[(r1, r2, r3, i + 1, j + 1)]][:]
                conv = cv.to_hambench(old, "deeph-legacy", shells[i], shells[j])
                assert np.array_equal(conv.ravel(), entries[bounds[p] : bounds[p + 1]]), (old_name, p)
                n_diff_native += not np.array_equal(old.ravel(), entries[bounds[p] : bounds[p + 1]])
            assert n_diff_native == len(pairs)  # without the table no block matches: the test can fail


# --- ABACUS ---------------------------------------------------------------------------------------------
def _read_abacus_csr(path):
    """ABACUS `data-*R-sparse_SPIN0.csr`: {R: dense (dim, dim)} (text CSR per R, 0-based columns)."""
    lines = path.read_text().splitlines()
    dim = int(lines[1].split(":")[1])
    out, k = {}, 3
    while k < len(lines):
        if not lines[k].strip():
            k += 1
            continue
        r1, r2, r3, nnz = (int(x) for x in lines[k].split())
        k += 1
        if nnz == 0:
            continue
        vals = np.array(lines[k].split(), dtype=float)
        cols = np.array(lines[k + 1].split(), dtype=np.int64)
        rowptr = np.array(lines[k + 2].split(), dtype=np.int64)
        k += 3
        M = np.zeros((dim, dim))
        rows = np.repeat(np.arange(dim), np.diff(rowptr))
        M[rows, cols] = vals
        out[(r1, r2, r3)] = M
    return out


@pytest.fixture(scope="module")
def abacus_mos2():
    base = require_realdata("abacus_MoS2")
    stru = (base / "abacus_raw" / "STRU").read_text()
    orb_files = re.findall(r"(\w+)_gga_\w+?_(\w+)\.orb", stru)  # ('Mo', '4s2p2d1f'), ('S', '2s2p1d')
    species = {}
    for sym, spec in orb_files:
        shells = []
        for count, letter in re.findall(r"(\d+)([spdf])", spec):
            shells += ["spdf".index(letter)] * int(count)
        species[sym] = shells
    syms, _ = _poscar(base / "deeph_new")
    return base, species, syms


@pytest.mark.parametrize("which,raw,factor", [("overlap", "SR", 1.0), ("hamiltonian", "HR", cv.ABACUS_RYDBERG_EV)])
def test_abacus_mos2_raw_csr_converted_equals_deeph_dock(abacus_mos2, which, raw, factor):
    """ABACUS's own sparse output (incl. an f shell on Mo) → hambench with the 'abacus' table (order and (−1)^m
    signs) equals DeepH-dock's conversion exactly (H: × 13.605698 eV/Ry, DeepH-dock's constant)."""
    base, species, syms = abacus_mos2
    info = json.loads((base / "deeph_new" / "info.json").read_text())
    assert species == info["elements_orbital_map"]
    mats = _read_abacus_csr(base / "abacus_raw" / "OUT.ABACUS" / f"data-{raw}-sparse_SPIN0.csr")
    n = [cv.n_orbitals(species[s]) for s in syms]
    start = np.concatenate([[0], np.cumsum(n)])
    pairs, entries, bounds = _read_deeph_h5(base / "deeph_new" / f"{which}.h5")
    worst = worst_native = 0.0
    for p, (r1, r2, r3, i, j) in enumerate(pairs):
        block = mats[(r1, r2, r3)][start[i] : start[i + 1], start[j] : start[j + 1]] * factor
        ref = entries[bounds[p] : bounds[p + 1]]
        worst = max(worst, np.max(np.abs(cv.to_hambench(block, "abacus", species[syms[i]], species[syms[j]]).ravel() - ref)))
        worst_native = max(worst_native, np.max(np.abs(block.ravel() - ref)))
    assert worst == 0.0
    assert worst_native > 1e-3  # the native order differs: the test can fail


def test_pyscf_species_shells_of_periodic_gth_cell():
    """GTH bases on a PySCF periodic Cell: shells agree with DeepH-dock's MgO record (gth-szv)."""
    from pyscf.pbc import gto as pgto

    folder = require_realdata("pyscf_H2O_MgO", "MgO")
    info = json.loads((folder / "info.json").read_text())
    syms, pos = _poscar(folder)
    lines = (folder / "POSCAR").read_text().splitlines()
    cell = pgto.Cell()
    cell.atom = list(zip(syms, map(tuple, pos)))
    cell.a = [[float(x) for x in lines[k].split()] for k in (2, 3, 4)]
    cell.basis, cell.pseudo, cell.verbose = info["basis"], "gth-pade", 0
    cell.build()
    assert cv.pyscf_species_shells(cell) == {cv.symbol_to_z(s): v for s, v in info["elements_orbital_map"].items()}
    assert sum(cv.n_orbitals(cv.shells_from_pyscf(cell, a)) for a in range(cell.natm)) == cell.nao == info["orbits_quantity"]

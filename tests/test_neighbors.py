"""The C++ cell-list neighbour list against a brute-force numpy reference, vesin, and real structures."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hambench.basis._neighbors import edge_vectors, neighbor_list
from hambench.pipelines.deeph_format import read_poscar
from hambench.testing import require_realdata


def brute_force(pos, cell, pbc, rc):
    """All (i, j, R) with |r_j + R·cell − r_i| < rc by looping over every shift the plane spacings allow."""
    pos = np.asarray(pos, float)
    cell = np.asarray(cell, float)
    ranges = []
    diam = max((np.linalg.norm(a - b) for a in pos for b in pos), default=0.0)
    per = [k for k in range(3) if pbc[k]]
    for k in range(3):
        if not pbc[k]:
            ranges.append([0])
            continue
        # distance of a_k from the span of the other periodic vectors bounds |R_k|
        others = np.array([cell[m] for m in per if m != k]).reshape(-1, 3)
        if len(others):
            q, _ = np.linalg.qr(others.T)
            dist = np.linalg.norm(cell[k] - q @ (q.T @ cell[k]))
        else:
            dist = np.linalg.norm(cell[k])
        n = int(np.ceil((rc + diam) / dist)) + 1
        ranges.append(range(-n, n + 1))
    out = set()
    for R in itertools.product(*ranges):
        d = pos[None, :, :] + np.array(R, float) @ cell - pos[:, None, :]
        i, j = np.nonzero(np.linalg.norm(d, axis=-1) < rc)
        out |= {(int(a), int(b), *R) for a, b in zip(i, j)}
    return out


def as_set(src, dst, shift):
    return {(int(i), int(j), *map(int, r)) for i, j, r in zip(src, dst, shift)}


def check(pos, cell, pbc, rc):
    src, dst, shift = neighbor_list(pos, rc, cell, pbc)
    got = as_set(src, dst, shift)
    assert len(got) == len(src), "duplicate pairs"
    assert got == brute_force(pos, cell if cell is not None else np.eye(3), pbc, rc)
    keys = list(zip(src, dst, map(tuple, shift)))
    assert keys == sorted(keys), "not sorted by (src, dst, R)"
    assert all((j, i, *(-np.array(r))) in got for i, j, *r in got)  # (i,j,R) ⇔ (j,i,−R)
    d = np.linalg.norm(edge_vectors(pos, cell, src, dst, shift), axis=1)
    assert np.all(d < rc)
    return got


def random_cell(rng, skew):
    cell = np.diag(rng.uniform(3, 6, 3))
    cell[np.triu_indices(3, 1)] = rng.uniform(-skew, skew, 3)
    return cell


@pytest.mark.parametrize("seed", range(4))
def test_molecules(seed):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-4, 4, (25, 3))
    got = check(pos, None, (False,) * 3, 2.5)
    assert all((i, i, 0, 0, 0) in got for i in range(25))  # self pairs included


@pytest.mark.parametrize("seed,skew", [(0, 0.0), (1, 1.5), (2, 3.0), (3, 4.5)])
def test_triclinic_3d_cells(seed, skew):
    rng = np.random.default_rng(seed)
    cell = random_cell(rng, skew)
    pos = rng.uniform(0, 1, (12, 3)) @ cell
    check(pos, cell, (True,) * 3, 3.0)


def test_cutoff_much_larger_than_cell_and_single_atom():
    cell = np.array([[2.0, 0, 0], [0.7, 1.8, 0], [0.3, 0.2, 2.2]])
    got = check(np.zeros((1, 3)), cell, (True,) * 3, 6.5)
    assert len(got) > 100
    rng = np.random.default_rng(5)
    check(rng.uniform(0, 2, (3, 3)), cell, (True,) * 3, 5.0)


def test_atoms_outside_the_home_cell():
    rng = np.random.default_rng(7)
    cell = random_cell(rng, 1.0)
    pos = rng.uniform(-3, 4, (10, 3)) @ cell  # fractional coordinates far outside [0, 1)
    check(pos, cell, (True,) * 3, 3.5)


@pytest.mark.parametrize("third", ["vacuum", "zero", "garbage"])
def test_slabs_2d(third):
    rng = np.random.default_rng(11)
    cell = random_cell(rng, 1.2)
    pos = rng.uniform(0, 1, (10, 3)) @ cell
    pos[:, 2] = rng.uniform(0, 3, 10)
    if third == "zero":
        cell[2] = 0.0
    elif third == "garbage":
        cell[2] = [0.5, 0.3, 0.01]
    check(pos, cell, (True, True, False), 3.2)


def test_wire_1d():
    rng = np.random.default_rng(12)
    cell = np.array([[2.5, 0.3, 0.0], [0, 0, 0], [0, 0, 0]])
    pos = rng.uniform(-2, 2, (8, 3))
    check(pos, cell, (True, False, False), 3.0)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 8),
    rc=st.floats(0.5, 5.0),
    pbc=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_property_random(seed, n, rc, pbc):
    rng = np.random.default_rng(seed)
    cell = random_cell(rng, 2.0)
    pos = rng.uniform(-0.5, 1.5, (n, 3)) @ cell
    check(pos, cell, pbc, rc)


@pytest.mark.parametrize("folder", ["deeph_new_MoTe2", "siesta_Si/deeph_new", "openmx_graphene_scfout/deeph_dock_converted"])
def test_real_structures(folder):
    symbols, cell, pos = read_poscar(require_realdata(folder, "POSCAR"))
    got = check(pos, cell, (True, True, True), 5.0)
    assert len(got) >= len(symbols)


def test_dft_pair_list_lies_within_the_basis_reach():
    """Every atom pair of the OpenMX graphene run (basis C6.0: PAO radius 6.0 Bohr) lies within twice the PAO
    radius, and our list at that cutoff contains every pair of the file."""
    import h5py

    from hambench.basis._conventions import BOHR_ANGSTROM

    folder = require_realdata("openmx_graphene_scfout", "deeph_dock_converted")
    symbols, cell, pos = read_poscar(folder / "POSCAR")
    with h5py.File(folder / "hamiltonian.h5") as f:
        pairs = f["atom_pairs"][()]
    dft = {(int(i), int(j), int(a), int(b), int(c)) for a, b, c, i, j in pairs}
    reach = 2 * 6.0 * BOHR_ANGSTROM
    src, dst, shift = neighbor_list(pos, reach + 1e-6, cell, True)
    ours = as_set(src, dst, shift)
    assert dft <= ours
    d = np.linalg.norm(edge_vectors(pos, cell, *np.array(sorted(dft)).T[:2], np.array(sorted(dft))[:, 2:]), axis=1)
    assert d.max() < reach


def test_matches_vesin():
    vesin = pytest.importorskip("vesin", reason="vesin (optional peer, `pip install hambench[peers]`)")
    rng = np.random.default_rng(3)
    cell = random_cell(rng, 1.0) * 2
    pos = rng.uniform(0, 1, (200, 3)) @ cell
    rc = 3.0
    i, j, S = vesin.NeighborList(cutoff=rc, full_list=True).compute(pos, cell, True, quantities="ijS")
    ref = as_set(i, j, S) | {(a, a, 0, 0, 0) for a in range(200)}
    assert as_set(*neighbor_list(pos, rc, cell, True)) == ref


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        neighbor_list(np.zeros((3, 2)), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        neighbor_list(np.full((2, 3), np.nan), 1.0)
    with pytest.raises(ValueError, match="cutoff"):
        neighbor_list(np.zeros((2, 3)), -1.0)
    with pytest.raises(ValueError, match="needs a cell"):
        neighbor_list(np.zeros((2, 3)), 1.0, None, True)
    with pytest.raises(ValueError):
        neighbor_list(np.zeros((2, 3)), 1.0, np.zeros((3, 3)), True)  # singular periodic cell

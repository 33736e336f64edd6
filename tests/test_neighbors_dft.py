"""The neighbour list reproduces the exact atom-pair sets of real DFT runs, and the cutoff is strict.

OpenMX keeps a block (i, j, R) when the two PAO spheres overlap: |r_j + R − r_i| < rc_i + rc_j, with the PAO
radius in Bohr written in the basis name (``Mo7.0-s3p2d2``). SIESTA keeps it when two orbitals overlap
(< 2 rc_orb) or both overlap one Kleinman-Bylander projector sphere of some atom k (each < rc_orb + rc_KB),
with rc_orb from ``Si.ORB_INDX`` and rc_KB from ``SIESTA.log``. The radii are read from the DFT inputs here,
and the pair sets compared exactly (set equality, no tolerance).
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import pytest

from hambench.basis._conventions import BOHR_ANGSTROM
from hambench.basis._neighbors import edge_vectors, neighbor_list
from hambench.pipelines.deeph_format import read_poscar
from hambench.testing import require_realdata


def as_set(src, dst, shift) -> set[tuple[int, ...]]:
    return {(int(i), int(j), *map(int, r)) for i, j, r in zip(src, dst, shift)}


def file_pairs(h5path) -> set[tuple[int, ...]]:
    import h5py

    with h5py.File(h5path) as f:
        rows = f["atom_pairs"][()]  # (N, 5) rows [R1, R2, R3, i, j], 0-based atoms
    return {(int(i), int(j), int(a), int(b), int(c)) for a, b, c, i, j in rows}


def openmx_pao_radius_bohr(openmx_in) -> dict[str, float]:
    """Species → PAO cutoff radius (Bohr) from the ``<Definition.of.Atomic.Species`` block."""
    text = openmx_in.read_text()
    block = text.split("<Definition.of.Atomic.Species", 1)[1].split("Definition.of.Atomic.Species>", 1)[0]
    radii = {}
    for line in block.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#"):
            radii[parts[0]] = float(re.match(r"[A-Za-z]+([0-9.]+)-", parts[1]).group(1))
    return radii


def openmx_pairs(pos, cell, symbols, radius_bohr) -> set[tuple[int, ...]]:
    """Pairs with |d| < rc_i + rc_j: the largest sum as cutoff, then the per-species-pair sum."""
    rc = {s: radius_bohr[s] * BOHR_ANGSTROM for s in set(symbols)}
    src, dst, shift = neighbor_list(pos, 2 * max(rc.values()), cell, True)
    d = np.linalg.norm(edge_vectors(pos, cell, src, dst, shift), axis=1)
    reach = np.array([rc[symbols[i]] + rc[symbols[j]] for i, j in zip(src, dst)])
    keep = d < reach
    return as_set(src[keep], dst[keep], shift[keep])


@pytest.mark.parametrize(
    "folder,run",
    [
        ("deeph_new_MoTe2", "openmx_MoTe2_run"),
        ("openmx_graphene_scfout/deeph_dock_converted", "openmx_graphene_scfout"),
    ],
    ids=["MoTe2", "graphene"],
)
def test_openmx_pair_set_is_the_pao_overlap_set(folder, run):
    data = require_realdata(folder)
    symbols, cell, pos = read_poscar(data / "POSCAR")
    radii = openmx_pao_radius_bohr(require_realdata(run, "openmx_in.dat"))
    ours = openmx_pairs(pos, cell, symbols, radii)
    assert ours == file_pairs(data / "hamiltonian.h5")
    # the set is not trivially everything: a 20 % larger cutoff finds more pairs
    bigger = neighbor_list(pos, 2.4 * max(radii.values()) * BOHR_ANGSTROM, cell, True)
    assert len(bigger[0]) > len(ours)


def test_siesta_pair_set_is_orbital_overlap_or_a_shared_kb_projector():
    raw = require_realdata("siesta_Si", "siesta_raw")
    data = require_realdata("siesta_Si", "deeph_new")
    symbols, cell, pos = read_poscar(data / "POSCAR")
    assert set(symbols) == {"Si"}
    # rc column of Si.ORB_INDX (Bohr) for the unit-cell orbitals; KB projector radii from the log (Bohr)
    rows = [l.split() for l in (raw / "Si.ORB_INDX").read_text().splitlines()[3:]]
    rc_orb = max(float(r[11]) for r in rows if len(r) >= 16)
    log = (raw / "SIESTA.log").read_text()
    kb = log.split("Kleinman-Bylander projectors:", 1)[1].split("Total number of", 1)[0]
    rc_kb = max(float(x) for x in re.findall(r"rc=\s*([0-9.]+)", kb))
    assert 6.0 < rc_orb < 8.0 and 1.0 < rc_kb < 3.0, (rc_orb, rc_kb)

    overlap = as_set(*neighbor_list(pos, 2 * rc_orb * BOHR_ANGSTROM, cell, True))
    # (i, j, R) share a projector on atom k at image T: k−i at shift T, k−j at shift T−R, both < rc_orb + rc_kb
    src, dst, shift = neighbor_list(pos, (rc_orb + rc_kb) * BOHR_ANGSTROM, cell, True)
    near = defaultdict(list)  # k → [(i, T)] with |r_k + T − r_i| < rc_orb + rc_kb
    for i, k, t in zip(src, dst, shift):
        near[int(k)].append((int(i), t))
    via_kb = {(i, j, *map(int, ti - tj)) for members in near.values() for i, ti in members for j, tj in members}
    dft = file_pairs(data / "hamiltonian.h5")
    assert overlap < dft  # orbital overlap alone misses the projector-mediated blocks
    assert overlap | via_kb == dft


def dyadic_lattice_cases():
    """Cells and positions exactly representable in binary, so every true distance is computed exactly."""
    rng = np.random.default_rng(2024)
    cases = []
    for a in (2.5, 3.0, 1.75, 5.125):
        for _ in range(20):
            cell = np.diag([a, a, a])
            cell[1, 0] = rng.integers(-2, 3) * a / 2  # sheared yet still dyadic
            pos = rng.integers(-64, 64, (4, 3)) / 8.0  # many atoms outside the home cell
            cases.append((cell, pos, a))
    return cases


def test_cutoff_is_strict_at_exact_lattice_distances():
    """With the cutoff exactly equal to a lattice distance, images at that distance are excluded, and every
    pair returned satisfies |r_j + R·cell − r_i| < cutoff evaluated on the positions as given."""
    n_boundary = 0
    for cell, pos, rc in dyadic_lattice_cases():
        src, dst, shift = neighbor_list(pos, rc, cell, True)
        d2 = np.einsum("ij,ij->i", v := edge_vectors(pos, cell, src, dst, shift), v)
        assert np.all(d2 < rc * rc), "a pair at or beyond the cutoff was returned"
        # brute force over the images that can reach (cells here are at most 2:1 sheared)
        n = int(np.ceil((rc + np.ptp(pos, axis=0).max()) / (rc / 2))) + 2
        grid = np.stack(np.meshgrid(*[np.arange(-n, n + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
        t = grid @ cell  # (S, 3)
        dv = pos[None, :, None, :] + t[None, None] - pos[:, None, None, :]  # (i, j, S, 3)
        dd = np.einsum("ijsk,ijsk->ijs", dv, dv)
        i, j, s = np.nonzero(dd < rc * rc)
        assert as_set(src, dst, shift) == {(int(a), int(b), *map(int, grid[c])) for a, b, c in zip(i, j, s)}
        n_boundary += int(np.count_nonzero(dd == rc * rc))
    assert n_boundary > 0  # the cases do put images exactly on the cutoff sphere


def test_dense_cluster_beside_far_atoms_matches_brute_force():
    """A molecule with atoms far away (a cluster plus outliers 1e3–1e8 Å off): the cell list squeezes the
    empty columns between them, and the result equals the O(N²) list exactly."""
    rng = np.random.default_rng(8)
    for scale in (1e3, 1e5, 1e8):
        far = [rng.uniform(-1, 1, (3, 3)) * scale, rng.uniform(0, 3, (6, 3)) + scale]
        pos = np.vstack([rng.uniform(0, 6, (40, 3)), *far])
        src, dst, shift = neighbor_list(pos, 2.0)
        d = np.linalg.norm(pos[None, :] - pos[:, None], axis=-1)
        i, j = np.nonzero(d < 2.0)
        assert as_set(src, dst, shift) == {(int(a), int(b), 0, 0, 0) for a, b in zip(i, j)}


def test_coordinates_beyond_double_precision_are_refused():
    with pytest.raises(ValueError, match="too large for cutoff"):
        neighbor_list(np.array([[0.0, 0, 0], [1e17, 0, 0]]), 2.0)
    with pytest.raises(ValueError, match="cells away"):
        neighbor_list(np.array([[0.0, 0, 0], [0, 0, 3e9]]), 1e3 * 1.5, np.eye(3) * 1e-3 * 2, True)

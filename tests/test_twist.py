"""``hambench structures twist``: commensurate twisted bilayers, checked against the lattice they must be.

Independent checks: the known angles of twisted bilayer graphene ((1, 2): 21.787°, (31, 32): 1.050°); the atom count
2 · n_cell · (m² + mn + n²); no two atoms closer than the layer's own nearest-neighbour distance (the C++ neighbour
list); every atom of layer 2, rotated back by −θ, on a lattice site of the monolayer (integer coordinates in its
primitive basis); every atom of layer 1 on a site of the unrotated monolayer.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hambench.app.testing import cli, one_line_error
from hambench.basis import neighbor_list
from hambench.pipelines.twist import twist_angle, twisted_bilayer
from hambench.testing import TOL, require_realdata

GRAPHENE = ("openmx_graphene_scfout", "deeph_dock_converted", "POSCAR")
MOTE2 = ("deeph_new_MoTe2", "POSCAR")


def _layer(*parts):
    import ase.io

    return ase.io.read(require_realdata(*parts))


def _build(atoms, m, n, **kw):
    return twisted_bilayer(np.asarray(atoms.cell), atoms.get_scaled_positions(wrap=True)[:, :2],
                           atoms.positions[:, 2], m, n, **kw)


def _on_lattice(xy, atoms, R=None) -> float:
    """Largest distance (fractional, in-plane) of the points ``xy`` (rotated back by R) from a site of the layer."""
    cell2 = np.asarray(atoms.cell)[:2, :2]
    if R is not None:
        xy = xy @ R  # R.T^-1 = R: rotate back
    frac = xy @ np.linalg.inv(cell2)
    sites = atoms.get_scaled_positions(wrap=True)[:, :2]
    d = frac[:, None, :] - sites[None, :, :]
    return float(np.min(np.abs(d - np.round(d)).max(axis=2), axis=1).max())


@pytest.mark.parametrize("m, n, angle", [(1, 2, 21.7867893), (31, 32, 1.0501208), (2, 3, 13.1735511)],
                         ids=["1-2", "31-32", "2-3"])
def test_known_angles(m, n, angle):
    # cos θ = (m² + 4mn + n²) / (2(m² + mn + n²)), evaluated by hand to 7 decimals
    assert abs(twist_angle(m, n) - angle) < 1e-6
    assert abs(twist_angle(m, n) - twist_angle(n, m)) < TOL.exact64


@pytest.mark.parametrize("parts, m, n", [(GRAPHENE, 1, 2), (GRAPHENE, 4, 5), (MOTE2, 1, 2), (MOTE2, 3, 4)],
                         ids=["graphene-1-2", "graphene-4-5", "mote2-1-2", "mote2-3-4"])
def test_bilayer_is_two_rotated_copies_of_the_layer(parts, m, n):
    atoms = _layer(*parts)
    cell, pos, sp, layer, angle = _build(atoms, m, n, distance=3.35)
    N = m * m + m * n + n * n
    assert len(pos) == 2 * len(atoms) * N and np.sum(layer == 0) == np.sum(layer == 1)
    assert abs(angle - twist_angle(m, n)) < TOL.geometry  # the layer's vectors are POSCAR text (10 digits)
    # each species as often as in the layer, per layer
    for k in range(len(atoms)):
        assert np.sum((sp == k) & (layer == 0)) == N and np.sum((sp == k) & (layer == 1)) == N
    # the supercell's area is N primitive areas
    area = abs(np.linalg.det(cell[:2, :2]))
    assert abs(area - N * abs(np.linalg.det(np.asarray(atoms.cell)[:2, :2]))) < TOL.exact64 * area * 1e3
    th = math.radians(angle)
    # layer 1: unrotated sites; layer 2: sites of the layer rotated by ±θ (whichever sense maps it)
    xy0, xy1 = pos[layer == 0, :2], pos[layer == 1, :2]
    assert _on_lattice(xy0, atoms) < TOL.geometry_text
    R = [np.array([[math.cos(s * th), -math.sin(s * th)], [math.sin(s * th), math.cos(s * th)]]) for s in (1, -1)]
    assert min(_on_lattice(xy1, atoms, r) for r in R) < TOL.geometry_text
    # no two atoms closer than the layer's own shortest distance
    pairs = neighbor_list(pos, 0.9 * _shortest(atoms), cell, (True, True, False))
    assert int(np.sum((pairs[0] != pairs[1]) | np.any(pairs[2] != 0, axis=1))) == 0
    # the layers are apart by the requested gap
    z0, z1 = pos[layer == 0, 2], pos[layer == 1, 2]
    assert abs((z1.min() - z0.max()) - 3.35) < TOL.exact64 * 100


def _shortest(atoms) -> float:
    """The layer's shortest interatomic distance (brute force over the neighbouring in-plane cells)."""
    pos = atoms.positions
    cell = np.asarray(atoms.cell)
    best = min(np.linalg.norm(cell[0]), np.linalg.norm(cell[1]))
    for i in range(len(pos)):
        for j in range(len(pos)):
            for a in (-1, 0, 1):
                for b in (-1, 0, 1):
                    if i == j and a == b == 0:
                        continue
                    best = min(best, float(np.linalg.norm(pos[j] + a * cell[0] + b * cell[1] - pos[i])))
    return best


def test_cli_writes_ten_thousand_atoms(tmp_path):
    """(31, 32) twisted bilayer graphene through the CLI: 11,908 atoms at 1.0501°, read back by ASE."""
    import ase.io

    out = tmp_path / "tblg.vasp"
    r = cli("structures", "twist", require_realdata(*GRAPHENE), "--m", 31, "--n", 32, "-o", out)
    assert r.exit_code == 0, r.output
    assert "11,908 atoms" in r.output and "1.0501°" in r.output
    a = ase.io.read(out)
    assert len(a) == 11908 and set(a.get_chemical_symbols()) == {"C"}
    pairs = neighbor_list(a.positions, 1.3, np.asarray(a.cell), (True, True, False))
    assert int(np.sum((pairs[0] != pairs[1]) | np.any(pairs[2] != 0, axis=1))) == 0  # C-C is 1.42 Å


def test_refusals(tmp_path):
    square = tmp_path / "square.vasp"
    square.write_text("square\n1.0\n3 0 0\n0 3 0\n0 0 20\nC\n1\nCartesian\n0 0 10\n")
    bulk = tmp_path / "bulk.vasp"
    bulk.write_text("bulk\n1.0\n2.46 0 0\n-1.23 2.1304224933 0\n0 0 3.35\nC\n2\nCartesian\n0 1.42028 0\n1.23 0.71014 0\n")
    tilted = tmp_path / "tilted.vasp"
    tilted.write_text("tilted\n1.0\n2.46 0 0.5\n-1.23 2.1304224933 0\n0 0 15\nC\n1\nCartesian\n0 0 7\n")
    g = require_realdata(*GRAPHENE)
    cases = [
        ((g, "--m", 2, "--n", 2), "is no twist"),
        ((g, "--m", 0, "--n", 1), "positive integers"),
        ((g, "--m", 2, "--n", 4), "share the factor 2"),
        ((square, "--m", 1, "--n", 2), "not a hexagonal 2-D lattice"),
        ((bulk, "--m", 1, "--n", 2), "a bulk cell is not a layer"),
        ((tilted, "--m", 1, "--n", 2), "not a 2-D cell"),
        ((tmp_path / "missing.vasp", "--m", 1, "--n", 2), "no such file"),
        ((g, "--m", 1, "--n", 2, "--distance", -1), "--distance"),
        ((g, "--m", 1, "--n", 2, "--vacuum", 0), "--vacuum"),
        ((g, "--m", 1000, "--n", 1001), "3,003,001 cells per layer"),
        ((tmp_path / "mol.xyz", "--m", 1, "--n", 2), "has no 3-D cell"),
    ]
    (tmp_path / "mol.xyz").write_text("2\nmolecule\nH 0 0 0\nH 0.74 0 0\n")
    for args, message in cases:
        out = tmp_path / "out.vasp"
        line = one_line_error(cli("structures", "twist", *args, "-o", out))
        assert message in line, (args, line)
        assert not out.exists()
    for out, message in ((tmp_path / "mol.xyz" / "out.vasp", "is a file, not a folder"),
                         (tmp_path / "out.nosuchformat", "ASE cannot write the format")):
        assert message in one_line_error(cli("structures", "twist", g, "--m", 1, "--n", 2, "-o", out))
        assert not out.exists()
    (tmp_path / "exists.vasp").write_text("x")
    assert "exists already" in one_line_error(cli("structures", "twist", g, "--m", 1, "--n", 2, "-o",
                                                  tmp_path / "exists.vasp"))

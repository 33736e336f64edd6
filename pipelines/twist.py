"""Commensurate twisted bilayers of a 2-D hexagonal crystal (``hambench structures twist``).

Two copies of a monolayer, the second rotated about z by the commensurate angle of the integer pair (m, n):
with the in-plane lattice written in its 60° basis (b1, b2), layer 1 takes the supercell

    T1 = m b1 + n b2,      T2 = −n b1 + (m + n) b2      (T2 = T1 rotated by 60°)

and layer 2 the supercell U1 = n b1 + m b2, U2 = −m b1 + (m + n) b2 of its own lattice, rotated by the angle θ
that maps U1 onto T1 (so U2 lands on T2): cos θ = (m² + 4mn + n²) / (2 (m² + mn + n²)). Each layer holds
m² + mn + n² primitive cells, so the bilayer has 2 · n_cell · (m² + mn + n²) atoms: (31, 32) gives graphene's
1.05° (11,908 atoms), (23, 24) MoTe2 at 1.41° (9,942 atoms). Layer 2 sits ``distance`` Å above the top atom of
layer 1; the cell's third vector keeps ``vacuum`` Å of empty space along z (default: the input's).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hambench.atomic import atomic_path, check_output
from hambench.errors import InputError

__all__ = ["twist_angle", "hexagonal_basis", "twisted_bilayer", "read_layer", "write_twist"]

#: default gap (Å) between the top atom of layer 1 and the bottom atom of layer 2 (graphite's interlayer spacing)
DEFAULT_DISTANCE = 3.35
_TOL = 1e-6  # relative tolerance of the lattice checks (POSCAR text carries ~10 digits)
#: least empty space (Å) along z of a layer file: less is a bulk cell (graphite's c/2 is 3.35 Å)
MIN_VACUUM = 6.0


def twist_angle(m: int, n: int) -> float:
    """The commensurate twist angle (degrees) of the pair (m, n) of a hexagonal lattice.

    >>> round(twist_angle(1, 2), 4)
    21.7868
    """
    cos = (m * m + 4 * m * n + n * n) / (2.0 * (m * m + m * n + n * n))
    return math.degrees(math.acos(min(1.0, cos)))


#: largest number of primitive cells per layer (m² + mn + n²) built: 10⁵ cells are ~10⁶ atoms for a 3-atom layer
MAX_CELLS = 100_000


def _check_pair(m: int, n: int) -> None:
    if m < 1 or n < 1:
        raise InputError("--m/--n", f"the twist pair must be positive integers, got ({m}, {n})")
    if m * m + m * n + n * n > MAX_CELLS:
        raise InputError("--m/--n", f"({m}, {n}) needs {m * m + m * n + n * n:,} cells per layer; at most "
                                    f"{MAX_CELLS:,} are built (twist angle {twist_angle(m, n):.3g}°)")
    if m == n:
        raise InputError("--m/--n", f"({m}, {n}) is no twist (angle 0); take two different integers, e.g. ({m}, {m + 1})")
    if math.gcd(m, n) != 1:
        g = math.gcd(m, n)
        raise InputError("--m/--n", f"({m}, {n}) share the factor {g}: the same angle with a {g * g}x larger cell; "
                                    f"use ({m // g}, {n // g})")


def hexagonal_basis(cell: np.ndarray, where) -> tuple[np.ndarray, np.ndarray]:
    """The 60° basis (b1, b2) of a 2-D hexagonal cell whose vectors 1 and 2 lie in the xy plane and 3 along z;
    :class:`InputError` otherwise (naming what is wrong)."""
    cell = np.asarray(cell, dtype=np.float64)
    if cell.shape != (3, 3) or not np.isfinite(cell).all() or abs(np.linalg.det(cell)) < 1e-9:
        raise InputError(where, "has no 3-D cell (a layer file needs its lattice vectors: POSCAR, CIF, extxyz)")
    a1, a2, c = cell
    if abs(a1[2]) > _TOL * np.linalg.norm(a1) or abs(a2[2]) > _TOL * np.linalg.norm(a2) or \
            np.linalg.norm(c[:2]) > _TOL * np.linalg.norm(c):
        raise InputError(where, "not a 2-D cell: lattice vectors 1 and 2 must lie in the xy plane and vector 3 "
                                "along z")
    la, lb = np.linalg.norm(a1), np.linalg.norm(a2)
    cos = float(a1 @ a2) / (la * lb)
    if abs(la - lb) > _TOL * la or min(abs(cos - 0.5), abs(cos + 0.5)) > _TOL:
        raise InputError(where, f"not a hexagonal 2-D lattice (|a1| = {la:.6g} Å, |a2| = {lb:.6g} Å, angle "
                                f"{math.degrees(math.acos(max(-1.0, min(1.0, cos)))):.4g}°): twists are built for "
                                "hexagonal layers (graphene, TMDs, hBN)")
    return a1.copy(), (a2 if cos > 0 else a1 + a2).copy()


def _layer_supercell(frac2: np.ndarray, z: np.ndarray, b1, b2, p: int, q: int):
    """Cartesian in-plane positions (k, 2), z (k,) and species index (k,) of the supercell
    S1 = p b1 + q b2, S2 = −q b1 + (p + q) b2 of one layer (primitive fractional positions ``frac2`` in (b1, b2))."""
    B = np.stack([b1[:2], b2[:2]])                             # rows: b1, b2 (in-plane)
    S = np.array([[p, q], [-q, p + q]], dtype=np.float64)     # supercell vectors in the b basis (rows)
    Sinv = np.linalg.inv(S)
    span = 2 * (p + q) + 1  # the supercell covers i in [-q, p], j in [0, p + 2q] of the b basis
    i, j = np.meshgrid(np.arange(-span, span + 1), np.arange(-span, span + 1), indexing="ij")
    shifts = np.stack([i.ravel(), j.ravel()], axis=1).astype(np.float64)     # lattice points (b basis)
    f = (shifts[:, None, :] + frac2[None, :, :]).reshape(-1, 2)             # every image of every atom
    s = f @ Sinv                                                            # fractional in the supercell
    keep = np.all((s > -1e-9) & (s < 1 - 1e-9), axis=1)
    which = np.tile(np.arange(frac2.shape[0]), shifts.shape[0])[keep]
    xy = np.mod(s[keep], 1.0) @ (S @ B)
    return xy, z[which], which


def twisted_bilayer(cell, frac, z, m: int, n: int, distance: float = DEFAULT_DISTANCE,
                    vacuum: float | None = None, where=None):
    """The twisted bilayer of one hexagonal layer: ``(cell (3, 3) Å, positions (N, 3) Å, species index (N,),
    layer (N,) 0/1, angle °)``. ``frac`` are the in-plane fractional coordinates (k, 2) of the layer's atoms in
    its cell, ``z`` their heights (Å)."""
    _check_pair(m, n)
    if not (distance > 0 and math.isfinite(distance)):
        raise InputError("--distance", f"must be a positive length in Å, got {distance}")
    b1, b2 = hexagonal_basis(cell, where)
    cell = np.asarray(cell, dtype=np.float64)
    # primitive fractional coordinates in the 60° basis (b1, b2)
    xy = np.asarray(frac, np.float64) @ cell[:2, :2]
    frac2 = np.mod(xy @ np.linalg.inv(np.stack([b1[:2], b2[:2]])), 1.0)
    z = np.asarray(z, np.float64)
    thick = float(z.max() - z.min())
    empty = float(np.linalg.norm(cell[2])) - thick
    if empty < MIN_VACUUM:
        raise InputError(where, f"only {empty:.3g} Å of empty space along z: a bulk cell is not a layer (a 2-D layer "
                                f"file has ≥ {MIN_VACUUM:g} Å of vacuum)")
    if vacuum is None:
        vacuum = empty
    if not (vacuum > 0 and math.isfinite(vacuum)):
        raise InputError("--vacuum", f"must be a positive length in Å, got {vacuum}")
    xy1, z1, sp1 = _layer_supercell(frac2, z, b1, b2, m, n)
    xy2, z2, sp2 = _layer_supercell(frac2, z, b1, b2, n, m)
    T1 = m * b1[:2] + n * b2[:2]
    U1 = n * b1[:2] + m * b2[:2]
    theta = math.atan2(U1[0] * T1[1] - U1[1] * T1[0], U1 @ T1)
    R = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    Tcell = np.array([[m, n], [-n, m + n]], dtype=np.float64) @ np.stack([b1[:2], b2[:2]])
    xy2 = np.mod((xy2 @ R.T) @ np.linalg.inv(Tcell), 1.0) @ Tcell            # wrapped into layer 1's cell
    z0 = vacuum / 2 - z.min()
    zz = np.concatenate([z1 + z0, z2 + z0 + thick + distance])
    pos = np.concatenate([np.column_stack([xy1, zz[:len(z1)]]), np.column_stack([xy2, zz[len(z1):]])])
    out_cell = np.zeros((3, 3))
    out_cell[:2, :2] = Tcell
    out_cell[2, 2] = 2 * thick + distance + vacuum
    layer = np.repeat([0, 1], [len(z1), len(z2)])
    return out_cell, pos, np.concatenate([sp1, sp2]), layer, math.degrees(abs(theta))


def read_layer(path):
    """An ASE ``Atoms`` of the monolayer file ``path`` (POSCAR, CIF, extxyz…), or one line saying why not."""
    import ase.io

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        return ase.io.read(path)
    except Exception as e:  # noqa: BLE001 - any reader failure is the file's problem
        raise InputError(path, f"not a structure ASE can read ({type(e).__name__}: {str(e).splitlines()[0][:120]})") \
            from None


def write_twist(layer_file, m: int, n: int, out, distance: float = DEFAULT_DISTANCE,
                vacuum: float | None = None, overwrite: bool = False) -> str:
    """``hambench structures twist``: read the layer, build the bilayer, write it (format from ``out``'s name;
    atomically); the summary line."""
    import ase
    import ase.io
    from ase.io.formats import filetype, ioformats

    out = check_output(out, folder=False, what="the structure file to write")
    if out.exists() and not overwrite:
        raise InputError(out, "exists already; choose another path or pass --overwrite")
    try:
        fmt = filetype(out, read=False)
    except Exception:  # noqa: BLE001 - no format from the name: VASP, as POSCAR files are named
        fmt = "vasp"
    if fmt not in ioformats or not ioformats[fmt].can_write:
        raise InputError(out, f"-o: ASE cannot write the format {fmt!r} its name asks for (.vasp, .cif, .xyz work)")
    atoms = read_layer(layer_file)
    frac = atoms.get_scaled_positions(wrap=True)[:, :2]
    cell, pos, sp, layer, angle = twisted_bilayer(np.asarray(atoms.cell), frac, atoms.positions[:, 2], m, n,
                                                  distance, vacuum, where=layer_file)
    bilayer = ase.Atoms(numbers=atoms.numbers[sp], positions=pos, cell=cell, pbc=[True, True, False])
    bilayer.set_tags(layer)
    order = np.lexsort((layer, bilayer.numbers))  # grouped by element (a POSCAR's species blocks)
    bilayer = bilayer[order]
    with atomic_path(out) as tmp:
        ase.io.write(tmp, bilayer, format=fmt)
    a = float(np.linalg.norm(cell[0]))
    return (f"wrote {out}: {len(bilayer):,} atoms (2 layers x {len(atoms)} x {m * m + m * n + n * n} cells), "
            f"twist {angle:.4f}° for (m, n) = ({m}, {n}), supercell {a:.2f} Å")

"""Neighbour lists of molecules, chains, slabs and crystals: every pair (i, j, R) closer than a cutoff.

A pair is ``(i, j, R)`` with ``R`` an integer lattice vector (zero along non-periodic directions) and
``|r_j + R @ cell - r_i| < cutoff`` (strict). The self pair ``(i, i, 0)`` is included, so the list holds
exactly the blocks a Hamiltonian with that cutoff has. The list is symmetric: ``(i, j, R)`` present ⇔
``(j, i, -R)`` present. The work is done by ``hambench._core.neighbor_list`` (C++, a cell list, O(N) for a
fixed density and cutoff); this module checks and coerces the input and owns the documentation.
"""

from __future__ import annotations

from numbers import Real

import numpy as np

from hambench import _core

__all__ = ["neighbor_list", "edge_vectors"]


def _as_pbc(pbc) -> tuple[bool, bool, bool]:
    arr = np.asarray(pbc)
    if arr.dtype != np.bool_:
        raise ValueError(f"pbc must be a bool or three bools, got {pbc!r}")
    if arr.ndim == 0:
        return (bool(arr),) * 3
    if arr.shape != (3,):
        raise ValueError(f"pbc must be a bool or three bools, got shape {arr.shape}")
    return tuple(bool(x) for x in arr)  # type: ignore[return-value]


def _as_cell(cell, pbc: tuple[bool, bool, bool]) -> np.ndarray:
    if cell is None:
        if any(pbc):
            raise ValueError(f"periodic boundaries pbc={pbc} needs a cell, got cell=None")
        return np.zeros((3, 3))
    cell = np.array(cell, dtype=np.float64)  # a copy: rows are zeroed below
    if cell.shape != (3, 3):
        raise ValueError(f"cell must have shape (3, 3) with lattice vectors as rows, got shape {cell.shape}")
    for k in range(3):
        if not pbc[k]:
            # A non-periodic row is never a shift: drop it, so a garbage or NaN vacuum vector cannot matter.
            cell[k] = 0.0
        elif not np.all(np.isfinite(cell[k])):
            raise ValueError(f"lattice vector {k} (periodic) is not finite: {cell[k]}")
    per = cell[list(np.flatnonzero(pbc))]
    if len(per):
        # relative rank test on the periodic rows: a singular cell would need infinitely many images
        scale = np.linalg.norm(per, axis=1)
        if np.any(scale == 0.0):
            raise ValueError(f"periodic lattice vector {int(np.flatnonzero(pbc)[np.argmin(scale)])} is zero")
        s = np.linalg.svd(per / scale[:, None], compute_uv=False)
        if s[-1] < 1e-8:
            raise ValueError(
                f"the periodic lattice vectors are (nearly) linearly dependent: cell rows {np.flatnonzero(pbc)} "
                f"have smallest normalised singular value {s[-1]:.3g}"
            )
    return cell


def neighbor_list(positions, cutoff: float, cell=None, pbc=False):
    """All pairs of atoms closer than ``cutoff``, across periodic boundaries.

    Parameters
    ----------
    positions : array_like, shape (N, 3)
        Cartesian positions (Å, or any length unit shared with ``cell`` and ``cutoff``). Atoms may lie
        outside the home cell; the shifts always refer to the positions as given.
    cutoff : float
        Strictly positive; pairs at distance exactly ``cutoff`` are excluded.
    cell : array_like, shape (3, 3), optional
        Lattice vectors as rows. Rows along non-periodic directions are ignored (a slab's vacuum vector may be
        zero or anything). ``None`` for a molecule.
    pbc : bool or sequence of three bools
        Periodicity along each lattice vector; one bool applies to all three.

    Returns
    -------
    src, dst : ndarray, shape (E,), int32
        Atom indices i and j.
    shift : ndarray, shape (E, 3), int32
        Lattice vector R in units of the cell rows, so that the pair vector is
        ``positions[dst] + shift @ cell - positions[src]`` (see :func:`edge_vectors`).
        Rows are sorted by (src, dst, R); the self pairs (i, i, 0) are included.

    Raises
    ------
    ValueError
        Wrong shapes, NaN or infinite positions, a non-positive cutoff, a missing, zero or singular periodic
        cell.

    Example
    -------
    >>> import numpy as np
    >>> src, dst, shift = neighbor_list(np.zeros((1, 3)), 1.5, np.eye(3), True)
    >>> len(src)  # the atom itself, 6 nearest and 12 second-nearest images of a simple cubic lattice
    19
    """
    pbc3 = _as_pbc(pbc)
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got shape {pos.shape}")
    bad = ~np.isfinite(pos).all(axis=1)
    if bad.any():
        raise ValueError(f"positions of atoms {np.flatnonzero(bad)[:10].tolist()} are NaN or infinite")
    if isinstance(cutoff, (bool, np.bool_)) or not isinstance(cutoff, (Real, np.floating, np.integer)):
        raise ValueError(f"cutoff must be a positive number, got {cutoff!r}")
    if not (np.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff must be a positive finite number, got {cutoff!r}")
    cell3 = _as_cell(cell, pbc3)
    return _core.neighbor_list(pos, cell3, pbc3, float(cutoff))


def edge_vectors(positions, cell, src, dst, shift) -> np.ndarray:
    """Pair vectors ``r_dst + shift @ cell - r_src`` of a neighbour list, shape (E, 3), float64.

    ``cell`` may be ``None`` (a molecule: every shift must then be zero).

    Example
    -------
    >>> import numpy as np
    >>> pos = np.array([[0.0, 0, 0], [0.0, 0, 1.0]])
    >>> edge_vectors(pos, None, *neighbor_list(pos, 1.5))[1]
    array([0., 0., 1.])
    """
    pos = np.asarray(positions, dtype=np.float64)
    shift = np.asarray(shift)
    vec = pos[np.asarray(dst)] - pos[np.asarray(src)]
    if cell is None:
        if shift.size and np.any(shift):
            raise ValueError("non-zero shifts need a cell, got cell=None")
        return vec
    return vec + shift.astype(np.float64) @ np.asarray(cell, dtype=np.float64)

"""Structures without DFT for ``hambench predict --structures``: read a structure file, refuse degenerate
geometries, and give each frame the edges the checkpoint's training data would have had.

A model evaluated on a geometry unlike any it learned writes numbers that look like Hamiltonians and mean
nothing, so these are refused before anything is written (one :class:`~hambench.errors.InputError` line naming
the file and the frame):

* NaN or infinite coordinates or cell vectors;
* two atoms closer than :data:`MIN_DISTANCE` (0.1 Å; covalent bonds are ≥ 0.74 Å), periodic images included;
* an atom with no other atom (or periodic image) within the cut-offs the checkpoint learned: an isolated atom's
  blocks are predicted from no environment at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hambench.basis import edge_vectors, neighbor_list
from hambench.basis._conventions import z_to_symbol
from hambench.errors import InputError
from hambench.store import Structure

__all__ = ["MIN_DISTANCE", "read_structures", "edges_for", "check_geometry", "frame_structures"]

#: atoms closer than this (Å) are refused: a typo or a merged structure, not chemistry
MIN_DISTANCE = 0.1


def read_structures(path) -> list:
    """Every frame of an ASE-readable file (POSCAR, CIF, xyz, …) as ``ase.Atoms``."""
    import ase.io

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such structure file")
    try:
        frames = ase.io.read(str(path), index=":")
    except Exception as e:
        raise InputError(path, f"ASE cannot read it: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}") from None
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise InputError(path, "no structures in the file")
    return frames


def _cut_matrix(Z: np.ndarray, cutoffs: dict[str, float], where) -> np.ndarray:
    """cmat[Zi, Zj]: the cut-off of each element pair present (see :func:`edges_for`)."""
    table = {tuple(int(x) for x in k.split("-")): float(v) for k, v in cutoffs.items()}
    if not table:
        raise InputError(where, "the checkpoint records no edge cut-offs")
    rmax = max(table.values())

    def cut(a, b):
        if (a, b) in table:
            return table[(a, b)]
        if (b, a) in table:
            return table[(b, a)]
        if (a, a) in table and (b, b) in table:
            return 0.5 * (table[(a, a)] + table[(b, b)])
        return rmax

    elems = np.unique(Z)
    cmat = np.zeros((int(elems.max()) + 1,) * 2)
    for a in elems:
        for b in elems:
            cmat[a, b] = cut(int(a), int(b))
    return cmat


def edges_for(pos, cell, pbc, Z, cutoffs: dict[str, float], where, slack: float = 1e-6):
    """Edges (src, dst, shift) of one structure with the per-element-pair cut-offs a checkpoint learned.

    A pair (i, j, R) is kept when |r_ij| ≤ cutoffs["Zi-Zj"] + slack (the longest such edge of the training
    data). A pair type never seen in training takes the mean of its two like-pairs' cut-offs when both are
    known, else the largest cut-off (stated in the checkpoint's edge_cutoffs).
    """
    Z = np.asarray(Z, dtype=np.int64)
    cmat = _cut_matrix(Z, cutoffs, where)
    pbc = np.asarray(pbc, dtype=bool)
    c = np.asarray(cell, dtype=np.float64) if pbc.any() else None
    try:
        src, dst, shift = neighbor_list(pos, float(cmat.max()) + 2 * slack, c, pbc)
    except ValueError as e:
        raise InputError(where, str(e)) from None
    vec = edge_vectors(pos, c, src, dst, shift)
    length = np.linalg.norm(vec, axis=1)
    keep = length <= cmat[Z[src], Z[dst]] + slack
    return src[keep], dst[keep], shift[keep]


def _atom(Z, i: int) -> str:
    return f"atom {i} ({z_to_symbol(int(Z[i]))})"


def check_geometry(pos, cell, pbc, Z, cutoffs: dict[str, float], where) -> None:
    """Refuse a degenerate geometry (the module docstring): non-finite coordinates or cell, atoms closer than
    :data:`MIN_DISTANCE`, an atom with no neighbour within the checkpoint's cut-offs."""
    pos, cell, pbc = np.asarray(pos, np.float64), np.asarray(cell, np.float64), np.asarray(pbc, bool)
    Z = np.asarray(Z, np.int64)
    bad = np.flatnonzero(~np.isfinite(pos).all(axis=1))
    if bad.size:
        raise InputError(where, f"{_atom(Z, int(bad[0]))} has a NaN or infinite coordinate")
    if not np.isfinite(cell).all():
        raise InputError(where, "the cell has a NaN or infinite vector")
    c = cell if pbc.any() else None
    try:
        src, dst, shift = neighbor_list(pos, MIN_DISTANCE, c, pbc)
    except ValueError as e:  # a zero or singular periodic cell
        raise InputError(where, str(e)) from None
    close = np.flatnonzero((src != dst) | np.any(shift != 0, axis=1))
    if close.size:
        e = int(close[0])
        d = float(np.linalg.norm(edge_vectors(pos, c, src[e:e + 1], dst[e:e + 1], shift[e:e + 1])))
        other = _atom(Z, int(dst[e])) + (" (a periodic image)" if np.any(shift[e] != 0) else "")
        raise InputError(where, f"{_atom(Z, int(src[e]))} and {other} are {d:.3g} Å apart, closer than "
                                f"{MIN_DISTANCE} Å")
    src, dst, shift = edges_for(pos, cell, pbc, Z, cutoffs, where)
    has = np.zeros(len(Z), bool)
    has[src[(src != dst) | np.any(shift != 0, axis=1)]] = True
    lonely = np.flatnonzero(~has)
    if lonely.size:
        i = int(lonely[0])
        reach = float(_cut_matrix(Z, cutoffs, where)[Z[i], Z].max())
        raise InputError(where, f"{_atom(Z, i)} has no neighbour within the model's cut-offs (up to {reach:.3g} Å): "
                                "an isolated atom is outside anything the model learned")


def frame_structures(frames, layout, ck, src_file: Path, sha: str) -> list:
    """The frames of a structure file as :class:`Structure` records without blocks, with the edges the checkpoint's
    training data would have had (``predict_structures``); degenerate geometries refused (:func:`check_geometry`)."""
    structs = []
    for k, at in enumerate(frames):
        Z = at.get_atomic_numbers().astype(np.int64)
        where = f"{src_file} frame {k}"
        if Z.size == 0:
            raise InputError(where, "has no atoms")
        unknown = sorted({int(z) for z in Z} - set(layout.species))
        if unknown:
            raise InputError(src_file, f"frame {k}: element(s) Z={unknown} unknown to the model (it knows "
                                       f"Z={list(layout.elements)})")
        pbc = np.asarray(at.get_pbc(), bool)
        cell = np.asarray(at.get_cell().array, np.float64) if pbc.any() else np.zeros((3, 3))
        pos = np.asarray(at.get_positions(), np.float64)
        check_geometry(pos, cell, pbc, Z, ck["edge_cutoffs"], where)
        if ck.get("edge_rule") == "complete" and not pbc.any():
            n = len(Z)  # every ordered pair, self pairs included, row-major (as the molecule stores hold them)
            src, dst = (x.astype(np.int32) for x in np.divmod(np.arange(n * n), n))
            shift = np.zeros((n * n, 3), np.int32)
        else:
            src, dst, shift = edges_for(pos, cell, pbc, Z, ck["edge_cutoffs"], where)
        sid = src_file.stem if len(frames) == 1 else f"{src_file.stem}/{k}"
        structs.append(Structure(id=sid, Z=Z, pos=pos, cell=cell, pbc=pbc, src=src, dst=dst, shift=shift,
                                 H=np.zeros(0), S=None, species={int(z): layout.species[int(z)] for z in set(Z)},
                                 spinful=layout.spinful, sources=[(str(src_file.resolve()), sha)]))
    if ck["store"]["kind"] == "molecule" and any(s.pbc.any() for s in structs):
        raise InputError(src_file, "periodic structures given to a model trained on molecules")
    return structs

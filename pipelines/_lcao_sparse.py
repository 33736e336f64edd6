"""Shared step of the sparse-matrix readers (ABACUS CSR, SIESTA HSX): matrix elements → edge blocks.

Both codes store, per lattice vector R, a sparse matrix over the orbitals of the unit cell. The readers turn their
file into flat arrays (one entry per stored element: value, row orbital, column orbital, R index) and this module
groups them into (i, j, R) edge blocks in hambench order with vectorised numpy — no Python loop over elements.

Orbital bookkeeping: ``orbital_map(Z, species, code)`` gives, for every native orbital of the cell, its atom, its
hambench position inside the atom and its sign (inverse of :func:`hambench.basis._conventions.atom_permutation`, so the
same table as ``to_hambench``); orbital counts and block offsets come from the cell's
:class:`~hambench.basis._layout.BasisLayout`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from hambench.basis import _conventions as cv
from hambench.basis._layout import layout_of
from hambench.errors import InputError

__all__ = ["EDGE_CHOICES", "edges_option", "check_edges", "read_bytes", "element_shells", "OrbitalMap", "orbital_map",
           "edge_keys", "select_edges", "decode_edges", "scatter_blocks", "stack_spin_parts"]

#: the ``edges`` option of the sparse-matrix sources: pairs with a (non-zero) overlap, or every pair with H elements
EDGE_CHOICES = ("overlap", "hamiltonian")


def edges_option(default: str, text: str):
    """The ``edges`` field of a source's Options: ``default``, one-line CLI help ``text``, :data:`EDGE_CHOICES`."""
    return dataclasses.field(default=default, metadata={"help": text, "choices": EDGE_CHOICES})


def check_edges(edges: str) -> None:
    """Refuse an ``edges`` value that is not one of :data:`EDGE_CHOICES` (InputError, one line)."""
    if edges not in EDGE_CHOICES:
        raise InputError(None, f"edges must be {' or '.join(repr(c) for c in EDGE_CHOICES)}, got {edges!r}")


def read_bytes(path) -> bytes:
    """The bytes of a matrix file; a missing or unreadable file is an :class:`InputError`."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "missing file") from None
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or e})") from None


def element_shells(Z, atom_shells, where) -> dict[int, list[int]]:
    """``{Z: shells}`` from each atom's shells; an element with two different bases is refused (InputError)."""
    species: dict[int, list[int]] = {}
    for z, sh in zip((int(z) for z in Z), atom_shells):
        if species.setdefault(z, sh) != sh:
            raise InputError(where, f"element {cv.z_to_symbol(z)} appears with different bases ({species[z]} vs "
                                    f"{sh}); hambench needs one basis per element")
    return species


class OrbitalMap:
    """Per native orbital: ``atom``, hambench ``pos`` inside the atom, ``sign``; per atom: ``norb``; the cell's
    :class:`~hambench.basis._layout.BasisLayout` (``layout``) and atomic numbers ``Z``."""

    def __init__(self, atom, pos, sign, Z, layout):
        self.atom, self.pos, self.sign, self.Z, self.layout = atom, pos, sign, Z, layout
        self.norb = layout.norb(Z, spinful=False) if Z.size else np.zeros(0, np.int64)

    @property
    def n(self) -> int:
        return int(self.atom.size)

    def blocks(self, src, dst, spinful: bool):
        """``(n_i, n_j, ptr)`` of edges (src, dst): spinless orbital counts of their atoms and the offsets of their
        flat blocks ((2n_i, 2n_j) when ``spinful``), from the layout."""
        zi, zj = self.Z[src], self.Z[dst]
        ni, nj = self.layout.block_sizes(zi, zj, spinful=False)
        return ni, nj, self.layout.block_ptr(zi, zj, spinful=spinful)

    def scatter(self, edges, src, dst, keys, rows, cols, values, spins=None) -> np.ndarray:
        """Flat blocks of the sorted edge keys ``edges`` (atoms ``src``, ``dst``) from elements at native orbitals
        ``rows``, ``cols`` (:func:`scatter_blocks`): real (n_i, n_j) blocks, or with ``spins`` = (row spin, column
        spin) per element complex spin-outer (2n_i, 2n_j) blocks."""
        spinful = spins is not None
        row_spin, col_spin = spins if spinful else (None, None)
        flat, _ = scatter_blocks(edges, keys, values, self.pos[rows], self.pos[cols], self.sign[rows],
                                 self.sign[cols], self.blocks(src, dst, spinful), spinful,
                                 np.complex128 if spinful else np.float64, row_spin, col_spin)
        return flat


def orbital_map(Z, species: dict[int, list[int]], code: str) -> OrbitalMap:
    """Orbital map of a cell whose orbitals are atom-major, each atom in ``code``'s native order."""
    Z = np.asarray(Z, np.int64).reshape(-1)
    atoms, pos, sign = [], [], []
    for a, z in enumerate(Z):
        perm, sgn = cv.atom_permutation(code, species[int(z)])
        n = perm.size
        inv = np.empty(n, np.int64)
        inv[perm] = np.arange(n)  # new[k] = s_k old[perm_k]  →  old o goes to k = inv[o] with sign s_k
        sg = np.empty(n)
        sg[perm] = sgn
        atoms.append(np.full(n, a, np.int64))
        pos.append(inv)
        sign.append(sg)
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
    return OrbitalMap(cat(atoms, np.int64), cat(pos, np.int64), cat(sign, np.float64), Z, layout_of(species))


def edge_keys(row_atom, col_atom, r_rank, natoms: int, nr: int) -> np.ndarray:
    """One int64 key per element, ordering (i, j, R) lexicographically when R ranks are lexicographic."""
    return (row_atom.astype(np.int64) * natoms + col_atom) * nr + r_rank


def select_edges(keys: np.ndarray) -> np.ndarray:
    """Sorted unique edge keys of the elements (non-empty blocks)."""
    return np.unique(keys)


def decode_edges(edges: np.ndarray, natoms: int, r_sorted: np.ndarray):
    """``(src, dst, shift)`` of sorted edge keys."""
    nr = len(r_sorted)
    rr = edges % nr
    ij = edges // nr
    return (ij // natoms).astype(np.int32), (ij % natoms).astype(np.int32), r_sorted[rr].astype(np.int32)


def scatter_blocks(edges, keys, values, row_pos, col_pos, row_sig, col_sig, blocks, spinful: bool, dtype,
                   row_spin=None, col_spin=None):
    """Flat blocks of ``edges`` filled from the elements; elements whose key is not an edge are dropped.

    ``row_pos``/``col_pos`` are hambench positions inside the atoms, ``row_sig``/``col_sig`` the (−1)^m signs,
    ``blocks`` = ``(n_i, n_j, ptr)`` of the edges (:meth:`OrbitalMap.blocks` with the same ``spinful``): spinless
    orbital counts of each edge's atoms and the block offsets. Spinful blocks are (2n_i, 2n_j), spin-outer;
    ``row_spin``/``col_spin`` (0 = ↑, 1 = ↓) place each element. Returns ``(flat, dropped)``.
    """
    ni, nj, ptr = blocks
    e = np.searchsorted(edges, keys)
    e_clip = np.minimum(e, len(edges) - 1)
    keep = (e < len(edges)) & (edges[e_clip] == keys) if len(edges) else np.zeros(keys.shape, bool)
    dropped = int(keys.size - np.count_nonzero(keep))
    if dropped:
        e, values, row_pos, col_pos = e[keep], values[keep], row_pos[keep], col_pos[keep]
        row_sig, col_sig = row_sig[keep], col_sig[keep]
        if spinful:
            row_spin, col_spin = row_spin[keep], col_spin[keep]
    ncols = (2 if spinful else 1) * nj[e]
    r = row_pos + (row_spin * ni[e] if spinful else 0)
    c = col_pos + (col_spin * nj[e] if spinful else 0)
    flat = np.zeros(int(ptr[-1]), dtype=dtype)
    flat[ptr[e] + r * ncols + c] = values * (row_sig * col_sig)
    return flat, dropped


def stack_spin_parts(parts) -> tuple:
    """One set of element arrays from spin parts ``(keys, rows, cols, values, row_spin, col_spin)`` (each spin 0 =
    ↑ or 1 = ↓, one number for the part or one per element): ``(keys, rows, cols, complex values, (row_spin,
    col_spin))`` for :meth:`OrbitalMap.scatter`."""
    cat = np.concatenate
    keys, rows, cols = (cat([p[i] for p in parts]) for i in range(3))
    values = cat([np.asarray(p[3], np.complex128) for p in parts])
    spins = tuple(cat([np.broadcast_to(np.asarray(p[i], np.int64), np.shape(p[0])) for p in parts]) for i in (4, 5))
    return keys, rows, cols, values, spins

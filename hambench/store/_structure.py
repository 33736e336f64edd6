"""The in-memory record every ``prepare`` source produces and the store writer consumes.

A :class:`Structure` holds one molecule or periodic cell, already in hambench conventions (eV, Å,
hambench orbital order, spin-outer spinful blocks). Sources convert at their boundary and build one of these;
they never touch the store. ``validate`` checks everything a later step will trust.

Edges (i, j, R): H_ij(R) = <φ_i(r) | H | φ_j(r − R·cell)>; blocks are stored flat, one (n_i, n_j) block per edge
in row-major order ((2n_i, 2n_j) complex when spinful; the overlap stays real (n_i, n_j)).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hambench import _core
from hambench.basis._conventions import z_to_symbol
from hambench.basis._layout import BasisLayout, block_sizes, layout_of
from hambench.errors import InputError

__all__ = ["Structure", "file_sha256", "resolved_path", "partner_index", "HERMITIAN_TOL"]

#: default tolerance (eV) of the pairing check H_ij(R) = H_ji(−R)ᵀ (DeepH files: ~1e-8; OpenMX SOC: ~1e-9)
HERMITIAN_TOL = 1e-5


def partner_index(src, dst, shift, natoms: int | None = None) -> np.ndarray:
    """For each edge (i, j, R) of one edge list, the index of its partner (j, i, −R); −1 where it is missing.

    The one numpy implementation (:meth:`Structure.partner_index`; ``models.common.partner_edges`` is its torch
    twin for batches on the device, tested against it). ``natoms`` bounds the atom indices (default: their max
    + 1). With duplicate edges a partner is the first of its equals."""
    src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
    shift = np.asarray(shift, np.int64).reshape(-1, 3)
    E = src.size
    if E == 0:
        return np.zeros(0, np.int64)
    span = int(np.abs(shift).max(initial=0))
    K = 2 * span + 1
    N = max(int(natoms) if natoms is not None else int(max(src.max(), dst.max())) + 1, 1)
    if N * N * K**3 < 2**62:
        def encode(a, b, r):
            r = r + span
            return (((a * N + b) * K + r[:, 0]) * K + r[:, 1]) * K + r[:, 2]

        key = encode(src, dst, shift)
        want = encode(dst, src, -shift)
        order = np.argsort(key, kind="stable")
        pos = np.searchsorted(key, want, sorter=order)
        pos = np.minimum(pos, E - 1)
        found = key[order[pos]] == want
        return np.where(found, order[pos], -1).astype(np.int64)
    index: dict = {}
    for e, (i, j, r) in enumerate(zip(src.tolist(), dst.tolist(), shift.tolist())):
        index.setdefault((i, j, *r), e)
    return np.array([index.get((j, i, *(-x for x in r)), -1)
                     for i, j, r in zip(src.tolist(), dst.tolist(), shift.tolist())], dtype=np.int64)


def file_sha256(path) -> str:
    """sha256 of a file, read in 1 MiB chunks: the provenance recorded in ``Structure.sources``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolved_path(path, folders: dict | None = None) -> str:
    """A source path as a store records it: absolute and resolved (independent of the working directory).

    ``folders``: a cache of resolved folders for many files of few folders (one ``lstat`` per file instead of
    one per path component); the result is the same as ``os.path.realpath``.
    """
    if path in (None, ""):
        return str(path)
    p = os.fspath(path)
    if folders is None or ".." in Path(p).parts:
        return os.path.realpath(p)
    p = os.path.abspath(p)
    if os.path.islink(p):
        return os.path.realpath(p)
    head, tail = os.path.split(p)
    real = folders.get(head)
    if real is None:
        real = folders[head] = os.path.realpath(head)
    return os.path.join(real, tail)


@dataclass
class Structure:
    """One molecule or periodic cell in hambench conventions.

    Attributes
    ----------
    id : str, unique within a store (e.g. the source folder's name)
    Z : (N,) int, atomic numbers
    pos : (N, 3) float64, Cartesian positions, Å
    cell : (3, 3) float64, rows are lattice vectors, Å (zeros for a molecule)
    pbc : (3,) bool
    src, dst : (E,) int32, local atom indices of each edge;  shift : (E, 3) int32, lattice vector R
    H : flat float64 (complex128 when spinful), eV, hambench order, edge blocks concatenated
    S : flat float64, overlap, same edges (real (n_i, n_j) even when spinful); may be None
    species : {Z: [l of each shell]} for every element present
    spinful : SOC / non-collinear blocks (2n_i, 2n_j), spin-outer
    energy, nelectron, fermi_level : eV, electrons, eV (NaN when unknown)
    rotation : (3, 3) rotation applied to a parent (identity for originals);  parent : local index or -1
    sources : [(path, sha256)] raw files this structure came from
    splits : {split name: subset} this structure belongs to, e.g. {"qh9-stable-id": "train"}
    """

    id: str
    Z: np.ndarray
    pos: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    shift: np.ndarray
    H: np.ndarray
    S: np.ndarray | None
    species: dict[int, list[int]]
    spinful: bool = False
    energy: float = float("nan")
    nelectron: float = float("nan")
    fermi_level: float = float("nan")
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    parent: int = -1
    sources: list = field(default_factory=list)
    splits: dict = field(default_factory=dict)

    def __post_init__(self):
        self.Z = np.asarray(self.Z, dtype=np.int16).reshape(-1)
        self.pos = np.asarray(self.pos, dtype=np.float64).reshape(-1, 3)
        self.cell = np.asarray(self.cell, dtype=np.float64).reshape(3, 3)
        self.pbc = np.asarray(self.pbc, dtype=bool).reshape(3)
        self.src = np.asarray(self.src, dtype=np.int32).reshape(-1)
        self.dst = np.asarray(self.dst, dtype=np.int32).reshape(-1)
        self.shift = np.asarray(self.shift, dtype=np.int32).reshape(-1, 3)
        self.H = np.asarray(self.H, dtype=np.complex128 if self.spinful else np.float64).reshape(-1)
        if self.S is not None:
            self.S = np.asarray(self.S, dtype=np.float64).reshape(-1)
        self.species = {int(z): [int(l) for l in shells] for z, shells in self.species.items()}
        self.rotation = np.asarray(self.rotation, dtype=np.float64).reshape(3, 3)

    def __repr__(self) -> str:
        """One line: id, formula, atoms, edges, H elements, kind (``print(structure)`` shows no arrays)."""
        counts: dict[int, int] = {}
        for z in self.Z.tolist():
            counts[z] = counts.get(z, 0) + 1
        formula = "".join(f"{z_to_symbol(z)}{n if n > 1 else ''}" for z, n in sorted(counts.items()))
        kind = "periodic" if self.pbc.any() else "molecule"
        extra = [f"parent={self.parent}"] if self.parent >= 0 else []
        extra += ["spinful"] if self.spinful else []
        extra += [] if self.S is not None else ["no S"]
        return (f"Structure(id={self.id!r}, {formula or 'no atoms'}, {self.natoms} atom{'s' * (self.natoms != 1)}, "
                f"{self.nedges} edge{'s' * (self.nedges != 1)}, {self.H.size} H elements, {kind}"
                + "".join(f", {x}" for x in extra) + ")")

    __str__ = __repr__

    # --- sizes -------------------------------------------------------------------------------------------
    @property
    def natoms(self) -> int:
        return len(self.Z)

    @property
    def nedges(self) -> int:
        return len(self.src)

    def block_shapes(self, spinful: bool | None = None):
        """(n_i, n_j) of each edge block; ``spinful=False`` gives the overlap's shapes."""
        sp = self.spinful if spinful is None else spinful
        return block_sizes(self.Z[self.src], self.Z[self.dst], self.species, sp)

    def block_ptr(self, spinful: bool | None = None) -> np.ndarray:
        sp = self.spinful if spinful is None else spinful
        return layout_of(self.species, sp).block_ptr(self.Z[self.src], self.Z[self.dst])

    @property
    def layout(self) -> BasisLayout:
        """The basis layout of this structure's species (cached)."""
        return layout_of(self.species, self.spinful)

    def block(self, e: int, which: str = "H") -> np.ndarray:
        """The block of edge ``e`` as a 2-D array (a view)."""
        spin = self.spinful if which == "H" else False
        ptr = self.block_ptr(spin)
        ni, nj = self.block_shapes(spin)
        arr = self.H if which == "H" else self.S
        return arr[ptr[e] : ptr[e + 1]].reshape(ni[e], nj[e])

    def edge_index(self) -> dict[tuple[int, int, int, int, int], int]:
        """Map (i, j, R1, R2, R3) → edge number."""
        return {(int(i), int(j), *map(int, r)): e for e, (i, j, r) in enumerate(zip(self.src, self.dst, self.shift))}

    # --- checks ------------------------------------------------------------------------------------------
    def validate(self, path=None, hermitian_tol: float = HERMITIAN_TOL, check_pairs: bool = True) -> None:
        """Raise :class:`InputError` (naming ``path``) if anything a later step trusts is off.

        Checks shapes, finite values, known elements with shells, edge indices, block sizes against the
        shells, and — when ``check_pairs`` — that every edge (i, j, R) has its partner (j, i, −R) with
        H_ji(−R) = H_ij(R)ᴴ (and S likewise) to ``hermitian_tol``.
        """
        where = path if path is not None else self.id
        n = self.natoms
        if self.pos.shape != (n, 3):
            raise InputError(where, f"positions have shape {self.pos.shape}, expected ({n}, 3)")
        if not np.all(np.isfinite(self.pos)) or not np.all(np.isfinite(self.cell)):
            raise InputError(where, "positions or cell contain NaN/Inf")
        for z in np.unique(self.Z):
            if z < 1 or z > 118:
                raise InputError(where, f"unknown atomic number {z}")
            if int(z) not in self.species:
                raise InputError(where, f"no orbital shells known for element {z_to_symbol(z)}")
        if not (len(self.dst) == self.nedges and self.shift.shape == (self.nedges, 3)):
            raise InputError(where, "edge arrays have inconsistent lengths")
        if self.nedges and (self.src.min() < 0 or self.dst.min() < 0 or max(self.src.max(), self.dst.max()) >= n):
            raise InputError(where, f"edge atom index out of range 0..{n - 1}")
        if np.any(self.shift[:, ~self.pbc] != 0):
            raise InputError(where, "non-zero cell shift along a non-periodic direction")
        self._check_blocks(where, hermitian_tol if check_pairs else None)

    def _check_blocks(self, where, tol: float | None) -> None:
        """Sizes and finite values of H then S and (``tol`` given) their Hermitian pairing: one compiled pass per
        array. The same checks and messages as :meth:`_check_pairs_numpy` (the reference the tests compare with).
        """
        partner = self.partner_index() if tol is not None else np.full(self.nedges, -1, np.int64)
        found = {}
        for which, name in (("H", "Hamiltonian"), ("S", "overlap")):
            arr = self.H if which == "H" else self.S
            if arr is None:
                continue
            spin = self.spinful if which == "H" else False
            ptr = self.block_ptr(spin)
            if arr.size != int(ptr[-1]):
                raise InputError(where, f"{name} has {arr.size} elements, the orbital counts of the edges need "
                                        f"{int(ptr[-1])}")
            blocks = arr if arr.dtype in (np.float64, np.complex128) else np.asarray(arr, np.float64)
            found[which] = _core.pair_check(blocks, ptr, *self.block_shapes(spin), partner)
            if found[which][2] >= 0:
                raise InputError(where, f"{name} contains NaN/Inf")
        if tol is None:
            return
        self._refuse_missing_partner(where, partner)
        for which, (worst, e, _) in found.items():
            if worst > tol:
                self._refuse_not_hermitian(where, which, worst, e, tol)

    def _refuse_missing_partner(self, where, partner: np.ndarray) -> None:
        missing = np.flatnonzero(partner < 0)
        if len(missing):
            e = int(missing[0])
            raise InputError(where, f"edge (i={self.src[e]}, j={self.dst[e]}, R={tuple(int(x) for x in self.shift[e])}) "
                                    "has no partner (j, i, -R)")

    def _refuse_not_hermitian(self, where, which: str, worst: float, e: int, tol: float) -> None:
        r = tuple(int(x) for x in self.shift[e])
        raise InputError(
            where, f"{which} is not Hermitian: |{which}_ij(R) - {which}_ji(-R)^H| = {worst:.3g} > {tol:g} "
                   f"at (i={self.src[e]}, j={self.dst[e]}, R={r})"
        )

    def partner_index(self) -> np.ndarray:
        """For each edge (i, j, R), the index of its partner (j, i, −R); −1 where the partner is missing."""
        return partner_index(self.src, self.dst, self.shift, self.natoms)

    def _check_pairs_numpy(self, where, tol: float) -> None:
        """Reference (numpy) version of the pairing check of :meth:`_check_blocks` (tests compare the two)."""
        partner = self.partner_index()
        self._refuse_missing_partner(where, partner)
        for which in ("H", "S") if self.S is not None else ("H",):
            spin = self.spinful if which == "H" else False
            arr = self.H if which == "H" else self.S
            ptr = self.block_ptr(spin)
            ni, nj = self.block_shapes(spin)
            worst, worst_e = 0.0, -1
            for a, b in {(int(x), int(y)) for x, y in zip(ni, nj)}:
                edges = np.flatnonzero((ni == a) & (nj == b))
                if not len(edges):
                    continue
                idx = ptr[edges][:, None] + np.arange(a * b)[None, :]
                blk = arr[idx].reshape(-1, a, b)
                f = partner[edges]
                pidx = ptr[f][:, None] + np.arange(a * b)[None, :]
                pblk = arr[pidx].reshape(-1, b, a)
                d = np.abs(blk - np.conj(pblk).transpose(0, 2, 1)).reshape(len(edges), -1).max(axis=1, initial=0.0)
                k = int(np.argmax(d))  # the first edge of this shape at its maximum
                if d[k] > worst or (d[k] == worst > 0 and edges[k] < worst_e):  # ties: the first edge overall
                    worst, worst_e = float(d[k]), int(edges[k])
            if worst > tol:
                self._refuse_not_hermitian(where, which, worst, worst_e, tol)

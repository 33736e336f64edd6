"""The basis layout: shells, orbital counts and offsets per edge, basic blocks per element pair — one table.

Every part of hambench that needs "how many orbitals does atom i have" or "where does the block of edge e
start" asks a :class:`BasisLayout`: the store reader and writer, the SO(3) kernels, the data loader, the model
heads, the trace labels and the metrics. It is built from the store's ``species`` table ({Z: [l of each
shell]}, in the species' order) and the ``spinful`` flag.

Conventions (DESIGN.md §4): the orbitals of an atom are its shells in order, each with 2l+1 real spherical
harmonics m = −l…l; a spinful block is (2n_i, 2n_j), spin-outer [[↑↑, ↑↓], [↓↑, ↓↓]]; the overlap keeps the
spinless (n_i, n_j) sizes. The basic block b = (shell p of atom i) ⊗ (shell q of atom j), ordered p-major
then q: that is the order of ``blocks/T``.

>>> lay = BasisLayout({1: [0, 0, 1], 8: [0, 0, 0, 1, 1, 2]})
>>> lay.norb([1, 8]).tolist()
[5, 14]
>>> [(b.lp, b.lq, b.row, b.col) for b in lay.basic_blocks(1, 1)][:3]
[(0, 0, 0, 0), (0, 0, 0, 1), (0, 1, 0, 2)]
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from hambench.errors import InputError

__all__ = ["BasisLayout", "BasicBlock", "layout_of", "block_sizes"]


@dataclass(frozen=True)
class BasicBlock:
    """One shell pair of an element pair: shell ``p`` (angular momentum ``lp``) of atom i, shell ``q`` (``lq``)
    of atom j; ``row``/``col`` are the spinless orbital offsets of the shells inside the (n_i, n_j) block."""

    p: int
    q: int
    lp: int
    lq: int
    row: int
    col: int

    @property
    def shape(self) -> tuple[int, int]:
        return (2 * self.lp + 1, 2 * self.lq + 1)


class BasisLayout:
    """Shells per element and everything derived from them (orbital counts, block offsets, basic blocks).

    Parameters
    ----------
    species : {Z: [l of each shell]} for every element present, shells in the species' order
    spinful : SOC / non-collinear data: H blocks are (2n_i, 2n_j) complex, spin-outer
    """

    def __init__(self, species: dict, spinful: bool = False):
        if not species:
            raise ValueError("a basis layout needs at least one element")
        sp = {}
        for z, shells in species.items():
            z = int(z)
            shells = [int(l) for l in shells]
            if z <= 0 or z > 200:
                raise ValueError(f"atomic number {z} out of range")
            if not shells or min(shells) < 0:
                raise ValueError(f"element Z={z} has no valid shells: {shells}")
            sp[z] = shells
        self.species: dict[int, list[int]] = dict(sorted(sp.items()))
        self.spinful = bool(spinful)
        self.elements: tuple[int, ...] = tuple(self.species)
        self.zmax = max(self.elements)
        self.lmax = max(max(s) for s in self.species.values())
        norb = np.zeros(self.zmax + 1, dtype=np.int64)
        nsh = np.zeros(self.zmax + 1, dtype=np.int64)
        known = np.zeros(self.zmax + 1, dtype=bool)
        for z, shells in self.species.items():
            norb[z] = sum(2 * l + 1 for l in shells)
            nsh[z] = len(shells)
            known[z] = True
        self.norb_table = norb
        self.nshell_table = nsh
        self._known = known
        for a in (self.norb_table, self.nshell_table, self._known):
            a.setflags(write=False)

    # --- per element -----------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"BasisLayout({self.species}, spinful={self.spinful})"

    def __eq__(self, other) -> bool:
        return isinstance(other, BasisLayout) and self.species == other.species and self.spinful == other.spinful

    def __hash__(self) -> int:
        return hash((tuple((z, tuple(s)) for z, s in self.species.items()), self.spinful))

    def shells(self, z: int) -> list[int]:
        return self.species[int(z)]

    def shell_offsets(self, z: int) -> np.ndarray:
        """Start orbital (spinless) of each shell of element ``z``."""
        ls = self.species[int(z)]
        return np.concatenate([[0], np.cumsum([2 * l + 1 for l in ls])[:-1]]).astype(np.int64)

    def _check_known(self, Z: np.ndarray) -> None:
        if Z.size == 0:
            return
        bad = (Z < 0) | (Z > self.zmax)
        if not bad.any():
            bad = ~self._known[Z]
        if bad.any():
            missing = sorted({int(z) for z in np.unique(Z[bad])})
            raise ValueError(f"no shells known for atomic number(s) {missing} (known: {list(self.elements)})")

    def norb(self, Z, spinful: bool | None = None):
        """Orbitals per atom (doubled when spinful; ``spinful=False`` gives the overlap's sizes)."""
        sp = self.spinful if spinful is None else spinful
        arr = np.asarray(Z, dtype=np.int64)
        self._check_known(arr.reshape(-1))
        n = self.norb_table[arr] * (2 if sp else 1)
        return int(n) if n.ndim == 0 else n

    # --- per edge --------------------------------------------------------------------------------------
    def _pair(self, Z_src, Z_dst) -> tuple[np.ndarray, np.ndarray]:
        zi = np.asarray(Z_src, dtype=np.int64).reshape(-1)
        zj = np.asarray(Z_dst, dtype=np.int64).reshape(-1)
        if zi.shape != zj.shape:
            raise ValueError(f"Z_src and Z_dst differ in length ({zi.size} vs {zj.size})")
        self._check_known(zi)
        self._check_known(zj)
        return zi, zj

    def block_sizes(self, Z_src, Z_dst, spinful: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(n_i, n_j)`` of each edge's block (doubled when spinful)."""
        zi, zj = self._pair(Z_src, Z_dst)
        f = 2 if (self.spinful if spinful is None else spinful) else 1
        return self.norb_table[zi] * f, self.norb_table[zj] * f

    def block_ptr(self, Z_src, Z_dst, spinful: bool | None = None) -> np.ndarray:
        """Offsets (E+1,) int64 of each edge's row-major block in the flat array."""
        ni, nj = self.block_sizes(Z_src, Z_dst, spinful)
        ptr = np.zeros(len(ni) + 1, dtype=np.int64)
        np.cumsum(ni * nj, out=ptr[1:])
        return ptr

    def n_basic(self, Z_src, Z_dst) -> np.ndarray:
        """Basic blocks (shell pairs) per edge."""
        zi, zj = self._pair(Z_src, Z_dst)
        return self.nshell_table[zi] * self.nshell_table[zj]

    def trace_ptr(self, Z_src, Z_dst) -> np.ndarray:
        """Offsets (E+1,) int64 of each edge's trace labels in ``blocks/T``."""
        counts = self.n_basic(Z_src, Z_dst)
        ptr = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        return ptr

    # --- per element pair ------------------------------------------------------------------------------
    def basic_blocks(self, zi: int, zj: int) -> list[BasicBlock]:
        """The shell pairs of element pair (zi, zj), p-major then q (the order of ``blocks/T``)."""
        return self._basic(int(zi), int(zj))

    def _basic(self, zi: int, zj: int) -> list[BasicBlock]:
        cache = self.__dict__.setdefault("_basic_cache", {})
        key = (zi, zj)
        if key not in cache:
            si, sj = self.species[zi], self.species[zj]
            oi, oj = self.shell_offsets(zi), self.shell_offsets(zj)
            cache[key] = [BasicBlock(p, q, lp, lq, int(oi[p]), int(oj[q]))
                          for p, lp in enumerate(si) for q, lq in enumerate(sj)]
        return cache[key]

    def pair_types(self) -> list[tuple[int, int]]:
        """All ordered element pairs (zi, zj)."""
        return [(a, b) for a in self.elements for b in self.elements]

    @cached_property
    def max_basic(self) -> int:
        """The largest number of basic blocks of any element pair."""
        return int(max(self.nshell_table[list(self.elements)])) ** 2

    # --- serialisation / checks ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"species": {str(z): list(s) for z, s in self.species.items()}, "spinful": self.spinful}

    @classmethod
    def from_dict(cls, d: dict) -> "BasisLayout":
        return cls({int(z): s for z, s in d["species"].items()}, bool(d.get("spinful", False)))

    def check_compatible(self, other: "BasisLayout", where) -> None:
        """Refuse ``other`` (e.g. a store's layout) unless every element it has is known here with the same
        shells and the spin setting matches. Raises :class:`InputError` naming ``where`` and what differs."""
        if other.spinful != self.spinful:
            kind = "spinful (SOC)" if other.spinful else "spinless"
            mine = "spinful" if self.spinful else "spinless"
            raise InputError(where, f"data are {kind} but the model was trained on {mine} data")
        unknown = [z for z in other.elements if z not in self.species]
        if unknown:
            raise InputError(where, f"element(s) Z={unknown} unknown to the model (it knows Z={list(self.elements)})")
        for z in other.elements:
            if other.species[z] != self.species[z]:
                raise InputError(where, f"element Z={z} has shells {other.species[z]} but the model was trained "
                                        f"with shells {self.species[z]}")


@lru_cache(maxsize=256)
def _layout_cached(key: tuple, spinful: bool) -> BasisLayout:
    return BasisLayout(dict(key), spinful)


def layout_of(species: dict[int, list[int]], spinful: bool = False) -> BasisLayout:
    """The :class:`hambench.basis._layout.BasisLayout` of a species table, cached (building one costs ~30 µs)."""
    key = tuple(sorted((int(z), tuple(int(l) for l in shells)) for z, shells in species.items()))
    return _layout_cached(key, bool(spinful))


def block_sizes(Z_src: np.ndarray, Z_dst: np.ndarray, species: dict[int, list[int]], spinful: bool = False):
    """Rows and columns of each edge's block: ``(n_i, n_j)`` arrays (doubled when spinful).

    A thin wrapper of :meth:`hambench.basis._layout.BasisLayout.block_sizes` (ValueError for an element without shells).
    """
    if not species:  # no elements: only an edgeless structure has sizes
        zi, zj = np.asarray(Z_src).reshape(-1), np.asarray(Z_dst).reshape(-1)
        if zi.size or zj.size:
            raise ValueError(f"no shells known for atomic number(s) {sorted({int(z) for z in np.concatenate([zi, zj])})}")
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return layout_of(species, spinful).block_sizes(Z_src, Z_dst)

"""The store's schema (Zarr v3, version 1): its arrays, what one row of each counts, and how each is chunked.

One store holds many structures (molecules or periodic cells) of one data set, in hambench conventions.
Ragged data are flat arrays with ``*_ptr`` offsets (CSR style), chunked and sharded so that a store of 10⁵
structures is a few hundred files and any structure range can be read without reading the rest.

``n`` structures, ``A`` atoms, ``E`` edges:

======================  ===============  ==========================================================================
array                   shape, dtype     meaning
======================  ===============  ==========================================================================
structures/id           (n,) str         unique structure id (source folder name, QM9 index, ``<id>/rot<k>``…)
structures/natoms       (n,) int32       atoms per structure
structures/nedges       (n,) int64       edges per structure
structures/atom_ptr     (n+1,) int64     atoms of structure s are atoms[atom_ptr[s]:atom_ptr[s+1]]
structures/edge_ptr     (n+1,) int64     edges of structure s are edges[edge_ptr[s]:edge_ptr[s+1]]
structures/cell         (n, 3, 3) f8     rows are lattice vectors, Å (zeros for molecules)
structures/pbc          (n, 3) bool      periodicity along each lattice vector
structures/energy       (n,) f8          total energy, eV (NaN if unknown)
structures/nelectron    (n,) f8          number of electrons (NaN if unknown)
structures/fermi_level  (n,) f8          Fermi level / chemical potential, eV (NaN if unknown)
structures/parent       (n,) int64       index of the structure this one is a rotated copy of, −1 for originals
structures/rotation     (n, 3, 3) f8     rotation applied to the parent (r' = R r); identity for originals
structures/sources      (n,) str         JSON list of [path, sha256] of the raw files
splits/<name>           (n,) int8        index into the labels of split <name> (``StoreMeta.splits``), −1 = none
atoms/Z                 (A,) int16       atomic numbers
atoms/pos               (A, 3) f8        Cartesian positions, Å
edges/src, edges/dst    (E,) int32       local atom indices (within the structure) of i and j
edges/shift             (E, 3) int32     lattice vector R: H_ij(R) = <φ_i(r)|H|φ_j(r − R·cell)>
edges/H_ptr             (E+1,) int64     block of edge e is blocks/H[H_ptr[e]:H_ptr[e+1]], row-major (n_i, n_j)
edges/S_ptr             (E+1,) int64     same for blocks/S (spinful stores: S stays (n_i, n_j) real)
edges/T_ptr             (E+1,) int64     trace labels of edge e are blocks/T[T_ptr[e]:T_ptr[e+1]]
blocks/H                flat f8 | c16    Hamiltonian, eV, hambench order; complex (2n_i, 2n_j) spin-outer if spinful
blocks/S                flat f8          overlap (dimensionless)
blocks/T                flat f8          T_b = tr(H_b H_b†), eV², basic blocks b = (shell p of i) ⊗ (shell q of j),
                                         p-major then q
======================  ===============  ==========================================================================

The attributes are :class:`hambench.store._meta.StoreMeta`. Every array is 1-D-chunked along its rows: ~1 MiB
inner chunks inside ~64 MiB shards (:func:`chunk_layout`), uncompressed numbers and zstd-compressed strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["STORE_VERSION", "FIELDS", "ROWS", "PTRS", "CHUNK_BYTES", "SHARD_BYTES", "chunk_layout", "row_kind",
           "ArraySpec", "array_specs"]

STORE_VERSION = 1

#: every array of a version-1 store: name → (dtype, trailing shape); "H" is complex128 in spinful stores
FIELDS: dict[str, tuple[str, tuple[int, ...]]] = {
    "structures/id": ("str", ()),
    "structures/natoms": ("int32", ()),
    "structures/nedges": ("int64", ()),
    "structures/atom_ptr": ("int64", ()),
    "structures/edge_ptr": ("int64", ()),
    "structures/cell": ("float64", (3, 3)),
    "structures/pbc": ("bool", (3,)),
    "structures/energy": ("float64", ()),
    "structures/nelectron": ("float64", ()),
    "structures/fermi_level": ("float64", ()),
    "structures/parent": ("int64", ()),
    "structures/rotation": ("float64", (3, 3)),
    "structures/sources": ("str", ()),
    "atoms/Z": ("int16", ()),
    "atoms/pos": ("float64", (3,)),
    "edges/src": ("int32", ()),
    "edges/dst": ("int32", ()),
    "edges/shift": ("int32", (3,)),
    "edges/H_ptr": ("int64", ()),
    "edges/S_ptr": ("int64", ()),
    "edges/T_ptr": ("int64", ()),
    "blocks/H": ("float64", ()),
    "blocks/S": ("float64", ()),
    "blocks/T": ("float64", ()),
}

#: what the store counts (``StoreMeta.counts``): rows of structures, atoms, edges and elements of H, S, T
ROWS = ("structures", "atoms", "edges", "H", "S", "T")

#: ``*_ptr`` array → (the per-row sizes it accumulates, the rows its offsets count). The sizes are columns of a
#: batch being written (``structures/natoms``, …, ``edges/H_size``) and start every ptr at 0.
PTRS = {
    "structures/atom_ptr": ("structures/natoms", "atoms"),
    "structures/edge_ptr": ("structures/nedges", "edges"),
    "edges/H_ptr": ("edges/H_size", "H"),
    "edges/S_ptr": ("edges/S_size", "S"),
    "edges/T_ptr": ("edges/T_size", "T"),
}

#: bytes of one inner chunk and of one shard (the unit of files on disk)
CHUNK_BYTES = 1 << 20
SHARD_BYTES = 64 << 20
#: the row size assumed for string arrays when choosing their chunks
STR_ROW_BYTES = 64


def chunk_layout(length: int, row_bytes: int) -> tuple[int, int]:
    """(chunk rows, shard rows) of a 1-D-chunked array: ~1 MiB chunks inside ~64 MiB shards."""
    chunk = min(max(1, CHUNK_BYTES // max(row_bytes, 1)), max(1, length))
    shard = chunk * max(1, SHARD_BYTES // (chunk * max(row_bytes, 1)))
    if length <= shard:  # a small array: one shard that just fits
        shard = max(chunk, chunk * math.ceil(max(length, 1) / chunk))
    return chunk, shard


def row_kind(name: str) -> str:
    """What one row of array ``name`` is (one of :data:`ROWS`): ``splits/*`` rows are structures, ``blocks/H``
    rows are elements of H, and so on. (``splitlabel/*`` names of older part files count structures too.)"""
    first, last = name.split("/")
    if first in ("structures", "splits", "splitlabel"):
        return "structures"
    if first == "blocks":
        return last
    return first


@dataclass(frozen=True)
class ArraySpec:
    """One array of a store being written: ``name``, ``shape`` (rows first), ``dtype`` (``'str'`` or a numpy
    dtype name), ``chunk`` and ``shard`` rows. Picklable: the shard jobs of ``prepare`` carry it to workers."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    chunk: int
    shard: int

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def nshards(self) -> int:
        return -(-self.rows // self.shard) if self.rows else 0

    def bounds(self, k: int) -> tuple[int, int]:
        """Rows [a, b) of shard ``k``."""
        return k * self.shard, min(self.rows, (k + 1) * self.shard)

    @property
    def itemsize(self) -> int:
        """Bytes of one element (16 assumed for strings)."""
        return 16 if self.dtype == "str" else np.dtype(self.dtype).itemsize


def array_specs(counts, spinful: bool, split_names=()) -> dict[str, ArraySpec]:
    """Every array of a store of ``counts`` (a :class:`~hambench.store._meta.StoreCounts`): the :data:`FIELDS`
    (``blocks/H`` complex when ``spinful``) and ``splits/<name>`` for each split, in that order."""
    fields = [(name, dtype, trail) for name, (dtype, trail) in FIELDS.items()]
    fields += [(f"splits/{name}", "int8", ()) for name in split_names]
    out = {}
    for name, dtype, trail in fields:
        rows = getattr(counts, row_kind(name)) + (1 if name in PTRS else 0)
        if name == "blocks/H" and spinful:
            dtype = "complex128"
        row_bytes = STR_ROW_BYTES if dtype == "str" else np.dtype(dtype).itemsize * math.prod(trail)
        chunk, shard = chunk_layout(rows, row_bytes)
        out[name] = ArraySpec(name, (rows, *trail), dtype, chunk, shard)
    return out

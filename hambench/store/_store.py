"""The hambench store (Zarr v3): schema, validation on open, reader, and the shard-aligned streaming writer.

One store holds many structures (molecules or periodic cells) of one data set, in hambench conventions.
Ragged data are flat arrays with ``*_ptr`` offsets (CSR style), chunked and sharded so that a store of 10⁵
structures is a few hundred files and any structure range can be read without reading the rest.

Schema, version 1 (``attrs["hambench_store_version"] == 1``); ``n`` structures, ``A`` atoms, ``E`` edges:

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
splits/<name>           (n,) int8        index into attrs["splits"][<name>] (e.g. train/val/test), −1 = none
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

Reading: ``store[k]`` gives one :class:`~hambench.store._structure.Structure`; ``store.read_range(a, b)`` gives structures
a..b-1 as one :class:`StoreRange` of flat CSR arrays (one slice per array, batched into two round trips to zarr; what
training and scoring read, see :mod:`hambench.training._data`). Array handles are opened once per :class:`Store`.

Attributes: ``hambench_store_version``, ``kind`` (crystal | molecule), ``units`` {energy: eV, length: Å},
``orbital_convention`` ("hambench-real-sh-v1"), ``spinful``, ``species`` {Z: [l of each shell]}, ``dft``
{code, version, functional, basis, …}, ``constants`` (which unit constants converted the data), ``splits``
{name: [labels]}, ``counts`` {structures, atoms, edges, H, S, T}, ``source`` {name, input, options},
``created_by`` {hambench version}, ``excluded`` [{item, reason}].
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hambench.basis._conventions import ORBITAL_CONVENTION, z_to_symbol
from hambench.errors import StoreError
from hambench.store._structure import Structure

__all__ = ["STORE_VERSION", "FIELDS", "open_store", "Store", "StoreRange", "StoreWriter", "structure_arrays",
           "contiguous_spans"]

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
REQUIRED_ATTRS = ("hambench_store_version", "kind", "units", "orbital_convention", "spinful", "species", "counts")

#: bytes of one inner chunk and of one shard (the unit of files on disk)
CHUNK_BYTES = 1 << 20
SHARD_BYTES = 64 << 20


def _layout(length: int, row_bytes: int) -> tuple[int, int]:
    """(chunk rows, shard rows) of a 1-D-chunked array: ~1 MiB chunks inside ~64 MiB shards."""
    chunk = min(max(1, CHUNK_BYTES // max(row_bytes, 1)), max(1, length))
    shard = chunk * max(1, SHARD_BYTES // (chunk * max(row_bytes, 1)))
    if length <= shard:  # a small array: one shard that just fits
        shard = max(chunk, chunk * math.ceil(max(length, 1) / chunk))
    return chunk, shard


# --- reading ---------------------------------------------------------------------------------------------
@dataclass
class _Ptrs:
    atom: np.ndarray
    edge: np.ndarray
    H: np.ndarray
    S: np.ndarray
    T: np.ndarray


def _ragged_take(ptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gather CSR segments ``rows`` (in the order given): ``(flat indices, new ptr)``."""
    rows = np.asarray(rows, dtype=np.int64)
    lengths = ptr[rows + 1] - ptr[rows]
    new_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_ptr[1:])
    flat = np.repeat(ptr[rows] - new_ptr[:-1], lengths) + np.arange(int(new_ptr[-1]), dtype=np.int64)
    return flat, new_ptr


@dataclass
class StoreRange:
    """Structures of a store as flat CSR arrays (what :meth:`Store.read_range` returns).

    ``n`` structures, ``A`` atoms, ``E`` edges. Every ``*_ptr`` is rebased to start at 0. Edge ``src``/``dst``
    stay *local* atom indices of their structure (as stored); structure ``s`` owns atoms
    ``atom_ptr[s]:atom_ptr[s+1]`` and edges ``edge_ptr[s]:edge_ptr[s+1]``; edge ``e`` owns
    ``H[H_ptr[e]:H_ptr[e+1]]`` (likewise S, T). ``H``/``S``/``T`` (and their ptrs) are None when not read.
    ``index`` holds the structures' indices in the store; ``parent`` is a store index too (−1 for originals).
    """

    index: np.ndarray  # (n,) int64
    ids: np.ndarray  # (n,) str (object)
    natoms: np.ndarray  # (n,) int64
    atom_ptr: np.ndarray  # (n+1,) int64
    edge_ptr: np.ndarray  # (n+1,) int64
    cell: np.ndarray  # (n, 3, 3) f8
    pbc: np.ndarray  # (n, 3) bool
    energy: np.ndarray  # (n,) f8
    nelectron: np.ndarray
    fermi_level: np.ndarray
    parent: np.ndarray  # (n,) int64
    rotation: np.ndarray  # (n, 3, 3) f8
    Z: np.ndarray  # (A,) int16
    pos: np.ndarray  # (A, 3) f8
    src: np.ndarray  # (E,) int32, local
    dst: np.ndarray
    shift: np.ndarray  # (E, 3) int32
    H: np.ndarray | None = None
    H_ptr: np.ndarray | None = None
    S: np.ndarray | None = None
    S_ptr: np.ndarray | None = None
    T: np.ndarray | None = None
    T_ptr: np.ndarray | None = None
    splits: dict = None  # name -> (n,) int8 codes into split_labels[name] (−1: none)
    split_labels: dict = None  # name -> [labels]
    sources: np.ndarray | None = None  # (n,) JSON strings, when read
    species: dict = None  # {Z: [l of each shell]} of the store
    spinful: bool = False
    kind: str = "molecule"

    def __len__(self) -> int:
        return len(self.index)

    @property
    def nedges(self) -> np.ndarray:
        return np.diff(self.edge_ptr)

    @property
    def edge_structure(self) -> np.ndarray:
        """(E,) structure (0..n-1) of each edge."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.nedges)

    @property
    def atom_structure(self) -> np.ndarray:
        """(A,) structure (0..n-1) of each atom."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.natoms)

    def take(self, rows) -> "StoreRange":
        """The structures ``rows`` (local positions 0..n-1, any order, repeats allowed) as a new range."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        aidx, atom_ptr = _ragged_take(self.atom_ptr, rows)
        eidx, edge_ptr = _ragged_take(self.edge_ptr, rows)
        out = {}
        for name in ("H", "S", "T"):
            arr, ptr = getattr(self, name), getattr(self, name + "_ptr")
            if arr is None:
                out[name], out[name + "_ptr"] = None, None
                continue
            new_ptr = np.zeros(len(eidx) + 1, dtype=np.int64)
            np.cumsum(ptr[eidx + 1] - ptr[eidx], out=new_ptr[1:])
            start, stop = ptr[self.edge_ptr[rows]], ptr[self.edge_ptr[rows + 1]]  # one slice per structure
            out[name] = (np.concatenate([arr[a:b] for a, b in zip(start, stop)]) if len(rows)
                         else arr[:0].copy())
            out[name + "_ptr"] = new_ptr
        return StoreRange(
            index=self.index[rows], ids=self.ids[rows], natoms=self.natoms[rows], atom_ptr=atom_ptr,
            edge_ptr=edge_ptr, cell=self.cell[rows], pbc=self.pbc[rows], energy=self.energy[rows],
            nelectron=self.nelectron[rows], fermi_level=self.fermi_level[rows], parent=self.parent[rows],
            rotation=self.rotation[rows], Z=self.Z[aidx], pos=self.pos[aidx], src=self.src[eidx],
            dst=self.dst[eidx], shift=self.shift[eidx], **out,
            splits={k: v[rows] for k, v in (self.splits or {}).items()}, split_labels=self.split_labels,
            sources=None if self.sources is None else self.sources[rows], species=self.species,
            spinful=self.spinful, kind=self.kind,
        )

    @classmethod
    def concat(cls, parts: list["StoreRange"]) -> "StoreRange":
        """One range holding the structures of ``parts`` in order (same store: same species and flags)."""
        if len(parts) == 1:
            return parts[0]
        if not parts:
            raise ValueError("concat of no ranges")

        def ptrs(name):
            out = [np.zeros(1, np.int64)]
            base = 0
            for p in parts:
                ptr = getattr(p, name)
                out.append(ptr[1:] + base)
                base += int(ptr[-1])
            return np.concatenate(out)

        def cat(name):
            return np.concatenate([getattr(p, name) for p in parts])

        first = parts[0]
        out = {}
        for name in ("H", "S", "T"):
            if getattr(first, name) is None:
                out[name] = out[name + "_ptr"] = None
            else:
                out[name], out[name + "_ptr"] = cat(name), ptrs(name + "_ptr")
        return cls(
            index=cat("index"), ids=cat("ids"), natoms=cat("natoms"), atom_ptr=ptrs("atom_ptr"),
            edge_ptr=ptrs("edge_ptr"), cell=cat("cell"), pbc=cat("pbc"), energy=cat("energy"),
            nelectron=cat("nelectron"), fermi_level=cat("fermi_level"), parent=cat("parent"),
            rotation=cat("rotation"), Z=cat("Z"), pos=cat("pos"), src=cat("src"), dst=cat("dst"), shift=cat("shift"),
            **out, splits={k: np.concatenate([p.splits[k] for p in parts]) for k in (first.splits or {})},
            split_labels=first.split_labels, sources=None if first.sources is None else cat("sources"),
            species=first.species, spinful=first.spinful, kind=first.kind,
        )

    def structure(self, i: int) -> Structure:
        """Structure ``i`` (0..n-1) of the range as a :class:`Structure` (arrays are copies)."""
        a0, a1 = int(self.atom_ptr[i]), int(self.atom_ptr[i + 1])
        e0, e1 = int(self.edge_ptr[i]), int(self.edge_ptr[i + 1])
        Z = self.Z[a0:a1].copy()
        present = {int(z) for z in np.unique(Z)}
        splits = {}
        for name, codes in (self.splits or {}).items():
            c = int(codes[i])
            if c >= 0:
                splits[name] = self.split_labels[name][c]

        def flat(name):
            arr, ptr = getattr(self, name), getattr(self, name + "_ptr")
            return None if arr is None else arr[int(ptr[e0]) : int(ptr[e1])].copy()

        H = flat("H")
        return Structure(
            id=str(self.ids[i]), Z=Z, pos=self.pos[a0:a1].copy(), cell=self.cell[i].copy(), pbc=self.pbc[i].copy(),
            src=self.src[e0:e1].copy(), dst=self.dst[e0:e1].copy(), shift=self.shift[e0:e1].copy(),
            H=H if H is not None else np.zeros(0), S=flat("S"),
            species={z: s for z, s in self.species.items() if z in present}, spinful=self.spinful,
            energy=float(self.energy[i]), nelectron=float(self.nelectron[i]), fermi_level=float(self.fermi_level[i]),
            rotation=self.rotation[i].copy(), parent=int(self.parent[i]),
            sources=[] if self.sources is None else [tuple(x) for x in json.loads(str(self.sources[i]))],
            splits=splits,
        )


class Store:
    """A hambench store opened for reading: ``len(store)``, ``store[k] -> Structure``, ``store.attrs``,
    ``store.read_range(a, b) -> StoreRange`` (flat CSR arrays of many structures at once).

    Use :func:`open_store`; opening validates the version and the fields. Each zarr array is opened once per
    Store and its handle cached (a lookup costs ~0.5 ms; re-opening every field of every structure was most of
    the time of the first ``store[k]``). A Store pickles as its path (handles are re-opened on the other side).
    """

    def __init__(self, path, group):
        self.path = Path(path)
        self.group = group
        self.attrs = dict(group.attrs.asdict())
        self._ptr: _Ptrs | None = None
        self._arrays: dict = {}
        self._sptr: tuple[np.ndarray, np.ndarray] | None = None

    def __getstate__(self):
        return {"path": str(self.path)}

    def __setstate__(self, state):
        import zarr

        self.__init__(state["path"], zarr.open_group(state["path"], mode="r"))

    def __len__(self) -> int:
        return int(self.attrs["counts"]["structures"])

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, {len(self)} structures)"

    def array(self, name: str):
        """The zarr array ``name`` (e.g. ``'blocks/H'``), opened once and cached."""
        arr = self._arrays.get(name)
        if arr is None:
            arr = self._arrays[name] = self.group[name]
        return arr

    @property
    def spinful(self) -> bool:
        return bool(self.attrs["spinful"])

    @property
    def kind(self) -> str:
        return str(self.attrs["kind"])

    @property
    def species(self) -> dict[int, list[int]]:
        return {int(z): list(map(int, s)) for z, s in self.attrs["species"].items()}

    @property
    def layout(self):
        """The store's :class:`hambench.basis._layout.BasisLayout` (species + spinful)."""
        from hambench.basis._layout import layout_of

        return layout_of(self.species, self.spinful)

    @property
    def split_names(self) -> list[str]:
        return sorted(self.attrs.get("splits", {}))

    @property
    def ptr(self) -> _Ptrs:
        """All offset arrays, loaded once (O(n + E) integers). Range reads do not need them."""
        if self._ptr is None:
            atom, edge = self.structure_ptrs
            self._ptr = _Ptrs(atom, edge, self.array("edges/H_ptr")[:], self.array("edges/S_ptr")[:],
                              self.array("edges/T_ptr")[:])
        return self._ptr

    @property
    def structure_ptrs(self) -> tuple[np.ndarray, np.ndarray]:
        """(atom_ptr, edge_ptr), (n+1,) each, loaded once (O(n) integers)."""
        if self._sptr is None:
            self._sptr = (self.array("structures/atom_ptr")[:], self.array("structures/edge_ptr")[:])
        return self._sptr

    def split(self, name: str) -> dict[str, np.ndarray]:
        """Structure indices of each subset of split ``name``."""
        labels = self.attrs.get("splits", {}).get(name)
        if labels is None:
            raise StoreError(f"{self.path}: no split named {name!r}; splits: {sorted(self.attrs.get('splits', {}))}")
        codes = self.array(f"splits/{name}")[:]
        return {lab: np.flatnonzero(codes == i) for i, lab in enumerate(labels)}

    def read_range(self, a: int, b: int, blocks=("H", "S", "T"), sources: bool = False) -> StoreRange:
        """Structures ``a..b-1`` as one :class:`StoreRange` of flat CSR arrays (offsets rebased to 0).

        One contiguous slice per array (about 20 reads, whatever ``b - a`` is). ``blocks`` chooses which of
        H, S, T are read (the others are None); ``sources`` also reads the JSON provenance strings.
        """
        n = len(self)
        a, b = int(a), int(b)
        if not 0 <= a <= b <= n:
            raise IndexError(f"structure range {a}..{b} out of range for a store of {n}")
        atom_ptr, edge_ptr = self.structure_ptrs
        a0, a1 = int(atom_ptr[a]), int(atom_ptr[b])
        e0, e1 = int(edge_ptr[a]), int(edge_ptr[b])
        split_labels = self.attrs.get("splits", {})
        blocks = [name for name in ("H", "S", "T") if name in blocks]
        want = {f"edges/{name}_ptr": slice(e0, e1 + 1) for name in blocks}
        for name in ("id", "cell", "pbc", "energy", "nelectron", "fermi_level", "parent", "rotation") + (
                ("sources",) if sources else ()):
            want[f"structures/{name}"] = slice(a, b)
        for name in split_labels:
            want[f"splits/{name}"] = slice(a, b)
        for name in ("Z", "pos"):
            want[f"atoms/{name}"] = slice(a0, a1)
        for name in ("src", "dst", "shift"):
            want[f"edges/{name}"] = slice(e0, e1)
        got = self._read_many(want)
        out = {}
        for name in blocks:
            ptr = got[f"edges/{name}_ptr"]
            out[name + "_ptr"] = ptr - ptr[0]
            want_b = {f"blocks/{name}": slice(int(ptr[0]), int(ptr[-1]))}
            out[name] = want_b  # read below, all blocks in one round trip
        flat = self._read_many({k: v for name in blocks for k, v in out[name].items()})
        for name in blocks:
            out[name] = flat[f"blocks/{name}"]
        return StoreRange(
            index=np.arange(a, b, dtype=np.int64),
            ids=np.asarray(got["structures/id"], dtype=object),
            natoms=np.diff(atom_ptr[a : b + 1]).astype(np.int64),
            atom_ptr=atom_ptr[a : b + 1] - a0,
            edge_ptr=edge_ptr[a : b + 1] - e0,
            cell=got["structures/cell"],
            pbc=got["structures/pbc"],
            energy=got["structures/energy"],
            nelectron=got["structures/nelectron"],
            fermi_level=got["structures/fermi_level"],
            parent=got["structures/parent"],
            rotation=got["structures/rotation"],
            Z=got["atoms/Z"],
            pos=got["atoms/pos"],
            src=got["edges/src"],
            dst=got["edges/dst"],
            shift=got["edges/shift"],
            **out,
            splits={name: got[f"splits/{name}"] for name in split_labels},
            split_labels={name: list(labels) for name, labels in split_labels.items()},
            sources=np.asarray(got["structures/sources"], dtype=object) if sources else None,
            species=self.species,
            spinful=self.spinful,
            kind=self.kind,
        )

    def _read_many(self, want: dict) -> dict:
        """``{name: slice}`` → ``{name: array}``: every read in one round trip to zarr's I/O loop.

        zarr's synchronous ``array[sl]`` hands each read to its I/O thread and waits; under CPU contention that
        hand-off, not the read, dominated (19 reads: 52 ms per range on a loaded 2-core machine). Batching the
        reads through ``Array.async_array`` (zarr's documented way to batch requests) makes it one hand-off.
        Falls back to plain reads if this zarr lacks the async API.
        """
        names = list(want)
        arrays = [self.array(n) for n in names]  # open outside the I/O loop (opening syncs itself)
        try:
            import asyncio

            from zarr.core.sync import sync

            async def gather():
                return await asyncio.gather(*(a.async_array.getitem(want[n]) for n, a in zip(names, arrays)))

            values = sync(gather())
        except (ImportError, AttributeError):  # pragma: no cover - other zarr versions
            values = [a[want[n]] for n, a in zip(names, arrays)]
        return {n: np.asarray(v) for n, v in zip(names, values)}

    def __getitem__(self, k: int) -> Structure:
        n = len(self)
        if not -n <= k < n:
            raise IndexError(f"structure {k} out of range for a store of {n}")
        k %= n
        return self.read_range(k, k + 1, blocks=("H", "S"), sources=True).structure(0)

    def traces(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Trace labels of structure ``k``: (T flat, T_ptr local per edge)."""
        atom_ptr, edge_ptr = self.structure_ptrs
        e0, e1 = int(edge_ptr[k]), int(edge_ptr[k + 1])
        tp = self.array("edges/T_ptr")[e0 : e1 + 1]
        return self.array("blocks/T")[int(tp[0]) : int(tp[-1])], tp - tp[0]

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]

    # --- summaries ---------------------------------------------------------------------------------------
    def summary_dict(self) -> dict:
        a = self.attrs
        layout = self.layout
        nbytes = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        natoms = self.array("structures/natoms")[:]
        parent = self.array("structures/parent")[:]
        splits = {}
        for name, labels in a.get("splits", {}).items():
            codes = self.array(f"splits/{name}")[:]
            splits[name] = {lab: int(np.sum(codes == i)) for i, lab in enumerate(labels)}
        return {
            "path": str(self.path),
            "version": a["hambench_store_version"],
            "kind": a["kind"],
            "spinful": a["spinful"],
            "structures": len(self),
            "augmented": int(np.sum(parent >= 0)),
            "atoms": int(a["counts"]["atoms"]),
            "atoms_per_structure": [int(natoms.min()), int(natoms.max())] if len(natoms) else [0, 0],
            "edges": int(a["counts"]["edges"]),
            "matrix_elements": {"H": int(a["counts"]["H"]), "S": int(a["counts"]["S"]), "T": int(a["counts"]["T"])},
            "species": {
                z_to_symbol(int(z)): {"shells": s, "orbitals": layout.norb(int(z), False)}
                for z, s in a["species"].items()
            },
            "bytes_on_disk": nbytes,
            "files": sum(1 for f in self.path.rglob("*") if f.is_file()),
            "splits": splits,
            "dft": a.get("dft", {}),
            "source": a.get("source", {}),
            "excluded": a.get("excluded", []),
            "units": a["units"],
            "orbital_convention": a["orbital_convention"],
        }

    def summary_json(self) -> str:
        return json.dumps(self.summary_dict(), indent=2, ensure_ascii=False)

    def summary(self) -> str:
        d = self.summary_dict()

        def n(count: int, word: str) -> str:  # "1 structure", "1,234 structures"
            return f"{count:,} {word}{'s' if count != 1 else ''}"

        def val(v) -> str:  # floats short (300.0000000050607 -> 300), everything else as is
            return f"{v:.6g}" if isinstance(v, float) else str(v)

        lo, hi = d["atoms_per_structure"]
        lines = [
            f"{d['path']}: hambench store v{d['version']}, {d['kind']}{', spinful (SOC)' if d['spinful'] else ''}",
            f"  structures  {d['structures']:,} ({d['augmented']:,} rotation-augmented), "
            f"{lo if lo == hi else f'{lo}–{hi}'} atom{'s' if hi != 1 else ''} each",
            f"  atoms       {d['atoms']:,}",
            f"  edges       {d['edges']:,}",
            f"  elements    H {d['matrix_elements']['H']:,}  S {d['matrix_elements']['S']:,}  "
            f"trace labels {d['matrix_elements']['T']:,}",
            f"  on disk     {d['bytes_on_disk'] / 1e6:.2f} MB in {n(d['files'], 'file')}",
            "  species     "
            + ", ".join(f"{el} {v['shells']} ({v['orbitals']} orbitals)" for el, v in d["species"].items()),
        ]
        for name, counts in d["splits"].items():
            lines.append(f"  split {name}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        if d["dft"]:
            lines.append("  dft         " + ", ".join(f"{k}={val(v)}" for k, v in d["dft"].items()))
        if d["source"]:
            given = d["source"].get("input")
            lines.append(f"  source      {d['source'].get('name')}"
                         + (f" ← {given}" if given not in (None, "None") else " (no input files: generated here)"))
        if d["excluded"]:
            lines.append(f"  excluded    {n(len(d['excluded']), 'item')} (see `hambench info --json`)")
        lines.append(f"  units       {d['units']['energy']}, {d['units']['length']}; orbitals {d['orbital_convention']}")
        return "\n".join(lines)


def open_store(path) -> Store:
    """Open a store for reading, validating its version and required fields (:class:`StoreError` if not)."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such store")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as e:
        raise StoreError(f"{path}: not a Zarr v3 store ({type(e).__name__}: {e})") from None
    attrs = group.attrs.asdict()
    version = attrs.get("hambench_store_version")
    if version is None:
        raise StoreError(f"{path}: not a hambench store (no hambench_store_version attribute)")
    if version != STORE_VERSION:
        raise StoreError(f"{path}: store version {version}, this hambench reads version {STORE_VERSION}")
    for key in REQUIRED_ATTRS:
        if key not in attrs:
            raise StoreError(f"{path}: missing attribute {key!r}")
    if attrs["orbital_convention"] != ORBITAL_CONVENTION:
        raise StoreError(f"{path}: orbital convention {attrs['orbital_convention']!r}, expected {ORBITAL_CONVENTION!r}")
    counts = attrs["counts"]
    expect_len = {
        "structures": counts["structures"],
        "atoms": counts["atoms"],
        "edges": counts["edges"],
    }
    arrays = {}
    for name, (dtype, trail) in FIELDS.items():
        try:
            arr = arrays[name] = group[name]
        except KeyError:
            raise StoreError(f"{path}: missing field {name}") from None
        first = name.split("/")[0]
        n0 = {"structures": expect_len["structures"], "atoms": expect_len["atoms"], "edges": expect_len["edges"]}.get(
            first
        )
        if name.endswith("_ptr"):
            n0 += 1
        if first == "blocks":
            n0 = counts[name.split("/")[1]]
        if tuple(arr.shape) != (n0, *trail):
            raise StoreError(f"{path}: field {name} has shape {tuple(arr.shape)}, expected {(n0, *trail)}")
    for name in attrs.get("splits", {}):
        if f"splits/{name}" not in group:
            raise StoreError(f"{path}: missing field splits/{name}")
    store = Store(path, group)
    store._arrays.update(arrays)
    return store


# --- writing ---------------------------------------------------------------------------------------------
def contiguous_spans(sorted_idx: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """Contiguous read spans [a, b) covering the sorted structure indices ``sorted_idx``, merging holes of at most
    ``max_gap`` structures (reading a few unwanted structures is cheaper than another round of slice reads)."""
    if len(sorted_idx) == 0:
        return []
    cuts = np.flatnonzero(np.diff(sorted_idx) > max_gap + 1) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(sorted_idx)]])
    return [(int(sorted_idx[s]), int(sorted_idx[e - 1]) + 1) for s, e in zip(starts, ends)]


def _resolved(path, folders: dict | None = None) -> str:
    """A source path as stored: absolute and resolved (independent of the working directory of the run).

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


def structure_arrays(structs: list[Structure], traces: list | None = None, overlap: bool = True) -> dict:
    """Concatenate structures into one :meth:`StoreWriter.append` batch (store arrays + per-edge block sizes).

    ``traces``: per structure ``(T, T_ptr)`` (as ``so3.edge_traces`` returns), or None for no trace labels.
    ``overlap=False`` writes no S (prediction stores); otherwise a structure without S gets zeros.
    """
    cat = np.concatenate
    n_e = sum(s.nedges for s in structs)
    folders: dict[str, str] = {}
    b = {
        "structures/id": np.array([s.id for s in structs], dtype=object),
        "structures/natoms": np.array([s.natoms for s in structs], np.int32),
        "structures/nedges": np.array([s.nedges for s in structs], np.int64),
        "structures/cell": np.array([s.cell for s in structs], np.float64).reshape(-1, 3, 3),
        "structures/pbc": np.array([s.pbc for s in structs], bool).reshape(-1, 3),
        "structures/energy": np.array([s.energy for s in structs], np.float64),
        "structures/nelectron": np.array([s.nelectron for s in structs], np.float64),
        "structures/fermi_level": np.array([s.fermi_level for s in structs], np.float64),
        "structures/parent": np.array([s.parent for s in structs], np.int64),
        "structures/rotation": np.array([s.rotation for s in structs], np.float64).reshape(-1, 3, 3),
        "structures/sources": np.array([json.dumps([[_resolved(x[0], folders), *x[1:]] for x in s.sources]) for s in structs],
                                       dtype=object),
        "atoms/Z": cat([s.Z for s in structs]).astype(np.int16),
        "atoms/pos": cat([s.pos for s in structs]).reshape(-1, 3),
        "edges/src": cat([s.src for s in structs]).astype(np.int32),
        "edges/dst": cat([s.dst for s in structs]).astype(np.int32),
        "edges/shift": cat([s.shift for s in structs]).reshape(-1, 3).astype(np.int32),
        "blocks/H": cat([s.H for s in structs]),
        "edges/H_size": cat([np.diff(s.block_ptr()) for s in structs]),
    }
    if overlap:
        b["blocks/S"] = cat([s.S if s.S is not None else np.zeros(int(s.block_ptr(False)[-1])) for s in structs])
        b["edges/S_size"] = cat([np.diff(s.block_ptr(False)) for s in structs])
    else:
        b["blocks/S"] = np.zeros(0)
        b["edges/S_size"] = np.zeros(n_e, np.int64)
    if traces is not None:
        b["blocks/T"] = cat([t[0] for t in traces])
        b["edges/T_size"] = cat([np.diff(t[1]) for t in traces])
    else:
        b["blocks/T"] = np.zeros(0)
        b["edges/T_size"] = np.zeros(n_e, np.int64)
    return b


class _Sink:
    """Appends rows to one store array in shard-aligned writes (each shard is written exactly once).

    Numeric arrays (``chunk_rows`` given) are written shard by shard with :func:`hambench.store._shards.write_shard`
    (the bytes zarr would write, without its async write path); string arrays through zarr.
    """

    def __init__(self, folder: Path, rows: int, shard_rows: int, dtype, chunk_rows: int | None = None):
        self.folder, self.rows, self.shard, self.dtype, self.chunk = Path(folder), int(rows), shard_rows, dtype, chunk_rows
        self.cursor = 0
        self.pending: list[np.ndarray] = []
        self.npending = 0

    def append(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        self.pending.append(rows)
        self.npending += len(rows)
        if self.npending >= self.shard:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self.pending:
            return
        data = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        take = len(data) if final else (len(data) // self.shard) * self.shard
        if take and self.chunk is not None:
            from hambench.store._shards import write_shard

            for a in range(0, take, self.shard):
                rows = np.asarray(data[a : min(take, a + self.shard)], dtype=self.dtype)
                write_shard(self.folder, (self.cursor + a) // self.shard, rows, self.chunk, self.shard)
        elif take:
            import zarr

            zarr.open_array(str(self.folder), mode="r+")[self.cursor : self.cursor + take] = data[:take]
        self.cursor += take
        rest = data[take:]
        self.pending = [rest] if len(rest) else []
        self.npending = len(rest)

    def close(self) -> None:
        self._flush(final=True)
        if self.cursor != self.rows:
            raise RuntimeError(f"{self.folder}: wrote {self.cursor} rows, expected {self.rows}")


class StoreWriter:
    """Writes a store of known total sizes by streaming structure batches in order.

    >>> w = StoreWriter(path, counts, attrs, split_names)   # doctest: +SKIP
    >>> w.append(batch); ...; w.close()

    ``counts`` = {structures, atoms, edges, H, S, T}; ``batch`` is a dict of concatenated per-structure,
    per-atom, per-edge and flat arrays (see :func:`hambench.pipelines.driver`). Offsets (``*_ptr``) are
    computed here. The caller writes into a temporary path and renames it on success.
    """

    def __init__(self, path, counts: dict, attrs: dict, split_names: list[str] = ()):
        self.path = Path(path)
        self.counts = dict(counts)
        spinful = bool(attrs["spinful"])
        if self.path.exists():  # mode "w": a fresh store
            import shutil

            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        lengths = {
            "structures": counts["structures"],
            "atoms": counts["atoms"],
            "edges": counts["edges"],
        }
        self.sinks: dict[str, _Sink] = {}
        #: name → (chunk rows, shard rows, dtype ('str' or a numpy dtype), rows): what a shard writer needs
        self.layouts: dict[str, tuple[int, int, object, int]] = {}
        specs = []
        for name, (dtype, trail) in FIELDS.items():
            first, last = name.split("/")
            n0 = lengths.get(first, counts.get(last))
            if name.endswith("_ptr"):
                n0 += 1
            if name == "blocks/H" and spinful:
                dtype = "complex128"
            specs.append((name, n0, dtype, trail))
        for s in split_names:
            specs.append((f"splits/{s}", counts["structures"], "int8", ()))
        self._create_all(specs)
        self._offsets = {"atom": 0, "edge": 0, "H": 0, "S": 0, "T": 0}
        for ptr in ("structures/atom_ptr", "structures/edge_ptr", "edges/H_ptr", "edges/S_ptr", "edges/T_ptr"):
            self.sinks[ptr].append(np.zeros(1, np.int64))
        full_attrs = {
            "hambench_store_version": STORE_VERSION,
            "units": {"energy": "eV", "length": "Å"},
            "orbital_convention": ORBITAL_CONVENTION,
            **attrs,
            "counts": {k: int(v) for k, v in counts.items()},
        }
        from hambench.store._shards import group_metadata, write_metadata

        write_metadata(self.path, group_metadata(full_attrs))

    def _create_all(self, specs) -> None:
        """Write every array's and group's ``zarr.json`` (:func:`hambench.store._shards.array_metadata`: zarr's bytes,
        without ~2 ms of zarr's event loop per array)."""
        from hambench.store._shards import array_metadata, group_metadata, write_metadata

        for name, n0, dtype, trail in specs:
            parent = self.path / name.split("/")[0]
            if not (parent / "zarr.json").exists():
                write_metadata(parent, group_metadata())
            if dtype == "str":
                chunk, shard = _layout(n0, 64)
                self.layouts[name] = (chunk, shard, "str", n0)
            else:
                row = int(np.dtype(dtype).itemsize * int(np.prod(trail, dtype=np.int64)))
                chunk, shard = _layout(n0, row)
                self.layouts[name] = (chunk, shard, np.dtype(dtype), n0)
            write_metadata(self.path / name, array_metadata((n0, *trail), dtype, chunk, shard))
            self.sinks[name] = _Sink(self.path / name, n0, shard, dtype,
                                     None if dtype == "str" else chunk)

    def append(self, batch: dict) -> None:
        """Append a batch of whole structures (arrays keyed like :data:`FIELDS`, without the ``*_ptr``).

        Needs ``structures/natoms``, ``structures/nedges`` and per-edge sizes ``edges/H_size``,
        ``edges/S_size``, ``edges/T_size`` to compute the offsets.
        """
        o = self._offsets
        for key, ptr, sizes in (
            ("atom", "structures/atom_ptr", batch["structures/natoms"]),
            ("edge", "structures/edge_ptr", batch["structures/nedges"]),
            ("H", "edges/H_ptr", batch["edges/H_size"]),
            ("S", "edges/S_ptr", batch["edges/S_size"]),
            ("T", "edges/T_ptr", batch["edges/T_size"]),
        ):
            c = np.cumsum(np.asarray(sizes, dtype=np.int64)) + o[key]
            if len(c):
                o[key] = int(c[-1])
            self.sinks[ptr].append(c)
        for name, sink in self.sinks.items():
            if name.endswith("_ptr"):
                continue
            if name not in batch:
                raise KeyError(f"batch lacks {name}")
            sink.append(np.asarray(batch[name]))

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.close()
        o = self._offsets
        expect = {"atom": "atoms", "edge": "edges", "H": "H", "S": "S", "T": "T"}
        for k, c in expect.items():
            if o[k] != self.counts[c]:
                raise RuntimeError(f"{self.path}: wrote {o[k]} {c}, expected {self.counts[c]}")

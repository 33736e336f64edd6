"""The one in-memory batch of structures: :class:`StoreRange`, flat CSR arrays of many structures at once.

A range is read from a store (:meth:`hambench.store._store.Store.read_range`, :func:`hambench.store._read.gather`),
built from :class:`~hambench.store._structure.Structure` records (:meth:`StoreRange.from_structures`), gathered by
position (:meth:`StoreRange.take`), joined (:meth:`StoreRange.concat`) and written (:meth:`StoreRange.columns` is
what :class:`~hambench.store._write.StoreWriter` appends). Training collates ranges into batches, scoring reads
them, ``prepare`` and the prediction writers write them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from hambench.basis._layout import BasisLayout, layout_of
from hambench.basis._so3 import edge_traces
from hambench.errors import InputError
from hambench.store._structure import Structure, resolved_path

__all__ = ["StoreRange", "offsets", "edge_endpoints"]

BLOCKS = ("H", "S", "T")


def offsets(sizes) -> np.ndarray:
    """CSR offsets (n+1,) int64 of ``n`` consecutive segments of ``sizes``: 0, s0, s0+s1, …"""
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1)
    out = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def edge_endpoints(atom_ptr, edge_ptr, src, dst) -> tuple[np.ndarray, np.ndarray]:
    """(E,) int64 each: the atoms (i, j) of every edge as indices into the flat atom arrays of a range whose
    structure s owns atoms ``atom_ptr[s]:atom_ptr[s+1]`` and edges ``edge_ptr[s]:edge_ptr[s+1]`` (``src``/``dst``
    local to their structure)."""
    atom_ptr, edge_ptr = np.asarray(atom_ptr, np.int64), np.asarray(edge_ptr, np.int64)
    first = np.repeat(atom_ptr[:-1], np.diff(edge_ptr))
    return first + np.asarray(src, np.int64), first + np.asarray(dst, np.int64)


def _ragged_take(ptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gather CSR segments ``rows`` (in the order given): ``(flat indices, new ptr)``."""
    lengths = ptr[rows + 1] - ptr[rows]
    new_ptr = offsets(lengths)
    flat = np.repeat(ptr[rows] - new_ptr[:-1], lengths) + np.arange(int(new_ptr[-1]), dtype=np.int64)
    return flat, new_ptr


@dataclass
class StoreRange:
    """Structures as flat CSR arrays: ``n`` structures, ``A`` atoms, ``E`` edges.

    Every ``*_ptr`` starts at 0. Edge ``src``/``dst`` are *local* atom indices of their structure (as stored;
    :meth:`endpoints` gives the range-wide ones); structure ``s`` owns atoms ``atom_ptr[s]:atom_ptr[s+1]`` and
    edges ``edge_ptr[s]:edge_ptr[s+1]``; edge ``e`` owns ``H[H_ptr[e]:H_ptr[e+1]]`` (likewise S, T). ``H``/``S``/
    ``T`` (and their ptrs) are None when not read or not given. ``index`` holds the structures' indices in their
    store (0..n-1 when built from structures); ``parent`` is a store index too (−1 for originals).
    """

    index: np.ndarray  # (n,) int64
    ids: np.ndarray  # (n,) str (object)
    natoms: np.ndarray  # (n,) int64
    atom_ptr: np.ndarray  # (n+1,) int64
    edge_ptr: np.ndarray  # (n+1,) int64
    cell: np.ndarray  # (n, 3, 3) f8, Å
    pbc: np.ndarray  # (n, 3) bool
    energy: np.ndarray  # (n,) f8, eV
    nelectron: np.ndarray  # (n,) f8
    fermi_level: np.ndarray  # (n,) f8, eV
    parent: np.ndarray  # (n,) int64
    rotation: np.ndarray  # (n, 3, 3) f8
    Z: np.ndarray  # (A,) int16
    pos: np.ndarray  # (A, 3) f8, Å
    src: np.ndarray  # (E,) int32, local
    dst: np.ndarray  # (E,) int32, local
    shift: np.ndarray  # (E, 3) int32
    H: np.ndarray | None = None  # flat f8 | c16, eV
    H_ptr: np.ndarray | None = None  # (E+1,) int64
    S: np.ndarray | None = None  # flat f8
    S_ptr: np.ndarray | None = None
    T: np.ndarray | None = None  # flat f8, eV²
    T_ptr: np.ndarray | None = None
    splits: dict | None = None  # name -> (n,) int8 codes into split_labels[name] (−1: none)
    split_labels: dict | None = None  # name -> [labels]
    sources: np.ndarray | None = None  # (n,) JSON strings [[path, sha256], …], when read
    species: dict | None = None  # {Z: [l of each shell]}
    spinful: bool = False
    kind: str = "molecule"

    def __len__(self) -> int:
        return len(self.index)

    # --- derived arrays ------------------------------------------------------------------------------------
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

    @property
    def layout(self) -> BasisLayout:
        """The basis layout of the range's species and spin (cached by :func:`hambench.basis.layout_of`)."""
        return layout_of(self.species, self.spinful)

    def endpoints(self) -> tuple[np.ndarray, np.ndarray]:
        """(E,) int64 each: the atoms (i, j) of every edge as indices into the range's atom arrays."""
        return edge_endpoints(self.atom_ptr, self.edge_ptr, self.src, self.dst)

    def edge_vectors(self) -> np.ndarray:
        """(E, 3) f8: ``r_ij = pos[j] + R·cell − pos[i]`` (Å) of every edge (i, j, R)."""
        i, j = self.endpoints()
        lattice = np.einsum("ek,ekl->el", self.shift.astype(np.float64), self.cell[self.edge_structure])
        return self.pos[j] + lattice - self.pos[i]

    def edge_Z(self) -> tuple[np.ndarray, np.ndarray]:
        """(E,) int64 each: atomic numbers (Z_i, Z_j) of every edge's atoms."""
        i, j = self.endpoints()
        return self.Z[i].astype(np.int64), self.Z[j].astype(np.int64)

    def split_groups(self) -> list[list[str]]:
        """Per structure, the ``"name:subset"`` keys of the split subsets it belongs to (split names sorted)."""
        out: list[list[str]] = [[] for _ in range(len(self))]
        for name in sorted(self.split_labels or {}):
            labels, codes = self.split_labels[name], self.splits[name]
            for k in np.flatnonzero(codes >= 0):
                out[k].append(f"{name}:{labels[int(codes[k])]}")
        return out

    def rows_of(self, indices) -> np.ndarray:
        """Positions in this range of the store structures ``indices`` (each must be in the range)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if not len(self):
            return np.zeros(0, np.int64)
        where = np.full(int(self.index.max()) - int(self.index.min()) + 1, -1, np.int64)
        where[self.index - self.index.min()] = np.arange(len(self))
        return where[idx - self.index.min()]

    # --- gather and join -----------------------------------------------------------------------------------
    def take(self, rows) -> "StoreRange":
        """The structures ``rows`` (positions 0..n-1, any order, repeats allowed) as a new range."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        aidx, atom_ptr = _ragged_take(self.atom_ptr, rows)
        eidx, edge_ptr = _ragged_take(self.edge_ptr, rows)
        blocks = {}
        for name in BLOCKS:
            arr, ptr = getattr(self, name), getattr(self, name + "_ptr")
            if arr is None:
                blocks[name], blocks[name + "_ptr"] = None, None
                continue
            start, stop = ptr[self.edge_ptr[rows]], ptr[self.edge_ptr[rows + 1]]  # one slice per structure
            blocks[name] = (np.concatenate([arr[a:b] for a, b in zip(start, stop)]) if len(rows)
                            else arr[:0].copy())
            blocks[name + "_ptr"] = offsets(ptr[eidx + 1] - ptr[eidx])
        return StoreRange(
            index=self.index[rows], ids=self.ids[rows], natoms=self.natoms[rows], atom_ptr=atom_ptr,
            edge_ptr=edge_ptr, cell=self.cell[rows], pbc=self.pbc[rows], energy=self.energy[rows],
            nelectron=self.nelectron[rows], fermi_level=self.fermi_level[rows], parent=self.parent[rows],
            rotation=self.rotation[rows], Z=self.Z[aidx], pos=self.pos[aidx], src=self.src[eidx],
            dst=self.dst[eidx], shift=self.shift[eidx], **blocks,
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
            base = np.cumsum([0] + [int(getattr(p, name)[-1]) for p in parts[:-1]])
            return np.concatenate([np.zeros(1, np.int64)] + [getattr(p, name)[1:] + b for p, b in zip(parts, base)])

        def cat(name):
            return np.concatenate([getattr(p, name) for p in parts])

        first = parts[0]
        blocks = {}
        for name in BLOCKS:
            present = getattr(first, name) is not None
            blocks[name] = cat(name) if present else None
            blocks[name + "_ptr"] = ptrs(name + "_ptr") if present else None
        return cls(
            index=cat("index"), ids=cat("ids"), natoms=cat("natoms"), atom_ptr=ptrs("atom_ptr"),
            edge_ptr=ptrs("edge_ptr"), cell=cat("cell"), pbc=cat("pbc"), energy=cat("energy"),
            nelectron=cat("nelectron"), fermi_level=cat("fermi_level"), parent=cat("parent"),
            rotation=cat("rotation"), Z=cat("Z"), pos=cat("pos"), src=cat("src"), dst=cat("dst"), shift=cat("shift"),
            **blocks, splits={k: np.concatenate([p.splits[k] for p in parts]) for k in (first.splits or {})},
            split_labels=first.split_labels, sources=None if first.sources is None else cat("sources"),
            species=first.species, spinful=first.spinful, kind=first.kind,
        )

    # --- structures in and out -------------------------------------------------------------------------------
    def structure(self, i: int) -> Structure:
        """Structure ``i`` (0..n-1) of the range as a :class:`Structure` (arrays are copies)."""
        a0, a1 = int(self.atom_ptr[i]), int(self.atom_ptr[i + 1])
        e0, e1 = int(self.edge_ptr[i]), int(self.edge_ptr[i + 1])
        Z = self.Z[a0:a1].copy()
        present = {int(z) for z in np.unique(Z)}
        splits = {name: self.split_labels[name][int(codes[i])]
                  for name, codes in (self.splits or {}).items() if codes[i] >= 0}

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

    @classmethod
    def from_structures(cls, structs, layout: BasisLayout | None = None, *, traces=None,
                        overlap: bool = True) -> "StoreRange":
        """The structures ``structs`` as one range (``index`` 0..n-1, source paths resolved as a store keeps them).

        Parameters
        ----------
        structs : :class:`Structure` records
        layout : the basis layout their blocks follow; checked against each structure (unknown elements, other
            shells and edge atoms out of range raise :class:`InputError` naming the structure). None: the union
            of the structures' own species (an element with other shells in two structures is refused).
        traces : per structure ``(T, T_ptr)`` (as :func:`hambench.basis._so3.edge_traces` returns);
            ``"compute"``: computed from H; None: no trace labels.
        overlap : keep S (when H and every structure's S are given); False: no S.

        Blocks are targets: H is kept when every structure has it (None or empty H: no targets, then no S and T
        either); some with and some without raise InputError. A given H or S of another size than the layout
        needs raises InputError.
        """
        structs = list(structs)
        if not structs:
            raise InputError(None, "no structures to batch")
        lay = layout if layout is not None else _union_layout(structs)
        for s in structs:
            _check_structure(s, lay if layout is not None else None)
        r = _geometry(cls, structs, lay)
        zs, zd = r.edge_Z()
        H, S, hptr, sptr = _targets(structs, lay, zs, zd, r.edge_ptr, overlap)
        r.H, r.H_ptr, r.S, r.S_ptr = H, hptr if H is not None else None, S, sptr if S is not None else None
        if isinstance(traces, str) and traces == "compute":
            if H is not None:
                r.T, r.T_ptr = edge_traces(H, zs, zd, lay.species, lay.spinful)
        elif traces is not None:
            r.T = np.concatenate([t[0] for t in traces]) if traces else np.zeros(0)
            r.T_ptr = offsets(np.concatenate([np.diff(t[1]) for t in traces]) if traces else [])
        return r

    def columns(self) -> dict[str, np.ndarray]:
        """The range as the columns :meth:`~hambench.store._write.StoreWriter.append` writes: store arrays by name
        (``*_ptr`` as per-edge sizes ``edges/H_size``, …; a block not held is empty with zero sizes)."""
        n, E = len(self), len(self.src)
        out = {
            "structures/id": np.asarray(self.ids, dtype=object),
            "structures/natoms": np.asarray(self.natoms, np.int32),
            "structures/nedges": np.diff(self.edge_ptr).astype(np.int64),
            "structures/cell": np.asarray(self.cell, np.float64).reshape(-1, 3, 3),
            "structures/pbc": np.asarray(self.pbc, bool).reshape(-1, 3),
            "structures/energy": np.asarray(self.energy, np.float64),
            "structures/nelectron": np.asarray(self.nelectron, np.float64),
            "structures/fermi_level": np.asarray(self.fermi_level, np.float64),
            "structures/parent": np.asarray(self.parent, np.int64),
            "structures/rotation": np.asarray(self.rotation, np.float64).reshape(-1, 3, 3),
            "structures/sources": (np.full(n, "[]", dtype=object) if self.sources is None
                                   else np.asarray(self.sources, dtype=object)),
            "atoms/Z": np.asarray(self.Z, np.int16),
            "atoms/pos": np.asarray(self.pos, np.float64).reshape(-1, 3),
            "edges/src": np.asarray(self.src, np.int32),
            "edges/dst": np.asarray(self.dst, np.int32),
            "edges/shift": np.asarray(self.shift, np.int32).reshape(-1, 3),
        }
        for name in BLOCKS:
            arr, ptr = getattr(self, name), getattr(self, name + "_ptr")
            out[f"blocks/{name}"] = np.zeros(0) if arr is None else arr
            out[f"edges/{name}_size"] = np.zeros(E, np.int64) if arr is None else np.diff(ptr)
        for name, codes in (self.splits or {}).items():
            out[f"splits/{name}"] = np.asarray(codes, np.int8)
        return out


# --- from_structures, piece by piece ---------------------------------------------------------------------
def _union_layout(structs) -> BasisLayout | None:
    """The layout of the union of the structures' species (None: no element has shells, so no edges can have
    blocks); an element with other shells in two structures, or mixed spin, is refused."""
    species: dict[int, list[int]] = {}
    for s in structs:
        if bool(s.spinful) != bool(structs[0].spinful):
            raise InputError(s.id, "mixes spinful and spinless structures")
        for z, shells in s.species.items():
            if species.setdefault(int(z), list(shells)) != list(shells):
                raise InputError(s.id, f"element Z={z} has different shells in different structures: "
                                       f"{species[int(z)]} vs {list(shells)}")
    return layout_of(species, bool(structs[0].spinful)) if species else None


def _check_structure(s, layout: BasisLayout | None) -> None:
    """Refuse (InputError naming the structure) edges whose atoms are out of range and, against a given
    ``layout``, elements it does not know or knows with other shells."""
    Z = np.asarray(s.Z, dtype=np.int64).reshape(-1)
    if layout is not None:
        for z in np.unique(Z).tolist():
            if z not in layout.species:
                raise InputError(s.id, f"element Z={z} unknown to the basis layout (it knows Z={list(layout.elements)})")
            if s.species and z in s.species and list(s.species[z]) != layout.species[z]:
                raise InputError(s.id, f"element Z={z} has shells {list(s.species[z])} but the basis layout has "
                                       f"{layout.species[z]}")
    src, dst = np.asarray(s.src, np.int64), np.asarray(s.dst, np.int64)
    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= len(Z)):
        raise InputError(s.id, f"edge atom index out of range 0..{len(Z) - 1}")


def _geometry(cls, structs, layout: BasisLayout | None) -> StoreRange:
    """A range of the structures' per-structure, per-atom and per-edge arrays (no blocks yet)."""
    n = len(structs)
    cat = np.concatenate
    natoms = np.array([len(s.Z) for s in structs], np.int64)
    pbc = np.array([np.asarray(s.pbc, bool).reshape(3) for s in structs], bool).reshape(n, 3)
    folders: dict[str, str] = {}
    split_names = sorted({name for s in structs for name in s.splits})
    labels = {name: sorted({s.splits[name] for s in structs if name in s.splits}) for name in split_names}
    return cls(
        index=np.arange(n, dtype=np.int64), ids=np.array([str(s.id) for s in structs], dtype=object),
        natoms=natoms, atom_ptr=offsets(natoms), edge_ptr=offsets([len(s.src) for s in structs]),
        cell=np.array([np.asarray(s.cell, np.float64).reshape(3, 3) for s in structs]).reshape(n, 3, 3), pbc=pbc,
        energy=np.array([s.energy for s in structs], np.float64),
        nelectron=np.array([s.nelectron for s in structs], np.float64),
        fermi_level=np.array([s.fermi_level for s in structs], np.float64),
        parent=np.array([s.parent for s in structs], np.int64),
        rotation=np.array([np.asarray(s.rotation, np.float64).reshape(3, 3) for s in structs]).reshape(n, 3, 3),
        Z=cat([np.asarray(s.Z).reshape(-1) for s in structs]).astype(np.int16),
        pos=cat([np.asarray(s.pos, np.float64).reshape(-1, 3) for s in structs]),
        src=cat([np.asarray(s.src).reshape(-1) for s in structs]).astype(np.int32),
        dst=cat([np.asarray(s.dst).reshape(-1) for s in structs]).astype(np.int32),
        shift=cat([np.asarray(s.shift).reshape(-1, 3) for s in structs]).astype(np.int32),
        splits={name: np.array([labels[name].index(s.splits[name]) if name in s.splits else -1 for s in structs],
                               np.int8) for name in split_names},
        split_labels=labels,
        sources=np.array([json.dumps([[resolved_path(x[0], folders), *x[1:]] for x in s.sources])
                          for s in structs], dtype=object),
        species=dict(layout.species) if layout is not None else {},
        spinful=bool(layout.spinful) if layout is not None else bool(structs[0].spinful),
        kind="crystal" if pbc.any() else "molecule",
    )


def _target(x, n: int, name: str, where: str):
    """x as a flat array if it holds the ``n`` target elements, None when absent; InputError on a mismatch."""
    if x is None:
        return None
    x = np.asarray(x).reshape(-1)
    if x.size == n:
        return x
    if x.size == 0 or (x.size == 1 and not np.all(np.isfinite(x))):
        return None
    raise InputError(where, f"{name} has {x.size} elements, the basis layout needs {n}")


def _targets(structs, layout, zs, zd, edge_ptr, overlap: bool):
    """(H, S, H_ptr, S_ptr) of the structures: H when every structure has its target blocks (None when none
    has), S when H and every S are given and ``overlap``."""
    if layout is None:  # no element has shells: only edgeless structures, empty blocks
        hptr = sptr = np.zeros(len(zs) + 1, np.int64)
        if len(zs):
            raise InputError(structs[0].id, "edges between atoms without orbital shells")
    else:
        hptr, sptr = layout.block_ptr(zs, zd), layout.block_ptr(zs, zd, spinful=False)
    Hs, Ss = [], []
    have = None
    for k, s in enumerate(structs):
        e0, e1 = int(edge_ptr[k]), int(edge_ptr[k + 1])
        nH = int(hptr[e1] - hptr[e0])
        H = _target(s.H, nH, "H", s.id)
        if nH > 0:  # a structure without edges has nothing to say about targets
            if have is None:
                have = H is not None
            elif have != (H is not None):
                raise InputError(s.id, "some structures have target blocks and some do not; batch them separately")
        Hs.append(np.zeros(0) if H is None else H)
        Ss.append(_target(s.S, int(sptr[e1] - sptr[e0]), "S", s.id) if H is not None and overlap else None)
    if not (have if have is not None else all(s.H is not None for s in structs)):
        return None, None, hptr, sptr
    spinful = layout is not None and layout.spinful
    H = np.concatenate([h.astype(np.complex128 if spinful else np.float64) for h in Hs])
    S = np.concatenate(Ss) if overlap and all(x is not None for x in Ss) else None
    return H, S, hptr, sptr

"""Batches for training and prediction, streamed from a store in structure ranges.

A model's ``forward`` gets one :class:`Batch`: a graph of ``B`` structures (``A`` atoms, ``E`` edges) with the
target blocks in hambench order. Where the batches come from:

* :func:`make_loader` / :class:`StoreDataset` stream a store (optionally one subset of a named split, e.g.
  ``"qh9-stable-id:train"``) in contiguous structure *ranges* read with :meth:`hambench.store._store.Store.read_range`
  (one slice per array, so a range touches only the chunks and shards that hold it; about 20 reads whatever its
  size; memory and work per step do not depend on the store's size). Memory per worker is about
  ``max(range_size, batch_size)`` structures: lower ``range_size`` for very large cells. Shuffling permutes the ranges and the structures inside each group of about ``range_size``
  structures, seeded by ``(seed, epoch)``; DDP ranks get disjoint, equally long parts; each DataLoader worker
  reads its own groups; rotation augmentation rotates each structure by a seeded random rotation per epoch,
  exactly (positions, cell, H and S by :func:`hambench.basis._so3.rotate_edge_blocks`; T is invariant).
* :func:`batch_from_structures` builds the same batch from :class:`hambench.store._structure.Structure` records (also
  without targets, for ``predict --structures``).

Edge convention: an edge (i, j, R) carries H_ij(R) = <φ_i(r)|H|φ_j(r − R·cell)>, so its vector is
``r_ij = pos[j] + R·cell − pos[i]`` (:func:`edge_vectors`).
"""

from __future__ import annotations

import math
import multiprocessing
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from hambench.basis._layout import BasisLayout
from hambench.basis._so3 import random_rotation, rotate_edge_blocks
from hambench.errors import InputError
from hambench.store import Store, StoreRange, open_store, parse_split, read_spans, select_split

__all__ = [
    "Batch",
    "edge_vectors",
    "collate",
    "batch_from_structures",
    "parse_split",
    "select_split",
    "augment_rotation",
    "StoreDataset",
    "StoreLoader",
    "make_loader",
]


# --- the batch -----------------------------------------------------------------------------------------
@dataclass
class Batch:
    """One graph batch of ``B`` structures, ``A`` atoms and ``E`` edges; every tensor on one device.

    Float tensors (pos, cell, shift, edge_vec, H, S, T) are in the run's dtype (H complex of that precision
    when spinful); index tensors are int64. ``edge_src``/``edge_dst`` are global atom indices in the batch
    (self edges included); ``H_ptr``/``S_ptr``/``T_ptr`` are batch-local offsets of each edge's block (always
    set, also when the targets are None). ``rotation`` (B, 3, 3) is the augmentation rotation applied to each
    structure (None without augmentation): the batch holds ``pos @ Rᵀ``, ``cell @ Rᵀ``, ``D H Dᵀ``.
    """

    Z: torch.Tensor
    pos: torch.Tensor
    atom_batch: torch.Tensor
    cell: torch.Tensor
    natoms: torch.Tensor
    edge_src: torch.Tensor
    edge_dst: torch.Tensor
    shift: torch.Tensor
    edge_vec: torch.Tensor
    edge_batch: torch.Tensor
    H: torch.Tensor | None
    S: torch.Tensor | None
    H_ptr: torch.Tensor
    S_ptr: torch.Tensor
    T: torch.Tensor | None
    T_ptr: torch.Tensor
    layout: BasisLayout
    ids: list
    index: torch.Tensor
    spinful: bool
    kind: str
    rotation: torch.Tensor | None = None

    @property
    def num_structures(self) -> int:
        return int(self.natoms.shape[0])

    @property
    def num_atoms(self) -> int:
        return int(self.Z.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_src.shape[0])

    def _map(self, fn_float, fn_complex, fn_int):
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                if v.is_complex():
                    v = fn_complex(v)
                elif v.is_floating_point():
                    v = fn_float(v)
                else:
                    v = fn_int(v)
            out[f.name] = v
        return Batch(**out)

    def to(self, device=None, dtype=None) -> "Batch":
        """The batch on ``device`` with float tensors in ``dtype`` (complex H in the matching complex dtype).

        A dtype change recomputes ``edge_vec`` from the converted pos/cell (:func:`edge_vectors`).
        """
        if dtype is not None:
            dtype = _real_dtype(dtype)
        cdtype = _complex_of(dtype) if dtype is not None else None
        out = self._map(
            lambda v: v.to(device=device, dtype=dtype),
            lambda v: v.to(device=device, dtype=cdtype),
            lambda v: v.to(device=device),
        )
        if dtype is not None and dtype != self.pos.dtype:
            out.edge_vec = edge_vectors(out)
        return out

    def pin_memory(self) -> "Batch":
        """Page-locked copies (what ``DataLoader(pin_memory=True)`` calls)."""
        return self._map(lambda v: v.pin_memory(), lambda v: v.pin_memory(), lambda v: v.pin_memory())

    def blocks(self, e: int, which: str = "H") -> torch.Tensor:
        """The (n_i, n_j) block of edge ``e`` of ``which`` (H or S) as a 2-D view."""
        arr = self.H if which == "H" else self.S
        ptr = self.H_ptr if which == "H" else self.S_ptr
        spin = self.spinful and which == "H"
        zi, zj = int(self.Z[self.edge_src[e]]), int(self.Z[self.edge_dst[e]])
        ni, nj = self.layout.norb(zi, spin), self.layout.norb(zj, spin)
        return arr[int(ptr[e]) : int(ptr[e + 1])].reshape(ni, nj)


def _real_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "float64": torch.float64}.get(dtype, dtype)
    if dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be a real torch floating dtype, got {dtype}")
    return dtype


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def edge_vectors(batch: Batch, pos: torch.Tensor | None = None, cell: torch.Tensor | None = None) -> torch.Tensor:
    """Edge vectors ``r_ij = pos[dst] + shift·cell[b] − pos[src]`` (E, 3), differentiable in pos and cell.

    ``pos``/``cell`` default to the batch's; pass your own (e.g. with ``requires_grad``, or rotated) to
    recompute. With H_ij(R) = <φ_i(r)|H|φ_j(r − R·cell)>, atom j sits at ``pos[j] + R·cell`` seen from i.
    """
    pos = batch.pos if pos is None else pos
    cell = batch.cell if cell is None else cell
    shift = batch.shift.to(pos.dtype)
    lattice = torch.bmm(shift.unsqueeze(1), cell.to(pos.dtype)[batch.edge_batch]).squeeze(1)
    return pos[batch.edge_dst] + lattice - pos[batch.edge_src]


# --- rotations -----------------------------------------------------------------------------------------
def augment_rotation(seed: int, epoch: int, index: int) -> np.ndarray:
    """The augmentation rotation of store structure ``index`` in ``epoch``: uniform on SO(3), seeded by
    ``(seed, epoch, index)`` only (so it does not depend on ranks, workers or batch composition)."""
    return random_rotation(np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index), 0x5EED]))


def _rotate_range(r: StoreRange, rotations: np.ndarray) -> StoreRange:
    """A copy of ``r`` with structure s rotated by ``rotations[s]``: pos, cell, H, S (T is invariant)."""
    pos = r.pos.copy()
    cell = np.einsum("sij,skj->sik", r.cell, rotations)  # cell @ Rᵀ (rows are lattice vectors)
    H = None if r.H is None else np.empty_like(r.H)
    S = None if r.S is None else np.empty_like(r.S)
    for s in range(len(r)):
        R = rotations[s]
        a0, a1 = int(r.atom_ptr[s]), int(r.atom_ptr[s + 1])
        e0, e1 = int(r.edge_ptr[s]), int(r.edge_ptr[s + 1])
        pos[a0:a1] = r.pos[a0:a1] @ R.T
        Z = r.Z[a0:a1].astype(np.int64)
        zi, zj = Z[r.src[e0:e1]], Z[r.dst[e0:e1]]
        if H is not None and S is not None and not r.spinful:  # same block sizes: one call for H and S
            h0, h1 = int(r.H_ptr[e0]), int(r.H_ptr[e1])
            s0, s1 = int(r.S_ptr[e0]), int(r.S_ptr[e1])
            both = rotate_edge_blocks(np.concatenate([r.H[h0:h1], r.S[s0:s1]]), np.concatenate([zi, zi]),
                                      np.concatenate([zj, zj]), r.species, R, False)
            H[h0:h1], S[s0:s1] = both[: h1 - h0], both[h1 - h0 :]
            continue
        for name, out, spin in (("H", H, r.spinful), ("S", S, False)):
            if out is None:
                continue
            ptr = getattr(r, name + "_ptr")
            h0, h1 = int(ptr[e0]), int(ptr[e1])
            out[h0:h1] = rotate_edge_blocks(getattr(r, name)[h0:h1], zi, zj, r.species, R, spin)
    return replace(r, pos=pos, cell=cell, H=H, S=S)


# --- collate -------------------------------------------------------------------------------------------
def _tensor(x, dtype=None):
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t if dtype is None else t.to(dtype)


def _collate_range(r: StoreRange, layout: BasisLayout, dtype=torch.float64, rotations=None) -> Batch:
    dtype = _real_dtype(dtype)
    if rotations is not None:
        rotations = np.asarray(rotations, dtype=np.float64).reshape(len(r), 3, 3)
        r = _rotate_range(r, rotations)
    src, dst = r.endpoints()
    Z = r.Z.astype(np.int64)
    zs, zd = Z[src], Z[dst]
    H_ptr = r.H_ptr if r.H_ptr is not None else layout.block_ptr(zs, zd)
    S_ptr = r.S_ptr if r.S_ptr is not None else layout.block_ptr(zs, zd, spinful=False)
    T_ptr = r.T_ptr if r.T_ptr is not None else layout.trace_ptr(zs, zd)
    cdtype = _complex_of(dtype) if r.spinful else dtype
    return Batch(
        Z=_tensor(Z),
        pos=_tensor(r.pos, dtype),
        atom_batch=_tensor(r.atom_structure),
        cell=_tensor(r.cell, dtype),
        natoms=_tensor(r.natoms.astype(np.int64)),
        edge_src=_tensor(src),
        edge_dst=_tensor(dst),
        shift=_tensor(r.shift.astype(np.float64), dtype),
        edge_vec=_tensor(r.edge_vectors(), dtype),
        edge_batch=_tensor(r.edge_structure),
        H=None if r.H is None else _tensor(r.H, cdtype),
        S=None if r.S is None else _tensor(r.S, dtype),
        H_ptr=_tensor(np.asarray(H_ptr, np.int64)),
        S_ptr=_tensor(np.asarray(S_ptr, np.int64)),
        T=None if r.T is None else _tensor(r.T, dtype),
        T_ptr=_tensor(np.asarray(T_ptr, np.int64)),
        layout=layout,
        ids=[str(x) for x in r.ids],
        index=_tensor(r.index.astype(np.int64)),
        spinful=bool(r.spinful),
        kind=str(r.kind),
        rotation=None if rotations is None else _tensor(rotations, dtype),
    )


def collate(data, layout: BasisLayout | None = None, dtype=torch.float64, rotations=None) -> Batch:
    """One :class:`Batch` from a :class:`~hambench.store._store.StoreRange`, a list of them, or a list of
    :class:`~hambench.store._structure.Structure` (then as :func:`batch_from_structures`).

    ``rotations`` (B, 3, 3): rotate structure s by ``rotations[s]`` first (positions, cell, H, S).
    """
    if isinstance(data, StoreRange):
        data = [data]
    data = list(data)
    if data and not isinstance(data[0], StoreRange):
        return batch_from_structures(data, layout, dtype=dtype, rotations=rotations)
    r = StoreRange.concat(data)
    return _collate_range(r, r.layout if layout is None else layout, dtype, rotations)


def batch_from_structures(structs, layout: BasisLayout, dtype=torch.float64, rotations=None) -> Batch:
    """One :class:`Batch` from :class:`~hambench.store._structure.Structure` records in the basis ``layout``.

    Targets are optional: a structure without H (``H`` None or empty, as for ``predict --structures``) gives
    ``batch.H = None`` (then also S and T); with H, ``T`` is computed from H (:func:`hambench.basis._so3.edge_traces`).
    Either all structures have a target or none does. Elements unknown to ``layout``, or known with other
    shells, raise :class:`InputError` naming the structure (:meth:`StoreRange.from_structures`).
    """
    if layout is None:
        raise ValueError("batch_from_structures needs the basis layout")
    r = StoreRange.from_structures(structs, layout, traces="compute")
    return _collate_range(r, layout, dtype, rotations)


# --- streaming dataset ---------------------------------------------------------------------------------
class StoreDataset(torch.utils.data.IterableDataset):
    """Batches of a store (or of one split subset), streamed in structure ranges; yields :class:`Batch`.

    Order of one epoch (deterministic in ``seed`` and the epoch set by :meth:`set_epoch`):

    1. the selected structures (ascending store order) are cut into ranges of ``range_size``;
    2. ``shuffle``: the ranges are permuted (seed, epoch); the stream is their concatenation;
    3. DDP: the stream is padded by wrapping around to a multiple of ``world_size`` (or truncated when
       ``drop_last``) and rank r takes the r-th contiguous part — disjoint and equally long on every rank;
    4. the part is cut into groups of ``ceil(range_size / batch_size) * batch_size`` structures (about one range;
       ``shuffle`` permutes each group) and each group into batches of ``batch_size`` structures;
    5. DataLoader worker w of W handles groups w, w+W, …: it reads the structures of its group with one
       :meth:`~hambench.store._store.Store.read_range` per contiguous run (holes of at most ``max_gap`` structures
       are read through) and collates the group's batches.

    The contents of every batch do not depend on ``num_workers``; with W > 1 workers the DataLoader takes one
    batch from each worker in turn, so the order of the batches does. Memory holds about one group per worker.
    ``augment_rotations``: structure k of epoch e is rotated by :func:`augment_rotation` (seed, e, k).
    """

    def __init__(self, store, split: str | None = None, batch_size: int = 8, shuffle: bool = False, seed: int = 0,
                 augment_rotations: bool = False, rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 range_size: int = 64, dtype=torch.float64, blocks=("H", "S", "T"), max_gap: int = 8,
                 indices=None):
        super().__init__()
        if not isinstance(store, Store):
            store = open_store(store)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
            raise ValueError(f"rank {rank} is not in 0..world_size-1 (world_size {world_size})")
        if int(range_size) < 1:
            raise ValueError(f"range_size must be >= 1, got {range_size}")
        unknown = set(blocks) - {"H", "S", "T"}
        if unknown:
            raise ValueError(f"blocks must be among H, S, T, got {sorted(unknown)}")
        self.store = store
        self.split = split
        self.layout = store.layout
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.augment_rotations = bool(augment_rotations)
        self.rank, self.world_size, self.drop_last = int(rank), int(world_size), bool(drop_last)
        self.range_size, self.max_gap = int(range_size), int(max_gap)
        self.dtype = _real_dtype(dtype)
        self.blocks = tuple(blocks)
        self.selected = select_split(store, split)
        if indices is not None:  # an explicit selection (e.g. the engine's own train/val split), within ``split``
            idx = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1))
            if idx.size and (idx[0] < 0 or idx[-1] >= len(store)):
                raise InputError(store.path, f"structure index out of range 0..{len(store) - 1}")
            self.selected = np.intersect1d(self.selected, idx) if split is not None else idx
        # shared memory, so that persistent DataLoader workers see set_epoch of the main process
        self._epoch = multiprocessing.Value("q", 0, lock=False)

    def __getstate__(self):
        state = dict(self.__dict__)
        if multiprocessing.context.get_spawning_popen() is None:  # plain pickling: the epoch as a number
            state["_epoch"] = int(self._epoch.value)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if isinstance(self._epoch, int):
            self._epoch = multiprocessing.Value("q", self._epoch, lock=False)

    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (call before iterating each epoch: it seeds the shuffle and the rotations; persistent
        workers see it too)."""
        self._epoch.value = int(epoch)

    # --- the plan (cheap: integers only) -----------------------------------------------------------------
    def _per_rank(self) -> int:
        n, w = len(self.selected), self.world_size
        return n // w if self.drop_last else math.ceil(n / w)

    def __len__(self) -> int:
        L = self._per_rank()
        return L // self.batch_size if self.drop_last else math.ceil(L / self.batch_size)

    def rank_indices(self, epoch: int | None = None) -> np.ndarray:
        """Store indices this rank sees in ``epoch`` (before the within-group shuffle), in stream order."""
        epoch = self.epoch if epoch is None else int(epoch)
        sel = self.selected
        n_ranges = math.ceil(len(sel) / self.range_size)
        order = np.arange(n_ranges)
        if self.shuffle:
            order = np.random.default_rng([self.seed & 0xFFFFFFFF, epoch, 1]).permutation(n_ranges)
        stream = np.concatenate([sel[k * self.range_size : (k + 1) * self.range_size] for k in order]) \
            if n_ranges else np.zeros(0, np.int64)
        L = self._per_rank()
        total = L * self.world_size
        if total > len(stream):  # pad by wrapping around (every rank gets L structures)
            reps = math.ceil(total / max(len(stream), 1))
            stream = np.tile(stream, reps)
        stream = stream[:total]
        return stream[self.rank * L : (self.rank + 1) * L]

    def groups(self, epoch: int | None = None) -> list[list[np.ndarray]]:
        """The batches of this rank in ``epoch`` as groups: ``[[batch indices, …], …]`` (store indices)."""
        epoch = self.epoch if epoch is None else int(epoch)
        idx = self.rank_indices(epoch)
        bs = self.batch_size
        if self.drop_last:
            idx = idx[: (len(idx) // bs) * bs]
        g = max(1, math.ceil(self.range_size / bs)) * bs
        out = []
        for gi, start in enumerate(range(0, len(idx), g)):
            part = idx[start : start + g]
            if self.shuffle:
                rng = np.random.default_rng([self.seed & 0xFFFFFFFF, epoch, 2, self.rank, gi])
                part = part[rng.permutation(len(part))]
            out.append([part[b : b + bs] for b in range(0, len(part), bs)])
        return out

    def batch_indices(self, epoch: int | None = None) -> list[np.ndarray]:
        """The batches of this rank (store indices of each), in the order of a single-process loader."""
        return [b for grp in self.groups(epoch) for b in grp]

    # --- reading -----------------------------------------------------------------------------------------
    def read_group(self, group: list[np.ndarray]) -> list[Batch]:
        """Read and collate one group of batches (one read per contiguous run of its structures)."""
        r = read_spans(self.store, np.concatenate(group), blocks=self.blocks, max_gap=self.max_gap)
        out = []
        for b in group:
            sub = r.take(r.rows_of(b))
            rot = None
            if self.augment_rotations:
                rot = np.stack([augment_rotation(self.seed, self.epoch, int(k)) for k in b])
            out.append(_collate_range(sub, self.layout, self.dtype, rot))
        return out

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, W = (0, 1) if info is None else (info.id, info.num_workers)
        for grp in self.groups()[w::W]:
            yield from self.read_group(grp)


class StoreLoader:
    """What :func:`make_loader` returns: iterate for :class:`Batch` objects; ``len()`` batches per epoch;
    :meth:`set_epoch` before each epoch (seeds shuffling and augmentation)."""

    def __init__(self, dataset: StoreDataset, num_workers: int = 0, pin_memory: bool = False,
                 prefetch_factor: int | None = None, multiprocessing_context=None, persistent_workers: bool = True):
        self.dataset = dataset
        self.num_workers = int(num_workers)
        kw = {}
        if self.num_workers > 0:
            kw["prefetch_factor"] = prefetch_factor or 2
            kw["persistent_workers"] = bool(persistent_workers)
            if multiprocessing_context is not None:
                kw["multiprocessing_context"] = multiprocessing_context
        self._loader = torch.utils.data.DataLoader(
            dataset, batch_size=None, num_workers=self.num_workers, collate_fn=_identity, pin_memory=pin_memory,
            **kw,
        )

    @property
    def layout(self) -> BasisLayout:
        return self.dataset.layout

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        return iter(self._loader)


def _identity(x):
    return x


def make_loader(store, split: str | None = None, batch_size: int = 8, shuffle: bool = False, seed: int = 0,
                augment_rotations: bool = False, rank: int = 0, world_size: int = 1, num_workers: int = 0,
                dtype=torch.float64, drop_last: bool = False, range_size: int = 64, blocks=("H", "S", "T"),
                pin_memory: bool = False, multiprocessing_context=None, persistent_workers: bool = True,
                indices=None) -> StoreLoader:
    """A loader of :class:`Batch` objects over ``store`` (a path or an open Store); see :class:`StoreDataset`.

    ``split``: ``"name:subset"`` (e.g. ``"qh9-stable-id:train"``) or None for every structure;
    ``indices``: only these store indices (intersected with ``split`` when both are given);
    ``batch_size`` counts structures; ``rank``/``world_size``: DDP part of this process;
    ``num_workers``: DataLoader worker processes, each reading its own ranges (kept between epochs unless
    ``persistent_workers=False``; :meth:`StoreLoader.set_epoch` reaches them through shared memory).
    """
    ds = StoreDataset(store, split=split, batch_size=batch_size, shuffle=shuffle, seed=seed,
                      augment_rotations=augment_rotations, rank=rank, world_size=world_size, drop_last=drop_last,
                      range_size=range_size, dtype=dtype, blocks=blocks, indices=indices)
    return StoreLoader(ds, num_workers=num_workers, pin_memory=pin_memory,
                       multiprocessing_context=multiprocessing_context, persistent_workers=persistent_workers)

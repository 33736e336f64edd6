"""A hambench store opened for reading: :func:`open_store` validates it once, :class:`Store` reads it.

Opening parses the attributes into one :class:`~hambench.store._meta.StoreMeta` (``store.meta``: version, kind,
spin, species, counts, splits, …) and checks every array of the schema (:mod:`hambench.store._schema`) against
the counts. Reading: ``store[k]`` gives one :class:`~hambench.store._structure.Structure`;
``store.read_range(a, b)`` gives structures a..b-1 as one :class:`~hambench.store._range.StoreRange` of flat CSR
arrays (one slice per array, batched into two round trips to zarr); :func:`hambench.store._read.gather` gives
structures by index. Array handles are opened once per :class:`Store`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from hambench.basis._layout import BasisLayout, layout_of
from hambench.errors import HambenchError, InputError, StoreError
from hambench.store._integrity import check_shards
from hambench.store._meta import StoreMeta
from hambench.store._range import StoreRange
from hambench.store._schema import FIELDS, array_specs
from hambench.store._structure import Structure
from hambench.store._summary import summary_dict, summary_text

try:  # zarr's documented way to batch requests into one hand-off to its I/O loop
    from zarr.core.sync import sync as _zarr_sync
except ImportError:  # pragma: no cover - other zarr versions
    _zarr_sync = None

__all__ = ["open_store", "as_store", "require_truth", "Store"]

#: the per-structure arrays :meth:`Store.read_range` reads (``sources`` on request)
_STRUCTURE_ARRAYS = ("id", "cell", "pbc", "energy", "nelectron", "fermi_level", "parent", "rotation")


@dataclass
class _Ptrs:
    atom: np.ndarray
    edge: np.ndarray
    H: np.ndarray
    S: np.ndarray
    T: np.ndarray


class Store:
    """A hambench store opened for reading: ``len(store)``, ``store[k] -> Structure``, ``store.meta``,
    ``store.read_range(a, b) -> StoreRange`` (flat CSR arrays of many structures at once).

    Use :func:`open_store`; opening validates the version and the fields. Each zarr array is opened once per
    Store and its handle cached (a lookup costs ~0.5 ms; re-opening every field of every structure was most of
    the time of the first ``store[k]``). A Store pickles as its path (handles are re-opened on the other side).
    """

    def __init__(self, path, group, meta: StoreMeta | None = None):
        self.path = Path(path)
        self.group = group
        self.meta = meta if meta is not None else StoreMeta.from_dict(group.attrs.asdict(), where=self.path)
        self._ptr: _Ptrs | None = None
        self._arrays: dict = {}
        self._sptr: tuple[np.ndarray, np.ndarray] | None = None

    def __getstate__(self):
        return {"path": str(self.path)}

    def __setstate__(self, state):
        self.__init__(state["path"], zarr.open_group(state["path"], mode="r"))

    def __len__(self) -> int:
        return self.meta.counts.structures

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, {len(self)} structures)"

    def array(self, name: str):
        """The zarr array ``name`` (e.g. ``'blocks/H'``), opened once and cached."""
        arr = self._arrays.get(name)
        if arr is None:
            arr = self._arrays[name] = self.group[name]
        return arr

    # --- the typed attributes ------------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        """The attribute dict as stored (``meta.to_dict()``, a copy): for display and tools; code reads ``meta``."""
        return self.meta.to_dict()

    @property
    def spinful(self) -> bool:
        return self.meta.spinful

    @property
    def kind(self) -> str:
        return self.meta.kind

    @property
    def species(self) -> dict[int, list[int]]:
        return {z: list(s) for z, s in self.meta.species.items()}

    @property
    def layout(self) -> BasisLayout:
        """The store's basis layout (species + spin), cached by :func:`hambench.basis.layout_of`."""
        return layout_of(self.meta.species, self.meta.spinful)

    @property
    def split_names(self) -> list[str]:
        return self.meta.split_names

    # --- offsets ---------------------------------------------------------------------------------------------
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
        """Structure indices of each subset of split ``name`` (:class:`StoreError` for an unknown split)."""
        labels = self.meta.splits.get(name)
        if labels is None:
            raise StoreError(f"{self.path}: no split named {name!r}; splits: {self.meta.split_names}")
        codes = self.array(f"splits/{name}")[:]
        return {lab: np.flatnonzero(codes == i) for i, lab in enumerate(labels)}

    # --- reading ---------------------------------------------------------------------------------------------
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
        blocks = [name for name in ("H", "S", "T") if name in blocks]
        want = {f"edges/{name}_ptr": slice(e0, e1 + 1) for name in blocks}
        for name in _STRUCTURE_ARRAYS + (("sources",) if sources else ()):
            want[f"structures/{name}"] = slice(a, b)
        want.update({f"splits/{name}": slice(a, b) for name in self.meta.splits})
        want.update({f"atoms/{name}": slice(a0, a1) for name in ("Z", "pos")})
        want.update({f"edges/{name}": slice(e0, e1) for name in ("src", "dst", "shift")})
        got = self._read_many(want)
        ptrs = {name: got[f"edges/{name}_ptr"] for name in blocks}
        flat = self._read_many({f"blocks/{name}": slice(int(p[0]), int(p[-1])) for name, p in ptrs.items()})
        return StoreRange(
            index=np.arange(a, b, dtype=np.int64), ids=np.asarray(got["structures/id"], dtype=object),
            natoms=np.diff(atom_ptr[a : b + 1]).astype(np.int64), atom_ptr=atom_ptr[a : b + 1] - a0,
            edge_ptr=edge_ptr[a : b + 1] - e0, cell=got["structures/cell"], pbc=got["structures/pbc"],
            energy=got["structures/energy"], nelectron=got["structures/nelectron"],
            fermi_level=got["structures/fermi_level"], parent=got["structures/parent"],
            rotation=got["structures/rotation"], Z=got["atoms/Z"], pos=got["atoms/pos"], src=got["edges/src"],
            dst=got["edges/dst"], shift=got["edges/shift"],
            **{name: flat[f"blocks/{name}"] for name in blocks}, **{f"{name}_ptr": p - p[0] for name, p in ptrs.items()},
            splits={name: got[f"splits/{name}"] for name in self.meta.splits},
            split_labels={name: list(labels) for name, labels in self.meta.splits.items()},
            sources=np.asarray(got["structures/sources"], dtype=object) if sources else None,
            species=self.species, spinful=self.spinful, kind=self.kind,
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
        if _zarr_sync is not None and all(hasattr(a, "async_array") for a in arrays):
            async def gather():
                return await asyncio.gather(*(a.async_array.getitem(want[n]) for n, a in zip(names, arrays)))

            values = _zarr_sync(gather())
        else:  # pragma: no cover - other zarr versions
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
        _, edge_ptr = self.structure_ptrs
        tp = self.array("edges/T_ptr")[int(edge_ptr[k]) : int(edge_ptr[k + 1]) + 1]
        return self.array("blocks/T")[int(tp[0]) : int(tp[-1])], tp - tp[0]

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]

    # --- summaries -------------------------------------------------------------------------------------------
    def summary_dict(self) -> dict:
        return summary_dict(self)

    def summary_json(self) -> str:
        return json.dumps(self.summary_dict(), indent=2, ensure_ascii=False)

    def summary(self) -> str:
        return summary_text(self.summary_dict())


def open_store(path) -> Store:
    """Open a store for reading, validating its attributes (:class:`~hambench.store._meta.StoreMeta`), that
    every array of the schema is there with the shape its counts give, and that every shard file is there and
    whole (:func:`~hambench.store._integrity.check_shards`: sizes against the manifest the writer recorded).
    One :class:`StoreError` line naming the store (and the array and structures) if not."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such store")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as e:
        raise StoreError(f"{path}: not a Zarr v3 store ({type(e).__name__}: {e})") from None
    meta = StoreMeta.from_dict(group.attrs.asdict(), where=path)
    store = Store(path, group, meta)
    for name, spec in array_specs(meta.counts, meta.spinful, meta.splits).items():
        try:
            arr = store.array(name)
        except KeyError:
            raise StoreError(f"{path}: missing field {name}") from None
        if name in FIELDS and tuple(arr.shape) != spec.shape:
            raise StoreError(f"{path}: field {name} has shape {tuple(arr.shape)}, expected {spec.shape}")
    check_shards(store)
    return store


def as_store(store) -> Store:
    """``store`` itself if it is an open :class:`Store`, else the store at that path (:func:`open_store`)."""
    if isinstance(store, Store):
        return store
    try:
        return open_store(store)
    except HambenchError:
        raise
    except Exception as e:  # pragma: no cover - zarr's own failures
        raise InputError(store, f"cannot be opened as a hambench store ({type(e).__name__}: {e})") from None


def require_truth(store: Store, use: str) -> Store:
    """``store`` if it holds DFT labels (``meta.role == 'truth'``); a prediction store is refused with one
    :class:`InputError` line naming it and ``use`` (e.g. ``"training data"``, ``"--truth"``)."""
    if store.meta.role != "truth":
        model = (store.meta.model or {}).get("name")
        made = f" (predictions of model {model!r})" if model else ""
        raise InputError(store.path, f"is a prediction store{made}, not {use}: give the store `hambench prepare` "
                                     "made from DFT")
    return store

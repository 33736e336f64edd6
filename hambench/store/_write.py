"""The one writer of the store format: array metadata, attributes and shards.

:class:`StoreWriter` creates a store of known counts (every ``zarr.json``, the attributes as a validated
:class:`~hambench.store._meta.StoreMeta`) and then either streams structure batches in order (:meth:`StoreWriter.append`,
what the prediction writers do) or leaves the shards to independent jobs (``prepare``'s shard jobs in
:mod:`hambench.pipelines.parts`). Either way every shard is written once by :func:`write_array_shard`: numeric
arrays as the bytes zarr would write (:mod:`hambench.store._shards`), string arrays through zarr. A finished
store is sealed (:func:`hambench.store._checksum.seal_store`): its shard manifest and content checksum recorded.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import zarr

from hambench.basis._conventions import ORBITAL_CONVENTION
from hambench.store._checksum import seal_store
from hambench.store._integrity import SHARDS_KEY
from hambench.store._meta import StoreMeta
from hambench.store._range import StoreRange
from hambench.store._schema import PTRS, STORE_VERSION, ArraySpec, array_specs
from hambench.store._shards import array_metadata, group_metadata, write_metadata, write_shard

__all__ = ["StoreWriter", "write_array_shard"]

UNITS = {"energy": "eV", "length": "Å"}


def write_array_shard(store_dir, spec: ArraySpec, k: int, rows) -> int:
    """Write shard ``k`` of array ``spec`` of the store at ``store_dir`` (its first ``len(rows)`` rows; each shard
    is written once, by one process); returns the rows written."""
    folder = Path(store_dir) / spec.name
    if spec.dtype == "str":
        zarr.open_array(str(folder), mode="r+")[k * spec.shard : k * spec.shard + len(rows)] = rows
    else:
        write_shard(folder, k, np.asarray(rows, dtype=np.dtype(spec.dtype)), spec.chunk, spec.shard)
    return len(rows)


class _Sink:
    """Appends rows to one store array and writes each shard as soon as it is full (once, whole)."""

    def __init__(self, store_dir: Path, spec: ArraySpec):
        self.store_dir, self.spec = store_dir, spec
        self.written = 0
        self.pending: list[np.ndarray] = []
        self.npending = 0

    def append(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        self.pending.append(rows)
        self.npending += len(rows)
        if self.npending >= self.spec.shard:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self.pending:
            return
        data = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        shard = self.spec.shard
        take = len(data) if final else (len(data) // shard) * shard
        for a in range(0, take, shard):
            write_array_shard(self.store_dir, self.spec, (self.written + a) // shard, data[a : min(take, a + shard)])
        self.written += take
        rest = data[take:]
        self.pending = [rest] if len(rest) else []
        self.npending = len(rest)

    def close(self) -> None:
        self._flush(final=True)
        if self.written != self.spec.rows:
            raise RuntimeError(f"{self.store_dir / self.spec.name}: wrote {self.written} rows, expected {self.spec.rows}")


class StoreWriter:
    """Writes a store of known counts: metadata now, then structure batches streamed in order.

    >>> w = StoreWriter(path, counts, attrs, split_names)   # doctest: +SKIP
    >>> w.append(store_range); ...; w.close()

    ``counts`` = {structures, atoms, edges, H, S, T}; ``attrs`` the store's attributes but the version, units,
    orbital convention (added first) and counts (added last), validated as a :class:`StoreMeta` (``self.meta``);
    ``split_names``: the ``splits/<name>`` arrays to create. ``self.arrays`` are the arrays' specs (what
    ``prepare``'s shard jobs write). A batch is a :class:`StoreRange` or its :meth:`~StoreRange.columns`; offsets
    (``*_ptr``) are computed here. The caller writes into a temporary path and renames it on success.
    """

    def __init__(self, path, counts: Mapping, attrs: Mapping, split_names=()):
        self.path = Path(path)
        # the manifest and checksum describe files: those of the store being written are sealed by close()
        attrs = {k: v for k, v in attrs.items() if k not in (SHARDS_KEY, "content_checksum")}
        full = {"hambench_store_version": STORE_VERSION, "units": dict(UNITS), "orbital_convention": ORBITAL_CONVENTION,
                **attrs, "counts": {k: int(v) for k, v in counts.items()}}
        self.meta = StoreMeta.from_dict(full, where=self.path)
        self.arrays = array_specs(self.meta.counts, self.meta.spinful, split_names)
        if self.path.exists():  # mode "w": a fresh store
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        self._create_arrays()
        write_metadata(self.path, group_metadata(self.meta.to_dict()))
        self.sinks = {name: _Sink(self.path, spec) for name, spec in self.arrays.items()}
        self._offsets = {ptr: 0 for ptr in PTRS}
        for ptr in PTRS:
            self.sinks[ptr].append(np.zeros(1, np.int64))

    def _create_arrays(self) -> None:
        """Write every array's and group's ``zarr.json`` (:func:`hambench.store._shards.array_metadata`: zarr's
        bytes, without ~2 ms of zarr's event loop per array)."""
        for name, spec in self.arrays.items():
            parent = self.path / name.split("/")[0]
            if not (parent / "zarr.json").exists():
                write_metadata(parent, group_metadata())
            write_metadata(self.path / name, array_metadata(spec.shape, spec.dtype, spec.chunk, spec.shard))

    def append(self, batch: StoreRange | Mapping) -> None:
        """Append a batch of whole structures: a :class:`StoreRange` or columns keyed like the store's arrays
        without the ``*_ptr`` (those come from ``structures/natoms``, ``structures/nedges`` and the per-edge
        sizes ``edges/H_size``, ``edges/S_size``, ``edges/T_size``)."""
        columns = batch.columns() if isinstance(batch, StoreRange) else batch
        for ptr, (sizes, _) in PTRS.items():
            c = np.cumsum(np.asarray(columns[sizes], dtype=np.int64)) + self._offsets[ptr]
            if len(c):
                self._offsets[ptr] = int(c[-1])
            self.sinks[ptr].append(c)
        for name, sink in self.sinks.items():
            if name in PTRS:
                continue
            if name not in columns:
                raise KeyError(f"batch lacks {name}")
            sink.append(np.asarray(columns[name]))

    def close(self, seal: bool = True) -> None:
        """Write the last shards and (``seal``) seal the store (:func:`~hambench.store._checksum.seal_store`:
        its shard manifest and content checksum). ``seal=False`` for a caller that adds arrays first and then
        calls :func:`~hambench.store._checksum.seal_store` itself."""
        for sink in self.sinks.values():
            sink.close()
        for ptr, (_, rows) in PTRS.items():
            if self._offsets[ptr] != getattr(self.meta.counts, rows):
                raise RuntimeError(f"{self.path}: wrote {self._offsets[ptr]} {rows}, expected "
                                   f"{getattr(self.meta.counts, rows)}")
        if seal:
            seal_store(self.path)

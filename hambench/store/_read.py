"""Reading many structures of a store at once: runs of indices, spans read through small holes, gathers.

:meth:`hambench.store._store.Store.read_range` reads one contiguous range with one slice per array. Everything
that wants structures by index (training groups, scoring, the prediction writer and reader) goes through
:func:`read_spans` (the few ranges covering the indices) and :func:`gather` (those structures, in the order
asked), so spans are cut and reordered in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hambench.store._range import StoreRange

__all__ = ["MAX_GAP", "CHUNK", "contiguous_spans", "index_runs", "chunks", "read_spans", "gather"]

#: holes of at most this many structures are read through rather than cut into separate reads
MAX_GAP = 8
#: structures per read when writing or validating
CHUNK = 64


def contiguous_spans(sorted_idx: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """Contiguous read spans [a, b) covering the sorted structure indices ``sorted_idx``, merging holes of at most
    ``max_gap`` structures (reading a few unwanted structures is cheaper than another round of slice reads)."""
    if len(sorted_idx) == 0:
        return []
    cuts = np.flatnonzero(np.diff(sorted_idx) > max_gap + 1) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(sorted_idx)]])
    return [(int(sorted_idx[s]), int(sorted_idx[e - 1]) + 1) for s, e in zip(starts, ends)]


def index_runs(indices: np.ndarray) -> list[tuple[int, int, int]]:
    """Split a sequence of structure indices into runs of consecutive ones: ``(first position, start, stop)``
    with ``indices[pos:pos + stop - start] == range(start, stop)``."""
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size == 0:
        return []
    brk = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], brk])
    stops = np.concatenate([brk, [idx.size]])
    return [(int(p), int(idx[p]), int(idx[p]) + int(q - p)) for p, q in zip(starts, stops)]


def chunks(n: int, size: int = CHUNK) -> list[tuple[int, int]]:
    """``[(a, b), …]`` covering ``0..n-1`` in pieces of ``size``."""
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def read_spans(store, indices, blocks: Sequence[str] = ("H", "S"), sources: bool = False,
               max_gap: int = MAX_GAP) -> StoreRange:
    """One range (ascending store order) holding at least the structures ``indices`` (any order, repeats
    allowed): one :meth:`~hambench.store._store.Store.read_range` per span, holes of at most ``max_gap``
    structures read through and kept (:meth:`StoreRange.rows_of` finds the structures wanted)."""
    want = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1))
    spans = contiguous_spans(want, max_gap)
    return StoreRange.concat([store.read_range(a, b, blocks=blocks, sources=sources) for a, b in spans])


def gather(store, indices, blocks: Sequence[str] = ("H", "S"), sources: bool = False,
           max_gap: int = MAX_GAP) -> StoreRange:
    """Structures ``indices`` (any order, repeats allowed) of a store as one :class:`StoreRange`, in the order
    given (:func:`read_spans`, then the holes dropped and the structures put in order)."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    r = read_spans(store, idx, blocks, sources, max_gap)
    if len(r) == len(idx) and np.array_equal(r.index, idx):
        return r
    return r.take(r.rows_of(idx))

"""The prediction store: predicted Hamiltonian blocks of some structures of a truth store, and how to read them.

A prediction store (``preds.zarr``) has the truth store's schema (:mod:`hambench.store._schema`), restricted to the
predicted structures: the same structure ids, atoms and edges (copied from the truth), ``blocks/H`` = the
predictions (optional ``blocks/T`` = predicted trace labels), no overlap (``blocks/S`` is empty). Its
:class:`~hambench.store._meta.StoreMeta` adds::

    hambench_predictions_version: 1
    truth:      {path, checksum, store_version}    # the content checksum of the whole truth store
    model:      {name, checkpoint, config}          # whatever the predictor says about itself
    split:      "name:subset" | null
    created_by: {hambench, command}
    content_checksum: {algorithm, sha256, fingerprint}   # the store's own checksum, cached

People who train with their own code write one with :func:`write_predictions` and score it with
``hambench score``; ``hambench predict`` uses the same writer. :func:`open_predictions` refuses a prediction
store that does not match its truth (changed checksum, unknown ids, other edges or block sizes, NaN/Inf, another
version) with one :class:`~hambench.errors.InputError` line naming the file.

Example
-------
>>> from hambench.store import write_predictions, open_predictions      # doctest: +SKIP
>>> write_predictions("test.zarr", ids, blocks, "preds.zarr", {"model": {"name": "mine"}})  # doctest: +SKIP
>>> p = open_predictions("preds.zarr")           # finds test.zarr from the attrs and validates  # doctest: +SKIP
>>> pred, true = p.pair(0)                        # two Structures: predicted H / true H and S   # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import zarr

from hambench import __version__
from hambench.atomic import replace_dir
from hambench.errors import HambenchError, InputError
from hambench.store._checksum import seal_store, store_checksum
from hambench.store._range import StoreRange, offsets
from hambench.store._read import chunks, gather, index_runs
from hambench.store._store import Store, as_store, open_store, require_truth
from hambench.store._structure import Structure
from hambench.store._write import StoreWriter

__all__ = ["PREDICTIONS_VERSION", "write_predictions", "open_predictions", "Predictions"]

PREDICTIONS_VERSION = 1


# --- writing ---------------------------------------------------------------------------------------------
def _resolve_indices(truth: Store, ids, where) -> np.ndarray:
    ids = list(ids)
    n = len(truth)
    if not ids:
        raise InputError(where, "no structures to write (ids is empty)")
    if all(isinstance(x, (int, np.integer)) for x in ids):
        idx = np.asarray(ids, dtype=np.int64)
        bad = idx[(idx < 0) | (idx >= n)]
        if bad.size:
            raise InputError(where, f"structure index {int(bad[0])} is out of range for {truth.path} ({n} structures)")
    else:
        lookup = {str(s): k for k, s in enumerate(truth.array("structures/id")[:])}
        idx = np.empty(len(ids), dtype=np.int64)
        for k, x in enumerate(ids):
            got = lookup.get(str(x))
            if got is None:
                raise InputError(where, f"structure id {str(x)!r} is not in the truth store {truth.path}")
            idx[k] = got
    u, c = np.unique(idx, return_counts=True)
    if np.any(c > 1):
        dup = str(truth.array("structures/id")[int(u[c > 1][0])])
        raise InputError(where, f"structure {dup!r} is given more than once")
    return idx


def _check_flat(x, expect: int, spinful: bool, sid: str, what: str, where) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind == "c" and not spinful:
        if np.any(x.imag != 0):
            raise InputError(where, f"structure {sid!r}: complex {what} for a spinless truth store")
        x = x.real
    if x.dtype.kind not in "fciub":
        raise InputError(where, f"structure {sid!r}: {what} has dtype {x.dtype}, expected numbers")
    x = x.reshape(-1).astype(np.complex128 if (spinful and what == "H") else np.float64)
    if x.size != expect:
        raise InputError(where, f"structure {sid!r}: {what} has {x.size} elements, the truth's edges need {expect}")
    if not np.all(np.isfinite(x)):
        raise InputError(where, f"structure {sid!r}: {what} contains NaN/Inf")
    return x


def _prediction_attrs(truth: Store, meta: dict) -> dict:
    """The attributes of a prediction store of ``truth`` (``meta``: model, split, created_by; the rest kept
    under ``meta``)."""
    meta = dict(meta)
    t = truth.meta
    attrs = {
        "kind": t.kind, "spinful": t.spinful, "species": t.species, "dft": t.dft, "constants": t.constants,
        "splits": t.splits, "hambench_predictions_version": PREDICTIONS_VERSION,
        "truth": {"path": str(truth.path.resolve()), "checksum": store_checksum(truth), "store_version": t.version},
        "model": meta.pop("model", {}) or {},
        "split": meta.pop("split", None),
        "created_by": meta.pop("created_by", None) or {"hambench": __version__, "command": " ".join(sys.argv)},
    }
    if meta:
        attrs["meta"] = meta
    return attrs


def _counts(truth: Store, idx: np.ndarray, with_T: bool) -> dict:
    p = truth.ptr
    return {
        "structures": int(idx.size),
        "atoms": int(np.sum(p.atom[idx + 1] - p.atom[idx])),
        "edges": int(np.sum(p.edge[idx + 1] - p.edge[idx])),
        "H": int(np.sum(p.H[p.edge[idx + 1]] - p.H[p.edge[idx]])),
        "S": 0,
        "T": int(np.sum(p.T[p.edge[idx + 1]] - p.T[p.edge[idx]])) if with_T else 0,
    }


def _check_in_memory(truth: Store, idx: np.ndarray, blocks: Sequence, where) -> None:
    """Blocks held in memory are checked before anything is written: count, sizes, finite, real when spinless."""
    if len(blocks) != idx.size:
        raise InputError(where, f"blocks has {'fewer' if len(blocks) < idx.size else 'more'} entries "
                                f"({len(blocks)}) than ids ({idx.size})")
    p, spinful = truth.ptr, truth.spinful
    need = p.H[p.edge[idx + 1]] - p.H[p.edge[idx]]
    for k, (x, n) in enumerate(zip(blocks, need)):
        if np.size(x) != n or not np.all(np.isfinite(x)) or (np.iscomplexobj(x) and not spinful):
            _check_flat(x, int(n), spinful, str(truth.array("structures/id")[int(idx[k])]), "H", where)


def _next(it, what: str, done: int, total: int, where):
    try:
        return next(it)
    except StopIteration:
        raise InputError(where, f"{what} has fewer entries ({done}) than ids ({total})") from None


def _predicted(d: StoreRange, blocks_it, T_it, first: int, total: int, where) -> StoreRange:
    """The truth structures ``d`` with the next predicted H (and T) blocks, checked against their edges; no S,
    no parents (a subset does not carry them)."""
    zs, zd = d.edge_Z()
    hptr, tptr = d.layout.block_ptr(zs, zd), d.layout.trace_ptr(zs, zd)
    Hs, Ts = [], []
    for k in range(len(d)):
        sid, e0, e1 = str(d.ids[k]), int(d.edge_ptr[k]), int(d.edge_ptr[k + 1])
        Hs.append(_check_flat(_next(blocks_it, "blocks", first + k, total, where), int(hptr[e1] - hptr[e0]),
                              d.spinful, sid, "H", where))
        if T_it is not None:
            Ts.append(_check_flat(_next(T_it, "T", first + k, total, where), int(tptr[e1] - tptr[e0]), False, sid,
                                  "T", where))
    return replace(d, parent=np.full(len(d), -1, np.int64), H=np.concatenate(Hs) if Hs else np.zeros(0),
                   H_ptr=offsets(np.diff(hptr)), S=None, S_ptr=None,
                   T=(np.concatenate(Ts) if Ts else np.zeros(0)) if T_it is not None else None,
                   T_ptr=offsets(np.diff(tptr)) if T_it is not None else None)


def write_predictions(truth_store_or_path, ids: Iterable, blocks: Iterable, out_path, meta: dict | None = None,
                      T: Iterable | None = None, overwrite: bool = False) -> Path:
    """Write a prediction store for structures ``ids`` of a truth store (atomically).

    Parameters
    ----------
    truth_store_or_path : a :class:`~hambench.store._store.Store` or its path
    ids : structure ids (str) or indices (int) of the truth store, in the order the store will hold them
    blocks : one flat array per structure (same order): the predicted H blocks of the truth's edges, hambench
        order, row-major per edge, eV (complex for spinful stores). May be a generator (streamed).
    out_path : ``NAME.zarr``; written to ``NAME.zarr.partial`` and renamed at the end
    meta : ``{"model": {name, checkpoint, config}, "split": "name:subset" | None, "created_by": {...}}``;
        other keys are kept under ``attrs["meta"]``
    T : optional predicted trace labels, one flat array per structure (sizes of the truth's T)
    overwrite : replace an existing ``out_path``

    Returns the path written. Raises :class:`InputError` (naming ``out_path``) for unknown or repeated ids,
    wrong sizes, NaN/Inf, or complex blocks for a spinless store.
    """
    truth = as_store(truth_store_or_path)
    out = Path(out_path)
    if out.exists() and not overwrite:
        raise InputError(out, "exists already; choose another path or pass overwrite=True (--overwrite)")
    idx = _resolve_indices(truth, ids, out)
    if isinstance(blocks, Sequence) and not isinstance(blocks, np.ndarray):
        _check_in_memory(truth, idx, blocks, out)
    attrs = _prediction_attrs(truth, meta or {})
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    blocks_it, T_it = iter(blocks), (iter(T) if T is not None else None)
    try:
        writer = StoreWriter(partial, _counts(truth, idx, T is not None), attrs, list(truth.meta.splits))
        for c0, c1 in chunks(idx.size):
            d = gather(truth, idx[c0:c1], blocks=(), sources=True)
            writer.append(_predicted(d, blocks_it, T_it, c0, idx.size, out))
        if next(blocks_it, None) is not None:
            raise InputError(out, f"blocks has more entries than ids ({idx.size})")
        writer.close(seal=False)
        g = zarr.open_group(str(partial), mode="r+")
        ti = g.create_array("structures/truth_index", shape=(idx.size,), dtype="int64",
                            chunks=(max(1, min(idx.size, 1 << 17)),), compressors=None)
        ti[:] = idx
        seal_store(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_dir(partial, out)
    return out


# --- reading ---------------------------------------------------------------------------------------------
class Predictions:
    """A validated prediction store with its truth: ``len(p)``, ``p.ids``, ``p.truth_index``, ``p.pair(k)``.

    Attributes: ``path``, ``store`` (the prediction :class:`~hambench.store._store.Store`), ``truth`` (the truth
    store), ``truth_index`` ((n,) int64: structure k of the predictions is structure ``truth_index[k]`` of the
    truth), ``checksum`` (the predictions' own content checksum), ``truth_checksum``, ``meta`` (the prediction
    store's :class:`~hambench.store._meta.StoreMeta`), ``model``, ``split``, ``attrs``.
    """

    def __init__(self, path: Path, store: Store, truth: Store, truth_index: np.ndarray, checksum: str,
                 truth_checksum: str):
        self.path = Path(path)
        self.store = store
        self.truth = truth
        self.truth_index = truth_index
        self.checksum = checksum
        self.truth_checksum = truth_checksum
        self.meta = store.meta

    def __len__(self) -> int:
        return len(self.store)

    def __repr__(self) -> str:
        return f"Predictions({str(self.path)!r}, {len(self)} structures of {str(self.truth.path)!r})"

    @property
    def attrs(self) -> dict:
        return self.store.attrs

    @property
    def ids(self) -> list[str]:
        return [str(x) for x in self.store.array("structures/id")[:]]

    @property
    def model(self) -> dict:
        return dict(self.meta.model or {})

    @property
    def split(self) -> str | None:
        return self.meta.predicted_split

    @property
    def kind(self) -> str:
        return self.truth.kind

    @property
    def spinful(self) -> bool:
        return self.truth.spinful

    def pair(self, k: int) -> tuple[Structure, Structure]:
        """(predicted, true) structures ``k``: the same atoms and edges; predicted H (S taken from the truth)."""
        true = self.truth[int(self.truth_index[k])]
        pred = self.store[k]
        pred.S = true.S
        return pred, true

    def ranges(self) -> list[tuple[int, int, int]]:
        """Runs of consecutive truth indices: ``(first prediction index, truth start, truth stop)``."""
        return index_runs(self.truth_index)


def _open_predictions_store(path: Path) -> Store:
    if not path.exists():
        raise InputError(path, "no such prediction store")
    try:
        st = open_store(path)
    except HambenchError as e:
        msg = str(e)
        raise InputError(path, msg.split(": ", 1)[1] if msg.startswith(str(path)) else msg) from None
    ver = st.meta.predictions_version
    if ver is None:
        raise InputError(path, "is a store but not a prediction store (no hambench_predictions_version attribute)")
    if ver != PREDICTIONS_VERSION:
        raise InputError(path, f"predictions version {ver}, this hambench reads version {PREDICTIONS_VERSION}")
    return st


def _find_truth(path: Path, st: Store, truth) -> Store:
    if st.meta.truth is None and "structures_file" in st.meta.extra:
        sf = (st.meta.extra.get("structures_file") or {}).get("path")
        raise InputError(path, f"was predicted from the structure file {sf} (predict --structures), not from a "
                               "store: there is no DFT truth to score it against")
    if truth is not None:
        return require_truth(as_store(truth), "a truth store (--truth)")
    rp = (st.meta.truth or {}).get("path")
    if not rp:
        raise InputError(path, "does not name its truth store; pass --truth STORE")
    cands = [Path(rp)]
    if not Path(rp).is_absolute():
        cands.append(path.parent / rp)
    for c in cands:
        if c.exists():
            return require_truth(as_store(c), "a truth store")
    raise InputError(path, f"its truth store {rp} is not there; pass --truth STORE")


def _same_path(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, TypeError):
        return False


def _check_truth(path: Path, st: Store, tr: Store, check_checksum: bool, given: bool = False) -> str:
    """Refuse a truth of another version, kind, spin or species, or (``check_checksum``) another content than
    the predictions were made from; returns the truth's content checksum. ``given``: the truth came from
    ``--truth`` (another store than the recorded one is then "not the store predicted from", not "changed")."""
    rec = st.meta.truth or {}
    if int(rec.get("store_version", tr.meta.version)) != tr.meta.version:
        raise InputError(path, f"made for truth store version {rec.get('store_version')}, {tr.path} is version "
                               f"{tr.meta.version}")
    truth_sum = store_checksum(tr)
    if check_checksum and rec.get("checksum") != truth_sum:
        recorded = f"content checksum {str(rec.get('checksum'))[:12]}… recorded, {truth_sum[:12]}… now"
        if given and not _same_path(rec.get("path"), tr.path):
            raise InputError(tr.path, f"--truth is not the store {path} was predicted from ({rec.get('path')}; "
                                      f"{recorded})")
        raise InputError(tr.path, f"changed since {path} was predicted from it ({recorded})")
    for key in ("kind", "spinful"):
        if getattr(st.meta, key) != getattr(tr.meta, key):
            raise InputError(path, f"{key} is {getattr(st.meta, key)!r}, the truth store's is {getattr(tr.meta, key)!r}")
    if st.meta.species != tr.meta.species:
        raise InputError(path, f"species {st.species} differ from the truth store's {tr.species}")
    return truth_sum


def _truth_indices(path: Path, st: Store, tr: Store) -> np.ndarray:
    """The truth index of each predicted structure, by id (the recorded ``truth_index`` must agree)."""
    lookup = {str(s): k for k, s in enumerate(tr.array("structures/id")[:])}
    ids = [str(x) for x in st.array("structures/id")[:]]
    idx = np.empty(len(ids), dtype=np.int64)
    for k, sid in enumerate(ids):
        got = lookup.get(sid)
        if got is None:
            raise InputError(path, f"structure id {sid!r} is not in the truth store {tr.path}")
        idx[k] = got
    if len(np.unique(idx)) != len(idx):
        raise InputError(path, "holds a structure id more than once")
    if "structures/truth_index" in st.group:
        rec_idx = st.group["structures/truth_index"][:]
        if rec_idx.shape != idx.shape or np.any(rec_idx != idx):
            raise InputError(path, "structures/truth_index disagrees with the structure ids")
    return idx


def _compare(where, name, sid_of, a: np.ndarray, b: np.ndarray, owner: np.ndarray):
    """Raise naming the first structure whose entries of ``name`` differ between predictions and truth."""
    if a.shape != b.shape:
        raise InputError(where, f"{name} has shape {a.shape}, the truth's has {b.shape}")
    diff = a != b
    if diff.ndim > 1:
        diff = diff.reshape(len(diff), -1).any(axis=1)
    bad = np.flatnonzero(diff)
    if bad.size:
        raise InputError(where, f"structure {sid_of(int(owner[bad[0]]))!r}: {name} differ from the truth's")


def _check_chunk(path: Path, q: StoreRange, t: StoreRange) -> None:
    """Predicted structures ``q`` against their truth ``t``: atoms, cells and edges equal, block sizes those the
    truth's edges need, values finite."""
    def sid_of(k):
        return str(t.ids[k])

    every = np.arange(len(t))
    _compare(path, "atom counts", sid_of, q.natoms, t.natoms, every)
    bad = np.flatnonzero(q.nedges != t.nedges)
    if bad.size:
        k = int(bad[0])
        more = "extra" if q.nedges[k] > t.nedges[k] else "missing"
        raise InputError(path, f"structure {sid_of(k)!r}: {q.nedges[k]} edges, the truth has {t.nedges[k]} "
                               f"({more} edges)")
    atom_owner, edge_owner = t.atom_structure, t.edge_structure
    _compare(path, "atomic numbers", sid_of, q.Z, t.Z, atom_owner)
    _compare(path, "positions", sid_of, q.pos, t.pos, atom_owner)
    _compare(path, "cells", sid_of, q.cell, t.cell, every)
    for f in ("src", "dst", "shift"):
        _compare(path, f"edges (i, j, R) [{f}]", sid_of, getattr(q, f), getattr(t, f), edge_owner)
    need = t.layout.block_ptr(*t.edge_Z())
    _compare(path, "block sizes", sid_of, np.diff(q.H_ptr), np.diff(need), edge_owner)
    if q.H.size != int(need[-1]):
        raise InputError(path, f"blocks/H holds {q.H.size} elements for these structures, the truth's edges need "
                               f"{int(need[-1])}")
    fin = np.isfinite(q.H)
    if not fin.all():
        e = int(np.searchsorted(q.H_ptr, int(np.flatnonzero(~fin)[0]), side="right") - 1)
        raise InputError(path, f"structure {sid_of(int(edge_owner[e]))!r}: predicted H contains NaN/Inf")
    if q.T is not None:
        _compare(path, "trace-label sizes", sid_of, np.diff(q.T_ptr), np.diff(t.T_ptr), edge_owner)
        if not np.all(np.isfinite(q.T)):
            raise InputError(path, "predicted T contains NaN/Inf")


def open_predictions(path, truth=None, check_checksum: bool = True) -> Predictions:
    """Open a prediction store and validate it against its truth (``truth`` or the store named in its attrs).

    Refused with one :class:`InputError` line naming the file: another predictions or store version; a truth
    whose content checksum differs from the recorded one (it changed since prediction; skip this check only
    with ``check_checksum=False``); ids missing from the truth; atoms, cells or edges (src, dst, R) differing from
    the truth's (missing or extra edges); block sizes other than the truth's edges need; NaN/Inf predictions.
    """
    path = Path(path)
    st = _open_predictions_store(path)
    tr = _find_truth(path, st, truth)
    truth_sum = _check_truth(path, st, tr, check_checksum, given=truth is not None)
    idx = _truth_indices(path, st, tr)
    if tr.spinful and np.dtype(st.array("blocks/H").dtype).kind != "c":
        raise InputError(path, "blocks/H is real but the truth store is spinful (complex blocks)")
    with_T = st.meta.counts.T > 0
    for c0, c1 in chunks(len(idx)):
        t = gather(tr, idx[c0:c1], blocks=("T",) if with_T else ())
        _check_chunk(path, st.read_range(c0, c1, blocks=("H", "T") if with_T else ("H",)), t)
    return Predictions(path, st, tr, idx, store_checksum(st), truth_sum)

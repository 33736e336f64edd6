"""The prediction store: predicted Hamiltonian blocks of some structures of a truth store, and how to read them.

A prediction store (``preds.zarr``) has the truth store's schema (:mod:`hambench.store._store`), restricted to the
predicted structures: the same structure ids, atoms and edges (copied from the truth), ``blocks/H`` = the
predictions (optional ``blocks/T`` = predicted trace labels), no overlap (``blocks/S`` is empty). Attributes::

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
>>> from hambench.store._predictions import write_predictions, open_predictions      # doctest: +SKIP
>>> write_predictions("test.zarr", ids, blocks, "preds.zarr", {"model": {"name": "mine"}})  # doctest: +SKIP
>>> p = open_predictions("preds.zarr")           # finds test.zarr from the attrs and validates  # doctest: +SKIP
>>> pred, true = p.pair(0)                        # two Structures: predicted H / true H and S   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from hambench import __version__
from hambench.atomic import replace_dir, write_json
from hambench.errors import HambenchError, InputError
from hambench.basis._layout import BasisLayout
from hambench.store._store import STORE_VERSION, Store, StoreRange, StoreWriter, contiguous_spans, open_store
from hambench.store._structure import Structure

__all__ = [
    "PREDICTIONS_VERSION",
    "CHECKSUM_ALGORITHM",
    "store_checksum",
    "write_predictions",
    "open_predictions",
    "Predictions",
    "gather",
    "chunks",
    "edge_atoms",
    "index_runs",
]

PREDICTIONS_VERSION = 1
CHECKSUM_ALGORITHM = "hambench-content-sha256-v1"

#: the arrays the content checksum covers, in this order (blocks/T only where present)
CHECKSUM_FIELDS = (
    "structures/id", "structures/natoms", "structures/nedges", "structures/cell", "structures/pbc",
    "atoms/Z", "atoms/pos", "edges/src", "edges/dst", "edges/shift", "blocks/H", "blocks/S", "blocks/T",
)
#: elements per slice when streaming a large array through the hash or a check
_SLICE = 1 << 22
#: the checksum cache beside a store's arrays (zarr ignores it; best effort: a read-only store just recomputes)
CACHE_FILE = ".hambench-checksum.json"


def _as_store(store) -> Store:
    if isinstance(store, Store):
        return store
    try:
        return open_store(store)
    except HambenchError:
        raise
    except Exception as e:  # pragma: no cover - zarr's own failures
        raise InputError(store, f"cannot be opened as a hambench store ({type(e).__name__}: {e})") from None


# --- content checksum ------------------------------------------------------------------------------------
def _fingerprint(path: Path) -> str:
    """Cheap identity of a store's files (relative path, size, mtime) except the root ``zarr.json`` (the
    attributes, where the cached checksum itself lives)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel in ("zarr.json", CACHE_FILE) or rel.startswith(CACHE_FILE + "."):
            continue
        st = f.stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _canonical(a: np.ndarray) -> bytes:
    a = np.asarray(a)
    if a.dtype.kind in "fc":
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    elif a.dtype.kind in "iub":
        a = a.astype(np.dtype(f"<i{max(a.dtype.itemsize, 1)}") if a.dtype.kind != "b" else np.uint8, copy=False)
    return np.ascontiguousarray(a).tobytes()


def _compute_checksum(st: Store) -> str:
    a = st.attrs
    h = hashlib.sha256()
    head = {
        "algorithm": CHECKSUM_ALGORITHM,
        "kind": a["kind"],
        "spinful": bool(a["spinful"]),
        "species": {str(z): list(s) for z, s in sorted(a["species"].items(), key=lambda kv: int(kv[0]))},
    }
    h.update(json.dumps(head, sort_keys=True).encode())
    for name in CHECKSUM_FIELDS:
        arr = st.group[name]
        n = int(arr.shape[0])
        if name == "blocks/T" and n == 0:
            continue
        h.update(f"\n{name}\0{n}\0".encode())
        if name == "structures/id":
            for a0 in range(0, n, 1 << 16):
                ids = arr[a0 : min(n, a0 + (1 << 16))]
                h.update("".join(f"{x}\0" for x in ids).encode())
            continue
        row = max(1, int(np.prod(arr.shape[1:], dtype=np.int64)))
        step = max(1, _SLICE // row)
        for a0 in range(0, n, step):
            h.update(_canonical(arr[a0 : min(n, a0 + step)]))
    return h.hexdigest()


def store_checksum(store) -> str:
    """Content checksum of a store: sha256 over its ids, atoms (Z, positions), cells, edges and blocks H, S (T
    where present), in a canonical byte order, plus kind, spinfulness and species.

    The value is read from a cache (``attrs["content_checksum"]`` or the file ``.hambench-checksum.json`` at the
    store's root) when the cache's file fingerprint (sizes and mtimes of every array file) still matches;
    otherwise it is computed by streaming the arrays (~1 GB/s) and remembered in that file (best effort).
    """
    st = _as_store(store)
    fp = None
    side = st.path / CACHE_FILE
    caches = [st.attrs.get("content_checksum")]
    if side.is_file():
        try:
            caches.append(json.loads(side.read_text()))
        except (OSError, ValueError):
            pass
    for cache in caches:
        if isinstance(cache, dict) and cache.get("algorithm") == CHECKSUM_ALGORITHM and cache.get("sha256"):
            fp = fp or _fingerprint(st.path)
            if cache.get("fingerprint") == fp:
                return str(cache["sha256"])
    value = _compute_checksum(st)
    try:  # remember it beside the arrays for the next scorer (a large truth store takes a while to hash)
        write_json(side, {"algorithm": CHECKSUM_ALGORITHM, "sha256": value,
                          "fingerprint": fp or _fingerprint(st.path)}, indent=None)
    except OSError:
        pass
    return value


def _cache_checksum(path: Path) -> str:
    """Compute and store the content checksum in the store's own attrs (used on prediction stores we write)."""
    import zarr

    st = open_store(path)
    value = _compute_checksum(st)
    g = zarr.open_group(str(path), mode="r+")
    g.attrs["content_checksum"] = {"algorithm": CHECKSUM_ALGORITHM, "sha256": value, "fingerprint": _fingerprint(path)}
    return value


# --- reading structure ranges in bulk --------------------------------------------------------------------
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


#: holes of at most this many structures are read through rather than cut into separate reads
MAX_GAP = 8
#: structures per read when writing or validating
CHUNK = 64


_spans = contiguous_spans  # one implementation (hambench.store._store)


def gather(store: Store, indices, blocks: Sequence[str] = ("H", "S"), sources: bool = False,
           max_gap: int = MAX_GAP) -> StoreRange:
    """Structures ``indices`` (any order, no repeats needed) of a store as one
    :class:`~hambench.store._store.StoreRange`, in the order given: one :meth:`Store.read_range` per run of indices
    (holes of at most ``max_gap`` structures are read through and dropped)."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    want = np.unique(idx)
    parts = [store.read_range(a, b, blocks=blocks, sources=sources) for a, b in _spans(want, max_gap)]
    r = StoreRange.concat(parts)
    if len(r) == len(idx) and np.array_equal(r.index, idx):
        return r
    where = np.full(int(r.index[-1]) - int(r.index[0]) + 1, -1, np.int64)
    where[r.index - r.index[0]] = np.arange(len(r))
    return r.take(where[idx - r.index[0]])


def chunks(n: int, size: int = CHUNK) -> list[tuple[int, int]]:
    """``[(a, b), …]`` covering ``0..n-1`` in pieces of ``size``."""
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def edge_atoms(r: StoreRange) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers (Z_src, Z_dst) of every edge of a range."""
    first = r.atom_ptr[:-1][r.edge_structure]
    return r.Z[first + r.src].astype(np.int64), r.Z[first + r.dst].astype(np.int64)


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
        lookup = {str(s): k for k, s in enumerate(truth.group["structures/id"][:])}
        idx = np.empty(len(ids), dtype=np.int64)
        for k, x in enumerate(ids):
            got = lookup.get(str(x))
            if got is None:
                raise InputError(where, f"structure id {str(x)!r} is not in the truth store {truth.path}")
            idx[k] = got
    u, c = np.unique(idx, return_counts=True)
    if np.any(c > 1):
        dup = str(truth.group["structures/id"][int(u[c > 1][0])])
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
    truth = _as_store(truth_store_or_path)
    out = Path(out_path)
    meta = dict(meta or {})
    if out.exists() and not overwrite:
        raise InputError(out, "exists already; choose another path or pass overwrite=True (--overwrite)")
    idx = _resolve_indices(truth, ids, out)
    spinful = truth.spinful
    p = truth.ptr
    E = p.edge[idx + 1] - p.edge[idx]
    nH = p.H[p.edge[idx + 1]] - p.H[p.edge[idx]]
    nT = p.T[p.edge[idx + 1]] - p.T[p.edge[idx]]
    counts = {
        "structures": int(idx.size),
        "atoms": int(np.sum(p.atom[idx + 1] - p.atom[idx])),
        "edges": int(np.sum(E)),
        "H": int(np.sum(nH)),
        "S": 0,
        "T": int(np.sum(nT)) if T is not None else 0,
    }
    if isinstance(blocks, Sequence) and not isinstance(blocks, np.ndarray):  # in memory: check before writing
        if len(blocks) != idx.size:
            raise InputError(out, f"blocks has {'fewer' if len(blocks) < idx.size else 'more'} entries "
                                  f"({len(blocks)}) than ids ({idx.size})")
        ids_all = truth.group["structures/id"]
        for k, (x, need) in enumerate(zip(blocks, nH)):
            if np.size(x) != need or not np.all(np.isfinite(x)) or (np.iscomplexobj(x) and not spinful):
                _check_flat(x, int(need), spinful, str(ids_all[int(idx[k])]), "H", out)
    splits = truth.attrs.get("splits", {})
    attrs = {
        "kind": truth.attrs["kind"],
        "spinful": spinful,
        "species": truth.attrs["species"],
        "dft": truth.attrs.get("dft", {}),
        "constants": truth.attrs.get("constants", "CODATA2018"),
        "splits": splits,
        "hambench_predictions_version": PREDICTIONS_VERSION,
        "truth": {"path": str(truth.path.resolve()), "checksum": store_checksum(truth),
                  "store_version": int(truth.attrs["hambench_store_version"])},
        "model": meta.pop("model", {}) or {},
        "split": meta.pop("split", None),
        "created_by": meta.pop("created_by", None) or {"hambench": __version__, "command": " ".join(sys.argv)},
    }
    if meta:
        attrs["meta"] = meta
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    blocks_it = iter(blocks)
    T_it = iter(T) if T is not None else None
    try:
        writer = StoreWriter(partial, counts, attrs, list(splits))
        lay = BasisLayout(truth.species, spinful)
        for c0, c1 in chunks(idx.size):
            d = gather(truth, idx[c0:c1], blocks=(), sources=True)
            n = c1 - c0
            zs, zd = edge_atoms(d)
            hptr, tptr = lay.block_ptr(zs, zd), lay.trace_ptr(zs, zd)
            E = len(d.src)
            batch = {
                "structures/id": np.asarray(d.ids, dtype=object), "structures/natoms": d.natoms.astype(np.int32),
                "structures/nedges": np.diff(d.edge_ptr), "structures/cell": d.cell, "structures/pbc": d.pbc,
                "structures/energy": d.energy, "structures/nelectron": d.nelectron,
                "structures/fermi_level": d.fermi_level,
                "structures/parent": np.full(n, -1, np.int64),  # a subset: parents are not carried over
                "structures/rotation": d.rotation, "structures/sources": np.asarray(d.sources, dtype=object),
                "atoms/Z": d.Z, "atoms/pos": d.pos, "edges/src": d.src, "edges/dst": d.dst, "edges/shift": d.shift,
            }
            for name in splits:
                batch[f"splits/{name}"] = d.splits[name]
            Hs, Ts = [], []
            for k in range(n):
                sid = str(d.ids[k])
                e0, e1 = int(d.edge_ptr[k]), int(d.edge_ptr[k + 1])
                try:
                    x = next(blocks_it)
                except StopIteration:
                    raise InputError(out, f"blocks has fewer entries ({c0 + k}) than ids ({idx.size})") from None
                Hs.append(_check_flat(x, int(hptr[e1] - hptr[e0]), spinful, sid, "H", out))
                if T_it is not None:
                    try:
                        t = next(T_it)
                    except StopIteration:
                        raise InputError(out, f"T has fewer entries ({c0 + k}) than ids ({idx.size})") from None
                    Ts.append(_check_flat(t, int(tptr[e1] - tptr[e0]), False, sid, "T", out))
            batch["blocks/H"] = np.concatenate(Hs) if Hs else np.zeros(0)
            batch["blocks/S"] = np.zeros(0)
            batch["blocks/T"] = np.concatenate(Ts) if Ts else np.zeros(0)
            batch["edges/H_size"] = np.diff(hptr)
            batch["edges/S_size"] = np.zeros(E, np.int64)
            batch["edges/T_size"] = np.diff(tptr) if T is not None else np.zeros(E, np.int64)
            writer.append(batch)
        if next(blocks_it, None) is not None:
            raise InputError(out, f"blocks has more entries than ids ({idx.size})")
        writer.close()
        import zarr

        g = zarr.open_group(str(partial), mode="r+")
        ti = g.create_array("structures/truth_index", shape=(idx.size,), dtype="int64",
                            chunks=(max(1, min(idx.size, 1 << 17)),), compressors=None)
        ti[:] = idx
        _cache_checksum(partial)
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
    truth), ``checksum`` (the predictions' own content checksum), ``truth_checksum``, ``model``, ``split``,
    ``attrs``.
    """

    def __init__(self, path: Path, store: Store, truth: Store, truth_index: np.ndarray, checksum: str,
                 truth_checksum: str):
        self.path = Path(path)
        self.store = store
        self.truth = truth
        self.truth_index = truth_index
        self.checksum = checksum
        self.truth_checksum = truth_checksum
        self.attrs = store.attrs

    def __len__(self) -> int:
        return len(self.store)

    def __repr__(self) -> str:
        return f"Predictions({str(self.path)!r}, {len(self)} structures of {str(self.truth.path)!r})"

    @property
    def ids(self) -> list[str]:
        return [str(x) for x in self.store.group["structures/id"][:]]

    @property
    def model(self) -> dict:
        return dict(self.attrs.get("model") or {})

    @property
    def split(self) -> str | None:
        return self.attrs.get("split")

    @property
    def kind(self) -> str:
        return str(self.truth.attrs["kind"])

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


def _find_truth(preds_path: Path, attrs: dict, truth):
    if truth is not None:
        return _as_store(truth)
    rec = attrs.get("truth") or {}
    rp = rec.get("path")
    if not rp:
        raise InputError(preds_path, "does not name its truth store; pass --truth STORE")
    cands = [Path(rp)]
    if not Path(rp).is_absolute():
        cands.append(preds_path.parent / rp)
    for c in cands:
        if c.exists():
            return _as_store(c)
    raise InputError(preds_path, f"its truth store {rp} is not there; pass --truth STORE")


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


def open_predictions(path, truth=None, check_checksum: bool = True) -> Predictions:
    """Open a prediction store and validate it against its truth (``truth`` or the store named in its attrs).

    Refused with one :class:`InputError` line naming the file: another predictions or store version; a truth
    whose content checksum differs from the recorded one (it changed since prediction; skip this check only
    with ``check_checksum=False``); ids missing from the truth; atoms, cells or edges (src, dst, R) differing from
    the truth's (missing or extra edges); block sizes other than the truth's edges need; NaN/Inf predictions.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such prediction store")
    try:
        st = open_store(path)
    except HambenchError as e:
        msg = str(e)
        raise InputError(path, msg.split(": ", 1)[1] if msg.startswith(str(path)) else msg) from None
    a = st.attrs
    ver = a.get("hambench_predictions_version")
    if ver is None:
        raise InputError(path, "is a store but not a prediction store (no hambench_predictions_version attribute)")
    if ver != PREDICTIONS_VERSION:
        raise InputError(path, f"predictions version {ver}, this hambench reads version {PREDICTIONS_VERSION}")
    tr = _find_truth(path, a, truth)
    rec = a.get("truth") or {}
    if int(rec.get("store_version", STORE_VERSION)) != int(tr.attrs["hambench_store_version"]):
        raise InputError(path, f"made for truth store version {rec.get('store_version')}, {tr.path} is version "
                               f"{tr.attrs['hambench_store_version']}")
    truth_sum = store_checksum(tr)
    if check_checksum and rec.get("checksum") != truth_sum:
        raise InputError(tr.path, f"changed since {path} was predicted from it (content checksum "
                                  f"{str(rec.get('checksum'))[:12]}… recorded, {truth_sum[:12]}… now)")
    for key in ("kind", "spinful"):
        if a.get(key) != tr.attrs.get(key):
            raise InputError(path, f"{key} is {a.get(key)!r}, the truth store's is {tr.attrs.get(key)!r}")
    if {str(k): list(v) for k, v in a["species"].items()} != {str(k): list(v) for k, v in tr.attrs["species"].items()}:
        raise InputError(path, f"species {a['species']} differ from the truth store's {tr.attrs['species']}")
    # ids → truth indices (the recorded truth_index must agree)
    ids = [str(x) for x in st.group["structures/id"][:]]
    lookup = {str(s): k for k, s in enumerate(tr.group["structures/id"][:])}
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
    spinful = tr.spinful
    layout = BasisLayout(tr.species, spinful)
    if spinful and np.dtype(st.group["blocks/H"].dtype).kind != "c":
        raise InputError(path, "blocks/H is real but the truth store is spinful (complex blocks)")
    # chunk by chunk: atoms, cells and edges equal, block sizes equal, values finite
    with_T = int(st.attrs["counts"]["T"]) > 0
    for c0, c1 in chunks(len(idx)):
        n = c1 - c0
        t = gather(tr, idx[c0:c1], blocks=("T",) if with_T else ())
        q = st.read_range(c0, c1, blocks=("H", "T") if with_T else ("H",))

        def sid_of(k, _t=t):
            return str(_t.ids[k])

        s_all = np.arange(n)
        _compare(path, "atom counts", sid_of, q.natoms, t.natoms, s_all)
        ned_t, ned_q = np.diff(t.edge_ptr), np.diff(q.edge_ptr)
        bad = np.flatnonzero(ned_q != ned_t)
        if bad.size:
            k = int(bad[0])
            more = "extra" if ned_q[k] > ned_t[k] else "missing"
            raise InputError(path, f"structure {sid_of(k)!r}: {ned_q[k]} edges, the truth has {ned_t[k]} "
                                   f"({more} edges)")
        atom_owner, edge_owner = t.atom_structure, t.edge_structure
        _compare(path, "atomic numbers", sid_of, q.Z, t.Z, atom_owner)
        _compare(path, "positions", sid_of, q.pos, t.pos, atom_owner)
        _compare(path, "cells", sid_of, q.cell, t.cell, s_all)
        for f in ("src", "dst", "shift"):
            _compare(path, f"edges (i, j, R) [{f}]", sid_of, getattr(q, f), getattr(t, f), edge_owner)
        zs, zd = edge_atoms(t)
        need = layout.block_ptr(zs, zd)
        _compare(path, "block sizes", sid_of, np.diff(q.H_ptr), np.diff(need), edge_owner)
        H = q.H
        if H.size != int(need[-1]):
            raise InputError(path, f"blocks/H holds {H.size} elements for these structures, the truth's edges need "
                                   f"{int(need[-1])}")
        fin = np.isfinite(H)
        if not fin.all():
            e = int(np.searchsorted(q.H_ptr, int(np.flatnonzero(~fin)[0]), side="right") - 1)
            raise InputError(path, f"structure {sid_of(int(edge_owner[e]))!r}: predicted H contains NaN/Inf")
        if with_T:
            _compare(path, "trace-label sizes", sid_of, np.diff(q.T_ptr), np.diff(t.T_ptr), edge_owner)
            if not np.all(np.isfinite(q.T)):
                raise InputError(path, "predicted T contains NaN/Inf")
    checksum = store_checksum(st)
    return Predictions(path, st, tr, idx, checksum, truth_sum)

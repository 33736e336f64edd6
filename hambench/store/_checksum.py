"""The content checksum of a store: what it holds (ids, atoms, cells, edges, blocks), not how it is written.

A prediction store records its truth store's checksum, and a training run its store's; the scorer and ``--resume``
refuse a store whose checksum changed. Hashing streams the arrays (~1 GB/s); the value is cached beside the
arrays with a fingerprint of the files (sizes and mtimes), so a large truth store is hashed once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import zarr

from hambench.atomic import write_json
from hambench.store._store import as_store

__all__ = ["CHECKSUM_ALGORITHM", "CHECKSUM_FIELDS", "CACHE_FILE", "store_checksum", "compute_checksum",
           "cache_checksum"]

CHECKSUM_ALGORITHM = "hambench-content-sha256-v1"

#: the arrays the content checksum covers, in this order (blocks/T only where present)
CHECKSUM_FIELDS = (
    "structures/id", "structures/natoms", "structures/nedges", "structures/cell", "structures/pbc",
    "atoms/Z", "atoms/pos", "edges/src", "edges/dst", "edges/shift", "blocks/H", "blocks/S", "blocks/T",
)
#: elements per slice when streaming a large array through the hash
_SLICE = 1 << 22
#: ids per slice of ``structures/id``
_ID_SLICE = 1 << 16
#: the checksum cache beside a store's arrays (zarr ignores it; best effort: a read-only store just recomputes)
CACHE_FILE = ".hambench-checksum.json"


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


def compute_checksum(store) -> str:
    """The content checksum of an open :class:`~hambench.store._store.Store`, computed now (no cache)."""
    meta = store.meta
    h = hashlib.sha256()
    head = {
        "algorithm": CHECKSUM_ALGORITHM,
        "kind": meta.kind,
        "spinful": bool(meta.spinful),
        "species": {str(z): list(s) for z, s in sorted(meta.species.items())},
    }
    h.update(json.dumps(head, sort_keys=True).encode())
    for name in CHECKSUM_FIELDS:
        arr = store.array(name)
        n = int(arr.shape[0])
        if name == "blocks/T" and n == 0:
            continue
        h.update(f"\n{name}\0{n}\0".encode())
        if name == "structures/id":
            for a0 in range(0, n, _ID_SLICE):
                h.update("".join(f"{x}\0" for x in arr[a0 : min(n, a0 + _ID_SLICE)]).encode())
            continue
        step = max(1, _SLICE // max(1, int(np.prod(arr.shape[1:], dtype=np.int64))))
        for a0 in range(0, n, step):
            h.update(_canonical(arr[a0 : min(n, a0 + step)]))
    return h.hexdigest()


def store_checksum(store) -> str:
    """Content checksum of a store (open or its path): sha256 over its ids, atoms (Z, positions), cells, edges and blocks H, S
    (T where present), in a canonical byte order, plus kind, spinfulness and species.

    The value is read from a cache (``meta.content_checksum`` or the file ``.hambench-checksum.json`` at the
    store's root) when the cache's file fingerprint (sizes and mtimes of every array file) still matches;
    otherwise it is computed by streaming the arrays and remembered in that file (best effort).
    """
    store = as_store(store)
    fp = None
    side = store.path / CACHE_FILE
    caches = [store.meta.content_checksum]
    if side.is_file():
        try:
            caches.append(json.loads(side.read_text()))
        except (OSError, ValueError):
            pass
    for cache in caches:
        if isinstance(cache, dict) and cache.get("algorithm") == CHECKSUM_ALGORITHM and cache.get("sha256"):
            fp = fp or _fingerprint(store.path)
            if cache.get("fingerprint") == fp:
                return str(cache["sha256"])
    value = compute_checksum(store)
    try:  # remember it beside the arrays for the next scorer (a large truth store takes a while to hash)
        write_json(side, {"algorithm": CHECKSUM_ALGORITHM, "sha256": value,
                          "fingerprint": fp or _fingerprint(store.path)}, indent=None)
    except OSError:
        pass
    return value


def cache_checksum(store) -> str:
    """Compute the content checksum of an open store and record it in the store's own attributes (prediction
    stores we write carry theirs)."""
    value = compute_checksum(store)
    g = zarr.open_group(str(store.path), mode="r+")
    g.attrs["content_checksum"] = {"algorithm": CHECKSUM_ALGORITHM, "sha256": value,
                                   "fingerprint": _fingerprint(store.path)}
    return value

"""The content checksum of a store: what it holds (ids, atoms, cells, edges, blocks), not how it is written.

A prediction store records its truth store's checksum, and a training run its store's; the scorer and ``--resume``
refuse a store whose checksum changed. Hashing streams the arrays (~1 GB/s) and checks on the way that positions,
cells and blocks are finite (a store holding NaN/Inf there is damaged and has no checksum). The value is cached
with a fingerprint of the files (sizes and mtimes), so a large truth store is hashed once.

A writer *seals* the store it finished (:func:`seal_store`): it records the shard manifest
(:mod:`hambench.store._integrity`) and the content checksum in the store's attributes. Whenever the checksum is
computed again (first use, or the files changed: a copy, an edit, damage), it must equal the sealed one, or the
store is refused as edited or damaged since it was written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from hambench.atomic import write_json
from hambench.errors import StoreError
from hambench.store._integrity import SHARDS_KEY, describe_rows, shard_sizes
from hambench.store._shards import write_metadata
from hambench.store._store import as_store, open_store

__all__ = ["CHECKSUM_ALGORITHM", "CHECKSUM_FIELDS", "FINITE_FIELDS", "CACHE_FILE", "store_checksum",
           "compute_checksum", "check_sealed", "seal_store"]

CHECKSUM_ALGORITHM = "hambench-content-sha256-v1"

#: the arrays the content checksum covers, in this order (blocks/T only where present)
CHECKSUM_FIELDS = (
    "structures/id", "structures/natoms", "structures/nedges", "structures/cell", "structures/pbc",
    "atoms/Z", "atoms/pos", "edges/src", "edges/dst", "edges/shift", "blocks/H", "blocks/S", "blocks/T",
)
#: the arrays whose every value must be finite (energies and Fermi levels may be NaN: unknown)
FINITE_FIELDS = ("atoms/pos", "structures/cell", "blocks/H", "blocks/S", "blocks/T")
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
    """The content checksum of an open :class:`~hambench.store._store.Store`, computed now (no cache).

    Raises one :class:`StoreError` line naming the array and the structures where a value of
    :data:`FINITE_FIELDS` is NaN/Inf or where zarr cannot decode the files.
    """
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
                h.update("".join(f"{x}\0" for x in _read(store, name, a0, min(n, a0 + _ID_SLICE))).encode())
            continue
        step = max(1, _SLICE // max(1, int(np.prod(arr.shape[1:], dtype=np.int64))))
        for a0 in range(0, n, step):
            x = _read(store, name, a0, min(n, a0 + step))
            if name in FINITE_FIELDS:
                _check_finite(store, name, x, a0)
            h.update(_canonical(x))
    return h.hexdigest()


def _read(store, name: str, a: int, b: int) -> np.ndarray:
    """Rows a..b-1 of array ``name``; zarr's decoding failures become one line naming the rows' structures."""
    try:
        return store.array(name)[a:b]
    except Exception as e:  # a codec's error on damaged bytes (e.g. a CRC mismatch) is a damaged store
        raise StoreError(f"{store.path}: {name} is damaged at {describe_rows(store, name, a, b)}: zarr cannot "
                         f"read it ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from None


def _check_finite(store, name: str, x: np.ndarray, a0: int) -> None:
    fin = np.isfinite(x)
    if not fin.all():
        row = a0 + int(np.flatnonzero(~fin.reshape(len(x), -1).all(axis=1))[0])
        raise StoreError(f"{store.path}: {name} holds NaN/Inf at {describe_rows(store, name, row, row + 1)}; "
                         "positions, cells and blocks must be finite (a damaged or hand-edited store)")


def _valid_cache(cache) -> bool:
    return (isinstance(cache, dict) and cache.get("algorithm") == CHECKSUM_ALGORITHM and bool(cache.get("sha256"))
            and cache.get("finite") is True)


def store_checksum(store) -> str:
    """Content checksum of a store (open or its path): sha256 over its ids, atoms (Z, positions), cells, edges and
    blocks H, S (T where present), in a canonical byte order, plus kind, spinfulness and species.

    The value is read from the cache file ``.hambench-checksum.json`` at the store's root (or a
    ``content_checksum`` attribute that carries a fingerprint: prediction stores of earlier versions) when the
    cache's file fingerprint (sizes and mtimes of every array file) still matches; otherwise it is computed by
    streaming the arrays (:func:`compute_checksum`: NaN/Inf refused), compared with the sealed value
    (:func:`check_sealed`: a store whose content differs from what its writer sealed is refused as edited or
    damaged) and remembered in that file (best effort).
    """
    store = as_store(store)
    fp = None
    side = store.path / CACHE_FILE
    sealed = store.meta.content_checksum
    caches = [sealed]
    if side.is_file():
        try:
            caches.append(json.loads(side.read_text()))
        except (OSError, ValueError):
            pass
    for cache in caches:
        if _valid_cache(cache):
            fp = fp or _fingerprint(store.path)
            if cache.get("fingerprint") == fp:
                return str(cache["sha256"])
    value = compute_checksum(store)
    check_sealed(store, value)
    try:  # remember it beside the arrays for the next scorer (a large truth store takes a while to hash)
        write_json(side, {"algorithm": CHECKSUM_ALGORITHM, "sha256": value, "finite": True,
                          "fingerprint": fp or _fingerprint(store.path)}, indent=None)
    except OSError:
        pass
    return value


def check_sealed(store, value: str) -> bool:
    """Refuse (one :class:`StoreError` line) an open store whose content checksum ``value``, computed now, is not
    the one sealed when it was written; False when the store records none (made before seals), else True."""
    sealed = store.meta.content_checksum
    if not (isinstance(sealed, dict) and sealed.get("algorithm") == CHECKSUM_ALGORITHM and sealed.get("sha256")):
        return False
    if sealed["sha256"] != value:
        raise StoreError(f"{store.path}: its content (checksum {value[:12]}…) is not what was written (checksum "
                         f"{str(sealed['sha256'])[:12]}… sealed): the store was edited or damaged since; restore it "
                         "or prepare it again")
    return True


def seal_store(path) -> str:
    """Seal the finished store folder ``path``: record its shard manifest (``shards``: the size of every shard
    file) and its content checksum (``content_checksum``: algorithm, sha256) in its attributes.

    Every writer calls it last, before the rename into place; the manifest lets every later open find a
    missing or truncated shard, the checksum lets every later hash find edited or damaged data. Both depend on
    the content only (no times), so a store stays byte-identical however it was written. Returns the checksum.
    Refuses (:class:`StoreError`) a store whose positions, cells or blocks are not finite.
    """
    path = Path(path)
    root = json.loads((path / "zarr.json").read_bytes())
    attrs = root.setdefault("attributes", {})
    attrs.pop("content_checksum", None)
    attrs[SHARDS_KEY] = shard_sizes(path)
    write_metadata(path, root)
    value = compute_checksum(open_store(path))  # the open checks attributes, fields and files
    attrs["content_checksum"] = {"algorithm": CHECKSUM_ALGORITHM, "sha256": value, "finite": True}
    write_metadata(path, root)
    (path / CACHE_FILE).unlink(missing_ok=True)
    return value

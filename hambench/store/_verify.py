"""``hambench info --verify``: everything a store promises, checked, and the first damage named in one line.

In order, stopping at the first damage (:class:`~hambench.errors.StoreError`, one line naming the store, the
array or structure and the problem):

1. attributes, arrays and shapes (:func:`~hambench.store._store.open_store`);
2. every shard file: there and of the size the writer recorded (the manifest), and its index whole — CRC32C,
   chunks inside the file, raw chunks of their size (:func:`~hambench.store._integrity.check_shards`, deep);
3. the offsets: ``*_ptr`` start at 0, never decrease and end at the counts; ``natoms`` and ``nedges`` equal
   their differences; parents and split codes in range;
4. every structure, one range of structures at a time: known elements, edge atoms in range, shifts only along
   periodic directions, every block of the size its shells give (and trace labels likewise), positions,
   cells and blocks finite, and — truth stores — every edge (i, j, R) paired with (j, i, −R) and
   H_ji(−R) = H_ij(R)ᴴ, S likewise, to :data:`~hambench.store._structure.HERMITIAN_TOL`
   (:meth:`~hambench.store._structure.Structure.validate`, one compiled pass per array);
5. the content checksum, computed now, against the one sealed when the store was written.

The cost is one read of the data (~1 GB/s), like the checksum; steps 1–2 are what every open does cheaply.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hambench.errors import InputError, StoreError
from hambench.store._checksum import check_sealed, compute_checksum
from hambench.store._integrity import array_files, check_shards
from hambench.store._schema import PTRS
from hambench.store._store import Store, open_store

__all__ = ["verify_store", "verify_line"]

#: structures per range read while verifying (bounded further by :data:`_RANGE_ELEMENTS`)
_RANGE_STRUCTURES = 64
_RANGE_ELEMENTS = 1 << 22


def _fail(store: Store, problem: str):
    raise StoreError(f"{store.path}: {problem}")


def _check_ptr(store: Store, name: str, ptr: np.ndarray, total: int, what: str) -> None:
    if ptr.size == 0 or int(ptr[0]) != 0:
        _fail(store, f"{name} does not start at 0 (the store is damaged)")
    d = np.diff(ptr)
    if np.any(d < 0):
        _fail(store, f"{name} decreases at row {int(np.flatnonzero(d < 0)[0]) + 1} (the store is damaged)")
    if int(ptr[-1]) != total:
        _fail(store, f"{name} ends at {int(ptr[-1])}, the store counts {total} {what}")


def _check_offsets(store: Store) -> None:
    """Step 3 of the module docstring (O(n + E) integers in memory)."""
    c = store.meta.counts
    atom_ptr, edge_ptr = (np.asarray(store.array(n)[:]) for n in ("structures/atom_ptr", "structures/edge_ptr"))
    _check_ptr(store, "structures/atom_ptr", atom_ptr, c.atoms, "atoms")
    _check_ptr(store, "structures/edge_ptr", edge_ptr, c.edges, "edges")
    for name, ptr in (("structures/natoms", atom_ptr), ("structures/nedges", edge_ptr)):
        bad = np.flatnonzero(np.asarray(store.array(name)[:]) != np.diff(ptr))
        if bad.size:
            _fail(store, f"{name} of structure {int(bad[0])} disagrees with the offsets (the store is damaged)")
    for name, (_, rows) in PTRS.items():
        if name.startswith("edges/"):
            _check_ptr(store, name, np.asarray(store.array(name)[:]), getattr(c, rows), f"{rows} elements")
    parent = np.asarray(store.array("structures/parent")[:])
    bad = np.flatnonzero((parent < -1) | (parent >= c.structures))
    if bad.size:
        _fail(store, f"structures/parent of structure {int(bad[0])} is {int(parent[bad[0]])}, not a structure")
    for split, labels in store.meta.splits.items():
        codes = np.asarray(store.array(f"splits/{split}")[:])
        bad = np.flatnonzero((codes < -1) | (codes >= len(labels)))
        if bad.size:
            _fail(store, f"splits/{split} of structure {int(bad[0])} is code {int(codes[bad[0]])}; the split has "
                         f"{len(labels)} labels")


def _ranges(store: Store) -> list[tuple[int, int]]:
    """Structure ranges of at most :data:`_RANGE_STRUCTURES` structures or about :data:`_RANGE_ELEMENTS` of H."""
    p = store.ptr
    h = p.H[p.edge]  # (n+1,) element offsets of each structure
    out, a = [], 0
    n = len(store)
    while a < n:
        b = min(n, a + _RANGE_STRUCTURES)
        b = max(a + 1, min(b, int(np.searchsorted(h, h[a] + _RANGE_ELEMENTS, side="right")) - 1))
        out.append((a, b))
        a = b
    return out


def _check_range(store: Store, a: int, b: int, pairs: bool) -> None:
    """Step 4 of the module docstring for structures a..b-1."""
    blocks = tuple(x for x in ("H", "S", "T") if getattr(store.meta.counts, x) > 0 or x == "H")
    r = store.read_range(a, b, blocks=blocks)
    for k in range(len(r)):
        s = r.structure(k)
        try:
            s.validate(check_pairs=pairs)
        except InputError as e:
            _fail(store, f"structure {a + k} ({str(r.ids[k])!r}) is damaged: {e.problem}")
    zs, zd = r.edge_Z()
    want = {"H": r.layout.block_ptr(zs, zd), "S": r.layout.block_ptr(zs, zd, spinful=False),
            "T": r.layout.trace_ptr(zs, zd)}
    for name in blocks:
        got = np.diff(getattr(r, f"{name}_ptr"))
        bad = np.flatnonzero(got != np.diff(want[name]))
        if bad.size:
            e = int(bad[0])
            k = int(np.searchsorted(r.edge_ptr, e, side="right")) - 1
            _fail(store, f"structure {a + k} ({str(r.ids[k])!r}): edges/{name}_ptr gives edge {e - int(r.edge_ptr[k])} "
                         f"{int(got[e])} elements, its shells need {int(np.diff(want[name])[e])}")


def verify_store(path) -> dict:
    """Check the store at ``path`` completely (the module docstring); one :class:`StoreError` line for the first
    damage. Returns ``{path, structures, arrays, shard_files, checksum, sealed}`` for a sound store."""
    store = open_store(path)
    check_shards(store, deep=True)
    files = array_files(store.path)
    _check_offsets(store)
    pairs = store.meta.role == "truth"  # predicted blocks need not be Hermitian: their edges are the truth's
    for a, b in _ranges(store):
        _check_range(store, a, b, pairs)
    value = compute_checksum(store)
    is_sealed = check_sealed(store, value)
    return {"path": str(Path(path)), "structures": len(store), "arrays": len(files),
            "shard_files": sum(len(f.keys()) for f in files.values()), "checksum": value, "sealed": is_sealed,
            "role": store.meta.role, "manifest": store.meta.shards is not None}


def verify_line(report: dict) -> str:
    """The one line ``hambench info --verify`` prints for a sound store."""
    what = "pairing and finiteness" if report["role"] == "truth" else "finiteness"
    seal = ("matches the one sealed when it was written" if report["sealed"]
            else "computed (the store records none to compare with)")
    manifest = "" if report["manifest"] else " (no shard manifest: written before hambench recorded one)"
    return (f"{report['path']}: ok — {report['shard_files']} shards of {report['arrays']} arrays whole"
            f"{manifest}; {report['structures']} structure{'s' * (report['structures'] != 1)}: offsets, block sizes, {what} checked; content "
            f"checksum {report['checksum'][:12]}… {seal}")

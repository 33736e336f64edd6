"""Part files of a prepare run, and the store assembled from them shard by shard, by any number of workers.

A *part* is what one range of items produced: the columns of its :class:`~hambench.store.StoreRange`
(:meth:`~hambench.store.StoreRange.columns`) back to back in ``NNNNN.bin`` (64-byte aligned, raw bytes: written
with one ``write`` per array, read back by offset, no zip or pickle pass over the data) and a small header
``NNNNN.pkl`` (each array's offset, dtype and shape, plus the string arrays: ids, sources). The part's ``.json``
manifest (written last) says it is finished and holds its counts and split labels.

Assembly: the store's arrays are created by :class:`hambench.store.StoreWriter` (metadata and attributes), then
every shard of every array is one independent job (:func:`shard_jobs`): it reads just the rows of the parts that
fall into that shard, applies the store-level fix-ups (offsets of ``*_ptr`` arrays and parents, split codes) and
writes the shard with the store's one shard writer (:func:`hambench.store.write_array_shard`). Jobs run on the
range runner, so ``--workers N`` writes the store in parallel; memory is one shard (≤ 64 MiB of rows) per job,
whatever the number of structures; the bytes depend on neither the workers nor the ranges.
"""

from __future__ import annotations

import pickle

import numpy as np

from hambench.atomic import atomic_path
from hambench.store import PTRS, ROWS, ArraySpec, row_kind, write_array_shard

__all__ = ["write_part", "read_part_header", "part_array", "part_arrays", "shard_jobs", "write_shard_job",
           "PART_FORMAT"]

#: recorded in the run's key: partials of another part format start over
PART_FORMAT = "bin+pkl/2"
_ALIGN = 64


# --- part files ---------------------------------------------------------------------------------------------
def write_part(stem: str, batch: dict) -> None:
    """Write ``batch`` (name → array) as the part ``stem`` (``stem.bin`` + ``stem.pkl``), each file atomically."""
    arrays, objects = {}, {}
    with atomic_path(stem + ".bin") as tmp, open(tmp, "wb") as f:
        offset = 0
        for name, value in batch.items():
            value = np.asarray(value)
            if value.dtype == object:
                objects[name] = value
                continue
            value = np.ascontiguousarray(value)
            pad = -offset % _ALIGN
            if pad:
                f.write(bytes(pad))
                offset += pad
            arrays[name] = (offset, value.dtype.str, value.shape)
            if value.nbytes:
                f.write(memoryview(value.reshape(-1)).cast("B"))
            offset += value.nbytes
    with atomic_path(stem + ".pkl") as tmp, open(tmp, "wb") as f:
        pickle.dump({"arrays": arrays, "objects": objects}, f, protocol=5)


def read_part_header(stem: str) -> dict:
    with open(stem + ".pkl", "rb") as f:
        return pickle.load(f)


def part_array(stem: str, head: dict, name: str, start: int = 0, stop: int | None = None,
               into: np.ndarray | None = None) -> np.ndarray:
    """Rows ``start:stop`` of array ``name`` of a part (only those bytes are read; into ``into`` if given)."""
    if name in head["objects"]:
        return head["objects"][name][start:stop]
    offset, dtype, shape = head["arrays"][name]
    dtype = np.dtype(dtype)
    n = shape[0] if shape else 1
    stop = n if stop is None else min(stop, n)
    start = min(start, stop)
    row = int(np.prod(shape[1:], dtype=np.int64))
    count = (stop - start) * row
    if count == 0:
        return np.zeros((0, *shape[1:]), dtype)
    out = np.empty((stop - start, *shape[1:]), dtype) if into is None else into
    if out.dtype != dtype or out.size != count or not out.flags.c_contiguous:
        raise ValueError(f"{stem}: {name} rows {start}:{stop} do not fit the buffer given")
    with open(stem + ".bin", "rb") as f:
        f.seek(offset + start * row * dtype.itemsize)
        if f.readinto(memoryview(out.reshape(-1)).cast("B")) != out.nbytes:
            raise ValueError(f"{stem}.bin is shorter than its header says (a damaged part)")
    return out


def part_arrays(stem: str) -> dict:
    """Every array of a part, whole (tests; the assembly reads slices)."""
    head = read_part_header(stem)
    return {name: part_array(stem, head, name) for name in (*head["arrays"], *head["objects"])}


# --- shard jobs ---------------------------------------------------------------------------------------------
def _pieces(bases: np.ndarray, rows: np.ndarray, a: int, b: int):
    """(part, local start, local stop) covering global rows [a, b) of a kind with per-part ``rows``/``bases``."""
    out = []
    for p in np.flatnonzero((bases < b) & (bases + rows > a) & (rows > 0)):
        lo, hi = max(a, int(bases[p])), min(b, int(bases[p] + rows[p]))
        out.append((int(p), lo - int(bases[p]), hi - int(bases[p])))
    return out


def _plan(name: str, a: int, b: int, stems, rows, bases, manifests, fixes, split_labels) -> tuple:
    """What the job of global rows [a, b) of array ``name`` reads from which parts: ``(how, extra, pieces)``
    with pieces ``(stem, local start, local stop, context)``."""
    if name in PTRS:  # row r holds the end offset of element r - 1 (row 0: 0)
        sizes_name, target = PTRS[name]
        kind = row_kind(sizes_name)
        return ("ptr", (sizes_name, a == 0), [(stems[p], la, lb, int(bases[target][p]))
                                             for p, la, lb in _pieces(bases[kind], rows[kind], max(a - 1, 0), b - 1)])
    kind = row_kind(name)
    pieces = _pieces(bases[kind], rows[kind], a, b)
    if name == "structures/parent":
        return ("parent", None, [(stems[p], la, lb, (int(bases[kind][p]), fixes.get(p, {}))) for p, la, lb in pieces])
    if name == "structures/rotation":
        return ("rotation", None, [(stems[p], la, lb, fixes.get(p, {})) for p, la, lb in pieces])
    if name.startswith("splits/"):
        split = name.split("/", 1)[1]
        return ("split", split_labels[split], [(stems[p], la, lb, manifests[p]["splits"].get(split, []))
                                              for p, la, lb in pieces])
    return ("plain", None, [(stems[p], la, lb, None) for p, la, lb in pieces])


def shard_jobs(store_dir, arrays: dict[str, ArraySpec], stems: list[str], manifests: list[dict], fixes: dict,
               split_labels: dict) -> list:
    """One job per shard of every array of the store being assembled (see the module docstring).

    ``arrays``: the arrays' specs as :class:`~hambench.store.StoreWriter` made them; ``stems``/``manifests``: the
    non-empty parts in store order and their manifests (row counts of :data:`~hambench.store.ROWS`, split labels);
    ``fixes``: part number → {"parent": {local: global}, "eye": [local]} for parents named by id;
    ``split_labels``: split name → its labels in code order. Jobs are (arguments of :func:`write_shard_job`,
    bytes) sorted largest first.
    """
    rows = {k: np.array([m[k] for m in manifests], np.int64) for k in ROWS}
    bases = {k: np.concatenate([[0], np.cumsum(rows[k])[:-1]]).astype(np.int64) for k in ROWS}
    jobs = []
    for name, spec in arrays.items():
        for k in range(spec.nshards):
            a, b = spec.bounds(k)
            plan = _plan(name, a, b, stems, rows, bases, manifests, fixes, split_labels)
            jobs.append(((str(store_dir), spec, k, plan), (b - a) * spec.itemsize))
    jobs.sort(key=lambda j: -j[1])
    return jobs


class _Headers(dict):
    """Part headers read once per job."""

    def __missing__(self, stem):
        head = self[stem] = read_part_header(stem)
        return head


def _ptr_rows(name, extra, pieces, heads) -> np.ndarray:
    sizes_name, leading_zero = extra
    out = [np.zeros(1, np.int64)] if leading_zero else []
    for stem, la, lb, base in pieces:
        sizes = part_array(stem, heads[stem], sizes_name, 0, lb).astype(np.int64)
        out.append(np.cumsum(sizes)[la:lb] + base)
    return np.concatenate(out)


def _plain_rows(name, extra, pieces, heads):
    arrays = heads[pieces[0][0]]["arrays"] if pieces else {}
    if len(pieces) > 1 and name in arrays:  # every piece straight into the shard's rows: no concatenation
        _, dtype, shape = arrays[name]
        out = np.empty((sum(lb - la for _, la, lb, _ in pieces), *shape[1:]), np.dtype(dtype))
        at = 0
        for stem, la, lb, _ in pieces:
            part_array(stem, heads[stem], name, la, lb, into=out[at : at + lb - la])
            at += lb - la
        return out
    out = [part_array(stem, heads[stem], name, la, lb) for stem, la, lb, _ in pieces]
    return np.concatenate(out) if len(out) > 1 else out[0]


def _split_rows(name, labels, pieces, heads) -> np.ndarray:
    """Codes into the store's ``labels``, from each part's codes into its own labels (−1: not in the split)."""
    out = []
    for stem, la, lb, part_labels in pieces:
        if name not in heads[stem]["arrays"]:  # none of the part's structures is in this split
            out.append(np.full(lb - la, -1, np.int8))
            continue
        lut = np.array([labels.index(x) for x in part_labels] + [-1], np.int8)
        out.append(lut[part_array(stem, heads[stem], name, la, lb)])
    return np.concatenate(out)


def _parent_rows(name, extra, pieces, heads) -> np.ndarray:
    out = []
    for stem, la, lb, (offset, fix) in pieces:
        x = part_array(stem, heads[stem], name, la, lb)
        x = np.where(x >= 0, x + offset, -1)
        for local, g in fix.get("parent", {}).items():
            if la <= local < lb:
                x[local - la] = g
        out.append(x)
    return np.concatenate(out)


def _rotation_rows(name, extra, pieces, heads) -> np.ndarray:
    out = []
    for stem, la, lb, fix in pieces:
        x = np.array(part_array(stem, heads[stem], name, la, lb))
        for local in fix.get("eye", ()):
            if la <= local < lb:
                x[local - la] = np.eye(3)
        out.append(x)
    return np.concatenate(out)


_ROWS = {"ptr": _ptr_rows, "plain": _plain_rows, "split": _split_rows, "parent": _parent_rows,
         "rotation": _rotation_rows}


def write_shard_job(store_dir: str, spec: ArraySpec, k: int, plan: tuple) -> int:
    """Write shard ``k`` of store array ``spec``; returns the rows written (a range-runner task)."""
    how, extra, pieces = plan
    return write_array_shard(store_dir, spec, k, _ROWS[how](spec.name, extra, pieces, _Headers()))

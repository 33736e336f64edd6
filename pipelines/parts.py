"""Part files of a prepare run, and the store assembled from them shard by shard, by any number of workers.

A *part* is what one range of items produced: its numeric arrays back to back in ``NNNNN.bin`` (64-byte
aligned, raw bytes: written with one ``write`` per array, read back by offset, no zip or pickle pass over the
data) and a small header ``NNNNN.pkl`` (each array's offset, dtype and shape, plus the string arrays: ids,
sources, split labels). The part's ``.json`` manifest (written last) says it is finished.

Assembly: the store's arrays are created by :class:`hambench.store._store.StoreWriter` (metadata and attributes), then
every shard of every array is one independent job (:func:`shard_jobs`): it reads just the rows of the parts that
fall into that shard, applies the store-level fix-ups (offsets of ``*_ptr`` arrays and parents, split codes) and
writes the shard file itself (:func:`hambench.store._shards.write_shard`, the bytes zarr writes). Jobs run on the
range runner, so ``--workers N`` writes the store in parallel; memory is one shard (≤ 64 MiB of rows) per job,
whatever the number of structures; the bytes depend on neither the workers nor the ranges.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from hambench.atomic import atomic_path
from hambench.store._shards import ShardLayout, write_shard

__all__ = ["write_part", "read_part_header", "part_array", "part_arrays", "shard_jobs", "write_shard_job",
           "PART_FORMAT"]

#: recorded in the run's key: partials of another part format start over
PART_FORMAT = "bin+pkl/1"
_ALIGN = 64

#: ``*_ptr`` array → (per-row sizes array it accumulates, the row kind the offsets count)
PTR_OF = {
    "structures/atom_ptr": ("structures/natoms", "atoms"),
    "structures/edge_ptr": ("structures/nedges", "edges"),
    "edges/H_ptr": ("edges/H_size", "H"),
    "edges/S_ptr": ("edges/S_size", "S"),
    "edges/T_ptr": ("edges/T_size", "T"),
}


def row_kind(name: str) -> str:
    """What one row of store array ``name`` is: structures, atoms, edges or an element of H / S / T."""
    first, last = name.split("/")
    if first in ("structures", "splits", "splitlabel"):
        return "structures"
    if first == "blocks":
        return last
    return first


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


def shard_jobs(store_dir, layouts: dict, stems: list[str], sizes: list[dict], fixes: dict, split_labels: dict) -> list:
    """One job per shard of every array of the store being assembled (see the module docstring).

    ``layouts``: name → (chunk, shard, dtype, rows) as :class:`StoreWriter` made them; ``stems``/``sizes``: the
    non-empty parts in store order and their row counts (structures, atoms, edges, H, S, T); ``fixes``: part
    number → {"parent": {local: global}, "eye": [local]} for parents named by id; ``split_labels``: split name →
    its labels in code order. Jobs are (arguments of :func:`write_shard_job`, bytes) sorted largest first.
    """
    kinds = ("structures", "atoms", "edges", "H", "S", "T")
    rows = {k: np.array([s[k] for s in sizes], np.int64) for k in kinds}
    bases = {k: np.concatenate([[0], np.cumsum(rows[k])[:-1]]).astype(np.int64) for k in kinds}
    jobs = []
    for name, (chunk, shard, dtype, n0) in layouts.items():
        lay = ShardLayout(n0, chunk, shard)
        for k in range(lay.nshards):
            a, b = lay.bounds(k)
            if name in PTR_OF:  # row r holds the end offset of element r - 1 (row 0: 0)
                sizes_name, target = PTR_OF[name]
                kind = row_kind(sizes_name)
                pieces = [(stems[p], la, lb, int(bases[target][p]))
                          for p, la, lb in _pieces(bases[kind], rows[kind], max(a - 1, 0), b - 1)]
                spec = ("ptr", sizes_name, a == 0, pieces)
            else:
                kind = row_kind(name)
                pieces = _pieces(bases[kind], rows[kind], a, b)
                if name == "structures/parent":
                    spec = ("parent", None, False, [(stems[p], la, lb, (int(bases[kind][p]), fixes.get(p, {})))
                                                     for p, la, lb in pieces])
                elif name == "structures/rotation":
                    spec = ("rotation", None, False, [(stems[p], la, lb, fixes.get(p, {}))
                                                      for p, la, lb in pieces])
                elif name.startswith("splits/"):
                    split = name.split("/", 1)[1]
                    spec = ("split", split_labels[split], False, [(stems[p], la, lb, None) for p, la, lb in pieces])
                else:
                    spec = ("plain", None, False, [(stems[p], la, lb, None) for p, la, lb in pieces])
            itemsize = 16 if dtype == "str" else np.dtype(dtype).itemsize
            jobs.append(((str(store_dir), name, k, chunk, shard, str(dtype), spec), (b - a) * itemsize))
    jobs.sort(key=lambda j: -j[1])
    return jobs


def _rows(name: str, spec) -> np.ndarray | list:
    how, extra, leading_zero, pieces = spec
    heads: dict[str, dict] = {}

    def head(stem):
        if stem not in heads:
            heads[stem] = read_part_header(stem)
        return heads[stem]

    out = []
    if how == "ptr":
        if leading_zero:
            out.append(np.zeros(1, np.int64))
        for stem, la, lb, base in pieces:
            sizes = part_array(stem, head(stem), extra, 0, lb).astype(np.int64)
            out.append(np.cumsum(sizes)[la:lb] + base)
        return np.concatenate(out)
    if how == "plain" and len(pieces) > 1 and name in head(pieces[0][0])["arrays"]:  # read every piece straight into the shard's rows: no concatenation
        first = head(pieces[0][0])["arrays"][name]
        out = np.empty((sum(lb - la for _, la, lb, _ in pieces), *first[2][1:]), np.dtype(first[1]))
        at = 0
        for stem, la, lb, _ in pieces:
            part_array(stem, head(stem), name, la, lb, into=out[at : at + lb - la])
            at += lb - la
        return out
    for stem, la, lb, ctx in pieces:
        h = head(stem)
        if how == "split":
            lab = h["objects"].get(f"splitlabel/{name.split('/', 1)[1]}")
            codes = np.full(lb - la, -1, np.int8)
            if lab is not None:
                lab = lab[la:lb]
                for c, label in enumerate(extra):
                    codes[lab == label] = c
            out.append(codes)
            continue
        x = part_array(stem, h, name, la, lb)
        if how == "parent":
            offset, fix = ctx
            x = np.where(x >= 0, x + offset, -1)
            for local, g in fix.get("parent", {}).items():
                if la <= local < lb:
                    x[local - la] = g
        elif how == "rotation":
            x = np.array(x)
            for local in ctx.get("eye", ()):
                if la <= local < lb:
                    x[local - la] = np.eye(3)
        out.append(x)
    return np.concatenate(out) if len(out) > 1 else out[0]


def write_shard_job(store_dir: str, name: str, k: int, chunk: int, shard: int, dtype: str, spec) -> int:
    """Write shard ``k`` of store array ``name``; returns the rows written (a range-runner task)."""
    rows = _rows(name, spec)
    if dtype == "str":
        import zarr

        arr = zarr.open_array(str(Path(store_dir) / name), mode="r+")
        arr[k * shard : k * shard + len(rows)] = rows
    else:
        write_shard(Path(store_dir) / name, k, np.asarray(rows, dtype=np.dtype(dtype)), chunk, shard)
    return len(rows)

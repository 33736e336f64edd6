"""Which shard files a store must have, and whether they are there and whole — checked from file sizes and the
shard indices, without reading the data.

A store is a folder of Zarr v3 arrays whose files are shards (:mod:`hambench.store._shards`). Zarr reads a
missing shard as the fill value (zeros) and a shard file cut short fails deep inside its codec, so neither
shows as what it is. Two facts make both visible cheaply:

* **the manifest**: when a writer finishes a store it records, in the attribute ``shards``, the byte size of
  every shard file of every array (0: no file, the shard is all fill value — zarr writes none then).
  :func:`check_shards` compares it with ``stat`` of the files on every :func:`~hambench.store.open_store`
  (~1 µs per file: a store of 10⁵ structures has a few hundred);
* **the shard index**: a shard ends with one (offset, length) pair per inner chunk and the index's CRC32C.
  ``deep=True`` (``hambench info --verify``, and every open of a store made before manifests) reads those
  16 bytes per chunk and checks the CRC, that every chunk lies inside the file, and that raw numeric chunks
  have exactly their size.

The first damage is reported as one :class:`~hambench.errors.StoreError` line naming the store, the array,
the shard file and the structures it holds (:func:`structure_span`), e.g.
``del.zarr: blocks/H is damaged at structures 0..9: shard file c/0 is missing (deleted?)``.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np

from hambench.errors import StoreError
from hambench.store._schema import FIELDS, PTRS, row_kind

__all__ = ["SHARDS_KEY", "ArrayFiles", "array_files", "shard_sizes", "shard_damage", "check_shards",
           "structure_span", "describe_rows"]

#: the store attribute that holds the manifest: {array name: [bytes of each shard file, 0 = no file]}
SHARDS_KEY = "shards"
_EMPTY = 2**64 - 1


@dataclass(frozen=True)
class ArrayFiles:
    """The file layout of one Zarr v3 array of a store, read from its ``zarr.json``.

    ``name`` (``'blocks/H'``), ``folder``, ``shape``, ``grid`` (the shape one file covers), ``inner`` (the inner
    chunk shape of a sharded array, else None), ``itemsize`` (bytes per element of raw numeric inner chunks,
    else None: compressed or variable-length), ``separator`` of the chunk keys.
    """

    name: str
    folder: Path
    shape: tuple[int, ...]
    grid: tuple[int, ...]
    inner: tuple[int, ...] | None
    itemsize: int | None
    separator: str = "/"

    @classmethod
    def read(cls, folder: Path, name: str) -> "ArrayFiles | None":
        """The layout of the array in ``folder``, or None when its ``zarr.json`` is not one this module knows
        (another chunk grid or key encoding: such arrays are not checked)."""
        try:
            meta = json.loads((folder / "zarr.json").read_bytes())
            shape = tuple(int(x) for x in meta["shape"])
            grid = tuple(int(x) for x in meta["chunk_grid"]["configuration"]["chunk_shape"])
            enc = meta.get("chunk_key_encoding") or {}
            if meta["chunk_grid"].get("name") != "regular" or enc.get("name", "default") != "default":
                return None
            sep = (enc.get("configuration") or {}).get("separator", "/")
            codecs = meta.get("codecs") or []
        except (OSError, ValueError, KeyError, TypeError):
            return None
        inner, itemsize = None, None
        if len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed":
            conf = codecs[0].get("configuration") or {}
            idx = [c.get("name") for c in conf.get("index_codecs") or []]
            if conf.get("index_location", "end") != "end" or idx != ["bytes", "crc32c"]:
                return None
            inner = tuple(int(x) for x in conf["chunk_shape"])
            if [c.get("name") for c in conf.get("codecs") or []] == ["bytes"]:
                try:
                    itemsize = np.dtype(meta["data_type"]).itemsize
                except TypeError:
                    itemsize = None
        return cls(name, folder, shape, grid, inner, itemsize, sep)

    @property
    def counts(self) -> tuple[int, ...]:
        """Files along each dimension."""
        return tuple(math.ceil(s / g) if g else 0 for s, g in zip(self.shape, self.grid))

    def keys(self) -> list[str]:
        """The chunk key of every file of the grid, in C order (``c/0/0``, ``c/1/0``, …)."""
        if not self.shape:
            return ["c"]
        return [self.separator.join(["c", *map(str, ix)]) for ix in itertools.product(*map(range, self.counts))]

    def rows(self, k: int) -> tuple[int, int]:
        """Rows [a, b) of the first dimension held by file number ``k`` (of :meth:`keys`)."""
        if not self.shape:
            return 0, 0
        per = math.prod(self.counts[1:])
        i = k // max(per, 1)
        return i * self.grid[0], min(self.shape[0], (i + 1) * self.grid[0])

    def path(self, key: str) -> Path:
        return self.folder.joinpath(*key.split(self.separator))

    @property
    def inner_chunks(self) -> int:
        """Inner chunks per shard (0 when the array is not sharded)."""
        return math.prod(g // c for g, c in zip(self.grid, self.inner)) if self.inner else 0

    def index_problem(self, key: str, size: int) -> str | None:
        """What is wrong with the shard index of file ``key`` (``size`` bytes), or None: its CRC32C, chunks inside
        the file, raw numeric chunks of their exact size. Reads only the index (16 bytes per inner chunk)."""
        n = self.inner_chunks
        if not n:
            return None
        nbytes = 16 * n + 4
        if size < nbytes:
            return f"{size} bytes, shorter than its index ({nbytes} bytes)"
        with open(self.path(key), "rb") as f:
            f.seek(size - nbytes)
            raw = f.read(nbytes)
        if int(google_crc32c.value(raw[:-4])) != int.from_bytes(raw[-4:], "little"):
            return "its index fails its CRC32C check"
        index = np.frombuffer(raw[:-4], dtype="<u8").reshape(n, 2)
        full = math.prod(self.inner) * self.itemsize if self.itemsize else None
        data_end = size - nbytes
        for c, (off, length) in enumerate(index.tolist()):
            if off == _EMPTY and length == _EMPTY:
                continue
            if off + length > data_end:
                return f"its chunk {c} ends at byte {off + length}, past the data ({data_end} bytes)"
            if full is not None and length != full:
                return f"its chunk {c} has {length} bytes, a raw chunk has {full}"
        return None


def array_files(path) -> dict[str, ArrayFiles]:
    """Every array under the store folder ``path``, by name (``'blocks/H'``), found by walking its groups."""
    path = Path(path)
    out: dict[str, ArrayFiles] = {}

    def walk(folder: Path, prefix: str) -> None:
        for child in sorted(p for p in folder.iterdir() if p.is_dir() and (p / "zarr.json").is_file()):
            name = prefix + child.name
            try:
                node = json.loads((child / "zarr.json").read_bytes()).get("node_type")
            except (OSError, ValueError, AttributeError):
                continue
            if node == "group":
                walk(child, name + "/")
            elif node == "array":
                files = ArrayFiles.read(child, name)
                if files is not None:
                    out[name] = files

    walk(path, "")
    return out


def shard_sizes(path) -> dict[str, list[int]]:
    """The manifest of the store folder ``path`` as its files are now: every array's shard file sizes (0: none)."""
    out = {}
    for name, files in _ordered(array_files(path)).items():
        out[name] = [_size(files.path(key)) for key in files.keys()]
    return out


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except FileNotFoundError:
        return 0


def _ordered(arrays: dict) -> dict:
    """Arrays in the schema's order (then splits, then others by name): the first damage is reported first."""
    rank = {name: i for i, name in enumerate(FIELDS)}
    return dict(sorted(arrays.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _file_problem(files: ArrayFiles, key: str, expected: int | None, deep: bool) -> str | None:
    """What is wrong with file ``key`` of an array (``expected``: its size in the manifest, None: unknown).

    A file of another size than recorded whose index is whole was rewritten through zarr (an edit, not damage:
    the content checksum answers for edits); truncation or appended bytes always break the index at the end.
    """
    p = files.path(key)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        size = None
    if expected and size is None:
        return "is missing (deleted?)"
    if size is None:
        return None
    if expected is not None and size != expected:
        problem = files.index_problem(key, size) if files.inner else "not sharded: no index to check"
        if problem is None:
            return None
        if not expected:
            return f"should not exist (the store was written without it) and {problem}"
        if size < expected:
            return f"is truncated: {size} bytes of the {expected} written ({problem})"
        return f"has {size} bytes, {expected} were written ({problem})"
    if deep or expected is None:
        problem = files.index_problem(key, size)
        return None if problem is None else f"is truncated or corrupt: {problem}"
    return None


def shard_damage(path, manifest: dict | None, deep: bool = False) -> list[tuple[ArrayFiles, int, str]]:
    """Every damaged shard file of the store folder ``path``: ``(array, file number, problem)`` in schema order.

    ``manifest``: the store's ``shards`` attribute (None: made before manifests; only files there are checked,
    by their index). An array of the manifest that has another number of files, or an array missing from it, is
    checked by its files' indices alone. ``deep`` also reads the index of every file the manifest vouches for.
    """
    out = []
    for name, files in _ordered(array_files(path)).items():
        keys = files.keys()
        sizes = (manifest or {}).get(name)
        if sizes is not None and len(sizes) != len(keys):
            sizes = None
        for k, key in enumerate(keys):
            problem = _file_problem(files, key, None if sizes is None else int(sizes[k]), deep)
            if problem:
                out.append((files, k, problem))
                break  # one line per array is enough: the first damaged file
    return out


def check_shards(store, deep: bool = False) -> None:
    """Raise one :class:`StoreError` line for the first damaged shard of an open store (see the module
    docstring)."""
    damage = shard_damage(store.path, store.meta.shards, deep)
    if damage:
        files, k, problem = damage[0]
        bad = {f.name for f, _, _ in damage}
        a, b = files.rows(k)
        raise StoreError(f"{store.path}: {files.name} is damaged at {describe_rows(store, files.name, a, b, bad)}: "
                         f"shard file {files.keys()[k]} {problem}; restore the store or prepare it again")


def structure_span(store, name: str, a: int, b: int, damaged=()) -> tuple[int, int] | None:
    """Structures [s0, s1) that rows [a, b) of array ``name`` of ``store`` belong to, or None when that needs an
    offset array that is itself in ``damaged`` (or unreadable)."""
    n = store.meta.counts.structures
    if name in PTRS:  # row r is the start of element r (and the end of element r - 1)
        a = max(a - 1, 0)
        kind = "structures" if name.startswith("structures/") else "edges"
    else:
        kind = row_kind(name)
    try:
        if kind in ("H", "S", "T"):
            ptr_name = f"edges/{kind}_ptr"
            if ptr_name in damaged:
                return None
            ptr = np.asarray(store.array(ptr_name)[:])
            a, b = _span(ptr, a, b)
            kind = "edges"
        if kind in ("atoms", "edges"):
            ptr_name = "structures/atom_ptr" if kind == "atoms" else "structures/edge_ptr"
            if ptr_name in damaged:
                return None
            a, b = _span(np.asarray(store.array(ptr_name)[:]), a, b)
        elif kind != "structures":
            return None
    except Exception:  # an unreadable offset array: the caller names the rows instead
        return None
    return max(0, min(a, n)), max(0, min(b, n))


def _span(ptr: np.ndarray, a: int, b: int) -> tuple[int, int]:
    """Elements [i0, i1) whose ranges ptr[i]..ptr[i+1] meet rows [a, b)."""
    if b <= a:
        i = int(np.searchsorted(ptr, a, side="right")) - 1
        return i, i + 1
    return int(np.searchsorted(ptr, a, side="right")) - 1, int(np.searchsorted(ptr, b, side="left"))


def describe_rows(store, name: str, a: int, b: int, damaged=()) -> str:
    """``structures 3..7 (ids 'a'…'e')``, or ``rows a..b-1`` when the structures cannot be told."""
    span = structure_span(store, name, a, b, damaged)
    if span is None or span[1] <= span[0]:
        return f"rows {a}..{max(a, b - 1)}"
    s0, s1 = span
    text = f"structure {s0}" if s1 - s0 == 1 else f"structures {s0}..{s1 - 1}"
    if "structures/id" not in damaged:
        try:
            ids = store.array("structures/id")
            first, last = str(ids[s0]), str(ids[s1 - 1])
            text += f" (id {first!r})" if s1 - s0 == 1 else f" (ids {first!r}…{last!r})"
        except Exception:  # ids unreadable: the indices say enough
            pass
    return text

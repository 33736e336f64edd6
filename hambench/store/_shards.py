"""Whole shards of an uncompressed Zarr v3 array, encoded and written without zarr's async write path.

The store's numeric arrays are ``sharding_indexed`` with inner chunks of raw little-endian bytes (no
compressor), the index at the end (``bytes`` little-endian + ``crc32c``), ``fill_value`` 0 and zarr's default
``write_empty_chunks=False``. For such an array a shard's bytes are fully determined by its rows:

* the inner chunks that hold rows, in order (Morton order of a 1-D chunk grid is the natural order), each
  padded with the fill value to its full ``chunk`` rows (the last chunk of the array too);
* a chunk equal to the fill value is left out (index entry ``(2⁶⁴-1, 2⁶⁴-1)``). Zarr compares floats with a
  fill of 0.0 by bit pattern (−0.0 is kept) and complex and integer values by value (for complex ±0 both count
  as empty); a shard with no chunk left is no file at all;
* the index: one little-endian ``uint64`` (offset, nbytes) pair per chunk of the shard, then its CRC32C.

:func:`encode_shard` returns exactly the bytes zarr-python 3 writes for ``array[a:b] = rows`` of a whole shard
(``tests/test_shards.py`` checks it against zarr itself for every dtype the store uses, for empty, −0.0, padded
and partial shards), so a process can write its shards directly — the stores' bytes do not change.
"""

from __future__ import annotations

import json
from pathlib import Path

import google_crc32c
import numpy as np

__all__ = ["encode_shard", "write_shard", "shard_key", "array_metadata", "group_metadata", "write_metadata"]

_EMPTY = np.uint64(2**64 - 1)


def _crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


def _is_empty(chunk: np.ndarray) -> bool:
    """Whether zarr would skip this chunk as equal to the fill value 0 (see the module docstring)."""
    if chunk.dtype.kind == "f":  # bit pattern: -0.0 is not the fill value
        return not np.any(chunk.view(np.uint8))
    return not np.any(chunk)  # ints, bools by value; complex by value (±0 are empty)


def encode_shard(rows: np.ndarray, chunk_rows: int, shard_rows: int) -> bytes | None:
    """The bytes of one shard holding ``rows`` (its first ``len(rows)`` rows; ≤ ``shard_rows``), or None.

    ``rows`` has the array's trailing dimensions (one chunk each). None: every chunk equals the fill value, so
    zarr writes no file (and a reader sees zeros).
    """
    pieces = _shard_pieces(rows, chunk_rows, shard_rows)
    return None if pieces is None else b"".join(pieces)


def _shard_pieces(rows: np.ndarray, chunk_rows: int, shard_rows: int) -> list | None:
    """The shard's bytes as a list of buffers (views of ``rows``, padding, the index), or None (no file)."""
    rows = np.ascontiguousarray(rows)
    if rows.dtype.byteorder == ">":
        rows = rows.astype(rows.dtype.newbyteorder("<"))
    n = len(rows)
    if n > shard_rows or shard_rows % chunk_rows:
        raise ValueError(f"{n} rows do not fit a shard of {shard_rows} rows in chunks of {chunk_rows}")
    nchunks = shard_rows // chunk_rows
    index = np.full((nchunks, 2), _EMPTY, dtype="<u8")
    pieces: list = []
    offset = 0
    row_bytes = rows.dtype.itemsize * int(np.prod(rows.shape[1:], dtype=np.int64))
    for c in range(min(nchunks, -(-n // chunk_rows))):
        chunk = rows[c * chunk_rows : (c + 1) * chunk_rows]
        if _is_empty(chunk):
            continue
        data = memoryview(chunk.reshape(-1).view(np.uint8))
        pad = (chunk_rows - len(chunk)) * row_bytes
        pieces.append(data)
        if pad:
            pieces.append(bytes(pad))
        size = len(data) + pad
        index[c] = (offset, size)
        offset += size
    if not pieces:
        return None
    ib = index.tobytes()
    return [*pieces, ib, _crc32c(ib).to_bytes(4, "little")]


def shard_key(shard: int, ndim: int) -> str:
    """The key of 1-D-gridded shard number ``shard`` of an ``ndim``-dimensional array (``c/<k>/0/…``)."""
    return "/".join(["c", str(shard), *(["0"] * (ndim - 1))])


def write_shard(array_dir, shard: int, rows: np.ndarray, chunk_rows: int, shard_rows: int) -> int:
    """Write shard ``shard`` of the array stored in folder ``array_dir``; returns bytes written (0: no file).

    The array's ``zarr.json`` must exist (made by zarr); each shard is written once, by one process.
    """
    rows = np.ascontiguousarray(rows)
    pieces = _shard_pieces(rows, chunk_rows, shard_rows)
    path = Path(array_dir) / shard_key(shard, rows.ndim)
    if pieces is None:
        if path.exists():
            path.unlink()
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # the views are written as they are (large ones bypass the buffer): no joined copy
        for piece in pieces:
            f.write(piece)
    return sum(len(p) for p in pieces)


# --- metadata ------------------------------------------------------------------------------------------------
#: the ``index_codecs`` of every store array
_INDEX_CODECS = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]


def array_metadata(shape: tuple, dtype, chunk_rows: int, shard_rows: int) -> dict:
    """The ``zarr.json`` of a store array as zarr-python 3 writes it for ``create_array(shape, dtype,
    chunks=(chunk_rows, *trail), shards=(shard_rows, *trail), compressors=None, fill_value=0)`` (numeric) or
    ``create_array(shape, dtype=str, chunks, shards)`` (``dtype='str'``: vlen-utf8 + zarr's default zstd).

    ``tests/test_shards.py`` checks the bytes of :func:`write_metadata` against zarr's for every kind used.
    """
    trail = list(shape[1:])
    if dtype == "str":
        data_type, fill = "string", ""
        inner = [{"name": "vlen-utf8", "configuration": {}}, {"name": "zstd", "configuration": {"level": 0, "checksum": False}}]
    else:
        dt = np.dtype(dtype)
        data_type = dt.name
        fill = {"f": 0.0, "c": [0.0, 0.0], "b": False}.get(dt.kind, 0)
        inner = [{"name": "bytes"} if dt.itemsize == 1 else {"name": "bytes", "configuration": {"endian": "little"}}]
    return {
        "shape": list(shape),
        "data_type": data_type,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [int(shard_rows), *trail]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": [{"name": "sharding_indexed", "configuration": {
            "chunk_shape": [int(chunk_rows), *trail], "codecs": inner, "index_codecs": _INDEX_CODECS,
            "index_location": "end"}}],
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def group_metadata(attributes: dict | None = None) -> dict:
    """The ``zarr.json`` of a Zarr v3 group."""
    return {"attributes": dict(attributes or {}), "zarr_format": 3, "node_type": "group"}


def write_metadata(folder, meta: dict) -> None:
    """Write ``folder/zarr.json`` (zarr's formatting: indent 2, NaN allowed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zarr.json").write_bytes(json.dumps(meta, indent=2, allow_nan=True).encode())

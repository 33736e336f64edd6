"""hambench.store._shards: whole shards encoded byte-for-byte as zarr-python 3 writes them (zarr itself is the reference)."""

import hashlib

import numpy as np
import pytest
import zarr

from hambench.store._schema import ArraySpec
from hambench.store._schema import chunk_layout as _layout
from hambench.store._shards import encode_shard, shard_key, write_shard


def _zarr_files(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "zarr.json"}


def _both(tmp_path, data, chunk, shard):
    """Write ``data`` once through zarr (shard by shard) and once with write_shard; return both file maps."""
    out = {}
    for how in ("zarr", "ours"):
        root = tmp_path / how
        g = zarr.open_group(str(root), mode="w", zarr_format=3)
        arr = g.create_array("a", shape=data.shape, dtype=data.dtype, chunks=(chunk, *data.shape[1:]),
                             shards=(shard, *data.shape[1:]), compressors=None, fill_value=0)
        lay = ArraySpec("a", data.shape, str(data.dtype), chunk, shard)
        for k in range(lay.nshards):
            a, b = lay.bounds(k)
            if how == "zarr":
                arr[a:b] = data[a:b]
            else:
                write_shard(root / "a", k, data[a:b], chunk, shard)
        out[how] = _zarr_files(root)
        np.testing.assert_array_equal(zarr.open_array(str(root / "a"))[:], data)  # zarr reads ours back
    return out


CASES = {
    "float64 random": lambda r: r.normal(size=1000),
    "float64 zero chunks and -0.0": lambda r: np.concatenate([np.zeros(300), [-0.0] * 5, np.zeros(200), r.normal(size=7)]),
    "all zero (no file)": lambda r: np.zeros(500),
    "complex128 with ±0 chunk": lambda r: np.concatenate([np.full(128, -0.0 + 0j), r.normal(size=300) + 1j * r.normal(size=300)]),
    "int64 ptr-like": lambda r: np.cumsum(r.integers(0, 9, 1000)),
    "int32": lambda r: r.integers(-5, 5, 777).astype(np.int32),
    "int16 Z": lambda r: r.integers(1, 80, 333).astype(np.int16),
    "int8 split codes": lambda r: r.integers(-1, 3, 250).astype(np.int8),
    "bool (n, 3)": lambda r: r.random((401, 3)) < 0.5,
    "float64 (n, 3, 3)": lambda r: r.normal(size=(97, 3, 3)),
    "int32 (n, 3) with zero rows": lambda r: np.where(np.arange(600)[:, None] < 400, 0, r.integers(-2, 3, (600, 3))).astype(np.int32),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("chunk,shard", [(64, 256), (128, 128), (50, 200)])
def test_shards_are_the_bytes_zarr_writes(tmp_path, name, chunk, shard):
    data = CASES[name](np.random.default_rng(7))
    got = _both(tmp_path, data, chunk, shard)
    assert got["ours"] == got["zarr"]
    if name == "all zero (no file)":
        assert got["ours"] == {}


def test_store_layout_shards(tmp_path):
    """The store's own layout (partial last shard, chunks padded) over several shards."""
    data = np.random.default_rng(1).normal(size=5000)
    chunk, shard = _layout(5000, 8)
    assert shard >= 5000  # one small shard: use a tighter layout as well
    got = _both(tmp_path, data, 256, 1024)
    assert got["ours"] == got["zarr"] and len(got["ours"]) == 5


def test_refuses_rows_that_do_not_fit():
    with pytest.raises(ValueError, match="do not fit"):
        encode_shard(np.zeros(10), 4, 8)
    with pytest.raises(ValueError, match="do not fit"):
        encode_shard(np.zeros(3), 3, 8)


def test_shard_key():
    assert shard_key(3, 1) == "c/3" and shard_key(0, 3) == "c/0/0/0"


META_KINDS = [((1000,), "float64"), ((97, 3), "float64"), ((97, 3, 3), "float64"), ((333,), "complex128"),
              ((401, 3), "bool"), ((250,), "int8"), ((333,), "int16"), ((777, 3), "int32"), ((1001,), "int64"),
              ((50,), "str"), ((70000,), "str")]


@pytest.mark.parametrize("shape,dtype", META_KINDS)
def test_array_metadata_is_the_bytes_zarr_writes(tmp_path, shape, dtype):
    from hambench.store._shards import array_metadata, write_metadata

    row = 64 if dtype == "str" else np.dtype(dtype).itemsize * int(np.prod(shape[1:], dtype=np.int64))
    chunk, shard = _layout(shape[0], row)
    g = zarr.open_group(str(tmp_path / "zarr"), mode="w", zarr_format=3)
    if dtype == "str":
        g.create_array("a", shape=shape, dtype=str, chunks=(chunk,), shards=(shard,))
    else:
        g.create_array("a", shape=shape, dtype=dtype, chunks=(chunk, *shape[1:]), shards=(shard, *shape[1:]),
                       compressors=None, fill_value=0)
    write_metadata(tmp_path / "ours" / "a", array_metadata(shape, dtype, chunk, shard))
    assert (tmp_path / "ours" / "a" / "zarr.json").read_bytes() == (tmp_path / "zarr" / "a" / "zarr.json").read_bytes()


def test_group_metadata_is_the_bytes_zarr_writes(tmp_path):
    from hambench.store._shards import group_metadata, write_metadata

    attrs = {"units": {"energy": "eV", "length": "Å"}, "species": {"6": [0, 0, 1]}, "x": float("nan"),
             "none": None, "flag": True, "nested": [{"a": 1.5}]}
    g = zarr.open_group(str(tmp_path / "zarr"), mode="w", zarr_format=3)
    g.update_attributes(attrs)
    g.require_group("sub")
    write_metadata(tmp_path / "ours", group_metadata(attrs))
    write_metadata(tmp_path / "ours" / "sub", group_metadata())
    for rel in ("zarr.json", "sub/zarr.json"):
        assert (tmp_path / "ours" / rel).read_bytes() == (tmp_path / "zarr" / rel).read_bytes(), rel

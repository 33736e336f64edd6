"""prepare's part files (raw bytes + header) and the shard jobs that assemble a store from them."""

from __future__ import annotations

import numpy as np
import pytest

from hambench.pipelines.parts import _pieces, part_array, part_arrays, read_part_header, write_part


def _batch(rng):
    return {
        "blocks/H": rng.normal(size=1001) + 1j * rng.normal(size=1001),
        "structures/pbc": rng.random((7, 3)) < 0.5,
        "structures/cell": rng.normal(size=(7, 3, 3)),
        "atoms/Z": rng.integers(1, 80, 13).astype(np.int16),
        "edges/shift": rng.integers(-2, 3, (0, 3)).astype(np.int32),  # an empty array
        "structures/id": np.array([f"s{k}" for k in range(7)], dtype=object),
    }


def test_part_round_trip_and_slices(tmp_path):
    batch = _batch(np.random.default_rng(3))
    stem = str(tmp_path / "00000")
    write_part(stem, batch)
    back = part_arrays(stem)
    assert set(back) == set(batch)
    for k, v in batch.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)
    head = read_part_header(stem)
    assert all(off % 64 == 0 for off, _, _ in head["arrays"].values())  # aligned
    np.testing.assert_array_equal(part_array(stem, head, "structures/cell", 2, 5), batch["structures/cell"][2:5])
    buf = np.empty((10,), np.complex128)
    part_array(stem, head, "blocks/H", 990, 1000, into=buf)
    np.testing.assert_array_equal(buf, batch["blocks/H"][990:1000])
    with pytest.raises(ValueError, match="do not fit"):
        part_array(stem, head, "blocks/H", 0, 10, into=np.empty(9, np.complex128))


def test_damaged_part_is_reported(tmp_path):
    stem = str(tmp_path / "00000")
    write_part(stem, _batch(np.random.default_rng(4)))
    data = (tmp_path / "00000.bin").read_bytes()
    (tmp_path / "00000.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="shorter than its header"):
        part_array(stem, read_part_header(stem), "structures/cell")


def test_pieces_cover_each_row_once():
    """Global rows [a, b) of parts with these row counts (some empty) map to (part, local a, local b) exactly."""
    rows = np.array([5, 0, 3, 9, 0, 1])
    bases = np.concatenate([[0], np.cumsum(rows)[:-1]])
    owner = np.repeat(np.arange(len(rows)), rows)
    local = np.concatenate([np.arange(r) for r in rows])
    for a in range(0, 18):
        for b in range(a + 1, 19):
            got = [(p, l) for p, la, lb in _pieces(bases, rows, a, b) for l in range(la, lb)]
            assert got == list(zip(owner[a:b], local[a:b]))


def test_many_shards_over_many_parts(tmp_path, monkeypatch):
    """With tiny chunks and shards (every array many shards, shards spanning parts and parts spanning shards):
    1 and 2 workers write byte-identical stores whose every array equals the default-layout store's values."""
    import hashlib

    import zarr

    import hambench.pipelines.driver as driver
    import hambench.store._schema as store
    from hambench.pipelines import prepare

    def digest(root):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    opts = dict(quiet=True, count=11, seed=5, augment=1)
    ref = tmp_path / "ref.zarr"
    prepare("synthetic/random", None, ref, **opts)
    monkeypatch.setattr(store, "CHUNK_BYTES", 512)
    monkeypatch.setattr(store, "SHARD_BYTES", 2048)
    monkeypatch.setattr(driver, "MAX_RANGE_ITEMS", 2)
    a, b = tmp_path / "w1.zarr", tmp_path / "w2.zarr"
    prepare("synthetic/random", None, a, workers=1, **opts)
    prepare("synthetic/random", None, b, workers=2, **opts)
    assert digest(a) == digest(b)
    ga, gr = zarr.open_group(str(a), mode="r"), zarr.open_group(str(ref), mode="r")
    nshards = 0
    for name in store.FIELDS:
        x, y = ga[name], gr[name]
        nshards += len(list((a / name / "c").iterdir())) if (a / name / "c").exists() else 0
        np.testing.assert_array_equal(x[:], y[:], err_msg=name)
    assert nshards > 3 * len(store.FIELDS)  # the layout really is many shards

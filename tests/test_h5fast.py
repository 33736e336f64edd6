"""The fast HDF5 reader equals h5py on every real file and on layouts it must hand back to h5py."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hambench.pipelines import h5fast
from hambench.testing import require_realdata


def h5py_all(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}


def assert_same(got, ref):
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape, k
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


def test_real_files_equal_h5py():
    root = require_realdata()
    files = sorted(root.rglob("*.h5"))
    assert len(files) > 20
    for f in files:
        assert_same(h5fast.read_datasets(f), h5py_all(f))


def test_native_path_is_taken_on_deeph_legacy(monkeypatch):
    """The legacy MoTe2 files are read natively, every dataset a view into the one buffer, h5py never opened."""
    import h5py as _h5py

    for name in ("hamiltonians.h5", "overlaps.h5"):
        f = require_realdata("deeph_legacy_MoTe2", name)
        ref = h5py_all(f)
        monkeypatch.setattr(_h5py, "File", lambda *a, **k: pytest.fail("h5py opened the file"))
        got = h5fast.read_datasets_native(f)
        monkeypatch.undo()
        assert got is not None and len(got) == 131
        assert all(v.base is not None and not v.flags.writeable for v in got.values())
        assert_same(got, ref)


def test_native_equals_h5py_on_every_real_file():
    """Every real file the native reader takes (legacy symbol-table files) gives h5py's values exactly."""
    root = require_realdata()
    taken = 0
    for f in sorted(root.rglob("*.h5")):
        got = h5fast.read_datasets_native(f)
        if got is not None:
            taken += 1
            assert_same(got, h5py_all(f))
    assert taken > 20


def test_native_index_without_gil_and_kinds(tmp_path):
    from hambench import _core

    p = tmp_path / "g.h5"
    with h5py.File(p, "w", libver="earliest") as f:
        f["a"] = np.arange(6.0).reshape(2, 3)
        f.create_group("grp")
        f.create_dataset("c", data=np.ones((20, 2)), chunks=(5, 2), compression="gzip")
        f["s"] = np.array([b"ab", b"cd"])
    index = {e[0]: e for e in _core.h5legacy_index(p.read_bytes())}
    assert index["a"][1:4] == ("dataset", (2, 3), "<f8")
    assert index["grp"][1] == "group"
    assert index["c"][1] == "unsupported" and "filter" in index["c"][6]
    assert index["s"][1] == "unsupported"
    assert_same(h5fast.read_datasets(p), h5py_all(p))


def test_earliest_many_datasets_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    data = {f"[{i % 5 - 2}, {i % 3 - 1}, 0, {i % 4 + 1}, {i % 2 + 1}]": rng.normal(size=(i % 7 + 1, 19)) for i in range(300)}
    data.update(
        f32=rng.normal(size=(3, 4)).astype(np.float32),
        i32=rng.integers(-9, 9, size=11).astype(np.int32),
        u8=rng.integers(0, 255, size=5).astype(np.uint8),
        i64=rng.integers(-9, 9, size=(2, 2, 2)).astype(np.int64),
        empty=np.zeros((0, 19)),
        scalar=np.float64(-1.25),
    )
    p = tmp_path / "many.h5"
    with h5py.File(p, "w", libver="earliest") as f:
        for k, v in data.items():
            f[k] = v
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        sid = h5py.h5s.create_simple((8,))
        h5py.h5d.create(f.id, b"compact", h5py.h5t.IEEE_F64LE, sid, dcpl=dcpl).write(
            h5py.h5s.ALL, h5py.h5s.ALL, np.arange(8.0)
        )
    got = h5fast.read_datasets_native(p)
    assert got is not None
    ref = h5py_all(p)
    assert len(ref) == len(data) + 1
    assert_same(got, ref)
    np.testing.assert_array_equal(got["compact"], np.arange(8.0))


def test_truncated_file_names_the_file(tmp_path):
    from hambench.errors import InputError

    src = require_realdata("deeph_legacy_MoTe2", "hamiltonians.h5")
    raw = src.read_bytes()
    for cut in (10, 200, len(raw) // 2, len(raw) - 100):
        p = tmp_path / f"cut{cut}.h5"
        p.write_bytes(raw[:cut])
        with pytest.raises(InputError, match=str(p)):
            h5fast.read_datasets(p)


def test_not_hdf5_names_the_file(tmp_path):
    from hambench.errors import InputError

    p = tmp_path / "junk.h5"
    p.write_bytes(b"not an hdf5 file at all" * 50)
    with pytest.raises(InputError, match="junk.h5"):
        h5fast.read_datasets(p)


def test_new_style_file_falls_back_to_h5py(tmp_path):
    p = tmp_path / "latest.h5"
    with h5py.File(p, "w", libver="latest") as f:
        f["x"] = np.arange(4.0)
    assert h5fast.read_datasets_native(p) is None
    assert_same(h5fast.read_datasets(p), h5py_all(p))


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_layouts_fall_back_correctly(tmp_path, libver):
    rng = np.random.default_rng(0)
    data = {
        "[0, 0, 0, 1, 1]": rng.normal(size=(13, 13)),
        "complex": rng.normal(size=(4, 6)) + 1j * rng.normal(size=(4, 6)),
        "ints": rng.integers(-5, 5, size=(7, 5)).astype(np.int64),
        "f32": rng.normal(size=17).astype(np.float32),
        "scalar": np.float64(3.5),
    }
    p = tmp_path / "x.h5"
    with h5py.File(p, "w", libver=libver) as f:
        for k, v in data.items():
            f[k] = v
        f.create_dataset("chunked", data=rng.normal(size=(50, 3)), chunks=(10, 3), compression="gzip")
        f.create_group("sub")["inner"] = np.ones(3)
    assert_same(h5fast.read_datasets(p), h5py_all(p))


def test_bad_files_raise(tmp_path):
    from hambench.errors import InputError

    with pytest.raises(OSError):
        h5fast.read_datasets(tmp_path / "missing.h5")
    p = tmp_path / "trunc.h5"
    with h5py.File(p, "w") as f:
        f["a"] = np.ones((100, 100))
    p.write_bytes(p.read_bytes()[:3000])
    with pytest.raises(InputError, match="trunc.h5.*truncated"):
        h5fast.read_datasets(p)


def test_corrupt_metadata_never_crashes(tmp_path):
    """Random bytes overwritten in the metadata: a result, a fallback (None) or InputError, never a crash."""
    from hambench.errors import InputError

    p0 = tmp_path / "m.h5"
    with h5py.File(p0, "w", libver="earliest") as f:
        for i in range(40):
            f[f"d{i:02d}"] = np.full((3, 4), float(i))
    raw = bytearray(p0.read_bytes())
    rng = np.random.default_rng(7)
    meta = [i for i in range(len(raw)) if raw[i] != 0 or i < 4096]
    p = tmp_path / "bad.h5"
    for trial in range(400):
        bad = bytearray(raw)
        for at in rng.choice(meta, size=int(rng.integers(1, 4))):
            bad[at] = int(rng.integers(0, 256))
        p.write_bytes(bytes(bad))
        try:
            h5fast.read_datasets_native(p)
        except (InputError, OSError, KeyError, TypeError, ValueError, RuntimeError):
            pass


@pytest.mark.realdata
def test_digests_from_the_bytes_read_equal_file_sha256(tmp_path):
    """read_datasets(path, digests) records the file's sha256 (native and h5py paths) = hashlib over the file."""
    from hambench.store._structure import file_sha256
    from hambench.testing import require_realdata

    files = sorted(require_realdata("deeph_legacy_MoTe2").glob("*.h5")) + sorted(
        require_realdata("deeph_new_MoTe2").glob("*.h5"))
    p = tmp_path / "modern.h5"
    with h5py.File(p, "w", libver="latest") as f:  # not a legacy symbol-table file: the h5py path
        f["x"] = np.arange(5.0)
    for path in [*files, p]:
        digests = {}
        h5fast.read_datasets(path, digests)
        assert digests == {str(path): file_sha256(path)}

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


def test_fast_path_is_taken_on_deeph_legacy(monkeypatch):
    f = require_realdata("deeph_legacy_MoTe2", "hamiltonians.h5")
    calls = []
    real = h5fast._parse_v1_header
    monkeypatch.setattr(h5fast, "_parse_v1_header", lambda raw, a: calls.append(r := real(raw, a)) or r)
    h5fast.read_datasets(f)
    assert len(calls) == 131 and all(c is not None for c in calls)


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


def test_bad_files_raise_oserror(tmp_path):
    with pytest.raises(OSError):
        h5fast.read_datasets(tmp_path / "missing.h5")
    p = tmp_path / "trunc.h5"
    with h5py.File(p, "w") as f:
        f["a"] = np.ones((100, 100))
    p.write_bytes(p.read_bytes()[:3000])
    with pytest.raises(OSError):
        h5fast.read_datasets(p)

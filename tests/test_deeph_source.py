"""`prepare --source deeph/folder` on the real MoTe2 folders, and the named DeepH data sets' split logic."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from hambench.basis._conventions import to_hambench
from hambench.errors import InputError
from hambench.pipelines import get_source, prepare
from hambench.pipelines.deeph import DATASETS
from hambench.store._store import open_store
from hambench.testing import TOL, require_realdata


def legacy_blocks(folder):
    """Independent reference: every legacy block converted OpenMX → hambench with the conventions table."""
    orb = [list(map(int, line.split())) for line in (folder / "orbital_types.dat").read_text().splitlines() if line.strip()]
    out = {}
    for name, fname in (("H", "hamiltonians.h5"), ("S", "overlaps.h5")):
        with h5py.File(folder / fname) as f:
            for k in f:
                r1, r2, r3, i, j = json.loads(k)
                out[(name, i - 1, j - 1, r1, r2, r3)] = to_hambench(f[k][()], "openmx", orb[i - 1], orb[j - 1])
    return out


def test_legacy_mote2_store_equals_converted_input(tmp_path):
    folder = require_realdata("deeph_legacy_MoTe2")
    out = tmp_path / "mote2.zarr"
    prepare("deeph/folder", folder, out, quiet=True)
    st = open_store(out)
    assert len(st) == 1 and st.attrs["kind"] == "crystal"
    s = st[0]
    ref = legacy_blocks(folder)
    assert s.nedges == 131 == len(ref) // 2
    for e, (i, j, r) in enumerate(zip(s.src, s.dst, s.shift)):
        key = (int(i), int(j), *map(int, r))
        np.testing.assert_array_equal(s.block(e), ref[("H", *key)])
        np.testing.assert_array_equal(s.block(e, "S"), ref[("S", *key)])
    np.testing.assert_array_equal(s.Z, [52, 52, 42])
    lat = np.loadtxt(folder / "lat.dat")
    np.testing.assert_allclose(s.cell, lat.T, atol=0)  # columns in the file are lattice vectors
    assert s.fermi_level == pytest.approx(-4.19348, abs=TOL.text_5_decimals)


def test_new_and_legacy_mote2_give_the_same_store(tmp_path):
    a, b = tmp_path / "legacy.zarr", tmp_path / "new.zarr"
    prepare("deeph/folder", require_realdata("deeph_legacy_MoTe2"), a, quiet=True)
    prepare("deeph/folder", require_realdata("deeph_new_MoTe2"), b, quiet=True)
    sa, sb = open_store(a)[0], open_store(b)[0]
    for name in ("Z", "src", "dst", "shift", "H", "S"):
        np.testing.assert_array_equal(getattr(sa, name), getattr(sb, name), err_msg=name)
    np.testing.assert_allclose(sa.pos, sb.pos, atol=TOL.geometry_text)
    np.testing.assert_allclose(sa.cell, sb.cell, atol=TOL.geometry_text)
    np.testing.assert_array_equal(open_store(a).traces(0)[0], open_store(b).traces(0)[0])


def test_directory_of_folders_with_augmentation(tmp_path):
    data = tmp_path / "data"
    for name in ("b", "a"):
        shutil.copytree(require_realdata("deeph_legacy_MoTe2"), data / name)
    out = tmp_path / "two.zarr"
    prepare("deeph/folder", data, out, quiet=True, augment=1, seed=4, workers=2)
    st = open_store(out)
    assert [st[k].id for k in range(len(st))] == ["a", "a/rot0", "b", "b/rot0"]
    np.testing.assert_array_equal(st[0].H, st[2].H)
    assert not np.allclose(st[1].rotation, st[3].rotation)  # seeded per item, not one rotation for all


def test_missing_input_and_corrupt_h5(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        prepare("deeph/folder", tmp_path / "absent", tmp_path / "x.zarr", quiet=True)
    bad = tmp_path / "bad"
    shutil.copytree(require_realdata("deeph_legacy_MoTe2"), bad)
    raw = (bad / "hamiltonians.h5").read_bytes()
    (bad / "hamiltonians.h5").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(InputError, match="hamiltonians.h5"):
        prepare("deeph/folder", bad, tmp_path / "y.zarr", quiet=True)
    assert not (tmp_path / "y.zarr").exists() and not (tmp_path / "y.zarr.partial").exists()


def test_named_dataset_split_sizes(tmp_path):
    """The paper's train/val/test sizes on regular cells; cells of another atom count are twisted test cells."""
    ds = DATASETS["bilayer_graphene"]
    root = tmp_path / "bg"
    for k in range(300 + 9):
        d = root / f"{k:04d}"
        d.mkdir(parents=True)
        natoms = ds.atoms if k < 300 else 28 + k
        (d / "element.dat").write_text("6\n" * natoms)
        (d / "hamiltonians.h5").write_bytes(b"")
    src = get_source("deeph/bilayer_graphene", root, seed=0)
    labels = list(src._splits.values())
    assert (labels.count("train"), labels.count("val"), labels.count("test")) == ds.split == (180, 60, 60)
    assert labels.count("test_twisted") == 9
    again = get_source("deeph/bilayer_graphene", root, seed=0)._splits
    assert again == src._splits
    assert get_source("deeph/bilayer_graphene", root, seed=1)._splits != src._splits


def test_spinful_of_reads_info_json(tmp_path):
    """spinful_of agrees with read() on real legacy and DeepH-dock folders (spinless MoTe2, SOC bismuthene) and
    reads info.json only; None without one."""
    for name, spinful in (("deeph_legacy_MoTe2", False), ("deeph_new_MoTe2", False),
                          ("openmx_bismuthene_soc_scfout/deeph_dock_converted", True)):
        src = get_source("deeph/folder", require_realdata(*name.split("/")))
        (item,) = src.items()
        assert src.spinful_of(item) is spinful is src.read(item)[0].spinful, name
    legacy = tmp_path / "legacy"
    shutil.copytree(require_realdata("deeph_legacy_MoTe2"), legacy)
    for p in (legacy, *legacy.iterdir()):
        p.chmod(0o755 if p.is_dir() else 0o644)
    (legacy / "hamiltonians.h5").write_bytes(b"")  # unreadable: spinful_of never opens it
    src = get_source("deeph/folder", legacy)
    assert src.spinful_of(str(legacy)) is False
    (legacy / "info.json").write_text(json.dumps({"isspinful": True, "spinful": False}))
    assert src.spinful_of(str(legacy)) is True  # the legacy key
    (legacy / "info.json").unlink()
    assert src.spinful_of(str(legacy)) is None  # a legacy folder without info.json: its blocks decide
    (legacy / "info.json").write_text("{not json")
    assert src.spinful_of(str(legacy)) is None

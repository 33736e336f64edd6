"""The store and the prepare driver: round trips, worker independence, resume after kill -9, augmentation,
validation on open, atomicity on bad input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hambench.basis import _so3 as so3
from hambench.errors import InputError, StoreError
from hambench.pipelines import prepare
from hambench.pipelines.synthetic import SyntheticSource
from hambench.store._store import FIELDS, open_store
from hambench.testing import TOL


def tree_digest(path: Path) -> dict[str, str]:
    """sha256 of every file of a store, by relative path."""
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "syn.zarr"
    prepare("synthetic/random", None, out, quiet=True, count=6, augment=2, seed=5)
    return out


def test_round_trip_equals_source(synthetic_store):
    st = open_store(synthetic_store)
    src = SyntheticSource(count=6, seed=5)
    assert len(st) == 6 * 3
    for item in range(6):
        ref = src.read(item)[0]
        got = st[3 * item]
        for name in ("Z", "pos", "cell", "pbc", "src", "dst", "shift", "H", "S"):
            np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
        assert got.id == ref.id and got.species == ref.species and got.parent == -1
        assert got.energy == ref.energy and got.fermi_level == ref.fermi_level
        assert got.splits == ref.splits


def test_augmented_copies_are_exact_rotations(synthetic_store):
    st = open_store(synthetic_store)
    for k in range(0, len(st), 3):
        parent = st[k]
        T0, ptr0 = st.traces(k)
        for c in (1, 2):
            rot = st[k + c]
            R = rot.rotation
            assert rot.parent == k and rot.id == f"{parent.id}/rot{c - 1}"
            np.testing.assert_allclose(R @ R.T, np.eye(3), atol=TOL.roundoff)
            assert np.linalg.det(R) == pytest.approx(1.0, abs=TOL.exact64)
            np.testing.assert_allclose(rot.pos, parent.pos @ R.T, atol=TOL.exact64)
            np.testing.assert_allclose(rot.cell, parent.cell @ R.T, atol=TOL.exact64)
            # blocks: D_i H D_j^T per edge, checked against a dense per-edge loop built from orbital_D
            hp = parent.block_ptr()
            ni, nj = parent.block_shapes()
            for e in range(0, parent.nedges, 7):
                Di = so3.orbital_D(parent.species[int(parent.Z[parent.src[e]])], R)
                Dj = so3.orbital_D(parent.species[int(parent.Z[parent.dst[e]])], R)
                ref = Di @ parent.H[hp[e]:hp[e + 1]].reshape(ni[e], nj[e]) @ Dj.T
                np.testing.assert_allclose(rot.block(e), ref, atol=TOL.exact64)
            # stored traces are the parent's; recomputed on the rotated blocks they agree to 1e-12 relative
            T1, _ = st.traces(k + c)
            np.testing.assert_array_equal(T1, T0)
            Tr, _ = so3.edge_traces(rot.H, rot.Z[rot.src], rot.Z[rot.dst], rot.species)
            np.testing.assert_allclose(Tr, T0, rtol=TOL.exact64)
            rot.validate()


def test_traces_match_definition(synthetic_store):
    st = open_store(synthetic_store)
    s = st[0]
    T, ptr = st.traces(0)
    from hambench.basis._conventions import shell_slices

    for e in range(0, s.nedges, 5):
        b = s.block(e)
        si = shell_slices(s.species[int(s.Z[s.src[e]])])
        sj = shell_slices(s.species[int(s.Z[s.dst[e]])])
        ref = [float(np.sum(b[p, q] ** 2)) for p in si for q in sj]
        np.testing.assert_allclose(T[ptr[e]:ptr[e + 1]], ref, rtol=TOL.roundoff_long)


def test_output_independent_of_workers(tmp_path):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    prepare("synthetic/random", None, a, quiet=True, count=9, seed=1, augment=1, workers=1)
    prepare("synthetic/random", None, b, quiet=True, count=9, seed=1, augment=1, workers=2)
    assert tree_digest(a) == tree_digest(b)


def test_kill_and_resume_is_byte_identical(tmp_path):
    ref = tmp_path / "ref.zarr"
    prepare("synthetic/random", None, ref, quiet=True, count=12, seed=2, delay=0.3)  # same command
    out = tmp_path / "out.zarr"
    code = (
        "import sys; from hambench.pipelines.driver import run; import hambench.pipelines.driver as d; "
        "d.MAX_RANGE_ITEMS = 1; "
        f"run('synthetic/random', None, {str(out)!r}, quiet=True, count=12, seed=2, delay=0.3)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    parts = out.with_name(out.name + ".partial") / "parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("*.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(parts.glob("*.json")))
    assert 3 <= done < 12, f"the kill came too late or too early ({done} parts)"
    assert not out.exists()
    # resume with the same command (delay is an option of the source: pass it again)
    import hambench.pipelines.driver as d

    d_max = d.MAX_RANGE_ITEMS
    try:
        d.MAX_RANGE_ITEMS = 1
        prepare("synthetic/random", None, out, quiet=True, count=12, seed=2, delay=0.3)
    finally:
        d.MAX_RANGE_ITEMS = d_max
    assert not out.with_name(out.name + ".partial").exists()
    assert tree_digest(out) == tree_digest(ref)


def test_existing_output_refused_then_overwritten(tmp_path, synthetic_store):
    out = tmp_path / "x.zarr"
    prepare("synthetic/random", None, out, quiet=True, count=2)
    with pytest.raises(InputError, match="exists already"):
        prepare("synthetic/random", None, out, quiet=True, count=2)
    prepare("synthetic/random", None, out, quiet=True, count=3, overwrite=True)
    assert len(open_store(out)) == 3


def test_open_rejects_other_version_and_missing_field(tmp_path):
    import shutil

    import zarr

    out = tmp_path / "v.zarr"
    prepare("synthetic/random", None, out, quiet=True, count=2)
    g = zarr.open_group(str(out), mode="a")
    g.attrs["hambench_store_version"] = 99
    with pytest.raises(StoreError, match="store version 99"):
        open_store(out)
    g.attrs["hambench_store_version"] = 1
    open_store(out)
    shutil.rmtree(out / "blocks" / "T")
    with pytest.raises(StoreError, match="missing field blocks/T"):
        open_store(out)
    with pytest.raises(StoreError, match="no such store"):
        open_store(tmp_path / "nothing.zarr")


def test_schema_fields_all_present(synthetic_store):
    st = open_store(synthetic_store)
    for name in FIELDS:
        assert name in st.group
    assert st.group["blocks/H"].dtype == np.float64
    ptr = st.ptr
    assert ptr.edge[-1] == st.attrs["counts"]["edges"] and ptr.H[-1] == st.attrs["counts"]["H"]
    # sharding keeps the file count small: one shard per small array
    files = [f for f in synthetic_store.rglob("*") if f.is_file()]
    assert len(files) < 3 * len(FIELDS) + 10


def test_spinful_round_trip_and_rotation(tmp_path):
    out = tmp_path / "soc.zarr"
    prepare("synthetic/random", None, out, quiet=True, count=2, spinful=True, natoms=4, augment=1, seed=9)
    st = open_store(out)
    assert st.spinful and st.group["blocks/H"].dtype == np.complex128
    ref = SyntheticSource(count=2, spinful=True, natoms=4, seed=9).read(0)[0]
    np.testing.assert_array_equal(st[0].H, ref.H)
    rot = st[1]
    rot.validate()
    T0, _ = st.traces(0)
    Tr, _ = so3.edge_traces(rot.H, rot.Z[rot.src], rot.Z[rot.dst], rot.species, spinful=True)
    np.testing.assert_allclose(Tr, T0, rtol=TOL.exact64)
    e = 3
    Di = so3.orbital_D(rot.species[int(rot.Z[rot.src[e]])], rot.rotation, spinful=True)
    Dj = so3.orbital_D(rot.species[int(rot.Z[rot.dst[e]])], rot.rotation, spinful=True)
    np.testing.assert_allclose(rot.block(e), Di @ st[0].block(e) @ Dj.conj().T, atol=TOL.exact64)


def test_cutoff_edges_match_neighbour_list(tmp_path):
    out = tmp_path / "cut.zarr"
    prepare("synthetic/random", None, out, quiet=True, count=1, seed=4, cutoff=2.5)
    st = open_store(out)
    s, full = st[0], SyntheticSource(count=1, seed=4).read(0)[0]
    d = np.linalg.norm(s.pos[s.dst] + s.shift @ s.cell - s.pos[s.src], axis=1)
    assert np.all(d < 2.5) and s.nedges < full.nedges
    idx = full.edge_index()
    for e, (i, j, r) in enumerate(zip(s.src, s.dst, s.shift)):
        f = idx[(int(i), int(j), *map(int, r))]
        np.testing.assert_array_equal(s.block(e), full.block(f))


def test_bad_item_leaves_nothing_behind(tmp_path, monkeypatch):
    from hambench.pipelines import synthetic

    real = synthetic.SyntheticSource.read

    def broken(self, item):
        s = real(self, item)
        if item == 3:
            s[0].H[0] = np.nan
        return s

    monkeypatch.setattr(synthetic.SyntheticSource, "read", broken)
    out = tmp_path / "bad.zarr"
    with pytest.raises(InputError, match="NaN"):
        prepare("synthetic/random", None, out, quiet=True, count=5)
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_non_hermitian_input_is_rejected(tmp_path, monkeypatch):
    from hambench.pipelines import synthetic

    real = synthetic.SyntheticSource.read

    def skewed(self, item):
        s = real(self, item)
        s[0].H[s[0].block_ptr()[5]] += 1e-3
        return s

    monkeypatch.setattr(synthetic.SyntheticSource, "read", skewed)
    with pytest.raises(InputError, match="not Hermitian"):
        prepare("synthetic/random", None, tmp_path / "h.zarr", quiet=True, count=1)


def test_info_summary(synthetic_store):
    d = json.loads(open_store(synthetic_store).summary_json())
    assert d["structures"] == 18 and d["augmented"] == 12
    assert d["species"]["C"]["orbitals"] == 13 and d["species"]["H"]["orbitals"] == 5
    assert d["splits"]["random"] == {"train": 6, "val": 6, "test": 6}


def test_running_scheduler_address(tmp_path):
    from dask.distributed import LocalCluster

    ref, out = tmp_path / "ref.zarr", tmp_path / "sched.zarr"
    prepare("synthetic/random", None, ref, quiet=True, count=4, seed=8)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        prepare("synthetic/random", None, out, quiet=True, count=4, seed=8, scheduler=cluster.scheduler_address)
    assert tree_digest(out) == tree_digest(ref)


@pytest.mark.realdata
def test_bad_file_with_two_workers_is_one_line(tmp_path):
    """A bad input under --workers 2: stderr is our one `hambench: error: FILE: problem` line (no Dask log, no
    traceback), and nothing is left behind."""
    import shutil

    from hambench.testing import require_realdata

    data = tmp_path / "data"
    for k in range(3):
        shutil.copytree(require_realdata("deeph_legacy_MoTe2"), data / f"s{k}")
    h5 = data / "s1" / "hamiltonians.h5"
    h5.write_bytes(h5.read_bytes()[: h5.stat().st_size // 3])
    out = tmp_path / "bad.zarr"
    r = subprocess.run([sys.executable, "-m", "hambench", "-q", "prepare", "-s", "deeph/folder", "-i", str(data),
                        "-o", str(out), "--workers", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("hambench: error:") and "hamiltonians.h5" in lines[0], r.stderr
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


@pytest.mark.realdata
def test_mixed_spin_is_refused_before_any_worker_starts(tmp_path, monkeypatch):
    """Spinless graphene and SOC bismuthene (real OpenMX runs) in one input: refused from the runs' headers before
    any range is read (process_range never runs), in one line naming one run of each kind; with --workers 2 from
    the CLI too, and nothing is left behind."""
    import hambench.pipelines.driver as d
    from hambench.testing import require_realdata

    data = tmp_path / "runs"
    data.mkdir()
    (data / "a_graphene").symlink_to(require_realdata("openmx_graphene_scfout"))
    (data / "b_bismuthene").symlink_to(require_realdata("openmx_bismuthene_soc_scfout"))
    out = tmp_path / "mixed.zarr"

    def never(*a, **k):
        raise AssertionError("a range was read before the spin check")

    monkeypatch.setattr(d, "process_range", never)
    with pytest.raises(InputError, match=r"mixes spinful and spinless runs \(.*b_bismuthene is spinful, "
                                         r".*a_graphene spinless\)"):
        prepare("openmx/scfout", data, out, quiet=True)
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    r = subprocess.run([sys.executable, "-m", "hambench", "-q", "prepare", "-s", "openmx/scfout", "-i", str(data),
                        "-o", str(out), "--workers", "2"], capture_output=True, text=True, timeout=300)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 1 and len(lines) == 1 and "mixes spinful and spinless runs" in lines[0], r.stderr
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_resolved_with_folder_cache_equals_realpath(tmp_path, monkeypatch):
    """StoreRange.from_structures resolves source paths with a per-folder cache: the same strings as os.path.realpath for
    plain files, links to files, files under links to folders, relative paths and paths with '..'."""
    from hambench.store import resolved_path as _resolved

    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "sub" / "a.h5").write_bytes(b"x")
    (tmp_path / "dirlink").symlink_to(real / "sub")
    (real / "filelink.h5").symlink_to(real / "sub" / "a.h5")
    monkeypatch.chdir(real)
    cache: dict = {}
    paths = [real / "sub" / "a.h5", tmp_path / "dirlink" / "a.h5", real / "filelink.h5", "sub/a.h5",
             tmp_path / "dirlink" / ".." / "real" / "sub" / "a.h5", "filelink.h5", tmp_path / "dirlink" / "nope.h5"]
    for p in paths:
        assert _resolved(p, cache) == os.path.realpath(p) == _resolved(p), p

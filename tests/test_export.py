"""`hambench export`: real DeepH folders → store → exported folders agree with the originals, and read back into
identical stores (spinless MoTe2, spinful bismuthene with SOC); CLI, atomicity, ids with "/"."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import hambench.app.cli
from hambench.errors import InputError, StoreError
from hambench.pipelines import deeph_format, prepare
from hambench.pipelines.deeph_format import read_poscar
from hambench.pipelines.export import export_store, folder_names
from hambench.store._store import open_store
from hambench.testing import TOL, require_realdata

STORE_ARRAYS = ("atoms/Z", "atoms/pos", "structures/cell", "edges/src", "edges/dst", "edges/shift", "blocks/H",
                "blocks/S")


def dock_sorted(path):
    """A DeepH-dock h5 file's four arrays with the pairs put in (i, j, R) order (independent of hambench code)."""
    with h5py.File(path) as f:
        pairs, bounds, shapes, entries = (f[k][()] for k in ("atom_pairs", "chunk_boundaries", "chunk_shapes",
                                                             "entries"))
    order = np.lexsort((pairs[:, 2], pairs[:, 1], pairs[:, 0], pairs[:, 4], pairs[:, 3]))
    blocks = [entries[bounds[e]:bounds[e + 1]] for e in order]
    sizes = np.array([b.size for b in blocks], dtype=bounds.dtype)
    new_bounds = np.concatenate([np.zeros(1, bounds.dtype), np.cumsum(sizes, dtype=bounds.dtype)])
    return {"atom_pairs": pairs[order], "chunk_boundaries": new_bounds, "chunk_shapes": shapes[order],
            "entries": np.concatenate(blocks)}


def assert_dock_files_equal(exported, original):
    for fname in ("hamiltonian.h5", "overlap.h5"):
        a, b = dock_sorted(exported / fname), dock_sorted(original / fname)
        for k in a:  # byte for byte: same dtype, shape and bytes (tolerance 0)
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, (fname, k)
            assert a[k].tobytes() == b[k].tobytes(), (fname, k)
    assert json.loads((exported / "info.json").read_text()) == json.loads((original / "info.json").read_text())
    sym_a, cell_a, pos_a = read_poscar(exported / "POSCAR")
    sym_b, cell_b, pos_b = read_poscar(original / "POSCAR")
    assert sym_a == sym_b
    np.testing.assert_allclose(cell_a, cell_b, rtol=0, atol=TOL.geometry)  # Å
    np.testing.assert_allclose(pos_a, pos_b, rtol=0, atol=TOL.geometry)  # Å


def assert_stores_equal(a, b):
    ga, gb = open_store(a).group, open_store(b).group
    for name in STORE_ARRAYS:
        x, y = ga[name][:], gb[name][:]
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)  # exact (tolerance 0)


@pytest.fixture(scope="module")
def mote2_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("mote2") / "mote2.zarr"
    prepare("deeph/folder", require_realdata("deeph_new_MoTe2"), out, quiet=True)
    return out


def test_dock_mote2_export_equals_original_and_reads_back(mote2_store, tmp_path):
    orig = require_realdata("deeph_new_MoTe2")
    out = tmp_path / "exp"
    msg = export_store(mote2_store, "deeph", out, quiet=True)
    assert msg.startswith("exported 1 structure ")
    assert sorted(p.name for p in out.iterdir()) == ["deeph_new_MoTe2", "export.json"]
    assert_dock_files_equal(out / "deeph_new_MoTe2", orig)
    again = tmp_path / "again.zarr"
    prepare("deeph/folder", out, again, quiet=True)
    assert_stores_equal(mote2_store, again)
    assert not list(tmp_path.glob("*.partial*"))


def test_legacy_mote2_export_has_every_original_block(tmp_path):
    orig = require_realdata("deeph_legacy_MoTe2")
    store = tmp_path / "legacy.zarr"
    prepare("deeph/folder", orig, store, quiet=True)
    out = tmp_path / "exp"
    export_store(store, "deeph-legacy", out, quiet=True)
    got = out / "deeph_legacy_MoTe2"
    for fname in ("hamiltonians.h5", "overlaps.h5"):
        with h5py.File(got / fname) as fa, h5py.File(orig / fname) as fb:
            assert sorted(fa) == sorted(fb) and len(fb) == 131
            for k in fb:  # exact: OpenMX order restored, tolerance 0
                assert fa[k].dtype == fb[k].dtype
                np.testing.assert_array_equal(fa[k][()], fb[k][()], err_msg=f"{fname} {k}")
    for fname in ("element.dat", "lat.dat", "site_positions.dat"):
        np.testing.assert_array_equal(np.loadtxt(got / fname), np.loadtxt(orig / fname), err_msg=fname)
    assert (got / "orbital_types.dat").read_text().split() == (orig / "orbital_types.dat").read_text().split()
    assert json.loads((got / "info.json").read_text()) == json.loads((orig / "info.json").read_text())
    again = tmp_path / "again.zarr"
    prepare("deeph/folder", out, again, quiet=True)
    assert_stores_equal(store, again)


def test_spinful_bismuthene_round_trip(tmp_path):
    orig = require_realdata("openmx_bismuthene_soc_scfout", "deeph_dock_converted")
    store = tmp_path / "bi.zarr"
    prepare("deeph/folder", orig, store, quiet=True)
    assert open_store(store).spinful
    for fmt in ("deeph", "deeph-legacy"):
        out = tmp_path / fmt
        export_store(store, fmt, out, quiet=True)
        if fmt == "deeph":
            assert_dock_files_equal(out / "deeph_dock_converted", orig)
        again = tmp_path / f"{fmt}.zarr"
        prepare("deeph/folder", out, again, quiet=True)
        assert open_store(again).group["blocks/H"].dtype == np.complex128
        assert_stores_equal(store, again)


def test_cli_export_and_refusals(mote2_store, tmp_path):
    out = tmp_path / "cli_out"
    r = CliRunner().invoke(hambench.app.cli.main, ["export", str(mote2_store), "--format", "deeph", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "exported 1 structure" in r.output and (out / "deeph_new_MoTe2" / "hamiltonian.h5").exists()
    # the output exists and is not empty: one line, exit 1, nothing touched
    r = CliRunner().invoke(hambench.app.cli.main, ["export", str(mote2_store), "--format", "deeph", "-o", str(out)])
    assert r.exit_code == 1
    assert len(r.output.strip().splitlines()) == 1 and "not empty" in r.output and str(out) in r.output
    # an empty output directory is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "exported" in export_store(mote2_store, "deeph-legacy", empty, quiet=True)
    assert (empty / "deeph_new_MoTe2" / "hamiltonians.h5").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        export_store(mote2_store, "deeph", tmp_path / "afile", quiet=True)
    with pytest.raises(InputError, match="unknown export format"):
        export_store(mote2_store, "xyz", tmp_path / "x", quiet=True)
    not_store = tmp_path / "not_a_store"
    not_store.mkdir()
    (not_store / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    with pytest.raises(StoreError, match="not a hambench store"):
        export_store(not_store, "deeph", tmp_path / "y", quiet=True)
    assert not (tmp_path / "y").exists()


def test_failure_leaves_nothing(mote2_store, tmp_path, monkeypatch):
    def boom(s, folder):
        raise OSError("disk full")

    monkeypatch.setattr(deeph_format, "write_new_folder", boom)
    with pytest.raises(OSError, match="disk full"):
        export_store(mote2_store, "deeph", tmp_path / "out", quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_augmented_ids_with_slash(tmp_path):
    store = tmp_path / "aug.zarr"
    prepare("deeph/folder", require_realdata("deeph_new_MoTe2"), store, quiet=True, augment=1, seed=3)
    st = open_store(store)
    assert [st[k].id for k in range(len(st))] == ["deeph_new_MoTe2", "deeph_new_MoTe2/rot0"]
    out = tmp_path / "exp"
    export_store(store, "deeph", out, quiet=False)  # with the progress bar
    assert sorted(p.name for p in out.iterdir()) == ["deeph_new_MoTe2", "deeph_new_MoTe2_rot0", "export.json"]
    index = json.loads((out / "export.json").read_text())["structures"]
    assert [(e["folder"], e["id"], e["index"]) for e in index] == [
        ("deeph_new_MoTe2", "deeph_new_MoTe2", 0), ("deeph_new_MoTe2_rot0", "deeph_new_MoTe2/rot0", 1)]
    np.testing.assert_array_equal(index[1]["rotation"], st[1].rotation)
    back = deeph_format.read_new_folder(out / "deeph_new_MoTe2_rot0")
    for name in ("Z", "src", "dst", "shift", "H", "S"):
        np.testing.assert_array_equal(getattr(back, name), getattr(st[1], name), err_msg=name)  # exact
    np.testing.assert_allclose(back.pos, st[1].pos, rtol=0, atol=TOL.exact64)  # Å, repr() round trip


def test_folder_names_are_safe_and_unique():
    ids = ["a/rot0", "a_rot0", "A/rot0", "..", "../../etc", "", "x y\nz", "export.json", "ok-1.2"]
    names = folder_names(ids)
    assert len(set(n.lower() for n in names)) == len(ids)
    for n in names:
        assert n and "/" not in n and "\\" not in n and not n.startswith(".") and "\n" not in n and " " not in n
    assert names[0] == "a_rot0" and names[1] == "a_rot0-1" and names[-1] == "ok-1.2"


def test_progress_on_stderr_quiet_and_overwrite(mote2_store, tmp_path, capsys):
    out = tmp_path / "o"
    export_store(mote2_store, "deeph", out, quiet=False)  # the bar: stderr only, stdout stays clean for the summary
    cap = capsys.readouterr()
    assert cap.out == "" and "export" in cap.err
    # through the CLI: -q (and CliRunner's non-TTY stderr) print the summary line only; --overwrite replaces
    args = ["export", str(mote2_store), "-o", str(out), "--overwrite"]
    r = CliRunner().invoke(hambench.app.cli.main, ["-q", *args])
    assert r.exit_code == 0, r.output
    assert r.stdout.count("\n") == 1 and r.stderr == "" and "exported 1 structure" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["deeph_new_MoTe2", "export.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no .partial/.old folders left
    assert json.loads((out / "export.json").read_text())["store"] == str(mote2_store.resolve())
    # --overwrite never replaces a folder that is not an export
    other = tmp_path / "o" / "deeph_new_MoTe2"
    r = CliRunner().invoke(hambench.app.cli.main, ["export", str(mote2_store), "-o", str(other), "--overwrite"])
    assert r.exit_code == 1 and "not an earlier hambench export" in r.output
    assert (other / "hamiltonian.h5").exists()


def test_export_json_read_back_restores_ids_parents_rotations(tmp_path):
    """store (original + 2 rotated copies) → export → prepare: the same ids, parents and rotations, the same blocks
    (edges come back sorted by (i, j, R), which deeph/folder stores already are)."""
    store = tmp_path / "aug.zarr"
    prepare("deeph/folder", require_realdata("deeph_new_MoTe2"), store, quiet=True, augment=2, seed=5)
    export_store(store, "deeph", tmp_path / "exp", quiet=True)
    prepare("deeph/folder", tmp_path / "exp", tmp_path / "back.zarr", quiet=True)
    a, b = open_store(store), open_store(tmp_path / "back.zarr")
    assert [a[k].id for k in range(3)] == [b[k].id for k in range(3)] == [
        "deeph_new_MoTe2", "deeph_new_MoTe2/rot0", "deeph_new_MoTe2/rot1"]
    for k in range(3):
        assert a[k].parent == b[k].parent == (-1 if k == 0 else 0)
        np.testing.assert_array_equal(b[k].rotation, a[k].rotation)  # exact: JSON floats round-trip
        np.testing.assert_array_equal(b[k].H, a[k].H)
        np.testing.assert_array_equal(b[k].src, a[k].src)

"""Store integrity on read (issue 30 item 1): the seal every writer records (shard manifest + content checksum),
the check of every shard on every open, ``hambench info --verify``, and stores that carry their role (a prediction
store is never training data or a truth).

Each damage is made the way it happens — a shard file deleted, cut short or appended to, a value edited behind
hambench's back — and each command that reads the store must refuse it with exactly one ``hambench: error:``
line naming the store, the array and the structures, exit 1, and write nothing. Where a message names
structures, they are recomputed here independently from the offsets (which structures' rows the damaged file
holds).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from hambench.app.testing import cli
from hambench.errors import StoreError
from hambench.pipelines import prepare
from hambench.store import (CACHE_FILE, SHARDS_KEY, array_files, compute_checksum, open_store, seal_store,
                            shard_sizes, store_checksum, verify_store)
from hambench.store import _schema

from _toy_model import register_toy


@pytest.fixture(scope="module", autouse=True)
def toy(tmp_path_factory):
    from hambench.models import registry

    yield register_toy(tmp_path_factory.mktemp("toy"))
    registry._REGISTRY.pop("toy", None)  # tests only: leave the registry as the package has it


@pytest.fixture(scope="module")
def run(demo_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    r = cli("train", "toy", "--data", demo_store, "-o", out, "--max-steps", 1)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def preds(demo_store, run, tmp_path_factory):
    out = tmp_path_factory.mktemp("preds") / "preds.zarr"
    r = cli("predict", run, "--data", demo_store, "-o", out)
    assert r.exit_code == 0, r.output
    return out


def tree(folder: Path) -> set[str]:
    """Every path under ``folder`` but checksum caches (a reader may remember a checksum beside a store)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if CACHE_FILE not in p.name}


def refused(args, folder: Path, *names, code: int = 1) -> str:
    """Run ``hambench ARGS``; assert exit ``code``, exactly one ``hambench: error:`` line on stderr naming each of
    ``names``, and nothing new under ``folder``. The line."""
    before = tree(folder)
    r = cli(*args)
    assert r.exit_code == code, r.output
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("hambench: error:"), r.stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    assert tree(folder) == before, sorted(tree(folder) ^ before)
    return lines[0]


# --- the seal -------------------------------------------------------------------------------------------------
def test_prepare_seals_the_store(demo_store):
    st = open_store(demo_store)
    manifest = st.meta.shards
    files = array_files(demo_store)
    assert set(manifest) == set(files) and manifest == {k: tuple(v) for k, v in shard_sizes(demo_store).items()}
    for name, sizes in manifest.items():  # the sizes are those of the files (0: no file, an all-zero shard)
        for key, size in zip(files[name].keys(), sizes):
            p = files[name].path(key)
            assert (p.stat().st_size if p.exists() else 0) == size
    assert 0 in manifest["structures/cell"]  # molecules: an all-zero cell array has no file, and says so
    seal = st.meta.content_checksum
    assert set(seal) == {"algorithm", "sha256", "finite"}  # content only: no times, the store stays byte-identical
    assert seal["sha256"] == compute_checksum(st) == store_checksum(st)


def test_predictions_are_sealed_with_their_truth_index(preds):
    st = open_store(preds)
    assert "structures/truth_index" in st.meta.shards and st.meta.role == "predictions"
    assert st.meta.content_checksum["sha256"] == compute_checksum(st)


# --- damaged shards: every command refuses them -------------------------------------------------------------
def _delete(path: Path):
    path.unlink()


def _truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _append(path: Path):
    with open(path, "ab") as f:
        f.write(b"\0" * 7)


DAMAGES = [  # (id, array, what is done to its first shard file, words of the message)
    ("deleted-H", "blocks/H", _delete, "is missing"),
    ("truncated-H", "blocks/H", _truncate, "is truncated"),
    ("appended-pos", "atoms/pos", _append, "were written"),
    ("deleted-Hptr", "edges/H_ptr", _delete, "is missing"),
    ("truncated-ids", "structures/id", _truncate, "is truncated"),
]


@pytest.fixture(params=DAMAGES, ids=[d[0] for d in DAMAGES])
def damaged(request, demo_store, tmp_path):
    _, array, damage, words = request.param
    path = tmp_path / "damaged.zarr"
    shutil.copytree(demo_store, path)
    files = array_files(path)[array]
    damage(files.path(files.keys()[0]))
    return path, array, words


COMMANDS = {
    "info": lambda s, run, preds, out: ["info", s],
    "train": lambda s, run, preds, out: ["train", "toy", "--data", s, "-o", out / "run", "--max-steps", 1],
    "predict": lambda s, run, preds, out: ["predict", run, "--data", s, "-o", out / "p.zarr"],
    "score": lambda s, run, preds, out: ["score", preds, "--truth", s, "-o", out / "scores.json"],
    "equivariance": lambda s, run, preds, out: ["equivariance", run, "--data", s, "-n", 1, "--rotations", 1,
                                                "-o", out / "eq.json"],
    "export": lambda s, run, preds, out: ["export", s, "-o", out / "exported"],
    "checksum": lambda s, run, preds, out: ["info", "--checksum", s],
    "board": lambda s, run, preds, out: ["leaderboard", "init", "--board", out / "board", "--dataset", "d",
                                         "--truth", s],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_damaged_shard_refused_by_every_command(damaged, command, run, preds, tmp_path):
    path, array, words = damaged
    line = refused(COMMANDS[command](path, run, preds, tmp_path), tmp_path, path, array, words,
                   "structures 0..9")  # the demo store is one shard per array: all 10 structures
    assert "internal error" not in line


def test_structures_named_are_those_of_the_damaged_shard(tmp_path, monkeypatch):
    """With small shards, deleting shard k of blocks/H names exactly the structures whose blocks it holds
    (computed here from H_ptr and edge_ptr), and the others still read."""
    monkeypatch.setattr(_schema, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(_schema, "SHARD_BYTES", 16384)
    path = tmp_path / "small.zarr"
    prepare("synthetic/random", None, path, quiet=True, count=12, seed=3, natoms=3)
    st = open_store(path)
    files = array_files(path)["blocks/H"]
    assert len(files.keys()) >= 3
    k = 1
    a, b = files.rows(k)
    h_at = st.ptr.H[st.ptr.edge]  # element offset of each structure's first block (n + 1,)
    want = [s for s in range(len(st)) if h_at[s] < b and h_at[s + 1] > a]
    files.path(files.keys()[k]).unlink()
    with pytest.raises(StoreError) as e:
        open_store(path)
    assert f"structures {want[0]}..{want[-1]}" in str(e.value) and "blocks/H" in str(e.value)
    ids = [str(x) for x in zarr.open_array(str(path / "structures/id"), mode="r")[:]]
    assert f"{ids[want[0]]!r}…{ids[want[-1]]!r}" in str(e.value)


def test_store_without_manifest_is_checked_by_its_shard_indices(demo_store, tmp_path):
    """A store written before manifests: files that are there are checked by their index (CRC32C, bounds)."""
    path = tmp_path / "old.zarr"
    shutil.copytree(demo_store, path)
    meta = json.loads((path / "zarr.json").read_text())
    del meta["attributes"][SHARDS_KEY]
    (path / "zarr.json").write_text(json.dumps(meta))
    assert open_store(path).meta.shards is None
    assert "no shard manifest" in cli("info", "--verify", path).output
    _truncate(path / "blocks" / "S" / "c" / "0")
    line = refused(["info", path], tmp_path, "blocks/S", "CRC32C", "structures 0..9")
    assert "truncated or corrupt" in line


def test_rewritten_shard_with_a_whole_index_is_an_edit_not_damage(demo_store, tmp_path):
    """zarr rewrites a compressed shard at another size when a value is edited: the open accepts a file whose
    index is whole; the content checksum then refuses the edit where a command depends on it."""
    path = tmp_path / "edited.zarr"
    shutil.copytree(demo_store, path)
    g = zarr.open_group(str(path), mode="r+")
    g["structures/id"][1] = "renamed-structure"
    assert (path / "structures/id/c/0").stat().st_size != open_store(demo_store).meta.shards["structures/id"][0]
    assert open_store(path)[1].id == "renamed-structure"
    line = refused(["info", "--checksum", path], tmp_path, path, "is not what was written")
    assert "edited or damaged" in line


# --- NaN/Inf in a store --------------------------------------------------------------------------------------
@pytest.mark.parametrize("array, index", [("blocks/H", 777), ("atoms/pos", (5, 1))], ids=["H", "pos"])
def test_non_finite_store_is_refused_before_a_run_folder_exists(demo_store, tmp_path, array, index):
    path = tmp_path / "nan.zarr"
    shutil.copytree(demo_store, path)
    zarr.open_group(str(path), mode="r+")[array][index] = np.nan
    st = open_store(path)
    row = index if isinstance(index, int) else index[0]
    ptr = st.ptr.H[st.ptr.edge] if array == "blocks/H" else st.ptr.atom
    s = int(np.searchsorted(ptr, row, side="right")) - 1  # the structure holding that row
    line = refused(["train", "toy", "--data", path, "-o", tmp_path / "run", "--max-steps", 1], tmp_path,
                   path, array, "NaN/Inf", f"structure {s} ")
    assert "loss" not in line


# --- hambench info --verify -----------------------------------------------------------------------------------
def _edit(array, fn):
    def damage(path):
        g = zarr.open_group(str(path), mode="r+")
        fn(g[array])
    return damage


def _set(array, index, value):
    return _edit(array, lambda a: a.__setitem__(index, value))


def _add(array, index, delta):
    return _edit(array, lambda a: a.__setitem__(index, a[index] + delta))


def _H_ptr_shifted(a):
    p = a[:]
    p[5] += 1
    a[:] = p


VERIFY = [  # (id, damage, words of the first damage verify reports)
    ("nan-H", _set("blocks/H", 500, np.inf), "Hamiltonian contains NaN/Inf"),
    ("not-hermitian", _add("blocks/H", 500, 0.1), "H is not Hermitian"),
    ("bit-flip", _add("blocks/S", 3, 1e-13), "is not what was written"),
    ("edge-out-of-range", _set("edges/src", 7, 99), "edge atom index out of range"),
    ("block-sizes", _edit("edges/H_ptr", _H_ptr_shifted), "its shells need"),
    ("parent", _set("structures/parent", 2, 40), "structures/parent of structure 2"),
    ("natoms", _set("structures/natoms", 4, 9), "structures/natoms of structure 4"),
    ("missing-shard", lambda p: (p / "blocks/T/c/0").unlink(), "blocks/T is damaged"),
    ("corrupt-index", lambda p: _flip_last_byte(p / "atoms/Z/c/0"), "CRC32C"),
]


def _flip_last_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_passes_a_sound_store(demo_store, preds):
    r = cli("info", "--verify", demo_store)
    assert r.exit_code == 0 and "ok" in r.output and "pairing and finiteness checked" in r.output
    assert "matches the one sealed" in r.output
    rep = verify_store(preds)
    assert rep["role"] == "predictions" and rep["sealed"] and rep["structures"] == 10


@pytest.mark.parametrize("case, damage, words", VERIFY, ids=[v[0] for v in VERIFY])
def test_verify_reports_the_first_damage(demo_store, tmp_path, case, damage, words):
    path = tmp_path / "v.zarr"
    shutil.copytree(demo_store, path)
    damage(path)
    refused(["info", "--verify", path], tmp_path, path, words)


# --- stores carry their role ----------------------------------------------------------------------------------
def test_prediction_store_is_never_training_data_or_truth(preds, run, demo_store, tmp_path):
    shown = "is a prediction store"
    refused(["train", "toy", "--data", preds, "-o", tmp_path / "r", "--max-steps", 1], tmp_path, preds, shown,
            "training data")
    refused(["predict", run, "--data", preds, "-o", tmp_path / "p.zarr"], tmp_path, preds, shown)
    refused(["score", preds, "--truth", preds], tmp_path, preds, shown, "--truth")
    refused(["leaderboard", "init", "--board", tmp_path / "b", "--dataset", "d", "--truth", preds], tmp_path,
            preds, shown)
    refused(["predict", demo_store, "--data", demo_store, "-o", tmp_path / "p.zarr"], tmp_path, demo_store,
            "is a store, not a checkpoint")
    assert open_store(demo_store).meta.role == "truth"


def test_seal_of_a_store_with_nan_is_refused(demo_store, tmp_path):
    path = tmp_path / "n.zarr"
    shutil.copytree(demo_store, path)
    zarr.open_group(str(path), mode="r+")["blocks/S"][10] = np.nan
    with pytest.raises(StoreError, match="blocks/S holds NaN/Inf at structure 0 "):
        seal_store(path)

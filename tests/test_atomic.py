"""hambench.atomic: files and folders appear whole or not at all."""

import json
import os

import pytest

from hambench import atomic


def _partials(d):
    return [p.name for p in d.iterdir() if "partial" in p.name]


def test_write_bytes_text_whole(tmp_path):
    p = tmp_path / "sub" / "a.bin"
    atomic.write_bytes(p, b"\x00\x01" * 1000)
    assert p.read_bytes() == b"\x00\x01" * 1000
    atomic.write_text(p, "é\n", fsync=True)
    assert p.read_bytes() == "é\n".encode("utf-8")
    assert _partials(p.parent) == []


def test_write_json_valid(tmp_path):
    p = tmp_path / "x.json"
    obj = {"a": [1, 2.5, None], "b": "ü"}
    atomic.write_json(p, obj)
    assert json.loads(p.read_text(encoding="utf-8")) == obj
    assert p.read_text() == json.dumps(obj, indent=1)
    atomic.write_json(p, obj, indent=None)
    assert p.read_text() == json.dumps(obj)


def test_exception_keeps_old_file(tmp_path):
    p = tmp_path / "x.npz"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(p) as tmp:
            assert tmp.suffix == ".npz" and tmp.parent == p.parent
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert p.read_bytes() == b"old"
    assert _partials(tmp_path) == []


def test_atomic_path_replaces(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("old")
    with atomic.atomic_path(p) as tmp:
        tmp.write_text("new")
        assert p.read_text() == "old"  # not visible before the block ends
    assert p.read_text() == "new" and _partials(tmp_path) == []


def test_partial_path_unique_hidden(tmp_path):
    a, b = atomic.partial_path(tmp_path / "s.zarr"), atomic.partial_path(tmp_path / "s.zarr")
    assert a != b and a.name.startswith(".") and a.parent == tmp_path


def _folder(d, text):
    d.mkdir()
    (d / "f.txt").write_text(text)
    return d


def test_replace_dir_swaps(tmp_path):
    dest = tmp_path / "out"
    atomic.replace_dir(_folder(tmp_path / "s1", "one"), dest)
    assert (dest / "f.txt").read_text() == "one"
    atomic.replace_dir(_folder(tmp_path / "s2", "two"), dest)
    assert (dest / "f.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replace_dir_restores_old_when_second_rename_fails(tmp_path, monkeypatch):
    """The fallback where the system cannot swap two paths in one step (no renameat2's RENAME_EXCHANGE)."""
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)
    dest = _folder(tmp_path / "out", "old")
    staging = _folder(tmp_path / "s", "new")
    real = os.replace
    calls = []

    def flaky(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise OSError("disk gone")
        return real(a, b)

    monkeypatch.setattr(atomic.os, "replace", flaky)
    with pytest.raises(OSError, match="disk gone"):
        atomic.replace_dir(staging, dest)
    assert (dest / "f.txt").read_text() == "old"
    assert (staging / "f.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "s"]


def test_replace_dir_is_one_swap(tmp_path, monkeypatch):
    """Where renameat2 swaps (Linux), replacing a folder is one exchange: no instant without ``dest``, which a
    kill between two renames would leave; a file is replaced by a folder the same way."""
    if not atomic.exchange(_folder(tmp_path / "a", "a"), _folder(tmp_path / "b", "b")):
        pytest.skip("this system cannot swap two paths in one step (the two-rename fallback is tested above)")
    assert (tmp_path / "a" / "f.txt").read_text() == "b" and (tmp_path / "b" / "f.txt").read_text() == "a"
    dest = _folder(tmp_path / "out", "old")
    calls = []
    real = os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (calls.append((a, b)), real(a, b))[1])
    atomic.replace_dir(_folder(tmp_path / "s", "new"), dest)
    assert (dest / "f.txt").read_text() == "new" and calls == []
    (tmp_path / "file").write_text("x")
    atomic.replace_dir(_folder(tmp_path / "s2", "dir"), tmp_path / "file")
    assert (tmp_path / "file" / "f.txt").read_text() == "dir"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "file", "out"]

"""pipelines.filetree.FileTreeSource: the input check, scan, ids, read and cached attrs every file-tree source
shares — on a toy subclass, and the exact ids of the OpenMX, ABACUS and SIESTA sources on trees of links to the
real runs (stores depend on them)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from hambench.errors import InputError
from hambench.pipelines import get_source
from hambench.pipelines import check_choices
from hambench.pipelines.filetree import FileTreeSource
from hambench.testing import require_realdata


class Toy(FileTreeSource):
    """Runs are ``*.run`` files; a folder holding several names each by its stem."""

    name = "toy/run"
    input_help = "a folder of .run files"
    none_found = "no .run file below it"
    attrs_calls = 0

    @dataclasses.dataclass(frozen=True)
    class Options(FileTreeSource.Options):
        mode: str = dataclasses.field(default="a", metadata={"help": "a mode", "choices": ("a", "b")})

    def find(self, root):
        return [root] if root.is_file() else sorted(root.rglob("*.run"))

    def _run_folder(self, item):
        return item.parent

    def _run_suffix(self, item):
        return item.stem if len(list(item.parent.glob("*.run"))) > 1 else None

    def read_run(self, path, struct_id):
        return (struct_id, path.read_text())

    def _attrs_dict(self):
        type(self).attrs_calls += 1
        return {"kind": "crystal", "dft": {"code": "toy"}, "constants": "CODATA2018"}


def _tree(root: Path, files):
    for f in files:
        p = root / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f)
    return root


def test_input_checks_and_messages(tmp_path):
    with pytest.raises(InputError, match=r"--source toy/run needs --input: a folder of \.run files"):
        Toy(None)
    with pytest.raises(InputError, match="--source toy/other needs --input"):
        Toy(None, source_name="toy/other")
    with pytest.raises(InputError, match="no such file or directory") as e:
        Toy(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no \.run file below it"):
        Toy(tmp_path / "empty")
    _tree(tmp_path / "t", ["x/1.run"])
    with pytest.raises(InputError, match="mode must be 'a' or 'b', got 'c'"):
        Toy(tmp_path / "t", mode="c")
    assert Toy(tmp_path / "t", mode="b").opts.mode == "b"


def test_items_ids_read_and_cached_attrs(tmp_path):
    root = _tree(tmp_path / "root", ["one/a.run", "two/b.run", "two/c.run", "deep/er/d.run", "top.run"])
    src = Toy(root)
    assert src.items() == [str(root / f) for f in ("deep/er/d.run", "one/a.run", "top.run", "two/b.run", "two/c.run")]
    assert [src.id_of(i) for i in src.items()] == ["deep/er", "one", "root", "two/b", "two/c"]
    assert src.read(src.items()[3]) == [("two/b", "two/b.run")]
    # the run folder is --input itself: the root's own (real) name, also through a relative path and a link
    os.symlink(root / "one", tmp_path / "link")
    assert [Toy(tmp_path / "link").id_of(i) for i in Toy(tmp_path / "link").items()] == ["one"]
    cwd = os.getcwd()
    try:
        os.chdir(root)
        rel = Toy(Path("one"))
        assert rel.id_of(rel.items()[0]) == "one"
        dot = Toy(Path("."))
        assert dot.id_of(str(Path("one") / "a.run")) == "one" and dot.id_of("top.run") == "root"
    finally:
        os.chdir(cwd)
    # a file as --input: its folder's name
    single = Toy(root / "one" / "a.run")
    assert single.items() == [str(root / "one" / "a.run")] and single.id_of(single.items()[0]) == "one"
    Toy.attrs_calls = 0
    assert src.attrs().dft["code"] == "toy" and src.attrs().kind == "crystal"
    assert Toy.attrs_calls == 1
    assert src.spinful_of(src.items()[0]) is None  # the base knows nothing cheap


def test_check_choices_ignores_fields_without_choices():
    @dataclasses.dataclass(frozen=True)
    class O:
        free: str = "anything"
        fixed: str = dataclasses.field(default="x", metadata={"choices": ("x", "y")})

    check_choices(O())
    with pytest.raises(InputError, match="fixed must be 'x' or 'y', got 'z'"):
        check_choices(O(fixed="z"))


def _links(run: Path, dst: Path, names=None):
    dst.mkdir(parents=True, exist_ok=True)
    for f in run.iterdir():
        if names is None or f.name in names:
            os.symlink(f, dst / f.name)


def _ids(source, root):
    src = get_source(source, root)
    return [src.id_of(i) for i in src.items()], src


@pytest.mark.realdata
def test_openmx_ids(tmp_path):
    g = require_realdata("openmx_graphene_scfout")
    for name in ("run10", "run2", "a/run1"):
        _links(g, tmp_path / name, {"openmx.scfout", "openmx.out"})
    assert _ids("openmx/scfout", tmp_path)[0] == ["a/run1", "run2", "run10"]
    assert _ids("openmx/scfout", tmp_path / "run2")[0] == ["run2"]
    assert _ids("openmx/scfout", g / "openmx.scfout")[0] == ["openmx"]  # a file: its stem
    ids, src = _ids("openmx/scfout", g)
    assert ids == [g.resolve().name] and src.read(src.items()[0])[0].id == ids[0]


@pytest.mark.realdata
def test_abacus_ids(tmp_path):
    raw = require_realdata("abacus_MoS2", "abacus_raw")
    # real folders of links to the files (find_files reads a folder reached twice through links once)
    for run, outs in (("runA", ["OUT.ABACUS"]), ("sub/runB", ["OUT.ABACUS"]), ("two", ["OUT.a", "OUT.b"])):
        _links(raw, tmp_path / run, {"INPUT", "STRU", "KPT"})
        for out in outs:
            _links(raw / "OUT.ABACUS", tmp_path / run / out)
    ids, src = _ids("abacus/csr", tmp_path)
    assert ids == ["runA", "sub/runB", "two/OUT.a", "two/OUT.b"]
    assert _ids("abacus/csr", tmp_path / "two")[0] == ["two/OUT.a", "two/OUT.b"]
    assert _ids("abacus/csr", tmp_path / "runA")[0] == ["runA"]
    assert _ids("abacus/csr", tmp_path / "runA" / "OUT.ABACUS")[0] == ["runA"]  # the OUT folder: its run's name
    assert src.read(src.items()[2])[0].id == "two/OUT.a"


@pytest.mark.realdata
def test_siesta_ids(tmp_path):
    raw = require_realdata("siesta_Si", "siesta_raw")
    _links(raw, tmp_path / "r1")
    _links(raw, tmp_path / "deep" / "r2")
    _links(raw, tmp_path / "two")
    os.symlink(raw / "Si.HSX", tmp_path / "two" / "Other.HSX")
    ids, src = _ids("siesta/hsx", tmp_path)
    assert ids == ["deep/r2", "r1", "two/Other", "two/Si"]
    assert _ids("siesta/hsx", tmp_path / "r1")[0] == ["r1"]
    assert _ids("siesta/hsx", tmp_path / "r1" / "Si.HSX")[0] == ["r1"]  # a file: its folder's name
    assert _ids("siesta/hsx", tmp_path / "two" / "Si.HSX")[0] == ["two/Si"]
    assert src.read(src.items()[3])[0].id == "two/Si"

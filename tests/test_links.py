"""Run folders given as folders of symbolic links (issue 21 §3): every folder source follows links to folders and
files, reads a run reached twice once, and refuses a link loop with one line naming the link."""

from __future__ import annotations

import os

import pytest

from hambench.errors import InputError
from hambench.pipelines import find_files, get_source, prepare
from hambench.store._store import open_store
from hambench.testing import require_realdata


def link_farm(tmp_path, runs: dict):
    """tmp/farm/<name> -> the real run folder, the way people collect runs from several places."""
    farm = tmp_path / "farm"
    farm.mkdir()
    for name, target in runs.items():
        os.symlink(target, farm / name)
    return farm


@pytest.mark.parametrize("source, parts", [
    ("openmx/scfout", ("openmx_graphene_scfout",)),
    ("deeph/folder", ("deeph_legacy_MoTe2",)),
    ("abacus/csr", ("abacus_MoS2", "abacus_raw")),
    ("siesta/hsx", ("siesta_Si", "siesta_raw")),
], ids=["openmx", "deeph", "abacus", "siesta"])
def test_folder_of_links_finds_the_runs(tmp_path, source, parts):
    real = require_realdata(*parts)
    direct = get_source(source, real).items()
    farm = link_farm(tmp_path, {"run_a": real, "run_b": real})
    items = get_source(source, farm).items()
    # the same runs, reached through the link names (the second link to the same folder is read once)
    assert len(items) == len(direct) >= 1
    assert all(str(i).startswith(str(farm / "run_a")) for i in items)


def test_prepare_through_links_equals_direct(tmp_path):
    real = require_realdata("deeph_legacy_MoTe2")
    farm = link_farm(tmp_path, {"mote2": real})
    prepare("deeph/folder", farm, tmp_path / "a.zarr", quiet=True)
    prepare("deeph/folder", real, tmp_path / "b.zarr", quiet=True)
    a, b = open_store(tmp_path / "a.zarr"), open_store(tmp_path / "b.zarr")
    assert len(a) == len(b) == 1 and a[0].id == "mote2"
    assert (a[0].H == b[0].H).all() and (a[0].src == b[0].src).all()


def test_link_loop_is_refused_clearly(tmp_path):
    farm = tmp_path / "farm"
    (farm / "sub").mkdir(parents=True)
    os.symlink("..", farm / "sub" / "back")
    with pytest.raises(InputError, match="symbolic link loop") as e:
        find_files(farm, lambda n: n.endswith(".scfout"))
    assert str(farm / "sub" / "back") in str(e.value)
    with pytest.raises(InputError, match="symbolic link loop"):
        get_source("openmx/scfout", farm)


def test_broken_links_and_file_links(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (tmp_path / "x.scfout").write_text("")
    os.symlink(tmp_path / "x.scfout", d / "y.scfout")
    os.symlink(tmp_path / "missing", d / "z.scfout")
    assert find_files(d, lambda n: n.endswith(".scfout")) == [d / "y.scfout"]

"""`hambench predict`: prediction stores with exactly the truth's structures and edges (readable by the scorer's
open_predictions), split subsets, `--structures` on a POSCAR/xyz equal to `--data` on the prepared store of the
same structure, and the refusals (unknown species, spinful data to a spinless model, corrupt checkpoints).

Real data: the shipped PySCF demo molecules and the MoTe2 crystal of ../shared/realdata (read from there).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hambench.store import open_predictions, store_checksum
from hambench.store._store import open_store
from hambench.testing import TOL, require_realdata
from hambench.app.testing import cli, one_line_error

from _train_data import mote2_store, with_split

MODEL = "deephe3"


@pytest.fixture(scope="module")
def demo(demo_store):
    return demo_store


@pytest.fixture(scope="module")
def mote2(tmp_path_factory):
    return mote2_store(tmp_path_factory)


def _train(store, run, *extra):
    r = cli("train", MODEL, "--data", store, "-o", run, "--preset", "tiny", "--max-steps", 2, "--dtype", "float64",
            *extra)
    assert r.exit_code == 0, r.output
    return run


@pytest.fixture(scope="module")
def mol_run(demo, tmp_path_factory):
    return _train(demo, tmp_path_factory.mktemp("mol") / "run")


@pytest.fixture(scope="module")
def mote2_run(mote2, tmp_path_factory):
    return _train(mote2, tmp_path_factory.mktemp("mote2") / "run")


def test_predict_store_has_the_truths_edges(demo, mol_run, tmp_path):
    out = tmp_path / "preds.zarr"
    r = cli("predict", mol_run, "--data", demo, "-o", out)
    assert r.exit_code == 0, r.output
    assert "structures/s" in r.output
    truth, pred = open_store(demo), open_store(out)
    for name in ("structures/id", "structures/natoms", "structures/nedges", "atoms/Z", "atoms/pos", "edges/src",
                 "edges/dst", "edges/shift", "edges/H_ptr"):
        np.testing.assert_array_equal(truth.array(name)[:], pred.array(name)[:], err_msg=name)
    a = pred.attrs
    assert a["hambench_predictions_version"] == 1 and a["truth"]["checksum"] == store_checksum(truth)
    assert a["model"]["name"] == MODEL and a["model"]["checkpoint"].endswith(".pt") and a["split"] is None
    p = open_predictions(out)  # the scorer's reader validates it against the truth
    assert len(p) == len(truth)
    H = pred.array("blocks/H")[:]
    assert np.all(np.isfinite(H)) and np.abs(H).max() > 0
    # the stored blocks are the model's forward pass on the truth's batch
    from hambench.training._data import collate
    from hambench.models.run import load_model

    model, _, layout = load_model(mol_run)
    b = collate(truth.read_range(0, 2, blocks=()), layout)
    with torch.no_grad():
        ref = model(b)["H"].numpy()
    np.testing.assert_allclose(H[: ref.size], ref, rtol=0, atol=TOL.exact64)


def test_predict_split_subset(demo, mol_run, tmp_path):
    store = with_split(demo, tmp_path / "split.zarr", np.arange(10) % 2, ["train", "test"])
    out = tmp_path / "test.zarr"
    r = cli("predict", mol_run / "last.pt", "--data", store, "--split", "demo:test", "-o", out)
    assert r.exit_code == 0, r.output
    pred, truth = open_store(out), open_store(store)
    np.testing.assert_array_equal(pred.array("structures/id")[:], truth.array("structures/id")[1::2])
    assert pred.attrs["split"] == "demo:test"
    open_predictions(out, truth=store)
    assert "no subset 'val'" in one_line_error(cli("predict", mol_run, "--data", store, "--split", "demo:val",
                                                   "-o", tmp_path / "x.zarr"))
    assert not (tmp_path / "x.zarr").exists()


def _match(pred_store, k, truth_store, j):
    """Blocks of structure k of pred_store keyed by (i, j, R), and of structure j of truth_store."""
    def blocks(st, s):
        r = st.read_range(s, s + 1, blocks=("H",))
        out = {}
        for e in range(len(r.src)):
            key = (int(r.src[e]), int(r.dst[e]), *map(int, r.shift[e]))
            out[key] = r.H[r.H_ptr[e]: r.H_ptr[e + 1]]
        return out
    return blocks(pred_store, k), blocks(truth_store, j)


def test_structures_poscar_equals_data_store(mote2, mote2_run, tmp_path):
    poscar = require_realdata("deeph_new_MoTe2", "POSCAR")
    a, b = tmp_path / "from_store.zarr", tmp_path / "from_poscar.zarr"
    assert cli("predict", mote2_run, "--data", mote2, "-o", a).exit_code == 0
    r = cli("predict", mote2_run, "--structures", poscar, "-o", b)
    assert r.exit_code == 0, r.output
    pa, pb = open_store(a), open_store(b)
    assert pb.attrs["truth"] is None and pb.attrs["model"]["name"] == MODEL
    ba, bb = _match(pb, 0, pa, 0)
    assert set(ba) == set(bb) and len(ba) == 131  # the neighbour list with the learned cut-offs = the DFT edges
    err = max(float(np.abs(ba[k] - bb[k]).max()) for k in ba)
    assert err < TOL.network64, err  # float64 run: the same model on the same graph (edge order may differ)


def test_structures_xyz_many_frames(demo, mol_run, tmp_path):
    import ase
    import ase.io

    st = open_store(demo)
    frames = [ase.Atoms(numbers=st[k].Z, positions=st[k].pos) for k in (2, 5)]
    xyz = tmp_path / "two.xyz"
    ase.io.write(xyz, frames)
    out = tmp_path / "xyz.zarr"
    r = cli("predict", mol_run, "--structures", xyz, "-o", out)
    assert r.exit_code == 0, r.output
    p = open_store(out)
    assert list(p.array("structures/id")[:]) == ["two/0", "two/1"]
    ref = tmp_path / "ref.zarr"
    assert cli("predict", mol_run, "--data", demo, "-o", ref).exit_code == 0
    pr = open_store(ref)
    for k, j in ((0, 2), (1, 5)):
        bx, bs = _match(p, k, pr, j)
        assert set(bx) == set(bs)  # molecules: every pair within the longest training distance of its elements
        assert max(float(np.abs(bx[q] - bs[q]).max()) for q in bx) < TOL.xyz_positions  # xyz keeps ~1e-8 Å of the positions
    # a molecule larger than any in training (two waters 8 Å apart) still gets every atom pair, as PySCF has
    w = st[2]
    two = ase.Atoms(numbers=np.concatenate([w.Z, w.Z]), positions=np.concatenate([w.pos, w.pos + [8.0, 0, 0]]))
    ase.io.write(tmp_path / "dimer.xyz", two)
    assert cli("predict", mol_run, "--structures", tmp_path / "dimer.xyz", "-o", tmp_path / "d.zarr").exit_code == 0
    assert int(open_store(tmp_path / "d.zarr").array("structures/nedges")[0]) == 36


def test_unknown_species_and_spin_refused(demo, mote2, mol_run, mote2_run, tmp_path):
    msg = one_line_error(cli("predict", mote2_run, "--data", demo, "-o", tmp_path / "x.zarr"))
    assert "unknown to the model" in msg
    msg = one_line_error(cli("predict", mol_run, "--structures", require_realdata("deeph_new_MoTe2", "POSCAR"),
                             "-o", tmp_path / "x.zarr"))
    assert "unknown to the model" in msg
    from hambench.pipelines import prepare

    soc = tmp_path / "bi.zarr"
    prepare("deeph/folder", require_realdata("openmx_bismuthene_soc_scfout", "deeph_dock_converted"), soc,
            quiet=True)
    msg = one_line_error(cli("predict", mote2_run, "--data", soc, "-o", tmp_path / "x.zarr"))
    assert "spinful" in msg
    assert not (tmp_path / "x.zarr").exists()
    # same elements, other basis shells (H with one s shell fewer): refused before anything is read
    import shutil

    import zarr

    other = tmp_path / "other_basis.zarr"
    shutil.copytree(demo, other)
    g = zarr.open_group(str(other), mode="r+")
    g.attrs["species"] = {**g.attrs["species"], "1": [0, 1]}
    msg = one_line_error(cli("predict", mol_run, "--data", other, "-o", tmp_path / "x.zarr"))
    assert "Z=1 has shells [0, 1]" in msg
    bad = tmp_path / "half.pt"
    bad.write_bytes((mote2_run / "best.pt").read_bytes()[:5000])
    assert "corrupt" in one_line_error(cli("predict", bad, "--data", mote2, "-o", tmp_path / "x.zarr"))
    assert "no such checkpoint" in one_line_error(cli("predict", tmp_path / "none.pt", "--data", mote2, "-o",
                                                      tmp_path / "x.zarr"))
    assert not (tmp_path / "x.zarr").exists()

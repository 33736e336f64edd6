"""The prediction store: writer, reader, content checksum, and every refusal (issue 16 items 1 and 7).

The truths are real PySCF molecules (the demo cache, no DFT run) and synthetic spinful cells; each refusal is
provoked by the exact damage it names (an edited truth, a dropped edge, a NaN, another version).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr

from hambench.errors import InputError, StoreError
from hambench.pipelines import prepare
from hambench.store import (
    StoreRange,
    StoreWriter,
    gather,
    index_runs,
    open_predictions,
    open_store,
    seal_store,
    store_checksum,
    write_predictions,
)
from hambench.store._checksum import compute_checksum as _compute_checksum


@pytest.fixture(scope="module")
def mol_store(demo_store):
    return demo_store


@pytest.fixture(scope="module")
def soc_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("soc") / "soc.zarr"
    prepare("synthetic/random", None, out, quiet=True, count=5, seed=3, spinful=True, natoms=4)
    return out


def perturbed(st, indices, delta=0.01):
    return [st[int(k)].H + delta for k in indices]


def test_round_trip_subset_in_given_order(mol_store, tmp_path):
    st = open_store(mol_store)
    order = [7, 2, 3, 4, 0]
    ids = [st[k].id for k in order]
    rng = np.random.default_rng(0)
    blocks = [st[k].H + rng.normal(size=st[k].H.size) * 1e-3 for k in order]
    out = write_predictions(mol_store, ids, blocks, tmp_path / "p.zarr",
                            {"model": {"name": "toy", "checkpoint": None, "config": {}}, "split": None,
                             "note": "kept"})
    assert out == tmp_path / "p.zarr" and not (tmp_path / "p.zarr.partial").exists()
    p = open_predictions(out)
    assert len(p) == 5 and p.ids == ids and list(p.truth_index) == order
    assert p.model["name"] == "toy" and p.attrs["meta"] == {"note": "kept"}
    assert p.attrs["hambench_predictions_version"] == 1
    assert p.attrs["truth"]["checksum"] == store_checksum(st) == p.truth_checksum
    for k, t in enumerate(order):
        pred, true = p.pair(k)
        np.testing.assert_array_equal(pred.H, blocks[k])
        np.testing.assert_array_equal(true.H, st[t].H)
        np.testing.assert_array_equal(pred.S, st[t].S)  # the truth's overlap
        for name in ("Z", "pos", "cell", "src", "dst", "shift"):
            np.testing.assert_array_equal(getattr(pred, name), getattr(st[t], name))
        pred.validate(check_pairs=False)
    # the cached own checksum equals a fresh computation; indices work as ids
    assert p.checksum == _compute_checksum(p.store)
    q = open_predictions(write_predictions(st, order, blocks, tmp_path / "q.zarr"))
    assert q.ids == ids and q.checksum == p.checksum
    assert [r[1:] for r in p.ranges()] == [(7, 8), (2, 5), (0, 1)]


def test_index_runs_and_gather(mol_store):
    assert index_runs([4, 5, 6, 1, 2, 9]) == [(0, 4, 7), (3, 1, 3), (5, 9, 10)]
    assert index_runs([]) == []
    st = open_store(mol_store)
    for want in ([2, 3, 4], [9, 0, 5], [7]):
        d = gather(st, want, max_gap=1)
        assert list(d.index) == want
        for k, t in enumerate(want):
            s = st[t]
            e0, e1 = d.edge_ptr[k], d.edge_ptr[k + 1]
            np.testing.assert_array_equal(d.H[d.H_ptr[e0]:d.H_ptr[e1]], s.H)
            np.testing.assert_array_equal(d.S[d.S_ptr[e0]:d.S_ptr[e1]], s.S)
            np.testing.assert_array_equal(d.Z[d.atom_ptr[k]:d.atom_ptr[k + 1]], s.Z)
            assert d.ids[k] == s.id


def test_spinful_round_trip_with_traces(soc_store, tmp_path):
    st = open_store(soc_store)
    assert st.spinful
    idx = [1, 3]
    blocks = [st[k].H * (1 + 0.1j) for k in idx]
    T = [st.traces(k)[0] * 0.9 for k in idx]
    p = open_predictions(write_predictions(st, idx, blocks, tmp_path / "p.zarr", T=T))
    assert p.store.group["blocks/H"].dtype == np.complex128
    for k, t in enumerate(idx):
        np.testing.assert_array_equal(p.store[k].H, blocks[k])
        np.testing.assert_array_equal(p.store.traces(k)[0], T[k])
    # splits of the truth travel with the predicted structures
    assert p.store[0].splits == st[1].splits and p.store[1].splits == st[3].splits


def test_checksum_is_content_only(mol_store, tmp_path):
    st = open_store(mol_store)
    c0 = store_checksum(st)
    assert len(c0) == 64 and c0 == store_checksum(mol_store)
    assert st.meta.content_checksum["sha256"] == c0  # sealed by prepare
    copy = tmp_path / "copy.zarr"
    shutil.copytree(mol_store, copy)
    assert store_checksum(copy) == c0  # a copy (new mtimes) has the same content
    g = zarr.open_group(str(copy), mode="r+")
    orig = g["blocks/S"][5]
    g["blocks/S"][5] = orig + 1e-12
    with pytest.raises(StoreError, match="is not what was written .* edited or damaged since"):
        store_checksum(copy)  # the content differs from the sealed one
    assert seal_store(copy) != c0  # sealed again (as a writer would): a new content, a new checksum
    assert store_checksum(copy) != c0
    # a cached checksum whose file fingerprint is stale is not trusted
    g["blocks/S"][5] = g["blocks/S"][5] - 1e-12 + 1e-11
    c1 = seal_store(copy)
    g.attrs["content_checksum"] = {"algorithm": "hambench-content-sha256-v1", "sha256": c1, "finite": True,
                                   "fingerprint": "x"}
    side = copy / ".hambench-checksum.json"
    side.write_text(json.dumps({"algorithm": "hambench-content-sha256-v1", "sha256": c0, "finite": True,
                                "fingerprint": "x"}))
    assert store_checksum(copy) == c1
    # the remembered value beside the arrays is used while the files are unchanged, and only then
    rec = json.loads(side.read_text())
    assert rec["sha256"] == c1 and rec["fingerprint"] != "x"
    side.write_text(json.dumps({**rec, "sha256": "0" * 64}))
    assert store_checksum(copy) == "0" * 64  # proof that the cache is read (the fingerprint still matches)
    g["blocks/S"][5] = orig  # the original content again, in rewritten files
    with pytest.raises(StoreError, match="is not what was written"):
        store_checksum(copy)  # files changed: recomputed (not the cached value) and compared with the seal
    assert seal_store(copy) == c0 == store_checksum(copy)


def test_changed_truth_is_refused(mol_store, tmp_path):
    copy = tmp_path / "truth.zarr"
    shutil.copytree(mol_store, copy)
    preds = write_predictions(copy, [0, 1], perturbed(open_store(copy), [0, 1]), tmp_path / "p.zarr")
    open_predictions(preds)
    g = zarr.open_group(str(copy), mode="r+")
    g["blocks/H"][100] = g["blocks/H"][100] + 1e-9  # eV
    with pytest.raises(StoreError, match="truth.zarr: its content .* is not what was written"):
        open_predictions(preds)  # edited behind hambench's back: not what its writer sealed
    seal_store(copy)  # as if prepared again with other labels
    with pytest.raises(InputError, match="changed since .*p.zarr was predicted") as e:
        open_predictions(preds)
    assert str(copy) in str(e.value)
    assert len(open_predictions(preds, check_checksum=False)) == 2


def test_truth_found_or_named(mol_store, tmp_path):
    copy = tmp_path / "truth.zarr"
    shutil.copytree(mol_store, copy)
    preds = write_predictions(copy, [0], perturbed(open_store(copy), [0]), tmp_path / "p.zarr")
    shutil.rmtree(copy)
    with pytest.raises(InputError, match="truth store .* is not there; pass --truth"):
        open_predictions(preds)
    assert open_predictions(preds, truth=mol_store).truth.path == mol_store  # same content elsewhere


@pytest.mark.parametrize("case, msg", [
    ("unknown", "structure id 'nope' is not in the truth store"),
    ("dup", "given more than once"),
    ("size", "has 24 elements, the truth's edges need 1156"),
    ("nan", "H contains NaN/Inf"),
    ("inf", "H contains NaN/Inf"),
    ("complex", "complex H for a spinless truth store"),
    ("fewer", "blocks has fewer entries"),
    ("more", "blocks has more entries"),
    ("range", "index 99 is out of range"),
    ("empty", "no structures to write"),
])
def test_writer_refuses_bad_input(mol_store, tmp_path, case, msg):
    st = open_store(mol_store)
    ids, blocks = [st[0].id, st[1].id], perturbed(st, [0, 1])
    if case == "unknown":
        ids[1] = "nope"
    elif case == "dup":
        ids[1] = ids[0]
    elif case == "size":
        blocks[0] = blocks[0][:24]
    elif case == "nan":
        blocks[1][3] = np.nan
    elif case == "inf":
        blocks[1][3] = -np.inf
    elif case == "complex":
        blocks[0] = blocks[0] + 1e-3j
    elif case == "fewer":
        blocks = blocks[:1]
    elif case == "more":
        blocks = blocks + blocks
    elif case == "range":
        ids = [0, 99]
    elif case == "empty":
        ids, blocks = [], []
    out = tmp_path / "p.zarr"
    with pytest.raises(InputError, match=msg) as e:
        write_predictions(st, ids, blocks, out)
    assert str(out) in str(e.value) and "\n" not in str(e.value)
    assert not out.exists() and not (tmp_path / "p.zarr.partial").exists()


def test_writer_refuses_existing_unless_overwrite(mol_store, tmp_path):
    st = open_store(mol_store)
    out = write_predictions(st, [0], perturbed(st, [0]), tmp_path / "p.zarr")
    with pytest.raises(InputError, match="exists already"):
        write_predictions(st, [0], perturbed(st, [0]), out)
    write_predictions(st, [1], perturbed(st, [1]), out, overwrite=True)
    assert open_predictions(out).ids == [st[1].id]


def handmade_predictions(truth_path, preds_like, out, edit):
    """A prediction store written directly with StoreWriter from edited Structures (as a foreign tool might)."""
    truth = open_store(truth_path)
    like = open_store(preds_like)
    structs = [truth[k] for k in range(2)]
    edit(structs)
    H = [s.H for s in structs]
    for s in structs:
        s.H = s.S = None  # columns of the edited structures without blocks, then the edited H
    batch = StoreRange.from_structures(structs).columns()
    batch["blocks/H"] = np.concatenate(H)
    batch["edges/H_size"] = np.concatenate([np.diff(s.block_ptr()) for s in structs])
    counts = {"structures": 2, "atoms": len(batch["atoms/Z"]), "edges": len(batch["edges/src"]),
              "H": len(batch["blocks/H"]), "S": 0, "T": 0}
    w = StoreWriter(out, counts, {k: v for k, v in like.attrs.items() if k not in ("counts", "content_checksum")})
    w.append(batch)
    w.close()
    return out


def drop_last_edge(structs):
    s = structs[1]
    n = int(s.block_ptr()[-2])
    s.src, s.dst, s.shift, s.H = s.src[:-1], s.dst[:-1], s.shift[:-1], s.H[:n]


def add_edge(structs):
    s = structs[0]
    s.src, s.dst = np.append(s.src, 0), np.append(s.dst, 1)
    s.shift = np.vstack([s.shift, [[0, 0, 0]]])
    s.H = np.concatenate([s.H, s.block(1).ravel()])


def move_edge(structs):
    structs[1].dst = structs[1].dst.copy()
    structs[1].dst[[0, 1]] = structs[1].dst[[1, 0]]


@pytest.mark.parametrize("edit, msg", [
    (drop_last_edge, r"structure 'dsgdb9nsd_000002': 15 edges, the truth has 16 \(missing edges\)"),
    (add_edge, r"structure 'dsgdb9nsd_000001': 26 edges, the truth has 25 \(extra edges\)"),
    (move_edge, r"structure 'dsgdb9nsd_000002': edges \(i, j, R\) \[dst\] differ"),
])
def test_reader_refuses_other_edges(mol_store, tmp_path, edit, msg):
    st = open_store(mol_store)
    good = write_predictions(st, [0, 1], perturbed(st, [0, 1]), tmp_path / "good.zarr")
    bad = handmade_predictions(mol_store, good, tmp_path / "bad.zarr", edit)
    with pytest.raises(InputError, match=msg) as e:
        open_predictions(bad)
    assert str(bad) in str(e.value)


@pytest.mark.parametrize("damage, msg", [
    ("nan", "structure 'dsgdb9nsd_000002': predicted H contains NaN/Inf"),
    ("inf", "structure 'dsgdb9nsd_000001': predicted H contains NaN/Inf"),
    ("pred_version", "predictions version 2, this hambench reads version 1"),
    ("store_version", "store version 7, this hambench reads version 1"),
    ("not_preds", "not a prediction store"),
    ("id", "structure id 'other' is not in the truth store"),
    ("pos", "structure 'dsgdb9nsd_000001': positions differ"),
])
def test_reader_refuses_damaged_store(mol_store, tmp_path, damage, msg):
    st = open_store(mol_store)
    p = write_predictions(st, [0, 1], perturbed(st, [0, 1]), tmp_path / "p.zarr")
    g = zarr.open_group(str(p), mode="r+")
    if damage == "nan":
        g["blocks/H"][g["edges/H_ptr"][25] + 3] = np.nan
    elif damage == "inf":
        g["blocks/H"][0] = np.inf
    elif damage == "pred_version":
        g.attrs["hambench_predictions_version"] = 2
    elif damage == "store_version":
        g.attrs["hambench_store_version"] = 7
    elif damage == "not_preds":
        del g.attrs["hambench_predictions_version"]
    elif damage == "id":
        g["structures/id"][1] = "other"
    elif damage == "pos":
        g["atoms/pos"][0] = g["atoms/pos"][0] + 1e-6
    with pytest.raises(InputError, match=msg) as e:
        open_predictions(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_reader_refuses_another_truth(mol_store, soc_store, tmp_path):
    st = open_store(mol_store)
    p = write_predictions(st, [0], perturbed(st, [0]), tmp_path / "p.zarr")
    with pytest.raises(InputError, match="--truth is not the store .*p.zarr was predicted from"):
        open_predictions(p, truth=soc_store)  # another store given: named as such, not as a changed truth
    with pytest.raises(InputError, match="kind is 'molecule', the truth store's is 'crystal'"):
        open_predictions(p, truth=soc_store, check_checksum=False)

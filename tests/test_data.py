"""Range reads of the store and the data loader (hambench.training._data): against direct zarr reads, hand-computed edge
vectors, the basis layout's offsets, dense D·H·Dᵀ rotations, and the DDP/worker/split/seed contracts.

Stores are built here from real DFT data: the shipped PySCF demo molecules (QM9's 10 smallest, raw files of
``prepare pyscf/qm9``; no DFT run), the DeepH MoTe2 folder and the OpenMX SOC bismuthene of ../shared/realdata.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hambench.basis import _so3 as so3
from hambench.training._data import (Batch, augment_rotation, batch_from_structures, edge_vectors, make_loader, select_split)
from hambench.app.demo import demo_raw_dir
from hambench.errors import InputError
from hambench.basis._layout import BasisLayout
from hambench.pipelines import prepare
from hambench.store._store import open_store
from hambench.testing import TOL, require_realdata

ATOL = TOL.exact64


@pytest.fixture(scope="module")
def qm9(tmp_path_factory):
    # the shipped demo molecules (PySCF B3LYP/def2-SVP raw files of `prepare pyscf/qm9`, see hambench/app/demo.py)
    # read by pyscf/outputs: the same blocks, without parsing the QM9 catalogue (~3 s)
    out = tmp_path_factory.mktemp("qm9") / "qm9.zarr"
    prepare("pyscf/outputs", demo_raw_dir(), out, quiet=True)
    return open_store(out)


@pytest.fixture(scope="module")
def mote2(tmp_path_factory):
    out = tmp_path_factory.mktemp("mote2") / "mote2.zarr"
    prepare("deeph/folder", require_realdata("deeph_legacy_MoTe2"), out, quiet=True)
    return open_store(out)


@pytest.fixture(scope="module")
def bismuthene(tmp_path_factory):
    out = tmp_path_factory.mktemp("bi") / "bi.zarr"
    prepare("openmx/scfout", require_realdata("openmx_bismuthene_soc_scfout"), out, quiet=True)
    return open_store(out)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "syn.zarr"
    prepare("synthetic/random", None, out, quiet=True, count=9, seed=3, natoms=4)
    return open_store(out)


def direct_structure(g, k: int) -> dict:
    """Structure k read field by field straight from the zarr group ``g`` (the reader's independent reference)."""
    ap, ep = g["structures/atom_ptr"], g["structures/edge_ptr"]
    a0, a1, e0, e1 = int(ap[k]), int(ap[k + 1]), int(ep[k]), int(ep[k + 1])
    out = {"id": str(g["structures/id"][k]), "Z": g["atoms/Z"][a0:a1], "pos": g["atoms/pos"][a0:a1],
           "cell": g["structures/cell"][k], "pbc": g["structures/pbc"][k], "src": g["edges/src"][e0:e1],
           "dst": g["edges/dst"][e0:e1], "shift": g["edges/shift"][e0:e1],
           "rotation": g["structures/rotation"][k], "parent": int(g["structures/parent"][k]),
           "energy": float(g["structures/energy"][k]), "fermi_level": float(g["structures/fermi_level"][k]),
           "sources": json.loads(str(g["structures/sources"][k]))}
    for name in ("H", "S", "T"):
        p = g[f"edges/{name}_ptr"][e0 : e1 + 1]
        out[name] = g[f"blocks/{name}"][int(p[0]) : int(p[-1])]
        out[name + "_ptr"] = p - p[0]
    return out


# --- Store.read_range --------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["qm9", "mote2", "bismuthene"])
def test_read_range_equals_direct_reads_and_getitem(which, request):
    import zarr

    st = request.getfixturevalue(which)
    n = len(st)
    group = zarr.open_group(str(st.path), mode="r")
    check = sorted({0, n - 1} | ({3, 6} if n > 7 else set()))  # first, last, and inside a middle range
    refs = {k: direct_structure(group, k) for k in check}
    gets = {k: st[k] for k in check}
    spans = [(0, n), (n - 1, n)] + ([(3, 7), (5, 5)] if n > 7 else [])
    for a, b in spans:
        r = st.read_range(a, b, sources=True)
        assert len(r) == b - a and r.atom_ptr[0] == 0 and r.edge_ptr[0] == 0 and r.H_ptr[0] == 0
        assert list(r.index) == list(range(a, b))
        for i, k in enumerate(range(a, b)):
            if k not in refs:
                continue
            ref, got = refs[k], gets[k]
            a0, a1, e0, e1 = r.atom_ptr[i], r.atom_ptr[i + 1], r.edge_ptr[i], r.edge_ptr[i + 1]
            assert r.ids[i] == ref["id"] == got.id
            for name, sl in (("Z", slice(a0, a1)), ("pos", slice(a0, a1)), ("src", slice(e0, e1)),
                             ("dst", slice(e0, e1)), ("shift", slice(e0, e1))):
                np.testing.assert_array_equal(getattr(r, name)[sl], ref[name], err_msg=name)
                np.testing.assert_array_equal(getattr(got, name), ref[name], err_msg=name)
            for name in ("cell", "pbc", "rotation"):
                np.testing.assert_array_equal(getattr(r, name)[i], ref[name], err_msg=name)
                np.testing.assert_array_equal(getattr(got, name), ref[name], err_msg=name)
            assert r.parent[i] == ref["parent"] == got.parent
            np.testing.assert_array_equal([r.energy[i], got.energy], [ref["energy"]] * 2)
            assert [list(x) for x in got.sources] == ref["sources"]
            for name in ("H", "S", "T"):
                ptr = getattr(r, name + "_ptr")
                flat = getattr(r, name)[ptr[e0] : ptr[e1]]
                np.testing.assert_array_equal(flat, ref[name], err_msg=name)
                np.testing.assert_array_equal(ptr[e0 : e1 + 1] - ptr[e0], ref[name + "_ptr"], err_msg=name)
            np.testing.assert_array_equal(got.H, ref["H"])
            np.testing.assert_array_equal(got.S, ref["S"])
            assert r.structure(i).id == got.id
        assert r.H.dtype == (np.complex128 if st.spinful else np.float64)


def test_read_range_take_and_bounds(qm9):
    r = qm9.read_range(0, len(qm9))
    sub = r.take([7, 2, 2])
    assert list(sub.index) == [7, 2, 2]
    for i, k in enumerate([7, 2, 2]):
        s, ref = sub.structure(i), qm9[k]
        np.testing.assert_array_equal(s.H, ref.H)
        np.testing.assert_array_equal(s.pos, ref.pos)
        e0, e1 = sub.edge_ptr[i], sub.edge_ptr[i + 1]
        np.testing.assert_array_equal(sub.T[sub.T_ptr[e0] : sub.T_ptr[e1]], qm9.traces(k)[0])
    with pytest.raises(IndexError):
        qm9.read_range(2, len(qm9) + 1)
    only_h = qm9.read_range(1, 3, blocks=("H",))
    assert only_h.S is None and only_h.T is None and only_h.H_ptr[-1] == only_h.H.size


# --- collate -----------------------------------------------------------------------------------------------
def test_collate_edge_vectors_and_offsets_mote2_and_molecules(mote2, qm9):
    for st in (mote2, qm9):
        lay = st.layout
        k = list(range(min(len(st), 3)))
        batch = next(iter(make_loader(st, batch_size=3)))
        assert isinstance(batch, Batch) and batch.ids == [st[i].id for i in k]
        base = 0
        e = 0
        for b, i in enumerate(k):
            s = st[i]
            for src, dst, R in zip(s.src, s.dst, s.shift):  # hand computation, edge by edge
                lattice = R[0] * s.cell[0] + R[1] * s.cell[1] + R[2] * s.cell[2]
                expect = s.pos[dst] + lattice - s.pos[src]
                np.testing.assert_allclose(batch.edge_vec[e].numpy(), expect, atol=TOL.roundoff_long)
                assert batch.edge_src[e] == base + src and batch.edge_dst[e] == base + dst
                assert batch.edge_batch[e] == b
                e += 1
            base += s.natoms
        assert e == batch.num_edges and base == batch.num_atoms
        zi, zj = batch.Z[batch.edge_src].numpy(), batch.Z[batch.edge_dst].numpy()
        np.testing.assert_array_equal(batch.H_ptr.numpy(), lay.block_ptr(zi, zj))
        np.testing.assert_array_equal(batch.S_ptr.numpy(), lay.block_ptr(zi, zj, spinful=False))
        np.testing.assert_array_equal(batch.T_ptr.numpy(), lay.trace_ptr(zi, zj))
        # every block is the store's block of that edge
        e = 0
        for i in k:
            s = st[i]
            for le in range(s.nedges):
                np.testing.assert_array_equal(batch.blocks(e).numpy(), s.block(le))
                e += 1
    # MoTe2: the on-site edges (i, i, 0) have zero vectors; every other one is > 2 Å long
    b = next(iter(make_loader(mote2, batch_size=1)))
    onsite = (b.edge_src == b.edge_dst) & (b.shift.abs().sum(1) == 0)
    assert int(onsite.sum()) == 3
    assert torch.all(b.edge_vec[onsite] == 0) and torch.all(b.edge_vec[~onsite].norm(dim=1) > 2.0)


def test_edge_vectors_differentiable_and_dtype(mote2):
    b = next(iter(make_loader(mote2, batch_size=1)))
    pos = b.pos.clone().requires_grad_(True)
    cell = b.cell.clone().requires_grad_(True)
    v = edge_vectors(b, pos, cell)
    torch.testing.assert_close(v, b.edge_vec, atol=0, rtol=0)
    c = torch.tensor([0.3, -1.1, 2.0], dtype=torch.float64)
    (v @ c).sum().backward()
    # d/dpos_a = c * (#edges with dst a − #edges with src a); d/dcell_k = c * Σ_e R_e,k
    count = torch.zeros(b.num_atoms, dtype=torch.float64)
    count.index_add_(0, b.edge_dst, torch.ones(b.num_edges, dtype=torch.float64))
    count.index_add_(0, b.edge_src, -torch.ones(b.num_edges, dtype=torch.float64))
    torch.testing.assert_close(pos.grad, count[:, None] * c, atol=TOL.exact64, rtol=0)
    torch.testing.assert_close(cell.grad[0], b.shift.sum(0)[:, None] * c, atol=TOL.exact64, rtol=0)
    b32 = b.to(dtype=torch.float32)
    assert b32.pos.dtype == b32.H.dtype == b32.edge_vec.dtype == torch.float32 and b32.Z.dtype == torch.int64
    torch.testing.assert_close(b32.edge_vec, b.edge_vec.float(), atol=TOL.exact32, rtol=0)


def test_batch_from_structures_equals_store_batch_and_works_without_targets(qm9, bismuthene):
    for st, k in ((qm9, [4, 1]), (bismuthene, [0])):
        lay = st.layout
        structs = [st[i] for i in k]
        b = batch_from_structures(structs, lay)
        ref = next(iter(make_loader(st.path, split=None, batch_size=len(st)))).to()
        sel = torch.cat([torch.arange(int(ref.natoms[:i].sum()), int(ref.natoms[: i + 1].sum())) for i in k])
        torch.testing.assert_close(b.pos, ref.pos[sel], atol=0, rtol=0)
        np.testing.assert_array_equal(b.H.numpy(), np.concatenate([s.H for s in structs]))
        np.testing.assert_array_equal(b.S.numpy(), np.concatenate([s.S for s in structs]))
        np.testing.assert_allclose(b.T.numpy(), np.concatenate([st.traces(i)[0] for i in k]), rtol=TOL.exact64)
        assert b.kind == st.kind and b.spinful == st.spinful
        assert b.to(dtype=torch.float32).H.dtype == (torch.complex64 if st.spinful else torch.float32)
        bare = [type(s)(id=s.id, Z=s.Z, pos=s.pos, cell=s.cell, pbc=s.pbc, src=s.src, dst=s.dst, shift=s.shift,
                        H=None, S=None, species={}) for s in structs]
        nb = batch_from_structures(bare, lay)
        assert nb.H is None and nb.S is None and nb.T is None
        torch.testing.assert_close(nb.H_ptr, b.H_ptr, atol=0, rtol=0)
        torch.testing.assert_close(nb.edge_vec, b.edge_vec, atol=0, rtol=0)
    with pytest.raises(InputError, match="unknown to the basis layout"):
        batch_from_structures([qm9[0]], BasisLayout({83: [0, 0, 1, 2]}))


# --- rotation augmentation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["qm9", "mote2", "bismuthene"])
def test_augmentation_is_the_exact_rotation(which, request):
    st = request.getfixturevalue(which)
    plain = list(make_loader(st, batch_size=4, seed=11))
    aug = list(make_loader(st, batch_size=4, seed=11, augment_rotations=True))
    assert all(b.rotation is None for b in plain)
    lay = st.layout
    for p, a in zip(plain, aug):
        assert p.ids == a.ids
        for s in range(p.num_structures):
            R = a.rotation[s].numpy()
            np.testing.assert_array_equal(R, augment_rotation(11, 0, int(p.index[s])))
            np.testing.assert_allclose(R @ R.T, np.eye(3), atol=TOL.roundoff)
            atoms = (p.atom_batch == s).numpy()
            np.testing.assert_allclose(a.pos.numpy()[atoms], p.pos.numpy()[atoms] @ R.T, atol=ATOL)
            np.testing.assert_allclose(a.cell[s].numpy(), p.cell[s].numpy() @ R.T, atol=ATOL)
        np.testing.assert_allclose(a.edge_vec.numpy(), np.einsum("eij,ej->ei", a.rotation[a.edge_batch].numpy(),
                                                                 p.edge_vec.numpy()), atol=ATOL)
        np.testing.assert_array_equal(a.T.numpy(), p.T.numpy())
        # dense D_i H D_j^† per edge (kron(U, D) when spinful), built from orbital_D, not the kernel
        for e in range(p.num_edges):
            R = a.rotation[int(p.edge_batch[e])].numpy()
            zi, zj = int(p.Z[p.edge_src[e]]), int(p.Z[p.edge_dst[e]])
            for which_blk, spin in (("H", st.spinful), ("S", False)):
                Di = so3.orbital_D(lay.species[zi], R, spin)
                Dj = so3.orbital_D(lay.species[zj], R, spin)
                ref = Di @ p.blocks(e, which_blk).numpy() @ Dj.conj().T
                np.testing.assert_allclose(a.blocks(e, which_blk).numpy(), ref, atol=ATOL, rtol=0)
        # T is invariant: recomputed on the rotated H it equals the stored labels
        Tr, _ = so3.edge_traces(a.H.numpy(), a.Z[a.edge_src].numpy(), a.Z[a.edge_dst].numpy(), lay.species,
                                st.spinful)
        np.testing.assert_allclose(Tr, p.T.numpy(), rtol=TOL.exact64, atol=TOL.exact64)
    # a new rotation every epoch
    L = make_loader(st, batch_size=4, seed=11, augment_rotations=True)
    L.set_epoch(1)
    assert not torch.allclose(next(iter(L)).rotation, aug[0].rotation)


# --- sampling: DDP, workers, splits, seeds -----------------------------------------------------------------
@pytest.mark.parametrize("world,drop_last", [(2, False), (3, False), (3, True), (4, False)])
def test_ddp_parts_disjoint_equal_and_covering(qm9, world, drop_last):
    n = len(qm9)
    for epoch in (0, 1):
        parts, lengths = [], []
        for rank in range(world):
            L = make_loader(qm9, batch_size=2, shuffle=True, seed=5, rank=rank, world_size=world,
                            drop_last=drop_last, range_size=3)
            L.set_epoch(epoch)
            plan = [int(i) for b in L.dataset.batch_indices() for i in b]
            if rank == world - 1 and epoch == 1:  # what the loader yields is the plan (reading costs: one rank)
                got = [int(i) for b in L for i in b.index]
                assert got == plan and sum(1 for _ in L) == len(L)
            parts.append(plan)
            lengths.append((len(plan), len(L)))
        assert len(set(lengths)) == 1  # equal parts, equal numbers of batches on every rank
        flat = [i for p in parts for i in p]
        if drop_last:
            assert len(flat) == len(set(flat)) == (n // world) // 2 * 2 * world  # disjoint, full batches only
        else:
            assert set(flat) == set(range(n))  # covering
            assert len(flat) == -(-n // world) * world and len(flat) - len(set(flat)) == len(flat) - n  # pads only
            if n % world == 0:
                assert len(flat) == len(set(flat))


def test_workers_give_the_same_batches(qm9):
    kw = dict(batch_size=3, shuffle=True, seed=2, augment_rotations=True, range_size=4)
    single = list(make_loader(qm9, **kw))
    multi = list(make_loader(qm9, num_workers=2, **kw))
    assert len(single) == len(multi) == len(make_loader(qm9, **kw))
    key = lambda b: b.ids  # noqa: E731
    for x, y in zip(sorted(single, key=key), sorted(multi, key=key)):
        assert x.ids == y.ids
        for name in ("pos", "cell", "edge_vec", "H", "S", "T", "rotation", "edge_src", "H_ptr"):
            torch.testing.assert_close(getattr(x, name), getattr(y, name), atol=0, rtol=0)


def test_seed_determinism_and_shuffle(qm9):
    def order(seed, epoch, shuffle=True):
        L = make_loader(qm9, batch_size=2, shuffle=shuffle, seed=seed, range_size=4)
        L.set_epoch(epoch)
        return [list(b.ids) for b in L]

    assert order(7, 0) == order(7, 0)
    assert order(7, 0) != order(7, 1) and order(7, 0) != order(8, 0)
    assert sorted(sum(order(7, 1), [])) == sorted(sum(order(7, 0, shuffle=False), []))
    assert sum(order(7, 0, shuffle=False), []) == [qm9[k].id for k in range(len(qm9))]


def test_split_selection_and_errors(synthetic, qm9):
    fresh = open_store(synthetic.path)  # split arrays not opened yet: read through read_range first
    import zarr

    codes = zarr.open_group(str(synthetic.path), mode="r")["splits/random"][:]
    labels = synthetic.attrs["splits"]["random"]
    assert fresh[4].splits == {"random": labels[codes[4]]}
    np.testing.assert_array_equal(fresh.read_range(0, 5).splits["random"], codes[:5])
    for sub in ("train", "val", "test"):
        expect = [k for k in range(len(synthetic)) if labels[codes[k]] == sub]
        assert list(select_split(synthetic, f"random:{sub}")) == expect
        assert all(synthetic[k].splits["random"] == sub for k in expect)
        got = sorted(int(i) for b in make_loader(synthetic, split=f"random:{sub}", batch_size=2, shuffle=True)
                     for i in b.index)
        assert got == expect
    train = list(select_split(synthetic, "random:train"))
    sub = make_loader(synthetic, split="random:train", indices=[train[1], 0, 1, 2, train[0]], batch_size=9)
    assert sorted(int(i) for b in sub for i in b.index) == sorted({train[0], train[1]} | ({0, 1, 2} & set(train)))
    assert [int(i) for b in make_loader(synthetic, indices=[5, 1], batch_size=9) for i in b.index] == [1, 5]
    with pytest.raises(InputError, match="out of range"):
        make_loader(synthetic, indices=[len(synthetic)])
    with pytest.raises(InputError, match=r"no split named 'qh9-stable-id' \(known splits: random:\{"):
        make_loader(synthetic, split="qh9-stable-id:train")
    with pytest.raises(InputError, match="has no subset 'holdout' .*train"):
        make_loader(synthetic, split="random:holdout")
    with pytest.raises(InputError, match="NAME:SUBSET"):
        make_loader(synthetic, split="random")
    with pytest.raises(InputError, match="known splits: none"):
        make_loader(qm9, split="qh9-stable-id:train")


def test_persistent_workers_follow_set_epoch(qm9):
    import pickle

    kw = dict(batch_size=4, shuffle=True, seed=9, augment_rotations=True, range_size=4)
    L = make_loader(qm9, num_workers=2, **kw)
    ref = make_loader(qm9, **kw)
    for epoch in (0, 3):
        L.set_epoch(epoch)
        ref.set_epoch(epoch)
        got = {tuple(b.ids): b.rotation for b in L}
        want = {tuple(b.ids): b.rotation for b in ref}
        assert got.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k], atol=0, rtol=0)
    copy = pickle.loads(pickle.dumps(L.dataset))
    assert copy.epoch == 3 and [list(b) for b in copy.batch_indices()] == [list(b) for b in ref.dataset.batch_indices()]

"""QHNet (models/qhnet.py): exact symmetries on real PySCF molecules, AIRS' parameter count, hook points, config.

The molecules are the demo's real B3LYP/def2-SVP runs (``hambench.app.demo.demo_raw_dir()``; prepare runs no DFT).
Tolerances: rotations float64 ≤ 1e-9 relative (measured ~1e-15), float32 ≤ 1e-5 relative (measured ~3e-7).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hambench.training._data import batch_from_structures
from hambench.errors import InputError
from hambench.basis._layout import BasisLayout
from hambench.basis._so3 import random_rotation
from hambench.store._structure import Structure
from hambench.testing import TOL, assert_model_equivariant

from hambench.models import qhnet
from hambench.models.qhnet import QHNetConfig, build

# small but complete: l ≤ 4 everywhere (every d–d path of the expansion), 2 self/pair layers
SMALL = dict(hidden_size=4, bottle_hidden_size=2, num_gnn_layers=2, start_layer=-1, conv_radial_hidden=8)


@pytest.fixture(scope="module")
def demo(demo_store):
    from hambench.store import open_store

    st = open_store(demo_store)
    structs = [st[k] for k in range(len(st))]
    return structs, BasisLayout(st.species, st.spinful)


@pytest.fixture(scope="module")
def m64(demo):
    return _model(demo[1], torch.float64)


@pytest.fixture(scope="module")
def m32(m64):
    import copy

    return copy.deepcopy(m64).float()


def _model(layout, dtype, seed=0, **kw):
    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return build(QHNetConfig(**{**SMALL, **kw}), layout).eval()
    finally:
        torch.set_default_dtype(old)


def _with(s: Structure, **changes) -> Structure:
    d = dict(s.__dict__)
    d.update(changes)
    return Structure(**d)


def _predict(model, structs, layout, dtype):
    with torch.no_grad():
        return model(batch_from_structures(structs, layout, dtype=dtype))["H"]


def _rotation_error(model, structs, layout, dtype, R):
    Z = np.concatenate([s.Z for s in structs]).astype(np.int64)
    off = np.cumsum([0] + [s.natoms for s in structs])
    src = np.concatenate([s.src + o for s, o in zip(structs, off)])
    dst = np.concatenate([s.dst + o for s, o in zip(structs, off)])

    def f(pos, cell):
        moved = [_with(s, pos=pos[a:b]) for s, a, b in zip(structs, off[:-1], off[1:])]
        return _predict(model, moved, layout, dtype).double().numpy()

    pos = np.concatenate([s.pos for s in structs])
    scale = float(np.abs(f(pos, None)).max())
    err = assert_model_equivariant(f, pos, Z[src], Z[dst], layout.species, R=R, atol=np.inf)
    return err / scale


def test_molecule_stores_hold_every_pair_and_self_edge(demo):
    structs, _ = demo
    for s in structs:
        pairs = set(zip(s.src.tolist(), s.dst.tolist()))
        assert pairs == {(i, j) for i in range(s.natoms) for j in range(s.natoms)}, s.id
        assert not s.shift.any()


def test_rotation_equivariance_float64_and_float32(demo, m64, m32):
    structs, lay = demo
    R = random_rotation(np.random.default_rng(7))
    rel64 = _rotation_error(m64, structs, lay, torch.float64, R)
    assert rel64 <= TOL.network64, rel64
    rel32 = _rotation_error(m32, structs, lay, torch.float32, R)
    assert rel32 <= TOL.network32, rel32
    # cast to float32 and back, the 3j constants are exact again (common.ExactConstants)
    import copy

    rel = _rotation_error(copy.deepcopy(m32).double(), structs, lay, torch.float64, R)
    assert rel <= TOL.network64, rel
    assert _rotation_error(_model(lay, torch.float32, hidden_size=2, num_gnn_layers=1).double(), structs[:2], lay,
                           torch.float64, R) <= TOL.network64  # built in float32, then cast


def test_outputs_follow_the_batch_dtype_and_are_aligned_with_H_ptr(demo, m64):
    structs, lay = demo
    m = m64
    b = batch_from_structures(structs[:3], lay, dtype=torch.float64)
    with torch.no_grad():
        H = m(b)["H"]
    assert H.dtype == torch.float64 and H.shape == b.H.shape and H.shape[0] == int(b.H_ptr[-1])
    assert torch.isfinite(H).all()


def test_translation_invariance(demo, m64):
    structs, lay = demo
    m = m64
    a = _predict(m, structs, lay, torch.float64)
    b = _predict(m, [_with(s, pos=s.pos + np.array([3.7, -12.1, 0.4])) for s in structs], lay, torch.float64)
    assert float((a - b).abs().max()) <= TOL.reassociation * float(a.abs().max())


def test_atom_permutation_permutes_blocks(demo, m64):
    structs, lay = demo
    m = m64
    s = structs[8]  # C3H4 (7 atoms)
    rng = np.random.default_rng(3)
    perm = rng.permutation(s.natoms)  # new atom k is old atom perm[k]
    inv = np.argsort(perm)
    eperm = rng.permutation(s.nedges)  # and the edges in another order
    ptr = s.block_ptr()
    H = np.concatenate([s.H[ptr[e]:ptr[e + 1]] for e in eperm])
    t = _with(s, Z=s.Z[perm], pos=s.pos[perm], src=inv[s.src][eperm], dst=inv[s.dst][eperm],
              shift=s.shift[eperm], H=H, S=None)
    a = _predict(m, [s], lay, torch.float64).numpy()
    b = _predict(m, [t], lay, torch.float64).numpy()
    expect = np.concatenate([a[ptr[e]:ptr[e + 1]] for e in eperm])
    assert np.abs(b - expect).max() <= TOL.reassociation * np.abs(a).max()


def test_molecules_in_a_batch_do_not_see_each_other(demo, m64):
    structs, lay = demo
    atom = Structure(id="O", Z=[8], pos=[[0.0, 0.0, 0.0]], cell=np.zeros((3, 3)), pbc=[False] * 3, src=[0], dst=[0],
                     shift=[[0, 0, 0]], H=np.zeros(14 * 14), S=None, species=lay.species)  # no pairs at all
    both = _predict(m64, [atom, structs[6]], lay, torch.float64)
    alone = [_predict(m64, [s], lay, torch.float64) for s in (atom, structs[6])]
    assert torch.isfinite(both).all()
    assert float((both - torch.cat(alone)).abs().max()) <= TOL.exact64 * float(both.abs().max())


def test_blocks_are_exactly_symmetric(demo, m32):
    structs, lay = demo
    m = m32
    b = batch_from_structures(structs, lay, dtype=torch.float32)
    with torch.no_grad():
        H = m(b)["H"]
    ni, nj = lay.block_sizes(b.Z[b.edge_src].numpy(), b.Z[b.edge_dst].numpy())
    key = {(int(i), int(j)): e for e, (i, j) in enumerate(zip(b.edge_src.tolist(), b.edge_dst.tolist()))}
    p = b.H_ptr.numpy()
    for (i, j), e in key.items():
        f = key[(j, i)]
        Be = H[p[e]:p[e + 1]].reshape(ni[e], nj[e])
        Bf = H[p[f]:p[f + 1]].reshape(ni[f], nj[f])
        assert torch.equal(Be, Bf.T), (i, j)


def test_crystals_are_refused_in_one_line(demo, m64):
    _, lay = demo
    m = m64
    # a periodic H chain: self edge and the two neighbours along x
    shift = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0]])
    n = 5 * 5 * 3
    s = Structure(id="chain", Z=[1], pos=[[0.0, 0.0, 0.0]], cell=np.diag([0.9, 10.0, 10.0]), pbc=[True, False, False],
                  src=[0, 0, 0], dst=[0, 0, 0], shift=shift, H=np.zeros(n), S=None, species={1: [0, 0, 1]})
    b = batch_from_structures([s], lay, dtype=torch.float64)
    with pytest.raises(InputError, match=r"^qhnet is a molecule model; ") as ei:
        m(b)
    assert "\n" not in str(ei.value)
    from hambench.models import registry

    assert registry.get("qhnet").kinds == ("molecule",)


def _airs_parameter_count(hs=128, hb=32, L=4, K=16, layers=5, start=2, conv_hidden=32, species=10, slots=(3, 2, 1)):
    """AIRS' QHNet constructor counted by hand: (parameters it uses, parameters it builds but never uses)."""
    lin = (L + 1) * hs * hs + hs  # e3nn Linear hidden → hidden with scalar biases
    ng = 2 * ((L + 1) * hs * ((L + 1) * hs) + (L + 1) * hs)  # NormGate: Linear(n, n)–SiLU–Linear(n, n)

    def paths(parity):  # l1 ⊗ l2 → l ≤ L (uvu with parities: l ≡ l1 + l2 mod 2)
        return sum(1 for l1 in range(L + 1) for l2 in range(L + 1) for l in range(abs(l1 - l2), min(l1 + l2, L) + 1)
                   if not parity or (l1 + l2 - l) % 2 == 0)

    W0, W = (L + 1) * hs, paths(True) * hs  # conv weights per edge: layer 0 (0e ⊗ Y_l → l) and the others
    n_mul, uuu = (L + 1) * hs, paths(False) * hs
    layer0 = K * conv_hidden + conv_hidden * W0 + (2 * hs) * conv_hidden + conv_hidden * W0 + lin
    layer0_unused = 2 * (hs * hs + hs) + 2 * (hs * hs + hs)  # its NormGate(128x0e) and two Linears
    conv = K * conv_hidden + conv_hidden * W + (n_mul + hs) * conv_hidden + conv_hidden * W + lin + ng + 2 * lin
    self_layer = 3 * lin + uuu + 3 * ng
    pair = 3 * lin + 2 * ng + (K * hs + hs * uuu) + ((n_mul + hs) * hs + hs + hs * uuu + uuu)
    pair_unused = uuu + lin  # tp_node_pair_2 (internal weights) and linear_node_pair_2
    npw = sum(hb * slots[l1] * slots[l2] for l in range(L + 1) for l1 in range(3) for l2 in range(3)
              if abs(l1 - l2) <= l <= l1 + l2)
    nb = sum(slots[l1] * slots[l1] for l1 in range(3))  # l_in = 0 paths: l1 = l2
    heads = 2 * (L + 1) * hs * hb  # output_ii / output_ij, no biases
    heads += (hs * hs + hs + hs * npw + npw) + (hs * hs + hs + hs * nb + nb)  # fc_ii, fc_ii_bias
    heads += (2 * hs * hs + hs + hs * npw + npw) + (2 * hs * hs + hs + hs * nb + nb)  # fc_ij, fc_ij_bias
    n_pair = layers - 1 - start
    used = species * hs + 1 + layer0 + (layers - 1) * conv + n_pair * (self_layer + pair) + heads
    unused = layer0_unused + n_pair * pair_unused + 2 * (npw + nb)  # + each Expansion's own weights vector
    return used, unused


def test_paper_parameter_count_is_airs_minus_its_unused_modules(demo):
    import e3nn

    _, lay = demo
    used, unused = _airs_parameter_count()
    assert (used, unused) == (20_165_277, qhnet.AIRS_UNUSED_PARAMETERS) == (20_165_277, 250_396)
    assert math.isclose(used + unused, 20.42e6, rel_tol=TOL.quoted_digits)  # models_sota.md §5.1: ≈ 20.42 M
    opt = e3nn.get_optimization_defaults()
    e3nn.set_optimization_defaults(optimize_einsums=False)  # build speed only: parameters are the same
    try:
        torch.manual_seed(0)
        m = build(QHNetConfig(), lay)
    finally:
        e3nn.set_optimization_defaults(**opt)
    assert sum(p.numel() for p in m.parameters()) == used
    # AIRS' path weights: sqrt(dim(ir_out) / F), F summed over all paths (conv uvu: 42 paths of fan-in 1;
    # pair/self uuu: 65 of fan-in 1), handed to e3nn as its path_weight, which e3nn multiplies inside its own
    # element normalisation: final = sqrt(dim / (paths into that output) · w)
    for tp, n in ((m.layers[1].tp, 42), (m.pair_layers[0].tp, 65), (m.self_layers[1].tp, 65)):
        _, instr = qhnet.feasible_irreps(tp.irreps_in1, tp.irreps_in2, tp.irreps_out, tp.instructions[0].connection_mode)
        assert len(instr) == len(tp.instructions) == n
        for (i1, i2, io, mode, _, w), ins in zip(instr, tp.instructions):
            dim = tp.irreps_out[io].ir.dim
            assert math.isclose(w, math.sqrt(dim / n))
            into = sum(1 for j in tp.instructions if j.i_out == io)
            assert math.isclose(ins.path_weight, math.sqrt(dim / into * w))
    assert str(m.slot_irreps) == "3x0e+2x1e+1x2e"


def test_slot_layout_is_qh9s_orbital_mask(demo):
    _, lay = demo
    nslots, table = qhnet.slot_layout(lay)
    assert nslots == [3, 2, 1]
    assert table[1, :5].tolist() == [0, 1, 3, 4, 5]  # H: 1s 2s 2p → QH9 mask [0, 1, 3, 4, 5]
    assert table[6].tolist() == list(range(14)) and table[8].tolist() == list(range(14))


def test_every_parameter_is_trained_and_tiny_overfits(demo):
    from hambench.models.run import resolve_config

    structs, lay = demo
    res = resolve_config("qhnet", "tiny")
    torch.manual_seed(0)
    m = build(res.model, lay)
    b = batch_from_structures(structs[1:3], lay, dtype=torch.float32)  # NH3, H2O
    # an overfitting lr: the preset's (2e-3) is chosen for training without spikes over seeds, not for 60 steps
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, betas=res.train.betas, weight_decay=res.train.weight_decay)
    losses = []
    for step in range(60):
        d = m(b)["H"] - b.H
        loss = (d ** 2).mean() + d.abs().mean()
        opt.zero_grad()
        loss.backward()
        if step == 0:
            missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
            assert not missing, missing  # no unused modules
        torch.nn.utils.clip_grad_norm_(m.parameters(), res.train.clip_grad_norm)
        opt.step()
        losses.append(float(loss.detach()))
    assert min(losses[-5:]) < 0.1 * losses[0], (losses[0], losses[-5:])  # measured ≈ 0.03 after 60 steps


def test_trace_grad_hooks(demo, m64):
    structs, lay = demo
    m = m64
    b = batch_from_structures(structs[:4], lay, dtype=torch.float64)
    with torch.no_grad():
        plain = m(b)["H"]
    assert len(m.edge_feature_irreps) == len(m.pair_layers) == 2 and m.edge_hooks is None
    seen = []

    class Identity(torch.nn.Module):
        def forward(self, f, ctx):
            seen.append((f.shape, ctx["k"], ctx["edge_index"]))
            return f

    class Scale(torch.nn.Module):
        def forward(self, f, ctx):
            return 1.5 * f

    try:
        m.edge_hooks = torch.nn.ModuleList([Identity(), Identity()])
        with torch.no_grad():
            hooked = m(b)["H"]
        assert torch.equal(plain, hooked)  # bit for bit
        E = b.edge_src.shape[0]
        assert [s[0] for s in seen] == [(E, m.edge_feature_irreps[k].dim) for k in range(2)]
        assert [s[1] for s in seen] == [0, 1]
        src, dst = seen[0][2]
        assert torch.equal(src, b.edge_src) and torch.equal(dst, b.edge_dst)
        m.edge_hooks = torch.nn.ModuleList([Scale(), Identity()])
        with torch.no_grad():
            changed = m(b)["H"]
        assert not torch.allclose(changed, plain)
    finally:
        m.edge_hooks = None
    with torch.no_grad():
        assert torch.equal(m(b)["H"], plain)


def test_config_file_holds_qh9s_recipe():
    from hambench.models.run import resolve_config

    res = resolve_config("qhnet", "paper")
    assert res.model == QHNetConfig()
    t = res.train
    assert (t.optimizer, t.lr, tuple(t.betas), t.weight_decay) == ("adamw", 5e-4, (0.99, 0.999), 0.01)
    assert (t.scheduler, t.warmup_steps, t.decay_steps, t.lr_end) == ("warmup_linear", 1000, 300_000, 1e-7)
    assert (t.batch_size, t.clip_grad_norm, t.loss, t.dtype) == (32, 5.0, "mse+mae", "float32")
    c = QHNetConfig()
    assert (c.num_gnn_layers, c.hidden_size, c.sh_lmax, c.radius_embed_dim, c.max_radius) == (5, 128, 4, 16, 15.0)
    with pytest.raises(InputError, match="unknown key"):
        resolve_config("qhnet", "tiny", sets=["model.hidden=3"])

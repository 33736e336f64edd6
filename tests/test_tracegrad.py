"""TraceGrad (models/tracegrad.py): closed form = autograd, equivariance of every variant, invariant trace
decoder, detached μ, zero-init = backbone, trace labels vs an independent NumPy reference, bad input.

Real molecules: the demo QM9 store (PySCF B3LYP/def2-SVP results shipped with hambench, no DFT run here).
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from e3nn import o3

import hambench.demo
import hambench.pipelines
from hambench import so3
from hambench.errors import InputError
from hambench.models import tracegrad as tg
from hambench.store import open_store

MODES = tg.MODES
#: irreps with repeated l of both parities, so the TP has cross terms between different components
IRREPS = o3.Irreps("6x0e+3x1o+2x1e+3x2e+2x3o+1x4e+1x1o")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("tg") / "qm9.zarr"
    hambench.pipelines.prepare("pyscf/qm9", None, out, raw_dir=hambench.demo.demo_raw_dir(), max_heavy=3,
                               limit=10, quiet=True)
    return open_store(out)


@pytest.fixture(autouse=True)
def _f64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _toy_batch(store, ks, R=None):
    """A batch-like namespace of structures ``ks`` of the store (positions rotated by R, e3nn frame)."""
    Z, pos, src, dst, T, tp, off, ids = [], [], [], [], [], [0], 0, []
    for k in ks:
        s = store[k]
        t, tptr = store.traces(k)
        Z.append(s.Z.astype(np.int64))
        pos.append(s.pos if R is None else s.pos @ R.T)
        src.append(s.src + off)
        dst.append(s.dst + off)
        T.append(t)
        tp.extend((tptr[1:] + tp[-1]).tolist())
        off += len(s.Z)
        ids.append(s.id)
    return SimpleNamespace(Z=torch.tensor(np.concatenate(Z)), pos=torch.tensor(np.concatenate(pos)),
                           edge_src=torch.tensor(np.concatenate(src)).long(),
                           edge_dst=torch.tensor(np.concatenate(dst)).long(), T=torch.tensor(np.concatenate(T)),
                           T_ptr=torch.tensor(tp), ids=ids, shift=None)


class ToyBackbone(torch.nn.Module):
    """Equivariant edge features of a real molecule following the backbone hook protocol (INTERFACES.md):
    f = radial(|r|)·Y(r) per irrep (pseudovectors from r × (r_i − centroid)), two blocks f ← f + Linear(f),
    each followed by the hook; "H" = per-edge invariants (stands in for blocks: only losses need it)."""

    def __init__(self, irreps=IRREPS, nblocks=2):
        super().__init__()
        self.irreps = o3.Irreps(irreps)
        self.edge_feature_irreps = [self.irreps] * nblocks
        self.edge_hooks = None
        self.emb = torch.nn.Embedding(10, self.irreps.num_irreps)
        self.lins = torch.nn.ModuleList(o3.Linear(self.irreps, self.irreps) for _ in range(nblocks))
        self.head = o3.Linear(self.irreps, "4x0e")

    def features(self, batch):
        r = (batch.pos[batch.edge_dst] - batch.pos[batch.edge_src])[:, [1, 2, 0]]
        c = (batch.pos - batch.pos.mean(0))[:, [1, 2, 0]]
        ax = torch.cross(r, c[batch.edge_src], dim=1) + 0.3 * c[batch.edge_dst]
        d = r.norm(dim=1, keepdim=True)
        w = self.emb(batch.Z[batch.edge_src]) * self.emb(batch.Z[batch.edge_dst])
        parts, u = [], 0
        for mul, ir in self.irreps:
            vec = r if ir.p == (-1) ** ir.l else ax
            y = o3.spherical_harmonics(ir.l, vec, normalize=False)
            for m in range(mul):
                parts.append(y * w[:, u : u + 1] * torch.exp(-(m + 1) * 0.4 * d))
                u += 1
        return torch.cat(parts, dim=1)

    def hook_edges(self, batch):
        return batch.edge_src, batch.edge_dst

    def forward(self, batch):
        f = self.features(batch)
        for k, lin in enumerate(self.lins):
            f = f + lin(f)
            if self.edge_hooks is not None:
                f = self.edge_hooks[k](f, dict(batch=batch, edge_index=(batch.edge_src, batch.edge_dst), k=k))
        return {"H": self.head(f).reshape(-1), "f": f}


def _small(mode="tracegrad", **kw):
    base = dict(mode=mode, channels=24, phi_hidden=20, k_z=9, decoder_hidden=16)
    base.update(kw)
    return tg.TraceGradConfig(**base)


def _perturb(model, seed=0, scale=0.3):
    """Move every parameter off its init (LayerNorm weights 1, biases 0) so nothing is trivially symmetric."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def _rot(seed):
    """A random rotation in hambench coordinates and the e3nn-frame matrix acting on (y, z, x) vectors."""
    R = so3.random_rotation(np.random.default_rng(seed))
    P = np.eye(3)[[1, 2, 0]]
    return R, torch.tensor(P @ R @ P.T)


# --- closed form = autograd ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bottleneck", [None, 2])
def test_closed_form_equals_autograd(store, bottleneck):
    """s (closed-form Gram vs e3nn's TP), z, v = ∂Σz/∂f, and every training gradient through v agree to 1e-10."""
    bb = ToyBackbone()
    batch = _toy_batch(store, [0, 3])
    f = bb.features(batch).detach()
    blk = _perturb(tg.TraceGradBlock(IRREPS, _small(bottleneck=bottleneck), 9))
    x = blk.down(f) if blk.down is not None else f
    with torch.no_grad():
        s_ref = blk.tp(x, x)
        s_cf, _ = blk._closed(x, need_grad=False)
    assert torch.allclose(s_cf, s_ref, rtol=0, atol=1e-10 * float(s_ref.abs().max()))
    blk.eval()
    z_a, v_a = blk.gradient_feature(f, "autograd")
    z_c, v_c = (t.detach() for t in blk.gradient_feature(f, "closed"))
    assert float(v_a.abs().max()) > 1e-3
    assert float((v_a - v_c).abs().max()) <= 1e-10 * float(v_a.abs().max())
    assert float((z_a - z_c).abs().max()) <= 1e-10 * float(z_a.abs().max())
    # under inference mode too (autograd runs outside it)
    with torch.inference_mode():
        _, v_i = blk.gradient_feature(f, "autograd")
    assert float((v_i - v_c).abs().max()) <= 1e-10 * float(v_a.abs().max())
    # training: gradients of a loss of (z, v) w.r.t. f and every parameter (double backward vs hand VJP)
    blk.train()
    fr = f.clone().requires_grad_(True)
    params = [fr] + list(blk.parameters())
    grads = []
    for impl in ("autograd", "closed"):
        z, v = blk.gradient_feature(fr, impl)
        loss = (v ** 3).sum() + (z * z).sum()
        grads.append(torch.autograd.grad(loss, params))
    for name, a, c in zip(["f"] + [n for n, _ in blk.named_parameters()], *grads):
        scale = max(float(a.abs().max()), 1e-30)
        assert float((a - c).abs().max()) <= 1e-10 * scale, name


def test_mlp_hand_vjp_matches_autograd():
    mlp = _perturb(tg._MLP([7, 5, 6, 3], eps=1e-6))
    x = torch.randn(4, 7, requires_grad=True)
    y, g = mlp.forward_and_vjp(x)
    (g_ref,) = torch.autograd.grad(mlp(x).sum(), x)
    assert torch.allclose(y, mlp(x), rtol=0, atol=1e-13)
    assert torch.allclose(g, g_ref, rtol=0, atol=1e-13)


# --- equivariance ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_block_equivariant_every_mode(store, mode):
    """f_out(R·x) = D(R) f_out(x) and z(R·x) = z(x) on real molecules, float64, ≤ 1e-9 relative."""
    R, Re = _rot(1)
    bb = ToyBackbone()
    model = _perturb(tg.TraceGrad(bb, SimpleNamespace(species=store.species), _small(mode)))
    model.eval()
    out = model(_toy_batch(store, [1, 5]))
    out_R = model(_toy_batch(store, [1, 5], R))
    D = IRREPS.D_from_matrix(Re)
    f, fR = out["f"], out_R["f"]
    assert float((fR - f @ D.T).abs().max()) <= 1e-9 * float(f.abs().max())
    if mode in tg._TRACE_MODES:  # the trace decoder's outputs are invariant
        assert float((out_R["T_hat"] - out["T_hat"]).abs().max()) <= 1e-9 * float(out["T_hat"].abs().max())
    # the variant does change the features (except trace, which feeds nothing back)
    bb.edge_hooks, hooks = None, bb.edge_hooks
    f0 = bb(_toy_batch(store, [1, 5]))["f"]
    bb.edge_hooks = hooks
    diff = float((f - f0).abs().max())
    assert (diff == 0.0) if mode == "trace" else (diff > 1e-6)


# --- trace labels -----------------------------------------------------------------------------------------
def test_trace_slots_and_labels_vs_numpy(store):
    """Slots are DeepH-E3's shell-pair labels (l_p, n_p, l_q, n_q), shared across element pairs; the store's T
    equal Σ|H_b|² of the real blocks; the per-edge normalisation equals a NumPy layer norm edge by edge."""
    from hambench.layout import BasisLayout

    lay = BasisLayout(store.species)
    slots = tg.TraceSlots(store.species)
    assert slots.K == 36  # def2-SVP C/N/O: 6 shells with labels s0 s1 s2 p0 p1 d0; H's s0 s1 p0 are among them
    batch = _toy_batch(store, [2, 7])
    zs, zd = batch.Z[batch.edge_src], batch.Z[batch.edge_dst]
    edge, slot, nb = slots(zs, zd)
    for e in [0, 1, 7, len(zs) - 1]:
        zi, zj = int(zs[e]), int(zd[e])
        lab_i, lab_j = tg._shell_labels(store.species[zi]), tg._shell_labels(store.species[zj])
        want = [slots.keys.index((lab_i[b.p], lab_j[b.q])) for b in lay.basic_blocks(zi, zj)]
        assert slot[edge == e].tolist() == want
    # labels against the real H blocks (independent: numpy over each basic block)
    s = store[2]
    T, tptr = store.traces(2)
    for e in [0, 3, s.nedges - 1]:
        blk = s.block(e)
        bbs = lay.basic_blocks(int(s.Z[s.src[e]]), int(s.Z[s.dst[e]]))
        ref = [float(np.sum(blk[b.row:b.row + 2 * b.lp + 1, b.col:b.col + 2 * b.lq + 1] ** 2)) for b in bbs]
        np.testing.assert_allclose(T[tptr[e]:tptr[e + 1]], ref, rtol=1e-12)
    # normalisation per edge across its own blocks (biased variance, eps as configured)
    Tn = tg.normalize_traces(batch.T, edge, nb, "edge_layernorm", 1e-5).numpy()
    for e in [0, 5, 20]:
        t = batch.T.numpy()[batch.T_ptr[e]:batch.T_ptr[e + 1]]
        np.testing.assert_allclose(Tn[batch.T_ptr[e]:batch.T_ptr[e + 1]], (t - t.mean()) / np.sqrt(t.var() + 1e-5),
                                   rtol=1e-12, atol=1e-12)


# --- the loss: μ detached ------------------------------------------------------------------------------------
def _loss_H(out):
    return (out["H"] ** 2).mean()


def test_mu_is_detached(store):
    """∂L/∂θ_decoder = λ·μ·∂L_T/∂θ_decoder ≠ 0 (the decoder only affects L_T). With μ not detached μ·L_T ≡ L_H
    and this gradient would be exactly zero, so the test fails without the detach."""
    cfg = _small("tracegrad", lam=0.3)
    model = _perturb(tg.TraceGrad(ToyBackbone(), SimpleNamespace(species=store.species), cfg))
    model.train()
    batch = _toy_batch(store, [0, 4])
    out = model(batch)
    loss_H = _loss_H(out)
    total, logs = model.extra_loss(out, batch, loss_H)
    assert set(logs) == {"loss_H", "loss_T", "mu"}
    assert abs(float(total) - (1 + 0.3) * float(loss_H)) <= 1e-12 * float(loss_H)  # μ·L_T = L_H in value
    dec = list(model.decoder.parameters())
    g_total = torch.autograd.grad(total, dec, retain_graph=True)
    target = model.trace_target(batch)
    loss_T = (out["T_hat"] - target).abs().mean()
    g_T = torch.autograd.grad(loss_T, dec)
    mu = float(loss_H) / float(loss_T)
    assert max(float(g.abs().max()) for g in g_total) > 1e-6
    for a, b in zip(g_total, g_T):
        assert torch.allclose(a, 0.3 * mu * b, rtol=1e-10, atol=1e-14)


def test_modes_without_trace_loss_return_loss_H(store):
    batch = _toy_batch(store, [0])
    for mode in ("grad", "gate"):
        model = tg.TraceGrad(ToyBackbone(), SimpleNamespace(species=store.species), _small(mode))
        out = model(batch)
        assert "T_hat" not in out and model.decoder is None
        lh = _loss_H(out)
        total, logs = model.extra_loss(out, batch, lh)
        assert total is lh and logs == {}


# --- zero init = backbone ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_zero_init_equals_backbone(store, mode):
    bb = ToyBackbone()
    batch = _toy_batch(store, [3, 6])
    ref = bb(batch)
    model = tg.TraceGrad(bb, SimpleNamespace(species=store.species), _small(mode, zero_init=True))
    out = model(batch)
    assert torch.equal(out["H"], ref["H"]) and torch.equal(out["f"], ref["f"])
    # ... and the zeroed layer still learns: its gradient is not zero
    model.train()
    out = model(batch)
    loss = _loss_H(out) if mode not in tg._TRACE_MODES else model.extra_loss(out, batch, _loss_H(out))[0]
    loss.backward()
    g = model.blocks[0].phi.norm[-1].weight.grad
    assert g is not None and float(g.abs().max()) > 0


# --- bad input --------------------------------------------------------------------------------------------
def test_bad_input(store):
    with pytest.raises(InputError, match="lam"):
        tg.TraceGradConfig(lam=-0.1).check()
    with pytest.raises(InputError, match="mode"):
        tg.TraceGradConfig(mode="tracegrid").check()
    model = tg.TraceGrad(ToyBackbone(), SimpleNamespace(species=store.species), _small("trace"))
    batch = _toy_batch(store, [0])
    out = model(batch)
    batch.T = None
    with pytest.raises(InputError, match="no T"):
        model.extra_loss(out, batch, _loss_H(out))

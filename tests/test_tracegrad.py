"""TraceGrad (models/tracegrad.py): closed form = autograd, equivariance of every variant, invariant trace
decoder, detached μ, zero-init = backbone, trace labels vs an independent NumPy reference, bad input; v's scale
under each fix (zero_init, norm_ratio, scale_aware), the clip groups through the engine, the bottleneck transpose.

Real molecules: the demo QM9 store (PySCF B3LYP/def2-SVP results shipped with hambench, no DFT run here).
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from e3nn import o3

from hambench.basis import _so3 as so3
from hambench.errors import InputError
from hambench.models import tracegrad as tg
from hambench.store._store import open_store
from hambench.testing import TOL

MODES = tg.MODES
#: irreps with repeated l of both parities, so the TP has cross terms between different components
IRREPS = o3.Irreps("6x0e+3x1o+2x1e+3x2e+2x3o+1x4e+1x1o")


@pytest.fixture(scope="module")
def store(demo_store):
    return open_store(demo_store)


@pytest.fixture(autouse=True)
def _f64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _toy_batch(store, ks, R=None):
    """A real :class:`hambench.training._data.Batch` of structures ``ks`` (rotated exactly by R, hambench frame)."""
    from hambench.training._data import collate

    rot = None if R is None else np.repeat(np.asarray(R)[None], len(ks), axis=0)
    return collate([store.read_range(k, k + 1) for k in ks], rotations=rot)


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
        s_ref = blk.tp(x, x, blk.tp_weight())
        s_cf, _ = blk._closed(x)
    assert torch.allclose(s_cf, s_ref, rtol=0, atol=TOL.reassociation * float(s_ref.abs().max()))
    blk.eval()
    z_a, v_a = blk.gradient_feature(f, "autograd")
    z_c, v_c = (t.detach() for t in blk.gradient_feature(f, "closed"))
    assert float(v_a.abs().max()) > 1e-3
    assert float((v_a - v_c).abs().max()) <= TOL.reassociation * float(v_a.abs().max())
    assert float((z_a - z_c).abs().max()) <= TOL.reassociation * float(z_a.abs().max())
    # under inference mode too (autograd runs outside it; the closed form then uses φ's first Linear fused
    # into the TP weights)
    with torch.inference_mode():
        _, v_i = blk.gradient_feature(f, "autograd")
        z_f, v_f = blk.gradient_feature(f, "closed")
    assert float((v_i - v_c).abs().max()) <= TOL.reassociation * float(v_a.abs().max())
    assert float((v_f - v_a).abs().max()) <= TOL.reassociation * float(v_a.abs().max())
    assert float((z_f - z_a).abs().max()) <= TOL.reassociation * float(z_a.abs().max())
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
        assert float((a - c).abs().max()) <= TOL.reassociation * scale, name


def test_mlp_hand_vjp_matches_autograd():
    mlp = _perturb(tg._MLP([7, 5, 6, 3], eps=1e-6))
    x = torch.randn(4, 7, requires_grad=True)
    y, g = mlp.forward_and_vjp(x)
    (g_ref,) = torch.autograd.grad(mlp(x).sum(), x)
    assert torch.allclose(y, mlp(x), rtol=0, atol=TOL.roundoff_long)
    assert torch.allclose(g, g_ref, rtol=0, atol=TOL.roundoff_long)


# --- trace labels -----------------------------------------------------------------------------------------
def test_trace_slots_and_labels_vs_numpy(store):
    """Slots are DeepH-E3's shell-pair labels (l_p, n_p, l_q, n_q), shared across element pairs; the store's T
    equal Σ|H_b|² of the real blocks; the per-edge normalisation equals a NumPy layer norm edge by edge."""
    from hambench.basis._layout import BasisLayout

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
        np.testing.assert_allclose(T[tptr[e]:tptr[e + 1]], ref, rtol=TOL.exact64)
    # normalisation per edge across its own blocks (biased variance, eps as configured)
    Tn = tg.normalize_traces(batch.T, edge, nb, "edge_layernorm", 1e-5).numpy()
    for e in [0, 5, 20]:
        t = batch.T.numpy()[batch.T_ptr[e]:batch.T_ptr[e + 1]]
        np.testing.assert_allclose(Tn[batch.T_ptr[e]:batch.T_ptr[e + 1]], (t - t.mean()) / np.sqrt(t.var() + 1e-5),
                                   rtol=TOL.exact64, atol=TOL.exact64)


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
    assert abs(float(total.detach()) - (1 + 0.3) * float(loss_H.detach())) <= TOL.exact64 * float(loss_H.detach())  # μ·L_T = L_H in value
    dec = list(model.decoder.parameters())
    g_total = torch.autograd.grad(total, dec, retain_graph=True)
    target = model.trace_target(batch)
    loss_T = (out["T_hat"] - target).abs().mean()
    g_T = torch.autograd.grad(loss_T, dec)
    mu = float(loss_H.detach()) / float(loss_T.detach())
    assert max(float(g.abs().max()) for g in g_total) > 1e-6
    for a, b in zip(g_total, g_T):
        assert torch.allclose(a, 0.3 * mu * b, rtol=TOL.reassociation, atol=TOL.roundoff)


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
@pytest.mark.parametrize("mode", ["tracegrad", "tracegate"])
def test_zero_init_equals_backbone(store, mode):
    """Zero-init: the wrapped model equals its backbone bit for bit, and the zeroed layer still gets a gradient
    (on the real backbones: test_backbone_every_variant)."""
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
    from hambench.models.run import resolve_config

    for bad, what in (("lam=-0.1", "lam"), ("mode=tracegrid", "mode"), ("channels=0", "channels"),
                      ("clip=sometimes", "clip"), ("residual=ratio", "residual")):
        with pytest.raises(InputError, match=what):
            resolve_config("tracegrad-deephe3", "paper", sets=[f"model.tracegrad.{bad}"])
    cfg = tg.TraceGradConfig()
    cfg.lam = -1.0  # set after construction: the builder checks again
    with pytest.raises(InputError, match="lam"):
        cfg.check()
    model = tg.TraceGrad(ToyBackbone(), SimpleNamespace(species=store.species), _small("trace"))
    batch = _toy_batch(store, [0])
    out = model(batch)
    batch.T = None
    with pytest.raises(InputError, match="no T"):
        model.extra_loss(out, batch, _loss_H(out))


# --- the real backbones (models/deephe3.py, models/qhnet.py) ----------------------------------------------
#: tiny sizes: every code path of the backbone, seconds to build
BACKBONES = {
    "deephe3": dict(irreps_embed="4x0e", irreps_mid="4x0e+2x1o+2x2e", lmax=2, num_blocks=2, num_basis=8,
                    radial_hidden=4),
    "qhnet": dict(hidden_size=4, bottle_hidden_size=4, sh_lmax=2, num_gnn_layers=3, start_layer=0),
}


@pytest.fixture(scope="module", params=sorted(BACKBONES))
def backbone(request, store):
    from hambench.basis._layout import BasisLayout
    from hambench.models import registry

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        spec = registry.get(request.param)
        torch.manual_seed(0)
        bb = spec.build(spec.config_cls(**BACKBONES[request.param]), BasisLayout(store.species)).double()
    finally:
        torch.set_default_dtype(old)
    return request.param, bb


def _wrap(bb, layout, cfg, perturb=True):
    model = tg.TraceGrad(bb, layout, cfg)
    if perturb:  # move the TraceGrad parameters (only) off their init
        _perturb(model.backbone.edge_hooks, seed=1)
        if model.decoder is not None:
            _perturb(model.decoder, seed=2)
    return model.double().eval()


def _pair_batch(store, ks, R):
    """One batch: the structures ``ks`` as they are, then rotated by R (one forward gives both)."""
    from hambench.training._data import collate

    rot = np.stack([np.eye(3)] * len(ks) + [np.asarray(R)] * len(ks))
    return collate([store.read_range(k, k + 1) for k in ks + ks], rotations=rot)


def _halves(batch, out):
    E = batch.num_edges // 2
    h = int(batch.H_ptr[E])
    t = int(batch.T_ptr[E])
    H = out["H"].detach()
    T = out.get("T_hat")
    return H[:h], H[h:], (None if T is None else T.detach()[:t]), (None if T is None else T.detach()[t:])


def test_backbone_every_variant(store, backbone):
    """On the real backbone: every mode exactly equivariant (float64, ≤ 1e-9 relative) with an invariant trace
    decoder; zero-init φ ⇒ the backbone's H bit for bit; mode trace feeds nothing back (H = backbone's);
    closed form = autograd for the whole model's H (1e-10)."""
    from hambench.testing import assert_blocks_equivariant

    name, bb = backbone
    ks = [2, 4]  # H2O, HCN: H, C, N, O
    R, _ = _rot(2)
    batch = _pair_batch(store, ks, R)
    layout = batch.layout
    E = batch.num_edges // 2
    zs, zd = batch.Z[batch.edge_src[:E]].numpy(), batch.Z[batch.edge_dst[:E]].numpy()
    bb.edge_hooks = None
    with torch.no_grad():
        ref = bb(batch)["H"]
    assert tg.TraceGrad(bb, layout, _small()).K == 36
    for mode in ("tracegrad", "gate"):  # the two kinds of feedback; trace is checked below, grad = tracegrad's path
        with torch.no_grad():
            z0 = _wrap(bb, layout, _small(mode, zero_init=True), perturb=False)(batch)["H"]
        assert torch.equal(z0, ref), f"{name}/{mode}: zero-init differs from the backbone"
    for mode in MODES:
        model = _wrap(bb, layout, _small(mode))
        with torch.no_grad():
            out = model(batch, traces=True)
            assert "T_hat" not in model(batch)  # eval mode: the trace decoder is skipped
        H, HR, T, TR = _halves(batch, out)
        scale = float(H.abs().max())
        err = assert_blocks_equivariant(H.numpy(), HR.numpy(), zs, zd, store.species, R, atol=TOL.network64 * scale)
        if mode in tg._TRACE_MODES:
            t_err = float((TR - T).abs().max())
            assert t_err <= TOL.network64 * float(T.abs().max()), f"{name}/{mode}: T_hat not invariant ({t_err})"
        if mode == "trace":
            assert torch.equal(out["H"], ref)
        else:
            assert float((out["H"] - ref).abs().max()) > 1e-6 * scale
        print(f"{name} {mode}: equivariance error {err / scale:.2e} relative")
    # closed form = autograd through the whole model's H (their training gradients: test_closed_form_equals_autograd)
    model = _wrap(bb, layout, _small("tracegrad", grad_impl="autograd"))
    with torch.no_grad():
        Ha = model(batch)["H"]
        for blk in model.blocks:
            blk.cfg = tg.dataclasses.replace(blk.cfg, grad_impl="closed")
        Hc = model(batch)["H"]
    assert float((Ha - Hc).abs().max()) <= TOL.reassociation * float(Ha.abs().max())
    bb.edge_hooks = None


def test_overfit_lowers_both_losses(store):
    """tracegrad-deephe3 from the registry (a DeepH-E3 config with a tracegrad section) on a real molecule
    (H2O), float32 as trained: 8 Adam steps of the engine's loss (hambench.training.loss_terms) + extra_loss lower
    both L_H and L_T (seeded, deterministic on CPU)."""
    from hambench.basis._layout import BasisLayout
    from hambench.models import registry
    from hambench.training import TrainConfig, loss_terms

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        spec = registry.get("tracegrad-deephe3")
        cfg = spec.config_cls(**BACKBONES["deephe3"], tracegrad=tg.TraceGradConfig(channels=32, decoder_hidden=32))
        torch.manual_seed(0)
        model = spec.build(cfg, BasisLayout(store.species)).train()
        batch = _toy_batch(store, [2]).to(dtype=torch.float32)
        opt = torch.optim.Adam(model.parameters(), lr=2e-2)
        hist = []
        for step in range(8):
            opt.zero_grad()
            out = model(batch)
            t = loss_terms(out["H"], batch, TrainConfig())
            total, logs = model.extra_loss(out, batch, t["num"] / t["den"])
            total.backward()
            opt.step()
            hist.append((logs["loss_H"], logs["loss_T"]))
    finally:
        torch.set_default_dtype(old)
    (h0, t0), (h1, t1) = hist[0], hist[-1]
    print(f"overfit: L_H {h0:.4g} -> {h1:.4g} eV², L_T {t0:.4g} -> {t1:.4g}")
    assert h1 < 0.99 * h0 and t1 < 0.6 * t0


@pytest.mark.parametrize("backbone", ["deephe3", "qhnet"])
@pytest.mark.parametrize("preset", ["paper", "tiny"])
def test_variant_config_is_the_backbone_config_plus_tracegrad(backbone, preset):
    """tracegrad-X.yaml inherits X.yaml: the same recipe and size as its backbone, only the tracegrad section
    added (a copy could drift: the tiny qhnet and tracegrad-qhnet learning rates once did)."""
    from hambench.config import resolve
    from hambench.models import registry

    v = resolve(registry.get(f"tracegrad-{backbone}").config_file, preset)
    b = resolve(registry.get(backbone).config_file, preset)
    assert isinstance(v["model"].pop("tracegrad"), dict)
    assert v == b


def _v_of_scale(blk, f, scales=(0.1, 1.0, 10.0)):
    """Per scale a: the feature fed back, v = block(a·f) − a·f (inference), and its median per-edge norm."""
    out = {}
    with torch.no_grad():
        for a in scales:
            v = blk(a * f)[0] - a * f
            out[a] = (v, float(v.norm(dim=1).median()))
    return out


def test_v_scale_of_each_variant():
    """|v| when f is scaled by 0.1 / 1 / 10 (issue 32): plain v = ∂z/∂f has no scale of its own (φ's LayerNorm
    makes z nearly invariant to |f|, so |v| ∝ 1/|f| once W1·s outweighs φ's first bias); zero_init feeds back
    exactly 0 at the start at every scale, and the plain behaviour once trained; norm_ratio (NextHAM) gives
    |v| = 0.2·|f| per edge; scale_aware gives v(a·f) = a·v(f) exactly."""
    from hambench.models._tracegrad_block import TraceGradBlock, TraceGradConfig

    torch.manual_seed(0)
    f = torch.randn(40, IRREPS.dim)
    fn = f.norm(dim=1)
    table = {}

    def block(**kw):
        torch.manual_seed(1)
        return TraceGradBlock(IRREPS, TraceGradConfig(mode="grad", channels=32, phi_hidden=32, **kw), 16).eval()

    plain = _v_of_scale(block(), f)
    table["plain"] = plain
    assert plain[1.0][1] / plain[10.0][1] > 5  # ~1/|f| (measured ratio printed below)
    zi = block(zero_init=True)
    r = _v_of_scale(zi, f)
    assert all(float(v.abs().max()) == 0.0 for v, _ in r.values())
    table["zero_init (step 0)"] = r
    _perturb(zi, seed=3)  # off its init, as after training: the plain scale behaviour again
    r = _v_of_scale(zi, f)
    table["zero_init (trained)"] = r
    assert r[1.0][1] / r[10.0][1] > 5
    r = _v_of_scale(block(residual="norm_ratio"), f)
    table["norm_ratio"] = r
    for a, (v, _) in r.items():  # by hand from the plain block's v (same parameters): 0.2·‖f‖·‖v‖/(‖v‖ + 1e-5)
        nv = plain[a][0].norm(dim=1)
        want = 0.2 * a * fn * nv / (nv + 1e-5)
        assert float(((v.norm(dim=1) - want) / want).abs().max()) <= TOL.by_hand, a
    r = _v_of_scale(block(scale_aware=True), f)
    table["scale_aware"] = r
    v1 = r[1.0][0]
    for a, (v, _) in r.items():
        assert float((v - a * v1).abs().max()) <= TOL.network64 * a * float(v1.abs().max()), a
    print("median |v| per edge at f scaled by 0.1 / 1 / 10 (median |f| = %.3g):" % float(fn.median()))
    for name, r in table.items():
        print(f"  {name:20s} " + " / ".join(f"{m:.4g}" for _, m in r.values()))


@pytest.mark.parametrize("clip", ["joint", "separate", "none"])
def test_clip_groups_in_the_engine(store, clip):
    """``tracegrad.clip``: the engine's grad_norm (hambench.training._step) clips the groups the model names —
    joint: one global norm; separate: backbone and TraceGrad (hooks + decoder) each to the threshold; none: the
    backbone only. Gradients set by hand (backbone 3, TraceGrad 4 per element); the norm returned is the global
    one before clipping; the norms after are clip_grad_norm_'s factor clip/(norm + 1e-6) applied by hand."""
    from hambench.training._step import grad_norm

    model = tg.TraceGrad(ToyBackbone(), SimpleNamespace(species=store.species), _small(clip=clip))
    tg_ids = {id(p) for p in model.backbone.edge_hooks.parameters()} | {id(p) for p in model.decoder.parameters()}
    bb_p = [p for p in model.parameters() if id(p) not in tg_ids]
    tg_p = [p for p in model.parameters() if id(p) in tg_ids]
    for ps, val in ((bb_p, 3.0), (tg_p, 4.0)):
        for p in ps:
            p.grad = torch.full_like(p, val)
    nb = 3.0 * sum(p.numel() for p in bb_p) ** 0.5
    nt = 4.0 * sum(p.numel() for p in tg_p) ** 0.5
    total = (nb * nb + nt * nt) ** 0.5
    c = 1.0
    got = grad_norm(model, c)
    assert abs(got - total) <= TOL.roundoff * total

    def norm(ps):
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ps])))

    want = {"joint": (nb * c / (total + 1e-6), nt * c / (total + 1e-6)),
            "separate": (nb * c / (nb + 1e-6), nt * c / (nt + 1e-6)),
            "none": (nb * c / (nb + 1e-6), nt)}[clip]
    assert abs(norm(bb_p) - want[0]) <= TOL.roundoff * want[0] and abs(norm(tg_p) - want[1]) <= TOL.roundoff * want[1]


def test_down_transpose_is_the_bottleneck_transpose():
    """The bottleneck's transpose, read from the o3.Linear's weights (no identity through it per forward), equals
    ``v @ down(I)ᵀ`` (the form shipped before issue 32), also under inference mode."""
    from hambench.models._tracegrad_block import TraceGradBlock, TraceGradConfig

    torch.manual_seed(0)
    blk = TraceGradBlock(IRREPS, TraceGradConfig(channels=8, bottleneck=2), 4)
    vx = torch.randn(5, blk.tp_irreps.dim)
    with torch.no_grad():
        ref = vx @ blk.down(torch.eye(IRREPS.dim)).t()
    with torch.inference_mode():
        got = blk._down_transpose(vx)
    assert float((got - ref).abs().max()) <= TOL.reassociation * float(ref.abs().max())

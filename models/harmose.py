"""HarmoSE (Yin et al., two-stage hybrid): a frozen equivariant stage 1 plus a 3D graph transformer that
predicts a correction, H = H₁ + ΔH.

Facts: /work/shared/research/tracegrad_harmose.md §3 (pipeline, inputs, Eqs. 1–6, recipe) and §4 (decisions
14, 15 with their defaults). The paper ships no code; every choice it leaves open is a field of
:class:`HarmoSEConfig`:

- **Stage 1**: a trained ``deephe3`` checkpoint (``harmose``) or ``tracegrad-deephe3`` (``harmose-tracegrad``,
  the TraceGrad paper's Table 10), named by ``model.stage1`` (``hambench train harmose --stage1 CKPT``); the
  caller (:func:`hambench.models.run.build_model`) loads it and hands the module over, as models never read
  files. Its weights are part of this model's state (``stage1.*``), and the HarmoSE checkpoint records what
  stage 1 is (``stage1``: name, config, layout), so a checkpoint is self-contained
  (:func:`hambench.models.run.load_model` never reads the stage-1 file again). It stays frozen: its parameters
  never get a gradient and it always runs in eval mode. It provides Ĥ₁ and, per encoder group l, its
  equivariant node features V⁽ˡ⁾ and edge features E⁽ˡ⁾ (the outputs of DeepH-E3's node update and of its
  edge update *after* TraceGrad's f + v when stage 1 is ``tracegrad-deephe3``: the features its next block
  reads), which stage 2 reads as flat vectors.
- **Stage 2** has its own embeddings: element (nodes); element pair + Gaussian distances + spherical
  harmonics of the edge direction (edges; the self edge has zero length, and the SH of a zero vector is the
  l = 0 component only). The edges are the store's DFT edges, self edges included (the blocks to predict).
- **Invariant node feature g_i (Eq. 2)**: over *adjacent* neighbour pairs (j_t, j_{t+1}) of atom i in edge
  order — O(|N(i)|), not O(|N(i)|²) — an MLP of [emb_i, emb_j, emb_k, pair_ij, pair_ik, Gauss(|r_ij|),
  Gauss(|r_ik|), cos θ_jik repeated ``angle_repeat`` times], averaged over the triplets of i. Every input is
  an invariant (element and element-pair embeddings, distances, the angle), so g_i is exactly rotation
  invariant (float64: ~1e-15 relative, :meth:`HarmoSE.node_invariant`); the edge inputs of the transformer,
  which do carry the spherical harmonics of the edge direction, are not used here.
- **Fusion (Eq. 1)**, at the start of group l: x ← α·Lin(x) + β·Lin(V⁽ˡ⁾) + γ·g, e ← α·Lin(e) + β·Lin(E⁽ˡ⁾)
  (decision 14: α = β = γ = 1; edges without γ).
- **Blocks** (``blocks_per_group`` per group, decision 15: width 128, 8 heads, 2): multi-head attention of
  atom i over its edges (i, j, R) — query from x_i, keys from x_j + e_ij (``keys_with_edges``), values from
  [x_j, e_ij] — then x_i ← LN(x_i + FC(Σ_j a_ij v_ij)) (Eq. 4, post-norm); edges e_ij ← LN(e_ij + FC([x_i, x_j,
  e_ij])) (Eq. 5).
- **Head (Eq. 6)**: ΔH_ij = Vec2Mat(FC(e_ij)): the FC writes the direct-sum (irreps) layout of the blocks and
  the same Clebsch-Gordan head as DeepH-E3 (:class:`models.common.BlockHead`) turns it into blocks. The last
  Linear starts at zero (``zero_init_head``) so training starts from H = Ĥ₁.
- Ablations of the paper's Table 2: ``cascade: false`` (A: no stage 1, the transformer predicts H itself),
  ``fuse_stage1: false`` (B: no covariant-feature fusion), ``attention: false`` (C: fixed mean weights).

Stage 2 is **not** equivariant: it learns rotations from random rigid rotations of every training structure
(``train.augment_rotations: true`` in its config). ``hambench equivariance`` / the tests measure the error,
also relative to the mean |ΔH| of stage 2 (``out["dH"]``); it is never hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from hambench.errors import InputError

from . import common
from .registry import ModelSpec, register

__all__ = ["HarmoSEConfig", "HarmoSE", "build", "STAGE1_MODELS"]

#: the stage-1 model each registered name accepts
STAGE1_MODELS = {"harmose": ("deephe3",), "harmose-tracegrad": ("tracegrad-deephe3",)}


@dataclass
class HarmoSEConfig:
    """Stage 2 settings (decisions 14, 15 of tracegrad_harmose.md §4 as defaults) and the stage-1 checkpoint."""

    stage1: str = ""  # path of the stage-1 checkpoint (.pt or run folder); `hambench train harmose --stage1 CKPT`
    width: int = 128
    heads: int = 8
    blocks_per_group: int = 2
    groups: int | None = None  # encoder groups; None = the stage-1 model's block count (DeepH-E3: 3)
    num_gaussians: int = 64
    gaussian_stop: float = 7.2  # Å, range of the distance Gaussians (DeepH-E3's cutoff radius)
    sh_lmax: int = 4
    angle_repeat: int = 16  # the angle scalar duplicated into a vector so wider features do not swamp it
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    cascade: bool = True  # False: ablation A (no stage 1; the transformer predicts H directly)
    fuse_stage1: bool = True  # False: ablation B (no covariant-feature fusion)
    attention: bool = True  # False: ablation C (fixed mean neighbour weights)
    keys_with_edges: bool = True
    zero_init_head: bool = True

    @property
    def needs_stage1(self) -> bool:
        """False only for ablation A without fusion: nothing of stage 1 is used."""
        return self.cascade or self.fuse_stage1

    def __post_init__(self):
        if self.width < 1 or self.heads < 1 or self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be a positive multiple of heads ({self.heads})")
        if self.blocks_per_group < 1:
            raise ValueError("blocks_per_group must be >= 1")
        if self.groups is not None and self.groups < 1:
            raise ValueError("groups must be >= 1")


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_out))


def segment_softmax(scores: torch.Tensor, seg: torch.Tensor, n_seg: int) -> torch.Tensor:
    """Softmax of ``scores`` (E, H) over the rows that share ``seg`` (E,) (atoms with no edge: nothing)."""
    idx = seg.unsqueeze(1).expand_as(scores)
    mx = torch.full((n_seg, scores.shape[1]), -torch.inf, dtype=scores.dtype, device=scores.device)
    mx = mx.scatter_reduce(0, idx, scores, reduce="amax", include_self=True)
    ex = torch.exp(scores - mx[seg])
    den = torch.zeros((n_seg, scores.shape[1]), dtype=scores.dtype, device=scores.device).index_add_(0, seg, ex)
    return ex / den[seg]


class _Block(nn.Module):
    """One transformer block: attention node update (Eq. 3, 4), then the edge update (Eq. 5)."""

    def __init__(self, cfg: HarmoSEConfig):
        super().__init__()
        w = cfg.width
        self.cfg = cfg
        self.q = nn.Linear(w, w)
        self.k = nn.Linear(w, w)
        self.v = nn.Linear(2 * w, w)
        self.node_fc = _mlp(w, w, w)
        self.node_ln = nn.LayerNorm(w)
        self.edge_fc = _mlp(3 * w, w, w)
        self.edge_ln = nn.LayerNorm(w)

    def forward(self, x, e, src, dst):
        A, w, h = x.shape[0], self.cfg.width, self.cfg.heads
        dh = w // h
        v = self.v(torch.cat([x[dst], e], 1)).reshape(-1, h, dh)
        if self.cfg.attention:
            q = self.q(x)[src].reshape(-1, h, dh)
            kin = x[dst] + e if self.cfg.keys_with_edges else x[dst]
            k = self.k(kin).reshape(-1, h, dh)
            a = segment_softmax((q * k).sum(-1) / math.sqrt(dh), src, A)  # (E, h)
        else:  # ablation C: every neighbour weighs 1/deg
            deg = torch.zeros(A, dtype=x.dtype, device=x.device).index_add_(0, src, torch.ones_like(src, dtype=x.dtype))
            a = (1.0 / deg[src]).unsqueeze(1).expand(-1, h)
        agg = torch.zeros(A, h, dh, dtype=x.dtype, device=x.device).index_add_(0, src, a.unsqueeze(-1) * v)
        x = self.node_ln(x + self.node_fc(agg.reshape(A, w)))
        e = self.edge_ln(e + self.edge_fc(torch.cat([x[src], x[dst], e], 1)))
        return x, e


class HarmoSE(common.ExactConstants, nn.Module):
    """``forward(batch) -> {"H": H₁ + ΔH, "H1": H₁, "dH": ΔH}`` with stage 1 frozen.

    ``stage1``: the trained stage-1 model (its checkpoint loaded by the caller,
    :func:`hambench.models.run.load_stage1`); required unless ``cfg.needs_stage1`` is False.
    """

    def __init__(self, cfg: HarmoSEConfig, layout, stage1: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        self.layout = layout
        self.spinful = bool(layout.spinful)
        self.stage1 = None
        n_groups = cfg.groups
        if cfg.needs_stage1:
            if stage1 is None:
                raise InputError("model.stage1", "HarmoSE needs its trained stage-1 model: pass --stage1 CKPT (the "
                                                 "caller loads the checkpoint and hands the module over)")
            self.stage1 = stage1
            for p in self.stage1.parameters():
                p.requires_grad_(False)
            n_groups = n_groups or len(self._stage1_net().node_blocks)
        n_groups = n_groups or 3
        self.n_groups = n_groups
        elements = list(layout.elements)
        ns = len(elements)
        self.n_species = ns
        self.register_buffer("_species_index", common.species_index(layout), persistent=False)
        w = cfg.width
        self.node_emb = nn.Embedding(ns, w)
        self.pair_emb = nn.Embedding(ns * ns, w)
        self.gauss = common.GaussianBasis(0.0, cfg.gaussian_stop, cfg.num_gaussians)
        n_sh = (cfg.sh_lmax + 1) ** 2
        self.edge_in = nn.Linear(w + cfg.num_gaussians + n_sh, w)
        # Eq. 2: 3 node + 2 pair embeddings, 2 distance expansions, the repeated angle — invariants only
        self.triplet = _mlp(5 * w + 2 * cfg.num_gaussians + cfg.angle_repeat, w, w)
        self.fuse_x = nn.ModuleList(nn.Linear(w, w) for _ in range(n_groups))
        self.fuse_e = nn.ModuleList(nn.Linear(w, w) for _ in range(n_groups))
        if cfg.fuse_stage1:
            net = self._stage1_net()
            node_dims = [int(b.irreps_out.dim) for b in net.node_blocks][:n_groups]
            edge_dims = [int(b.irreps_out.dim) for b in net.edge_blocks][:n_groups]
            if len(node_dims) < n_groups:
                raise InputError("model.groups", f"stage 1 has {len(node_dims)} blocks, fewer than groups={n_groups}")
            self.fuse_v = nn.ModuleList(nn.Linear(d, w) for d in node_dims)
            self.fuse_E = nn.ModuleList(nn.Linear(d, w) for d in edge_dims)
        self.blocks = nn.ModuleList(
            nn.ModuleList(_Block(cfg) for _ in range(cfg.blocks_per_group)) for _ in range(n_groups))
        self.head = common.BlockHead(layout)
        self.out = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, self.head.dim))
        if cfg.zero_init_head:
            nn.init.zeros_(self.out[-1].weight)
            nn.init.zeros_(self.out[-1].bias)
        self._register_exact_constants()

    # --- stage 1 ----------------------------------------------------------------------------------------------
    def _stage1_net(self):
        """The DeepH-E3 inside stage 1 (the backbone of a TraceGrad wrapper)."""
        return getattr(self.stage1, "backbone", self.stage1)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.stage1 is not None:
            self.stage1.eval()  # frozen: always evaluation mode
        return self

    def _edge_feature_modules(self):
        """The modules whose outputs are stage 1's edge features per group: DeepH-E3's edge update blocks, or,
        in a TraceGrad stage 1, its edge hooks (the features after f + v, which the next block reads)."""
        net = self._stage1_net()
        hooks = getattr(net, "edge_hooks", None)
        mods = hooks if hooks is not None else net.edge_blocks
        return list(mods)[: self.n_groups]

    def _run_stage1(self, batch):
        """(Ĥ₁, node features per group, edge features per group), all detached."""
        net = self._stage1_net()
        nodes, edges, handles = [], [], []
        if self.cfg.fuse_stage1:
            for b in net.node_blocks[: self.n_groups]:
                handles.append(b.register_forward_hook(lambda m, i, o: nodes.append(o)))
            for b in self._edge_feature_modules():
                handles.append(b.register_forward_hook(lambda m, i, o: edges.append(o)))
        needs_grad = bool(getattr(self.stage1, "inference_needs_grad", False))
        try:
            with torch.set_grad_enabled(needs_grad):
                out = self.stage1(batch)
        finally:
            for h in handles:
                h.remove()
        H1 = out["H"].detach()
        return H1, [t.detach() for t in nodes], [t.detach() for t in edges]

    # --- stage 2 ----------------------------------------------------------------------------------------------
    @staticmethod
    def _triplets(src, length):
        """Adjacent neighbour pairs (e_t, e_{t+1}) of each atom among its edges of non-zero length (the self
        edge (i, i, 0) has no direction; periodic images (i, i, R ≠ 0) do), in edge order."""
        keep = torch.nonzero(length > 1e-8).reshape(-1)
        order = keep[torch.argsort(src[keep] * (keep.numel() + 1) + torch.arange(keep.numel(), device=src.device),
                                   stable=True)]
        s = src[order]
        same = s[1:] == s[:-1]
        return order[:-1][same], order[1:][same]

    def _geometry(self, batch):
        """(src, dst, edge vectors, lengths, species index per atom) of ``batch`` in the model's dtype."""
        if bool(batch.spinful) != self.spinful:
            raise InputError(None, "batch spin setting differs from the model's")
        src, dst = batch.edge_src.long(), batch.edge_dst.long()
        vec = common.edge_vectors(batch).to(self.gauss.offsets.dtype)
        sp = self._species_index[batch.Z.long()]
        if bool((sp < 0).any()):
            raise InputError(None, f"batch has elements unknown to the model (it knows Z={list(self.layout.elements)})")
        return src, dst, vec, vec.norm(dim=-1), sp

    def _g(self, xe, pair, dist, src, dst, vec, length):
        """The invariant node feature g_i (Eq. 2) from invariants only: node embeddings ``xe`` (A, w), pair
        embeddings ``pair`` and distance expansions ``dist`` per edge, and the angle of each triplet."""
        A, w = xe.shape
        g = torch.zeros(A, w, dtype=xe.dtype, device=xe.device)
        t1, t2 = self._triplets(src, length)
        if not t1.numel():
            return g
        cos = (vec[t1] * vec[t2]).sum(-1) / (length[t1] * length[t2]).clamp_min(1e-12)
        feat = torch.cat([xe[src[t1]], xe[dst[t1]], xe[dst[t2]], pair[t1], pair[t2], dist[t1], dist[t2],
                          cos.unsqueeze(1).expand(-1, self.cfg.angle_repeat)], 1)
        i = src[t1]
        cnt = torch.zeros(A, dtype=xe.dtype, device=xe.device).index_add_(0, i, torch.ones_like(cos))
        return g.index_add_(0, i, self.triplet(feat)) / cnt.clamp_min(1.0).unsqueeze(1)

    def node_invariant(self, batch) -> torch.Tensor:
        """g_i (A, width) of ``batch``: invariant under rigid rotations of the structure (tests measure it)."""
        src, dst, vec, length, sp = self._geometry(batch)
        pair = self.pair_emb(sp[src] * self.n_species + sp[dst])
        return self._g(self.node_emb(sp), pair, self.gauss(length), src, dst, vec, length)

    def forward(self, batch) -> dict:
        cfg = self.cfg
        src, dst, vec, length, sp = self._geometry(batch)
        if self.stage1 is not None:
            H1, V, E1 = self._run_stage1(batch)
        else:
            H1, V, E1 = None, [], []
        dtype = vec.dtype
        xe = self.node_emb(sp)
        pair = self.pair_emb(sp[src] * self.n_species + sp[dst])
        dist = self.gauss(length)
        g = self._g(xe, pair, dist, src, dst, vec, length)
        x, e = xe, self.edge_in(torch.cat([pair, dist, common.edge_sh(vec, cfg.sh_lmax)], 1))
        for l in range(self.n_groups):
            x = cfg.alpha * self.fuse_x[l](x) + cfg.gamma * g
            e = cfg.alpha * self.fuse_e[l](e)
            if cfg.fuse_stage1:
                x = x + cfg.beta * self.fuse_v[l](V[l].to(dtype))
                e = e + cfg.beta * self.fuse_E[l](E1[l].to(dtype))
            for blk in self.blocks[l]:
                x, e = blk(x, e, src, dst)
        dH = self.head(self.out(e), batch.Z[src], batch.Z[dst], batch.H_ptr)
        if H1 is None:
            return {"H": dH, "dH": dH}
        return {"H": H1.to(dH.dtype) + dH, "H1": H1, "dH": dH}


def build(cfg: HarmoSEConfig, layout, stage1: nn.Module | None = None) -> HarmoSE:
    """A HarmoSE of ``cfg`` on ``layout`` over the loaded ``stage1`` module."""
    return HarmoSE(cfg, layout, stage1)


for _name, _desc in (("harmose", "DeepH-E3"), ("harmose-tracegrad", "TraceGrad-DeepH-E3")):
    register(ModelSpec(
        name=_name,
        config_cls=HarmoSEConfig,
        build=build,
        kinds=("molecule", "crystal"),
        spinful=True,
        stage1=STAGE1_MODELS[_name],
        description=f"HarmoSE (Yin et al.): frozen {_desc} stage 1 + a 3D graph transformer predicting ΔH "
                    "(approximately equivariant, trained with random rotations); needs --stage1 CKPT",
    ))

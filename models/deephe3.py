"""DeepH-E3 as implemented (Xiaoxun-Gong/DeepH-E3 @ f011d5f5; facts in ../shared/research/deeph.md §1).

Network (deeph.md §1.2-1.5)
    * node embedding: one-hot of the species index → e3nn ``Linear`` → ``irreps_embed`` (64x0e);
    * edge init: Gaussians of the edge length, 0 → 6 Å (``edge_init_stop``), as many as ``dim(irreps_embed)``;
    * TP weights: MLP ``Linear(128→64)–SiLU–Linear(64→64)–SiLU–Linear(64→Σmul)`` on 128 Gaussians over
      0 → ``cutoff_radius`` (7.2 Å), multiplying each gated output channel;
    * angular: real SH l ≤ ``lmax`` (4) of the (y, z, x)-ordered edge vector (:func:`models.common.edge_sh`);
    * ``num_blocks`` (3) × [NodeUpdate, EdgeUpdate]. EquiConv = TP ``concat[x_i, x_j, e_ij] ⊗ Y(r_ij)`` with every
      allowed 'uvw' path and factorised weights W[u,v,w] = W′[u,w]·W″[v,w], one pair per (part of the concatenated
      input, SH irrep, output irrep) → Gate (``get_gate_nonlin``: SiLU/tanh scalars, one block of sigmoid gates)
      → radial channel weights. NodeUpdate: sc = FCTP(x_i, onehot(species_i)); lin_pre on the nodes;
      EquiConv; sum of messages onto i (the row atom of H_ij); lin_post; + sc; e3LayerNorm over each structure's
      nodes; residual (old through a Linear when the irreps change). EdgeUpdate: sc = FCTP(e_ij,
      onehot(species pair)); lin_pre on the edges; EquiConv with the new node features; lin_post; + sc;
      e3LayerNorm over each structure's edges; residual. Blocks 0..n−2 output ``irreps_mid``; the last outputs
      ``irreps_post_node`` (spinful: the missing parities added, DeepH-E3's ``refine_post_node``) and
      ``irreps_post_edge`` (default: the output irreps, sorted and merged);
    * ``lin_edge`` (Linear with biases) → the output irreps of :class:`models.common.BlockHead` (one channel
      per shell-pair label (l1, n1, l2, n2), shared by all element pairs; spinful: (l1⊗½)⊗(l2⊗½), re and im)
      → flat H blocks in hambench order (complex when spinful). The readout is the reference's plain
      ``wigner_3j`` (the head's orthogonal √(2L+1)·w3j times ``_readout_scale``).

Parameters as the reference builds them (``e3modules.SeparateWeightTensorProduct``, ``model.Net``): the same
tensors, shapes and initial distributions (W′, W″ ``randn``; e3nn's own initialisation elsewhere), so a reference
checkpoint maps one to one (:mod:`models._import_deephe3`). Paper config on MoTe2: 721,278 parameters, 659 W′/W″
pairs — the reference constructor counts 721,343, the difference being its ``lin_node`` (node features → 1x0e,
65 parameters), which the reference builds but never uses for H; hambench does not build it (it would get no
gradient: DDP would need ``find_unused_parameters`` and the count would include dead weights). Computed as
one e3nn product per conv over the merged input (232 paths, :class:`SeparateWeightTP`): the same function.

Edges are the batch's DFT edges, self edges (i, i, 0) included: the on-site blocks come from the same head
(their SH is Y_0 only). DeepH-E3 predicts H_ij(R) and H_ji(−R) independently; ``symmetrize = true`` averages
them (not the paper's).

TraceGrad hooks (INTERFACES.md): ``edge_feature_irreps[k]`` are the irreps of the edge features after block
k's edge update, ``edge_hooks`` (None = plain model) a ModuleList called as ``f = edge_hooks[k](f, ctx)`` right
after that update with ``ctx = dict(batch=batch, edge_index=(src, dst), k=k)``; :meth:`DeepHE3.hook_edges`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from e3nn import o3
from e3nn.nn import Gate

from hambench.basis import _so3 as so3
from hambench.errors import InputError

from . import common
from .registry import ModelSpec, register

__all__ = ["DeepHE3Config", "DeepHE3", "build", "SPEC"]


@dataclass
class DeepHE3Config:
    """DeepH-E3's hyper-parameters; the defaults are the paper's (``train_default.ini``, deeph.md §1.4)."""

    irreps_embed: str = "64x0e"  # node embedding; its dimension is also the number of edge-init Gaussians
    irreps_mid: str = "64x0e+32x1o+16x2e+8x3o+8x4e"
    irreps_post_node: Optional[str] = None  # None: irreps_mid (+ missing parities when spinful)
    irreps_post_edge: Optional[str] = None  # None: the output irreps, sorted and merged
    num_blocks: int = 3
    lmax: int = 4  # spherical_harmonics_lmax
    cutoff_radius: float = 7.2  # range of the TP-weight Gaussians (not a graph cutoff: edges are the DFT's)
    num_basis: int = 128  # Gaussians for the TP weights
    edge_init_stop: float = 6.0  # edge-init Gaussians span 0 .. this (Å)
    radial_hidden: int = 64  # hidden width of the TP-weight MLP (two hidden layers)
    layer_norm: bool = True  # e3LayerNorm in every update
    symmetrize: bool = False  # average H_ij(R) with H_ji(-R)^† (DeepH-E3 does not)

    def __post_init__(self):
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        if self.lmax < 0:
            raise ValueError(f"lmax must be >= 0, got {self.lmax}")
        if self.cutoff_radius <= 0 or self.edge_init_stop <= 0:
            raise ValueError("cutoff_radius and edge_init_stop must be positive")
        if self.num_basis < 2 or self.radial_hidden < 1:
            raise ValueError("num_basis must be >= 2 and radial_hidden >= 1")
        for name in ("irreps_embed", "irreps_mid", "irreps_post_node", "irreps_post_edge"):
            v = getattr(self, name)
            if v is None:
                continue
            try:
                ir = o3.Irreps(v)
            except Exception as e:  # e3nn raises ValueError/AssertionError on malformed strings
                raise ValueError(f"{name}: {v!r} is not an e3nn irreps string ({e})") from None
            if name == "irreps_embed" and (ir.lmax != 0 or any(i.p != 1 for _, i in ir)):
                raise ValueError(f"irreps_embed must be scalars 0e only, got {v!r}")


# --- building blocks ------------------------------------------------------------------------------------------
def _path_exists(irreps_in1: o3.Irreps, irreps_in2: o3.Irreps, ir) -> bool:
    ir = o3.Irrep(ir)
    return any(ir in ir1 * ir2 for _, ir1 in irreps_in1 for _, ir2 in irreps_in2)


def _gate(irreps_in1, irreps_in2, irreps_out) -> Gate:
    """e3nn Gate as DeepH-E3's ``get_gate_nonlin`` builds it: the entries of ``irreps_out`` the product
    ``in1 ⊗ in2`` can reach; scalars SiLU (0e) / tanh (0o); one simplified block of gates (0e, sigmoid; 0o, tanh,
    only when 0e is out of reach) for the l > 0 entries. ``gate.irreps_in`` is what the product must output."""
    irreps_in1, irreps_in2, irreps_out = o3.Irreps(irreps_in1), o3.Irreps(irreps_in2), o3.Irreps(irreps_out)
    reach = [(m, ir) for m, ir in irreps_out if _path_exists(irreps_in1, irreps_in2, ir)]
    scalars = o3.Irreps([(m, ir) for m, ir in reach if ir.l == 0]).simplify()
    gated = o3.Irreps([(m, ir) for m, ir in reach if ir.l > 0]).simplify()
    gate_ir = None
    if gated.dim > 0:
        gate_ir = next((g for g in ("0e", "0o") if _path_exists(irreps_in1, irreps_in2, g)), None)
        if gate_ir is None:
            raise ValueError(f"{irreps_in1} ⊗ {irreps_in2} cannot produce the gates {irreps_out} needs")
    gates = o3.Irreps([(m, gate_ir) for m, _ in gated]).simplify()
    act = {1: torch.nn.functional.silu, -1: torch.tanh}
    act_gates = {1: torch.sigmoid, -1: torch.tanh}
    return Gate(scalars, [act[ir.p] for _, ir in scalars], gates, [act_gates[ir.p] for _, ir in gates], gated)


class ElementWise(torch.nn.Module):
    """Multiply each multiplicity channel of ``irreps`` (all its 2l+1 components) by a per-item weight."""

    def __init__(self, irreps):
        super().__init__()
        self.irreps = o3.Irreps(irreps)
        rep = torch.tensor([ir.dim for mul, ir in self.irreps for _ in range(mul)], dtype=torch.long)
        self.register_buffer("_rep", rep, persistent=False)
        self.len_weight = int(rep.numel())

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x * torch.repeat_interleave(w, self._rep, dim=-1, output_size=x.shape[-1])


class SeparateWeightTP(torch.nn.Module):
    """``in1 ⊗ in2 → out`` as DeepH-E3's ``SeparateWeightTensorProduct``: every allowed (part of in1, i2, i_out)
    path in mode 'uvw' with its own factor pair W[u, v, w] = W′[u, w] · W″[v, w] (randn init), one pair per part of
    the concatenated input (node + node + edge irreps: the paper config has 659 paths).

    Computed by one e3nn ``TensorProduct`` over ``in1`` sorted and merged: the merged path (I1, i2, i_out) takes
    the parts' W′ ⊗ W″ stacked along u. With e3nn's 'element' path normalisation (fan-in summed over the paths
    into each output) this is the same function, term for term, at a third of the paths.

    ``paths``: the reference's (i1, i2, i_out) in its parameter order (``w1[k]``, ``w2[k]`` ↔ its
    ``weights1.k``, ``weights2.k``)."""

    def __init__(self, irreps_in1, irreps_in2, irreps_out):
        super().__init__()
        irreps_in1, irreps_in2, irreps_out = o3.Irreps(irreps_in1), o3.Irreps(irreps_in2), o3.Irreps(irreps_out)
        starts = [0]
        for mul, ir in irreps_in1:
            starts.append(starts[-1] + mul * ir.dim)
        order = sorted(range(len(irreps_in1)), key=lambda i: irreps_in1[i].ir)  # stable: parts keep their order
        perm = (torch.cat([torch.arange(starts[i], starts[i + 1]) for i in order]) if order
                else torch.zeros(0, dtype=torch.long))
        self.register_buffer("_perm", perm, persistent=False)
        self._identity = bool(torch.equal(perm, torch.arange(perm.numel())))
        merged = o3.Irreps([irreps_in1[i] for i in order]).simplify()
        parts_of: list[list[int]] = []  # merged entry -> the parts of in1 it holds, in their order
        for i in order:
            if parts_of and irreps_in1[parts_of[-1][0]].ir == irreps_in1[i].ir:
                parts_of[-1].append(i)
            else:
                parts_of.append([i])
        assert len(parts_of) == len(merged)
        self.paths = [(i1, i2, io) for i1, (_, ir1) in enumerate(irreps_in1) for i2, (_, ir2) in enumerate(irreps_in2)
                      for io, (_, iro) in enumerate(irreps_out) if iro in ir1 * ir2]
        self.w1 = torch.nn.ParameterList()
        self.w2 = torch.nn.ParameterList()
        for i1, i2, io in self.paths:
            self.w1.append(torch.nn.Parameter(torch.randn(irreps_in1[i1].mul, irreps_out[io].mul)))
            self.w2.append(torch.nn.Parameter(torch.randn(irreps_in2[i2].mul, irreps_out[io].mul)))
        index = {p: k for k, p in enumerate(self.paths)}
        instr, self._stack = [], []
        for I1, (_, ir1) in enumerate(merged):
            for i2, (_, ir2) in enumerate(irreps_in2):
                for io, (_, iro) in enumerate(irreps_out):
                    if iro in ir1 * ir2:
                        instr.append((I1, i2, io, "uvw", True))
                        self._stack.append([index[(i1, i2, io)] for i1 in parts_of[I1]])
        self.tp = o3.TensorProduct(merged, irreps_in2, irreps_out, instr, internal_weights=False,
                                   shared_weights=True)
        self.irreps_in1, self.irreps_in2, self.irreps_out = irreps_in1, irreps_in2, irreps_out

    def weight(self) -> torch.Tensor:
        """The merged product's flat weight: per merged path, the parts' W′[u, w] W″[v, w] stacked along u."""
        out = []
        for ks in self._stack:
            blocks = [self.w1[k][:, None, :] * self.w2[k][None, :, :] for k in ks]
            out.append((blocks[0] if len(blocks) == 1 else torch.cat(blocks, 0)).reshape(-1))
        return torch.cat(out)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        if len(self.w1) == 0:
            return x1.new_zeros(x1.shape[0], self.irreps_out.dim)
        if not self._identity:
            x1 = x1[:, self._perm]
        return self.tp(x1, x2, self.weight())


class EquiConv(torch.nn.Module):
    """TP(concat features ⊗ SH) → Gate → radial channel weights from an MLP of the length embedding."""

    def __init__(self, irreps_in1, irreps_sh, irreps_out, num_basis: int, hidden: int):
        super().__init__()
        self.gate = _gate(irreps_in1, irreps_sh, irreps_out)
        self.tp = SeparateWeightTP(irreps_in1, irreps_sh, self.gate.irreps_in)
        self.irreps_out = self.gate.irreps_out
        self.ew = ElementWise(self.irreps_out)
        self.fc = torch.nn.Sequential(
            torch.nn.Linear(num_basis, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, self.ew.len_weight),
        )

    def forward(self, fea_in: torch.Tensor, sh: torch.Tensor, radial: torch.Tensor) -> torch.Tensor:
        out = self.gate(self.tp(fea_in, sh))
        return self.ew(out, self.fc(radial))


class E3LayerNorm(torch.nn.Module):
    """DeepH-E3 ``e3LayerNorm``: per structure (graph), each irrep block minus its mean over the structure's items
    and channels; l = 0 blocks divided by sqrt(mean |x|²) (+ eps); one weight per channel, bias for scalars."""

    def __init__(self, irreps, eps: float = 1e-5):
        super().__init__()
        self.irreps = o3.Irreps(irreps)
        self.eps = float(eps)
        nmul = sum(m for m, _ in self.irreps)
        nscal = sum(m for m, ir in self.irreps if ir.l == 0 and ir.p == 1)
        self.weight = torch.nn.Parameter(torch.ones(nmul))
        self.bias = torch.nn.Parameter(torch.zeros(nscal))

    def forward(self, x: torch.Tensor, graph: torch.Tensor, num_graphs: int) -> torch.Tensor:
        deg = torch.bincount(graph, minlength=num_graphs).clamp(min=1).to(x.dtype)
        out, ix, iw, ib = [], 0, 0, 0
        for mul, ir in self.irreps:
            d = mul * ir.dim
            f = x[:, ix:ix + d].reshape(-1, mul, ir.dim)
            s = torch.zeros(num_graphs, mul, ir.dim, dtype=x.dtype, device=x.device).index_add_(0, graph, f)
            mean = s.mean(dim=1, keepdim=True) / deg[:, None, None]
            f = f - mean[graph]
            if ir.l == 0:
                sq = torch.zeros(num_graphs, mul, ir.dim, dtype=x.dtype, device=x.device).index_add_(0, graph, f.pow(2))
                norm = (sq / deg[:, None, None]).mean(dim=(1, 2), keepdim=True)
                # clamp: a channel that is exactly zero (no TP path, e.g. 0o; or identical atoms) would give
                # sqrt'(0) = inf and NaN gradients; the forward value is unchanged (eps dominates)
                norm = norm.clamp_min(torch.finfo(x.dtype).tiny)
                f = f / (norm.sqrt()[graph] + self.eps)
            f = f * self.weight[None, iw:iw + mul, None]
            if ir.l == 0 and ir.p == 1:
                f = f + self.bias[None, ib:ib + mul, None]
                ib += mul
            out.append(f.reshape(-1, d))
            ix += d
            iw += mul
        return torch.cat(out, dim=-1)


class _Update(torch.nn.Module):
    """Shared skeleton of NodeUpdate and EdgeUpdate."""

    def __init__(self, irreps_self, n_onehot: int, irreps_in1, irreps_sh, irreps_out, cfg: DeepHE3Config):
        super().__init__()
        irreps_self, irreps_out = o3.Irreps(irreps_self), o3.Irreps(irreps_out)
        self.conv = EquiConv(irreps_in1, irreps_sh, irreps_out, cfg.num_basis, cfg.radial_hidden)
        conv_out = self.conv.irreps_out
        self.sc = o3.FullyConnectedTensorProduct(irreps_self, o3.Irreps(f"{n_onehot}x0e"), conv_out)
        self.lin_post = o3.Linear(conv_out, conv_out, biases=True)
        self.norm = E3LayerNorm(conv_out) if cfg.layer_norm else None
        self.skip = None if irreps_self == conv_out else o3.Linear(irreps_self, conv_out)
        self.irreps_out = conv_out

    def finish(self, old, new, onehot, graph, num_graphs):
        new = self.lin_post(new) + self.sc(old, onehot)
        if self.norm is not None:
            new = self.norm(new, graph, num_graphs)
        return new + (old if self.skip is None else self.skip(old))


class NodeUpdate(_Update):
    def __init__(self, irreps_node, irreps_edge, irreps_sh, irreps_out, n_species: int, cfg: DeepHE3Config):
        irreps_node, irreps_edge = o3.Irreps(irreps_node), o3.Irreps(irreps_edge)
        super().__init__(irreps_node, n_species, irreps_node + irreps_node + irreps_edge, irreps_sh, irreps_out, cfg)
        self.lin_pre = o3.Linear(irreps_node, irreps_node, biases=True)

    def forward(self, x, e, sh, radial, src, dst, onehot, atom_batch, num_graphs):
        xp = self.lin_pre(x)
        msg = self.conv(torch.cat([xp[src], xp[dst], e], dim=-1), sh, radial)
        agg = torch.zeros(x.shape[0], msg.shape[-1], dtype=msg.dtype, device=msg.device).index_add_(0, src, msg)
        return self.finish(x, agg, onehot, atom_batch, num_graphs)


class EdgeUpdate(_Update):
    def __init__(self, irreps_node, irreps_edge, irreps_sh, irreps_out, n_species: int, cfg: DeepHE3Config):
        irreps_node, irreps_edge = o3.Irreps(irreps_node), o3.Irreps(irreps_edge)
        super().__init__(irreps_edge, n_species ** 2, irreps_node + irreps_node + irreps_edge, irreps_sh,
                         irreps_out, cfg)
        self.lin_pre = o3.Linear(irreps_edge, irreps_edge, biases=True)

    def forward(self, x, e, sh, radial, src, dst, onehot_pair, edge_batch, num_graphs):
        ep = self.lin_pre(e)
        new = self.conv(torch.cat([x[src], x[dst], ep], dim=-1), sh, radial)
        return self.finish(e, new, onehot_pair, edge_batch, num_graphs)


def _refine_post_node(post_node: o3.Irreps, out: o3.Irreps) -> o3.Irreps:
    """DeepH-E3 ``refine_post_node``: add every (l, parity) of ``out`` missing from ``post_node``, with the
    multiplicity of post_node's entry of the same l (else of its last entry)."""
    have = {ir for _, ir in post_node}
    mul_of_l = {}
    for m, ir in post_node:
        mul_of_l.setdefault(ir.l, m)
    extra = []
    for _, ir in out:
        if ir not in have:
            extra.append((mul_of_l.get(ir.l, post_node[-1].mul), ir))
            have.add(ir)
    return (post_node + o3.Irreps(extra)).sort().irreps.simplify() if extra else post_node


def _readout_scale(head: common.BlockHead) -> torch.Tensor:
    """Per output component, DeepH-E3's readout over the head's: the reference builds a block as
    Σ_L wigner_3j(l1, l2, L) y_L (spinful: the spin-vector parts through wigner_3j(L, 1, L′) as well), the head
    with the orthogonal √(2L+1)·wigner_3j (:func:`hambench.basis.so3.cg_basis`); so 1/√(2L+1) per X⁰ part and
    1/√((2L+1)(2L′+1)) per spin-vector part L′ of L, in the head's channel order (spinful: re, then im)."""
    scale = []
    for l1, _, l2, _ in head.targets:
        Ls = so3.cg_basis(l1, l2)[1]
        for L in Ls:
            scale += [1 / np.sqrt(2 * L + 1)] * (2 * L + 1)
        if head.spinful:
            for L in Ls:
                for Lp in so3.cg_basis(L, 1)[1]:
                    scale += [1 / np.sqrt((2 * L + 1) * (2 * Lp + 1))] * (2 * Lp + 1)
    scale = scale * (2 if head.spinful else 1)
    assert len(scale) == head.dim
    return torch.tensor(scale, dtype=torch.float64)  # float64: the model casts it (from its float64 master)


# --- the model ------------------------------------------------------------------------------------------------
class DeepHE3(common.ExactConstants, torch.nn.Module):
    """DeepH-E3 on a hambench basis layout; ``forward(batch) -> {"H": flat blocks aligned with batch.H_ptr}``."""

    def __init__(self, cfg: DeepHE3Config, layout):
        super().__init__()
        outer = torch.get_default_dtype()
        # e3nn constants are made in the default dtype: build in float64, keep float64 masters, then cast
        with common.default_dtype(torch.float64):
            self._init(cfg, layout)
        self._snapshot_constants()
        if outer != torch.float64:
            self.to(outer)

    def _init(self, cfg: DeepHE3Config, layout):
        self.cfg = cfg
        self.layout = layout
        self.spinful = bool(layout.spinful)
        elements = list(layout.elements)
        ns = len(elements)
        self.n_species = ns
        self.register_buffer("_species_index", common.species_index(layout), persistent=False)

        self.head = common.BlockHead(layout)
        irreps_out = self.head.irreps_out
        irreps_embed = o3.Irreps(cfg.irreps_embed)
        irreps_mid = o3.Irreps(cfg.irreps_mid)
        post_node = o3.Irreps(cfg.irreps_post_node) if cfg.irreps_post_node else irreps_mid
        if self.spinful and cfg.irreps_post_node is None:
            post_node = _refine_post_node(post_node, irreps_out)
        post_edge = (o3.Irreps(cfg.irreps_post_edge) if cfg.irreps_post_edge
                     else irreps_out.sort().irreps.simplify())
        self.irreps_sh = o3.Irreps.spherical_harmonics(cfg.lmax)

        self.embed = o3.Linear(o3.Irreps(f"{ns}x0e"), irreps_embed)
        self.edge_init = common.GaussianBasis(0.0, cfg.edge_init_stop, irreps_embed.dim)
        self.radial = common.GaussianBasis(0.0, cfg.cutoff_radius, cfg.num_basis)

        self.node_blocks = torch.nn.ModuleList()
        self.edge_blocks = torch.nn.ModuleList()
        node_ir, edge_ir = irreps_embed, irreps_embed
        self.edge_feature_irreps: list[o3.Irreps] = []
        for k in range(cfg.num_blocks):
            last = k == cfg.num_blocks - 1
            nb = NodeUpdate(node_ir, edge_ir, self.irreps_sh, post_node if last else irreps_mid, ns, cfg)
            node_ir = nb.irreps_out
            eb = EdgeUpdate(node_ir, edge_ir, self.irreps_sh, post_edge if last else irreps_mid, ns, cfg)
            edge_ir = eb.irreps_out
            self.node_blocks.append(nb)
            self.edge_blocks.append(eb)
            self.edge_feature_irreps.append(edge_ir)
        self.lin_edge = o3.Linear(edge_ir, irreps_out, biases=True)
        self.register_buffer("_readout_scale", _readout_scale(self.head), persistent=False)
        self.edge_hooks: Optional[torch.nn.ModuleList] = None

    # --- TraceGrad hook protocol --------------------------------------------------------------------------
    def hook_edges(self, batch):
        """The edges the hooked features live on: the batch's DFT edges (self edges included)."""
        return batch.edge_src, batch.edge_dst

    # --- forward ------------------------------------------------------------------------------------------
    def _check(self, batch):
        lay = getattr(batch, "layout", None)
        where = (batch.ids[0] if len(batch.ids) == 1 else f"batch of {len(batch.ids)}") if getattr(batch, "ids", None) else None
        if bool(batch.spinful) != self.spinful:
            kind = "spinful (SOC)" if batch.spinful else "spinless"
            raise InputError(where, f"data are {kind} but this DeepH-E3 was built for "
                                    f"{'spinful' if self.spinful else 'spinless'} data")
        if lay is not None:
            try:
                self.layout.check_compatible(lay, where)
            except InputError as e:
                raise InputError(where, e.problem.replace("the model was trained", "the model was built")) from None
        elif batch.Z.numel() and (int(batch.Z.max()) > self.layout.zmax or
                                  bool((self._species_index[batch.Z.long().clamp(max=self.layout.zmax)] < 0).any())):
            raise InputError(where, f"elements unknown to the model (it knows Z={list(self.layout.elements)})")

    def forward(self, batch) -> dict:
        self._check(batch)
        dtype = self.radial.offsets.dtype
        src, dst = batch.edge_src.long(), batch.edge_dst.long()
        vec = common.edge_vectors(batch).to(dtype)
        # |r| with a finite gradient at the self edges (r = 0), should positions ever require gradients
        length = vec.pow(2).sum(-1).clamp_min(torch.finfo(dtype).tiny).sqrt()
        sh = common.edge_sh(vec, self.cfg.lmax)
        radial = self.radial(length)
        sp = self._species_index[batch.Z.long()]
        onehot = torch.nn.functional.one_hot(sp, self.n_species).to(dtype)
        onehot_pair = torch.nn.functional.one_hot(sp[src] * self.n_species + sp[dst], self.n_species ** 2).to(dtype)
        B = int(batch.natoms.shape[0])
        x = self.embed(onehot)
        e = self.edge_init(length)
        for k, (nb, eb) in enumerate(zip(self.node_blocks, self.edge_blocks)):
            x = nb(x, e, sh, radial, src, dst, onehot, batch.atom_batch, B)
            e = eb(x, e, sh, radial, src, dst, onehot_pair, batch.edge_batch, B)
            if self.edge_hooks is not None:
                e = self.edge_hooks[k](e, dict(batch=batch, edge_index=(src, dst), k=k))
        out = self.lin_edge(e) * self._readout_scale
        H = self.head(out, batch.Z[src], batch.Z[dst], batch.H_ptr)
        if self.cfg.symmetrize:
            partner = common.partner_edges(src, dst, batch.shift)
            t = common.transpose_index(self.layout, batch.Z[src], batch.Z[dst], batch.H_ptr, partner)
            H = common.symmetrize_blocks(H, t)
        return {"H": H, "edge_irreps": out}


def build(cfg: DeepHE3Config, layout) -> DeepHE3:
    return DeepHE3(cfg, layout)


SPEC = register(ModelSpec(
    name="deephe3",
    config_cls=DeepHE3Config,
    build=build,
    kinds=("molecule", "crystal"),
    spinful=True,
    description="DeepH-E3 (Gong et al. 2023) as implemented: E(3)-equivariant node/edge updates on the DFT "
                "edges, output irreps → blocks by Clebsch-Gordan, spinless and SOC",
))

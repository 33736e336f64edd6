"""QHNet as QH9 trains it (Yu et al., ICML 2023; AIRS ``QH9/models/ori_QHNet_with_bias.py``), written from the
facts in ``../shared/research/qh9.md`` §4 and ``models_sota.md`` §5.1.

The network
-----------
* Species embedding ``nn.Embedding(10, 128)`` (Z ≤ 9 in the paper; more rows when the store has heavier
  elements). The embedding ``e_i`` is kept and feeds the expansion heads.
* 5 node interaction layers (:class:`ConvLayer`) on the conv graph = every ordered atom pair of a molecule
  closer than ``max_radius`` (15 Å; QH9's ``radius_graph`` with ``max_num_neighbors = N`` is the same graph):
  message ``TP_uvu(x_b, Y(r_a - r_b); w_ab)`` into atom ``a`` with per-edge weights
  ``FCNet[16→32→W](rbf) ⊙ FCNet[768→32→W](s0)``, plain sum, self term, ``Linear``, residual; layers 1–4
  first apply a norm gate and a Linear (layer 0 takes the 128x0e embedding as is).
* On the last two layers (``layer > start_layer = 2``) a :class:`SelfLayer` (per atom, ``TP_uuu`` with
  internal weights) and a :class:`PairLayer` (per ordered atom pair, ``TP_uuu(h_b, h_a)`` with weights from
  the pair distance and the pair's scalars) update running self features ``f_ii`` and pair features ``f_ij``.
  These layers read the node features with their parity labels dropped (``128x0e+128x1e+…``), as AIRS does.
* Heads: ``Linear`` to a 32-channel bottleneck, then :class:`Expansion` to a padded per-pair block whose rows
  and columns are the slots ``n0x0e + n1x1e + n2x2e + …`` (``3x0e+2x1e+1x2e`` for def2-SVP: the 14 slots of QH9)
  with pair-dependent path weights and l=0 biases from MLPs on the atom embeddings (the "with bias" variant);
  symmetrised ``B_ab + B_baᵀ`` (on-site ``B_ii + B_iiᵀ``) and cut to each element's shells.

Path-weight normalisation (faithful to AIRS ``get_feasible_irrep``): every instruction of a tensor product gets
``sqrt(dim(ir_out) / F)`` with ``F`` the fan-in summed over **all** instructions of that product (uvu: mul of
input 2, uuu: 1), handed to e3nn as its path weight, which e3nn multiplies inside its own component/element
normalisation (final coefficient ``sqrt(dim / n_into_out · w)``), exactly as AIRS does.

Left out on purpose (AIRS builds them but never calls them; they change no output): layer 0's norm gate and
its two Linears (66,048 parameters at paper size), each pair layer's second ``uuu`` product
``tp_node_pair_2`` (8,320) and its Linear ``linear_node_pair_2`` (82,048), a first ``linear_node_pair`` that
AIRS overwrites, and each Expansion's internal ``weights`` vector (1,806 ×2). Total 250,396 parameters: the
AIRS constructor counts 20,415,673 (≈ 20.42 M, models_sota.md §5.1); this module 20,165,277.

hambench conventions
--------------------
Edges of the store: ``(i, j)`` with the block ``H_ij`` (rows = orbitals of ``i``, columns = ``j``). A self edge
``(i, i)`` takes the atom's on-site block; every other edge takes the pair block with row atom ``a = i`` and
column atom ``b = j`` (AIRS' ``dst`` and ``src``). Molecule stores hold all ordered pairs, so this is QHNet's
complete pair graph. Spherical harmonics of ``r[..., [1, 2, 0]]`` (FACTS.md §2) make the e3nn features and
Wigner 3j symbols act in hambench's real-SH order. Crystals are refused (periodic images have no QHNet
counterpart).

TraceGrad hook points (``edge_feature_irreps``, ``edge_hooks``, :meth:`QHNet.hook_edges`): after each of the
pair/self layers, the running self and pair features laid out on the batch's edges (self edges carry
``f_ii`` of their atom, the others ``f_ij``) go through ``edge_hooks[k]``; ``None`` = the plain model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet
from torch import nn

from hambench.errors import InputError
from . import common
from .registry import ModelSpec, register

__all__ = ["QHNetConfig", "QHNet", "build", "feasible_irreps", "AIRS_UNUSED_PARAMETERS"]

#: parameters AIRS constructs but never uses, at paper size (see the module docstring)
AIRS_UNUSED_PARAMETERS = 66_048 + 2 * (8_320 + 82_048) + 2 * 1_806


@dataclass
class QHNetConfig:
    """QHNet hyper-parameters; the defaults are QH9's (``QHNet(in_node_features=1, sh_lmax=4, hidden_size=128,
    bottle_hidden_size=32, num_gnn_layers=5, max_radius=15, num_nodes=10, radius_embed_dim=16)``)."""

    sh_lmax: int = 4  # spherical harmonics and hidden irreps up to this l
    hidden_size: int = 128  # channels per l of the node, self and pair features
    bottle_hidden_size: int = 32  # channels per l entering the expansion
    num_gnn_layers: int = 5  # node interaction layers
    start_layer: int = 2  # self/pair layers follow every node layer with index > start_layer
    max_radius: float = 15.0  # Å, conv graph and radial cutoff
    radius_embed_dim: int = 16  # Bernstein radial functions
    num_species: int = 10  # embedding rows (more if the store has Z >= this)
    conv_radial_hidden: int = 32  # hidden width of the conv layers' weight MLPs
    pair_radial_hidden: int = 0  # hidden width of the pair layers' radial MLP; 0 = hidden_size (AIRS)
    bernstein_alpha: float = 0.5  # initial α of the exponential Bernstein basis (trainable)
    conv_s0_dst_twice: bool = True  # AIRS feeds the receiving atom's scalars twice to the conv weight MLP


# --- irreps helpers ---------------------------------------------------------------------------------------
def _irreps(mul: int, lmax: int, parity: bool):
    return o3.Irreps([(mul, (l, (-1) ** l if parity else 1)) for l in range(lmax + 1)])


def feasible_irreps(irreps_in1, irreps_in2, irreps_target, mode: str):
    """Output irreps and instructions of a tensor product as AIRS builds them (``get_feasible_irrep``).

    One instruction per (input 1 irrep, input 2 irrep, output irrep in the target); each output irrep gets the
    target's multiplicity; every instruction's path weight is ``sqrt(dim(ir_out) / F)`` where ``F`` sums the
    fan-in of **all** instructions (uvu: mul of input 2; uvw: mul1·mul2; uuu: 1).
    """
    irreps_in1, irreps_in2, irreps_target = o3.Irreps(irreps_in1), o3.Irreps(irreps_in2), o3.Irreps(irreps_target)
    mid, instr = [], []
    for i, (_, ir1) in enumerate(irreps_in1):
        for j, (_, ir2) in enumerate(irreps_in2):
            for ir_out in ir1 * ir2:
                if ir_out in irreps_target:
                    entry = (irreps_target.count(ir_out), ir_out)
                    if entry not in mid:
                        mid.append(entry)
                    instr.append((i, j, mid.index(entry)))
    fan = {"uvw": lambda i, j: irreps_in1[i].mul * irreps_in2[j].mul, "uvu": lambda i, j: irreps_in2[j].mul,
           "uvv": lambda i, j: irreps_in1[i].mul, "uuw": lambda i, j: irreps_in1[i].mul, "uuu": lambda i, j: 1}[mode]
    total = sum(fan(i, j) for i, j, _ in instr)
    mid = o3.Irreps(mid)
    weights = [math.sqrt(mid[k].ir.dim / total) if total > 0 else math.sqrt(mid[k].ir.dim) for _, _, k in instr]
    mid_sorted, perm, _ = mid.sort()
    return mid_sorted, [(i, j, perm[k], mode, True, w) for (i, j, k), w in zip(instr, weights)]


def _split(x: torch.Tensor, irreps) -> list[torch.Tensor]:
    """``(N, irreps.dim)`` → per irrep ``(N, mul, 2l+1)``."""
    return [x[:, sl].reshape(x.shape[0], mul, ir.dim) for sl, (mul, ir) in zip(irreps.slices(), irreps)]


def channel_norms(x: torch.Tensor, irreps) -> torch.Tensor:
    """Euclidean norm of every channel (= ``e3nn.o3.Norm``), ``(N, Σ mul)``."""
    parts = [p.norm(dim=-1) for p in _split(x, irreps)]
    return torch.cat(parts, dim=-1) if parts else x.new_zeros(x.shape[0], 0)


def channel_inner(x: torch.Tensor, y: torch.Tensor, irreps) -> torch.Tensor:
    """Per channel ``Σ_m x_m y_m / (2l+1)`` (= AIRS ``InnerProduct``: uuu, weight 1/dim, component)."""
    parts = [(a * b).mean(dim=-1) for a, b in zip(_split(x, irreps), _split(y, irreps))]
    return torch.cat(parts, dim=-1) if parts else x.new_zeros(x.shape[0], 0)


def _ssp(x):
    return nn.functional.softplus(x) - math.log(2.0)


def _fcnet(hs):
    """e3nn FullyConnectedNet with shifted softplus and no biases (AIRS' radial/scalar MLPs)."""
    return FullyConnectedNet(list(hs), _ssp)


class NormGate(nn.Module):
    """Scalars and l>0 channel norms → Linear–SiLU–Linear → new scalars and one gate per l>0 channel."""

    def __init__(self, irreps):
        super().__init__()
        self.irreps = irreps
        self.mul0 = irreps[0].mul
        if irreps[0].ir.l != 0:
            raise ValueError(f"NormGate needs scalars first, got {irreps}")
        self.rest = irreps[1:]
        n = irreps.num_irreps
        self.fc = nn.Sequential(nn.Linear(n, n), nn.SiLU(), nn.Linear(n, n))

    def forward(self, x):
        d0 = self.mul0
        f0 = torch.cat([x[:, :d0], channel_norms(x[:, d0:], self.rest)], dim=-1)
        g = self.fc(f0)
        if len(self.rest) == 0:
            return g[:, :d0]
        gates, parts, k = g[:, d0:], [g[:, :d0]], 0
        for p in _split(x[:, d0:], self.rest):
            parts.append((p * gates[:, k:k + p.shape[1], None]).reshape(x.shape[0], p.shape[1] * p.shape[2]))
            k += p.shape[1]
        return torch.cat(parts, dim=-1)


def _linear(irreps_in, irreps_out, biases: bool = True):
    return o3.Linear(irreps_in, irreps_out, internal_weights=True, shared_weights=True, biases=biases)


class ConvLayer(nn.Module):
    """One node interaction layer (AIRS ``ConvNetLayer`` + ``ConvLayer``)."""

    def __init__(self, irreps_in, irreps_hidden, sh_irreps, rbf_dim: int, hidden: int, use_norm_gate: bool,
                 s0_dst_twice: bool):
        super().__init__()
        self.irreps_in, self.irreps_out = irreps_in, irreps_hidden
        self.use_norm_gate, self.s0_dst_twice = use_norm_gate, s0_dst_twice
        tp_out, instr = feasible_irreps(irreps_in, sh_irreps, irreps_hidden, "uvu")
        self.tp = o3.TensorProduct(irreps_in, sh_irreps, tp_out, instr, shared_weights=False, internal_weights=False)
        self.fc_rbf = _fcnet([rbf_dim, hidden, self.tp.weight_numel])
        self.fc_s0 = _fcnet([irreps_in.num_irreps + irreps_in[0].mul, hidden, self.tp.weight_numel])
        self.linear_out = _linear(tp_out, irreps_hidden)
        if use_norm_gate:  # layer 0 of AIRS builds these too but never calls them: not built here
            self.norm_gate = NormGate(irreps_in)
            lin_irreps = feasible_irreps(irreps_in, o3.Irreps("0e"), irreps_in, "uvu")[0]
            self.linear_node = _linear(irreps_in, lin_irreps)
            self.linear_node_pre = _linear(irreps_in, lin_irreps)

    def forward(self, x, conv_a, conv_b, sh, rbf):
        d0 = self.irreps_in[0].mul
        old = x
        if self.use_norm_gate:
            pre = self.linear_node_pre(x)
            xa, xb = pre[conv_a], pre[conv_b]
            s0 = channel_inner(xa[:, d0:], xb[:, d0:], self.irreps_in[1:])
            s0 = torch.cat([xa[:, :d0], xa[:, :d0] if self.s0_dst_twice else xb[:, :d0], s0], dim=-1)
            x = self.linear_node(self.norm_gate(x))
        else:
            xa, xb = x[conv_a], x[conv_b]
            s0 = channel_inner(xa[:, d0:], xb[:, d0:], self.irreps_in[1:])
            s0 = torch.cat([xa[:, :d0], xa[:, :d0] if self.s0_dst_twice else xb[:, :d0], s0], dim=-1)
        msg = self.tp(x[conv_b], sh, self.fc_rbf(rbf) * self.fc_s0(s0))
        out = torch.zeros(x.shape[0], msg.shape[1], dtype=msg.dtype, device=msg.device).index_add_(0, conv_a, msg)
        same = self.irreps_in == self.irreps_out
        if same:
            out = out + x
        out = self.linear_out(out)
        return old + out if same else out


class SelfLayer(nn.Module):
    """Per-atom self features (AIRS ``SelfNetLayer``): ``TP_uuu`` of two gated views of x, internal weights."""

    def __init__(self, irreps):
        super().__init__()
        self.irreps = irreps
        tp_out, instr = feasible_irreps(irreps, irreps, irreps, "uuu")
        self.norm_gate_1, self.norm_gate_2 = NormGate(irreps), NormGate(irreps)
        self.linear_1, self.linear_2 = _linear(irreps, irreps), _linear(irreps, irreps)
        self.tp = o3.TensorProduct(irreps, irreps, tp_out, instr, shared_weights=True, internal_weights=True)
        self.norm_gate = NormGate(irreps)
        self.linear_3 = _linear(tp_out, irreps)

    def forward(self, x, f_old):
        y = self.tp(self.linear_1(self.norm_gate_1(x)), self.linear_2(self.norm_gate_2(x))) + x
        y = self.linear_3(self.norm_gate(y))
        return y if f_old is None else f_old + y


class PairLayer(nn.Module):
    """Per-pair features (AIRS ``PairNetLayer``): ``TP_uuu(h_b, h_a)`` with weights from the pair distance and
    the pair's scalars (row atom ``a`` = AIRS ``dst``, column atom ``b`` = AIRS ``src``)."""

    def __init__(self, irreps, rbf_dim: int, radial_hidden: int):
        super().__init__()
        self.irreps = irreps
        tp_out, instr = feasible_irreps(irreps, irreps, irreps, "uuu")
        self.linear_inner = _linear(irreps, irreps)
        self.norm_gate_pre = NormGate(irreps)
        self.linear_n = _linear(irreps, irreps)
        self.tp = o3.TensorProduct(irreps, irreps, tp_out, instr, shared_weights=False, internal_weights=False)
        self.fc_rbf = _fcnet([rbf_dim, radial_hidden, self.tp.weight_numel])
        mul0 = irreps[0].mul
        self.fc_s0 = nn.Sequential(nn.Linear(mul0 + irreps.num_irreps, mul0), nn.SiLU(),
                                   nn.Linear(mul0, self.tp.weight_numel))
        self.norm_gate = NormGate(tp_out)
        self.linear = _linear(tp_out, irreps)

    def forward(self, x, pa, pb, rbf, f_old):
        d0 = self.irreps[0].mul
        x0 = self.linear_inner(x)
        xa, xb = x0[pa], x0[pb]
        s0 = torch.cat([xa[:, :d0], xb[:, :d0], channel_inner(xa[:, d0:], xb[:, d0:], self.irreps[1:])], dim=-1)
        h = self.linear_n(self.norm_gate_pre(x))
        p = self.tp(h[pb], h[pa], self.fc_rbf(rbf) * self.fc_s0(s0))
        p = self.linear(self.norm_gate(p))
        return p if f_old is None else f_old + p


class Expansion(nn.Module):
    """Bottleneck irreps → padded block ``(S, S)`` over the slots ``slot_irreps`` on both sides, with external
    per-pair path weights and l=0 biases (AIRS ``Expansion``, "with bias")::

        B[u i, v j] += (1/mul_in) Σ_k C(l1, l2, l_in)[i, j, k] (Σ_w W[w, u, v] x[w, k] + [l_in = 0] b[u, v])

    over every (l_in, l1, l2) with l_in ∈ l1 ⊗ l2. Weights and biases are laid out in AIRS' instruction order
    (input irrep, then row slot group, then column slot group); the paths of one (l1, l2) slot pair are
    contracted together (their 3j symbols stacked along k)."""

    def __init__(self, irreps_in, slot_irreps):
        super().__init__()
        self.irreps_in, self.slot_irreps = irreps_in, slot_irreps
        instr = []  # (i_in, i1, i2, weight offset, bias offset or -1)
        nw = nb = 0
        for i, (mi, ir) in enumerate(irreps_in):
            for i1, (m1, ir1) in enumerate(slot_irreps):
                for i2, (m2, ir2) in enumerate(slot_irreps):
                    if ir in ir1 * ir2:
                        bias = -1
                        if i == 0:
                            bias, nb = nb, nb + m1 * m2
                        instr.append((i, i1, i2, nw, bias))
                        nw += mi * m1 * m2
        self.num_path_weight, self.num_bias = nw, nb
        self.instructions = instr
        # group by slot pair (i1, i2): the paths' l_in, offsets, and the stacked 3j symbols / mul_in
        self.groups = []
        for i1 in range(len(slot_irreps)):
            for i2 in range(len(slot_irreps)):
                paths = [(i, w0, b0) for i, j1, j2, w0, b0 in instr if (j1, j2) == (i1, i2)]
                if not paths:
                    continue
                l1, l2 = slot_irreps[i1].ir.l, slot_irreps[i2].ir.l
                names = []
                for i, _, _ in paths:  # one buffer per 3j symbol: common.refresh_e3nn_constants keeps it exact
                    name = f"_w3j_{l1}_{l2}_{irreps_in[i].ir.l}"
                    C = o3.wigner_3j(l1, l2, irreps_in[i].ir.l, dtype=torch.float64)
                    self.register_buffer(name, C.to(torch.get_default_dtype()), persistent=False)
                    names.append(name)
                self.groups.append((i1, i2, paths, names))
        self.size = slot_irreps.dim

    def forward(self, x, weights, biases):
        E = x.shape[0]
        xs = _split(x, self.irreps_in)
        blocks = {}
        for i1, i2, paths, names in self.groups:
            m1, ir1 = self.slot_irreps[i1]
            m2, ir2 = self.slot_irreps[i2]
            rs = []
            for i, w0, b0 in paths:
                mi = self.irreps_in[i].mul
                W = weights[:, w0:w0 + mi * m1 * m2].reshape(E, mi, m1, m2)
                r = torch.einsum("ewuv,ewk->euvk", W, xs[i])
                if b0 >= 0:
                    r = r + biases[:, b0:b0 + m1 * m2].reshape(E, m1, m2, 1)
                rs.append(r / mi)
            r = torch.cat(rs, dim=-1) if len(rs) > 1 else rs[0]
            C = torch.cat([getattr(self, n) for n in names], dim=-1) if len(names) > 1 else getattr(self, names[0])
            blk = torch.einsum("ijk,euvk->euivj", C, r)
            blocks[i1, i2] = blk.reshape(E, m1 * ir1.dim, m2 * ir2.dim)
        rows = []
        for i1, (m1, ir1) in enumerate(self.slot_irreps):
            row = [blocks[i1, i2] if (i1, i2) in blocks else x.new_zeros(E, m1 * ir1.dim, m2 * ir2.dim)
                   for i2, (m2, ir2) in enumerate(self.slot_irreps)]
            rows.append(torch.cat(row, dim=-1))
        return torch.cat(rows, dim=-2)


def _mlp(n_in: int, hidden: int, n_out: int):
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, n_out))


def slot_layout(layout) -> tuple[list[int], np.ndarray]:
    """Slots of the padded per-atom block: ``[n_0, n_1, …]`` (most shells of each l over the elements) and a
    table ``(zmax+1, max_norb)`` of each orbital's padded position (−1 where absent). For def2-SVP: 3x0e+2x1e+1x2e,
    H → slots [0, 1, 3, 4, 5] (QH9's orbital mask)."""
    lmax = layout.lmax
    nmax = [0] * (lmax + 1)
    for shells in layout.species.values():
        for l in range(lmax + 1):
            nmax[l] = max(nmax[l], shells.count(l))
    start = np.concatenate([[0], np.cumsum([n * (2 * l + 1) for l, n in enumerate(nmax)])]).astype(np.int64)
    width = int(max(layout.norb_table))
    table = np.full((layout.zmax + 1, width), -1, dtype=np.int64)
    for z, shells in layout.species.items():
        seen, k = [0] * (lmax + 1), 0
        for l in shells:
            base = start[l] + seen[l] * (2 * l + 1)
            table[z, k:k + 2 * l + 1] = base + np.arange(2 * l + 1)
            seen[l] += 1
            k += 2 * l + 1
    return nmax, table


class QHNet(common.ExactConstants, nn.Module):
    """QHNet (see the module docstring). ``forward(batch) -> {"H": flat blocks aligned with batch.H_ptr}``."""

    def __init__(self, cfg: QHNetConfig, layout):
        super().__init__()
        if layout.spinful:
            raise InputError(None, "qhnet predicts spinless Hamiltonians; this store is spinful (SOC)")
        sizes = {"sh_lmax": (cfg.sh_lmax, 0), "hidden_size": (cfg.hidden_size, 1),
                 "bottle_hidden_size": (cfg.bottle_hidden_size, 1), "num_gnn_layers": (cfg.num_gnn_layers, 1)}
        bad = [f"model.{k} must be >= {low}, got {v}" for k, (v, low) in sizes.items() if v < low]
        if not cfg.max_radius > 0:
            bad.append(f"model.max_radius must be positive (Å), got {cfg.max_radius}")
        if bad:
            raise InputError(None, f"qhnet: {bad[0]}")
        if not 0 <= cfg.start_layer + 1 < cfg.num_gnn_layers:
            raise InputError(None, f"qhnet: start_layer {cfg.start_layer} leaves no self/pair layer among "
                                   f"{cfg.num_gnn_layers} node layers")
        self.cfg, self.layout = cfg, layout
        hs, hb, L = cfg.hidden_size, cfg.bottle_hidden_size, cfg.sh_lmax
        self.sh_irreps = o3.Irreps.spherical_harmonics(L)
        self.hidden_irreps = _irreps(hs, L, parity=True)
        self.base_irreps = _irreps(hs, L, parity=False)
        bottle = _irreps(hb, L, parity=True)
        bottle_base = _irreps(hb, L, parity=False)
        self.num_embed = max(cfg.num_species, layout.zmax + 1)
        self.embedding = nn.Embedding(self.num_embed, hs)
        self.rbf = common.BernsteinBasis(cfg.radius_embed_dim, cfg.max_radius, cfg.bernstein_alpha)
        self.layers = nn.ModuleList()
        self.self_layers, self.pair_layers = nn.ModuleList(), nn.ModuleList()
        for i in range(cfg.num_gnn_layers):
            irr_in = o3.Irreps(f"{hs}x0e") if i == 0 else self.hidden_irreps
            self.layers.append(ConvLayer(irr_in, self.hidden_irreps, self.sh_irreps, cfg.radius_embed_dim,
                                         cfg.conv_radial_hidden, use_norm_gate=i != 0,
                                         s0_dst_twice=cfg.conv_s0_dst_twice))
            if i > cfg.start_layer:
                self.self_layers.append(SelfLayer(self.base_irreps))
                self.pair_layers.append(PairLayer(self.base_irreps, cfg.radius_embed_dim,
                                                  cfg.pair_radial_hidden or hs))
        self.output_ii = _linear(self.hidden_irreps, bottle, biases=False)
        self.output_ij = _linear(self.hidden_irreps, bottle, biases=False)
        nslots, table = slot_layout(layout)
        self.slot_irreps = o3.Irreps([(n, (l, 1)) for l, n in enumerate(nslots) if n > 0])
        self.expand_ii = Expansion(bottle_base, self.slot_irreps)
        self.expand_ij = Expansion(bottle_base, self.slot_irreps)
        self.fc_ii = _mlp(hs, hs, self.expand_ii.num_path_weight)
        self.fc_ii_bias = _mlp(hs, hs, self.expand_ii.num_bias)
        self.fc_ij = _mlp(2 * hs, hs, self.expand_ij.num_path_weight)
        self.fc_ij_bias = _mlp(2 * hs, hs, self.expand_ij.num_bias)
        self.register_buffer("slot_table", torch.as_tensor(table), persistent=False)
        self.register_buffer("norb_table", torch.tensor(np.array(layout.norb_table, dtype=np.int64)),
                             persistent=False)
        # TraceGrad hook points: one per self/pair layer, on the batch's edges
        self.edge_feature_irreps = [self.base_irreps for _ in self.pair_layers]
        self.edge_hooks = None
        self._register_exact_constants()

    # --- graph ----------------------------------------------------------------------------------------
    def _check_batch(self, batch):
        kind = getattr(batch, "kind", "molecule")
        if kind != "molecule" or (batch.shift.numel() and bool((batch.shift != 0).any())):
            raise InputError(None, "qhnet is a molecule model; this batch holds a crystal (periodic images); "
                                   "train deephe3 on crystal stores")
        if batch.Z.numel() and int(batch.Z.max()) >= self.num_embed:
            raise InputError(None, f"qhnet: atomic number {int(batch.Z.max())} beyond the model's "
                                   f"{self.num_embed} species embeddings")

    def conv_graph(self, batch, pos):
        """Ordered atom pairs (a receives from b) of one molecule closer than ``max_radius``: ``(a, b, r_a − r_b)``."""
        A = batch.Z.shape[0]
        dev = batch.Z.device
        counts = torch.bincount(batch.atom_batch, minlength=int(batch.natoms.shape[0]))
        start = torch.cumsum(counts, 0) - counts
        per = counts[batch.atom_batch]  # atoms in each atom's molecule
        a = torch.repeat_interleave(torch.arange(A, device=dev), per)
        first = torch.cumsum(per, 0) - per
        b = start[batch.atom_batch][a] + (torch.arange(a.shape[0], device=dev) - first[a])
        keep = a != b
        a, b = a[keep], b[keep]
        vec = pos[a] - pos[b]
        keep = vec.norm(dim=-1) < self.cfg.max_radius
        return a[keep], b[keep], vec[keep]

    def hook_edges(self, batch):
        """The edges the hooked features live on: the batch's own edges ``(src, dst)`` (self edges = f_ii)."""
        return batch.edge_src, batch.edge_dst

    def _edge_split(self, batch):
        src, dst = batch.edge_src, batch.edge_dst
        is_self = src == dst
        self_idx = torch.nonzero(is_self).reshape(-1)
        pair_idx = torch.nonzero(~is_self).reshape(-1)
        return self_idx, pair_idx

    # --- forward --------------------------------------------------------------------------------------
    def forward(self, batch):
        self._check_batch(batch)
        dtype = self.embedding.weight.dtype
        pos = batch.pos.to(dtype)
        Z = batch.Z.long()
        src, dst = batch.edge_src.long(), batch.edge_dst.long()
        E = src.shape[0]
        e = self.embedding(Z)
        # conv graph (a ← b)
        ca, cb, cvec = self.conv_graph(batch, pos)
        sh = common.edge_sh(cvec, self.cfg.sh_lmax)
        crbf = self.rbf(cvec.norm(dim=-1))
        # pair set = the batch's non-self edges: row atom a = src, column atom b = dst
        self_idx, pair_idx = self._edge_split(batch)
        pa, pb = src[pair_idx], dst[pair_idx]
        prbf = self.rbf((pos[pb] - pos[pa]).norm(dim=-1))
        self_atom = src[self_idx]
        x, fii, fij, k = e, None, None, 0
        for i, layer in enumerate(self.layers):
            x = layer(x, ca, cb, sh, crbf)
            if i > self.cfg.start_layer:
                fii = self.self_layers[k](x, fii)
                fij = self.pair_layers[k](x, pa, pb, prbf, fij)
                if self.edge_hooks is not None:
                    fii, fij = self._hook(k, batch, fii, fij, self_idx, pair_idx, self_atom)
                k += 1
        fii = self.output_ii(fii)
        fij = self.output_ij(fij)
        Bii = self.expand_ii(fii, self.fc_ii(e), self.fc_ii_bias(e))
        ep = torch.cat([e[pa], e[pb]], dim=-1)
        Bij = self.expand_ij(fij, self.fc_ij(ep), self.fc_ij_bias(ep))
        S = Bii.shape[-1]
        P = Bii.new_zeros(E, S, S)
        P[self_idx] = Bii[self_atom]
        P[pair_idx] = Bij
        H = self._gather(P, Z[src], Z[dst], batch.H_ptr)
        # symmetrisation (AIRS keep_blocks): on-site B_ii + B_iiᵀ, pairs B_ab + B_baᵀ (= 2 × the mean, exactly)
        return {"H": 2 * common.symmetrize_blocks(H, self._transpose_index(batch, Z, src, dst))}

    def _transpose_index(self, batch, Z, src, dst):
        partner = common.partner_edges(src, dst, batch.shift)
        if bool((partner < 0).any()):
            e = int(torch.nonzero(partner < 0)[0, 0])
            raise InputError(None, f"qhnet: edge ({int(src[e])}, {int(dst[e])}) of the batch has no reverse edge; "
                                   "molecule stores hold both (i, j) and (j, i)")
        return common.transpose_index(self.layout, Z[src], Z[dst], batch.H_ptr, partner)

    def _hook(self, k, batch, fii, fij, self_idx, pair_idx, self_atom):
        E = batch.edge_src.shape[0]
        f = fij.new_empty(E, fij.shape[1])
        f[pair_idx] = fij
        f[self_idx] = fii[self_atom]
        f = self.edge_hooks[k](f, dict(batch=batch, edge_index=self.hook_edges(batch), k=k))
        fii = fii.index_copy(0, self_atom, f[self_idx])
        return fii, f[pair_idx]

    def _gather(self, P, Za, Zb, H_ptr):
        """Padded (E, S, S) blocks → flat hambench blocks (row-major, each element's shells)."""
        E, S = P.shape[0], P.shape[-1]
        dev = P.device
        na, nb = self.norb_table[Za], self.norb_table[Zb]
        size = na * nb
        total = int(size.sum())
        if H_ptr is not None and (H_ptr.shape[0] != E + 1 or int(H_ptr[-1]) != total):
            raise InputError(None, f"qhnet: batch.H_ptr ({int(H_ptr[-1])} elements) does not match the layout's "
                                   f"block sizes ({total})")
        eo = torch.repeat_interleave(torch.arange(E, device=dev), size)
        ptr = torch.cumsum(size, 0) - size
        t = torch.arange(total, device=dev) - ptr[eo]
        nbe = nb[eo]
        r, c = t // nbe, t % nbe
        idx = eo * (S * S) + self.slot_table[Za[eo], r] * S + self.slot_table[Zb[eo], c]
        return P.reshape(-1)[idx]


# --- builder / registry ----------------------------------------------------------------------------------
def build(cfg: QHNetConfig, layout) -> QHNet:
    """QHNet for ``layout`` in torch's default dtype (the engine builds under the run's dtype; the 3j constants
    stay exact through later casts, :class:`hambench.models.common.ExactConstants`)."""
    return QHNet(cfg, layout)


SPEC = register(ModelSpec(
    name="qhnet", config_cls=QHNetConfig, build=build, kinds=("molecule",), spinful=False,
    description="QHNet (Yu et al. 2023) as QH9 trains it: node interaction layers, pair/self layers, expansion "
                "with bias, symmetrised; molecule stores"))

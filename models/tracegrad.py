"""TraceGrad (Yin et al., arXiv 2405.05722): invariant trace supervision and gradient-induced equivariant
features, as one module that wraps a backbone (DeepH-E3, QHNet) through its edge hooks.

Per hooked block k of the backbone, on the equivariant edge features f (shape (E, irreps.dim), e3nn basis):

* ``s = CG0(f ⊗ f)``: the degree-0 part of the full tensor product of f with itself, with learnable weights,
  ``s_c = Σ_paths α_path Σ_{u,v} W_{uvc} <f_u, f_v>/√(2l+1)`` over pairs of components of equal (l, parity)
  (e3nn ``FullyConnectedTensorProduct(irreps, irreps, "C x 0e")``, C = 1024 as in the authors' code). As the
  Gram matrix <f_u, f_v> is symmetric only W_uv + W_vu matters, so the weights are stored folded (one row per
  pair u <= v, e3nn's initial distribution): half the authors' parameter count for the same functions;
* ``z = φ(s)``: ``φ_layers`` times (Linear → LayerNorm → SiLU), per edge (the authors: two, 1024 → 1024 → K);
* the feature fed back, by ``mode``:

  ==========  ==================  ============================  =============================
  mode        invariant branch    trace decoder + trace loss    block output
  ==========  ==================  ============================  =============================
  tracegrad   yes                 yes                           f + v,  v = ∂(Σ_e Σ_k z_ek)/∂f
  trace       yes                 yes                           f (nothing fed back)
  grad        yes                 no                            f + v
  gate        yes                 no                            f + g(z) ⊙ f
  tracegate   yes                 yes                           f + g(z) ⊙ f
  ==========  ==================  ============================  =============================

  (the paper's Appendix H ablations; ``g = Linear(z)``, one gate per (channel, irrep) of f, broadcast over m).

``v`` is invariant-to-equivariant: z(Df) = z(f) ⇒ ∂z/∂f transforms like f (D orthogonal, e3nn's real basis).
Two implementations of v, chosen by ``grad_impl``, proven equal to 1e-10 in float64 by the tests:

* ``autograd``: ``torch.autograd.grad(z.sum(), f, create_graph=training)`` through e3nn's tensor product and
  the φ modules (inside ``torch.enable_grad`` / outside inference mode when predicting);
* ``closed`` (default, faster, see ``benchmarks/bench_tracegrad.py``): s is quadratic in f, so with
  ``g = ∂(Σz)/∂s`` (backpropagated by hand through φ — Linear, LayerNorm and SiLU have closed-form
  derivatives) ``v_u = Σ_v (A_uv + A_vu) f_v`` with ``A_uv = α/√(2l+1) Σ_c W_uvc g_c``. The forward s uses the
  symmetric Gram matrix's upper triangle only (``W_uv + W_vu`` folded), half the products of the full TP, and
  no double backward is needed in training (the hand derivative is an ordinary differentiable expression).

Cost (``benchmarks/bench_tracegrad.py``, results in ``benchmarks/results/bench_tracegrad.txt``): per hooked
block and edge the closed form does about 2·T·C + 2·C·H multiply-adds (T = Σ M(M+1)/2 over the irreps of f,
2816 for DeepH-E3's ``64x0e+32x1o+16x2e+8x3o+8x4e``; H = φ's width); at inference φ's first Linear is fused
into the TP weights (α·W @ W1ᵀ, cached until a parameter changes), leaving ≈ 2·T·H. On a CPU this dense work is
not hidden behind the backbone's many small tensor-product kernels as on the paper's GPU (+6.4–7.5 %): with
C = 1024 it costs a third to a half of DeepH-E3's inference on CPU; ``channels`` is the knob (C = 128: about a
quarter of that).

The trace decoder (modes with ``trace``) maps the concatenated z of all hooked blocks, per edge, through
``decoder_layers`` times (Linear → LayerNorm → SiLU) and a final Linear to K trace slots, K = the
number of distinct shell-pair labels ``(l_p, n_p, l_q, n_q)`` (n = index among the element's shells of that
l; DeepH-E3's targets, as the authors' ``trace_out_len``; ``trace_slots = "shell"`` keys by shell indices
(p, q) instead); slots an element pair does not have are masked out. Labels are the store's
``T_b = tr(H_b H_b†)`` (``batch.T``, p-major, aligned with ``batch.T_ptr``), normalised per ``trace_norm``:

* ``edge_layernorm`` (the authors' ``get_H_trace``): ``(T − mean_e)/√(var_e + eps)`` over the basic blocks
  of each edge (no affine). The authors normalise across their padded DeepH-E3 target list, padding
  included; here only the blocks that exist for the edge's element pair take part;
* ``log1p``: ``log(1 + T/eV²)``; ``none``: T in eV² as stored.

Loss: ``L = L_H + λ·μ·L_T``, ``μ = (L_H / L_T).detach()`` (so μ·L_T has L_H's size but carries its own
gradient; without the detach the trace gradient would cancel), λ = 0.3, L_T = mean |T̂ − T| (MAE; ``mse`` is
a switch). ``forward`` returns the backbone's dict plus ``"T_hat"`` (the decoder's output in the normalised
space, aligned with ``batch.T_ptr``) and, only when ``trace_norm == "none"``, ``"T"`` (eV², the same).

Where the authors' snapshot (DavidYin94/NextHAM 3ef338bd: ``tg_src`` DeepH-E3 kernel and ``nets/tracegrad.py``)
contradicts itself or the paper, and the field that holds our choice:

* ``lam``: the DeepH-E3 kernel uses ``L_H + 0.3·μ·L_T``; NextHAM uses ``0.8·L_H + 0.2·μ·L_T``. Default 0.3. The
  kernel then *overwrites* the combined loss with L_H before ``backward`` (so its trace branch never trains);
  we do not.
* ``phi_layers``/``phi_hidden``: the kernel's φ is Linear(C→C)→LN→SiLU→Linear(C→K)→LN→SiLU (2 blocks, ending
  in LN→SiLU); NextHAM's is 4 Linears of width 256. Default 2 × (Linear→LN→SiLU), hidden = C.
* ``residual``: the kernel adds ``f + v``; NextHAM adds ``f + 0.2·(‖f‖/(‖v‖+1e-5)).detach()·v`` (per edge).
  Default ``plain``; ``norm_ratio`` (with ``residual_scale``) is the NextHAM form.
* ``decoder_hidden``/``decoder_layers``: kernel 1024 wide, 2 hidden blocks; NextHAM 512, 3 blocks, no LN.
* ``k_z``: the kernel sets dim z = K (number of trace labels); NextHAM uses 256 per block. Default K.
* ``trace_norm``: the kernel layer-normalises labels per edge; the paper's text speaks of raw energy² traces
  (its "dimensional consistency" remark). Default ``edge_layernorm``.
* ``ln_eps``: the kernel's LayerNorms use eps 1e-6, its label normalisation F.layer_norm's 1e-5.
* ``bottleneck``: not in either snapshot. With QHNet's 128 channels per degree a full TP into 1024 scalars has
  5·128²·1024 ≈ 84 M weights per block; ``bottleneck = m`` first maps f by an equivariant Linear to m channels
  per irrep (v is pulled back through it). ``None`` = the authors' full TP on f itself.

``zero_init`` zeroes φ's last layer (its final LayerNorm's affine weight and bias when φ ends in one, else the
last Linear) and the gate Linear's bias: then z ≡ 0, ∂z/∂f ≡ 0 and g ≡ 0 at step 0, so the wrapped model
equals its backbone exactly, while the zeroed parameters still receive gradients.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import nn

from hambench.errors import InputError

from . import registry

__all__ = [
    "TraceGradConfig",
    "TraceGradBlock",
    "TraceDecoder",
    "TraceGrad",
    "TraceSlots",
    "normalize_traces",
    "MODES",
]

MODES = ("tracegrad", "trace", "grad", "gate", "tracegate")
_TRACE_MODES = ("tracegrad", "trace", "tracegate")
_GRAD_MODES = ("tracegrad", "grad")
_GATE_MODES = ("gate", "tracegate")


@dataclass
class TraceGradConfig:
    """TraceGrad switches; defaults = the authors' DeepH-E3 kernel (see the module docstring)."""

    mode: Literal["tracegrad", "trace", "grad", "gate", "tracegate"] = "tracegrad"
    channels: int = 1024                     # C: invariants s per edge
    phi_hidden: Optional[int] = None         # width of φ's hidden layers (None = C)
    phi_layers: int = 2                      # (Linear → LayerNorm → SiLU) blocks in φ
    k_z: Optional[int] = None                # dim z (None = K, the number of trace slots)
    decoder_hidden: int = 1024
    decoder_layers: int = 2                  # hidden (Linear → LayerNorm → SiLU) blocks, then a Linear to K
    ln_eps: float = 1e-6
    lam: float = 0.3                         # λ
    trace_loss: Literal["mae", "mse"] = "mae"
    trace_norm: Literal["edge_layernorm", "log1p", "none"] = "edge_layernorm"
    trace_norm_eps: float = 1e-5
    trace_slots: Literal["label", "shell"] = "label"
    grad_impl: Literal["closed", "autograd"] = "closed"
    residual: Literal["plain", "norm_ratio"] = "plain"
    residual_scale: float = 0.2              # only for residual = norm_ratio
    bottleneck: Optional[int] = None         # channels per irrep before the TP (None = full TP on f)
    zero_init: bool = False

    def problem(self) -> str | None:
        """What is wrong with these settings (None: nothing)."""
        if self.mode not in MODES:
            return f"mode {self.mode!r} is not one of {', '.join(MODES)}"
        if not (isinstance(self.lam, (int, float)) and math.isfinite(self.lam) and self.lam >= 0):
            return f"lam (λ, the trace-loss weight) must be a finite number >= 0, got {self.lam}"
        for name in ("channels", "phi_layers", "decoder_hidden", "decoder_layers"):
            if int(getattr(self, name)) < 1:
                return f"{name} must be >= 1, got {getattr(self, name)}"
        for name in ("phi_hidden", "k_z", "bottleneck"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                return f"{name} must be >= 1 or null, got {v}"
        return None

    def __post_init__(self):
        msg = self.problem()
        if msg:  # hambench.config.from_dict turns this into one InputError line naming the config
            raise ValueError(msg)

    def check(self, where: str = "model.tracegrad") -> None:
        msg = self.problem()
        if msg:
            raise InputError(where, msg)

    @property
    def uses_trace(self) -> bool:
        return self.mode in _TRACE_MODES


# --- φ: Linear → LayerNorm → SiLU blocks, with a hand-written vector-Jacobian product --------------------
class _MLP(nn.Module):
    """``n`` blocks of Linear → LayerNorm → SiLU (optionally a bare Linear at the end)."""

    def __init__(self, dims: list[int], eps: float, final_linear: bool = False):
        super().__init__()
        self.lin = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        nblocks = len(self.lin) - (1 if final_linear else 0)
        self.norm = nn.ModuleList(nn.LayerNorm(d, eps=eps) for d in dims[1 : nblocks + 1])
        self.final_linear = final_linear

    def forward(self, x, first_done: bool = False):
        for k, lin in enumerate(self.lin):
            if not (first_done and k == 0):
                x = lin(x)
            if k < len(self.norm):
                x = nn.functional.silu(self.norm[k](x))
        return x

    def forward_and_vjp(self, x, first_done: bool = False):
        """``(y, ∂(Σ y)/∂x)`` per row, by hand (no autograd through this function; differentiable).

        ``first_done``: x is already the first Linear's output, and the gradient returned is w.r.t. it.
        """
        saved = []
        for k, lin in enumerate(self.lin):
            if not (first_done and k == 0):
                x = lin(x)
            if k < len(self.norm):
                ln = self.norm[k]
                mu = x.mean(-1, keepdim=True)
                xc = x - mu
                rstd = torch.rsqrt((xc * xc).mean(-1, keepdim=True) + ln.eps)
                n = xc * rstd
                a = n * ln.weight + ln.bias
                sig = torch.sigmoid(a)
                saved.append((n, rstd, sig, a))
                x = a * sig
            else:
                saved.append(None)
        g = None  # upstream gradient; None means all ones
        for k in range(len(self.lin) - 1, -1, -1):
            if saved[k] is not None:
                n, rstd, sig, a = saved[k]
                dsilu = sig * (1 + a * (1 - sig))
                dn = (dsilu if g is None else g * dsilu) * self.norm[k].weight
                g = rstd * (dn - dn.mean(-1, keepdim=True) - n * (dn * n).mean(-1, keepdim=True))
            elif g is None:
                g = self.lin[k].weight.sum(0).expand(x.shape[:-1] + (self.lin[k].in_features,))
                continue
            if not (first_done and k == 0):
                g = g @ self.lin[k].weight
        return x, g


def _irreps(irreps):
    from e3nn import o3

    return o3.Irreps(irreps)


class TraceGradBlock(nn.Module):
    """The TraceGrad module of one hooked block: ``forward(f) -> (f_out, z)``, f of shape (E, irreps.dim)."""

    def __init__(self, irreps, cfg: TraceGradConfig, k_z: int):
        super().__init__()
        from e3nn import o3

        cfg.check()
        self.cfg = cfg
        self.irreps = _irreps(irreps)
        self.mode = cfg.mode
        C = int(cfg.channels)
        if cfg.bottleneck is not None:
            tp_irreps = o3.Irreps([(int(cfg.bottleneck), ir) for _, ir in self.irreps.simplify()])
            self.down = o3.Linear(self.irreps, tp_irreps, biases=False)
        else:
            tp_irreps = self.irreps
            self.down = None
        self.tp_irreps = tp_irreps
        # the reference CG0(f ⊗ f): e3nn's tensor product (used by the autograd form), fed its weights from the
        # triangular parameters below
        self.tp = o3.FullyConnectedTensorProduct(tp_irreps, tp_irreps, o3.Irreps([(C, (0, 1))]),
                                                 internal_weights=False, shared_weights=True)
        hid = int(cfg.phi_hidden or C)
        self.phi = _MLP([C] + [hid] * (cfg.phi_layers - 1) + [int(k_z)], cfg.ln_eps)
        self.gate = None
        if self.mode in _GATE_MODES:
            self.gate = nn.Linear(int(k_z), self.irreps.num_irreps)
            nn.init.zeros_(self.gate.bias)
            rep = torch.tensor([ir.dim for mul, ir in self.irreps for _ in range(mul)], dtype=torch.long)
            self.register_buffer("_gate_rep", rep, persistent=False)
        if cfg.zero_init:
            nn.init.zeros_(self.phi.norm[-1].weight)
            nn.init.zeros_(self.phi.norm[-1].bias)
        self._build_closed_form_tables()

    # -- weights: one (T, C) matrix per irrep group, T = M(M+1)/2 pairs u <= v ----------------------------
    def _build_closed_form_tables(self):
        """Group the TP's instructions by irrep (l, p): each group's components form one (E, M, 2l+1) tensor.

        f⊗f's Gram matrix G_uv = <f_u, f_v> is symmetric, so only W_uv + W_vu matters: the learnable weights
        are stored folded, one row per pair u <= v (half of e3nn's M² rows, the same functions). They are
        initialised as e3nn initialises its weights (W ~ N(0, 1)): off-diagonal rows N(0, 2), diagonal N(0, 1).
        """
        irr = self.tp_irreps
        C = int(self.cfg.channels)
        groups: dict = {}
        for i, (mul, ir) in enumerate(irr):
            groups.setdefault((ir.l, ir.p), []).append(i)
        sl = irr.slices()
        self._groups = []
        self.tri = nn.ParameterList()
        alphas = {inst.path_weight for inst in self.tp.instructions}
        assert len(alphas) <= 1  # FullyConnectedTensorProduct into one output: one path weight for all paths
        for key, members in groups.items():
            l = key[0]
            offs, M = {}, 0
            for i in members:
                offs[i] = M
                M += irr[i].mul
            cols = torch.cat([torch.arange(sl[i].start, sl[i].stop) for i in members])
            ins = []  # (instruction index, row offset, col offset)
            for n, inst in enumerate(self.tp.instructions):
                if inst.i_in1 in offs:
                    assert inst.i_in2 in offs and inst.connection_mode == "uvw"
                    ins.append((n, offs[inst.i_in1], offs[inst.i_in2]))
            iu = torch.triu_indices(M, M)
            alpha = self.tp.instructions[ins[0][0]].path_weight / math.sqrt(2 * l + 1)
            w = torch.randn(iu.shape[1], C)
            w[iu[0] != iu[1]] *= math.sqrt(2.0)
            self.tri.append(nn.Parameter(w))
            self.register_buffer(f"_cols{len(self._groups)}", cols, persistent=False)
            self.register_buffer(f"_iu{len(self._groups)}", iu, persistent=False)
            self._groups.append(dict(l=l, M=M, ins=ins, alpha=alpha))

    def _group(self, k):
        return self._groups[k], getattr(self, f"_cols{k}"), getattr(self, f"_iu{k}")

    def tp_weight(self):
        """The same weights in e3nn's layout (W_uv = folded weight for u <= v, 0 below the diagonal)."""
        C = int(self.cfg.channels)
        flat = [None] * len(self.tp.instructions)
        for k, tri in enumerate(self.tri):
            grp, _, iu = self._group(k)
            M = grp["M"]
            W = tri.new_zeros(M * M, C).index_copy(0, iu[0] * M + iu[1], tri).reshape(M, M, C)
            for n, r, c in grp["ins"]:
                m1, m2, _ = self.tp.instructions[n].path_shape
                flat[n] = W[r:r + m1, c:c + m2].reshape(-1)
        return torch.cat(flat) if flat else self.tri[0].new_zeros(0)

    def _closed(self, x):
        """s = Σ_groups α·Gram_triu(x) @ W: the tensor product's degree-0 part, by hand."""
        E = x.shape[0]
        s = None
        parts = []
        for k, tri in enumerate(self.tri):
            grp, cols, iu = self._group(k)
            F = x[:, cols].reshape(E, grp["M"], 2 * grp["l"] + 1)
            G = torch.einsum("eum,evm->euv", F, F).reshape(E, -1)[:, iu[0] * grp["M"] + iu[1]]
            sk = grp["alpha"] * (G @ tri)
            s = sk if s is None else s + sk
            parts.append((grp, cols, iu, F, tri, grp["alpha"]))
        if s is None:
            s = x.new_zeros(E, int(self.cfg.channels))
        return s, parts

    @staticmethod
    def _pull_back(parts, g, x):
        """v = ∂(g·s)/∂x: per group v_u = Σ_v (A_uv + A_vu) x_v with A (upper triangle) = g @ (α·W)ᵀ."""
        v = torch.zeros_like(x)
        E = x.shape[0]
        for grp, cols, iu, F, mat, scale in parts:
            M = grp["M"]
            At = g @ mat.t()                                 # (E, T)
            if scale != 1.0:
                At = scale * At
            A = At.new_zeros(E, M * M).index_copy(1, iu[0] * M + iu[1], At).reshape(E, M, M)
            vg = torch.einsum("euv,evm->eum", A + A.transpose(1, 2), F)
            v = v.index_copy(1, cols, vg.reshape(E, -1))
        return v

    # -- forward -----------------------------------------------------------------------------------------
    def invariants(self, f):
        """``(s, z)`` of f (closed form for s; e3nn's TP gives the same, see the tests); s is None at inference."""
        x = self.down(f) if self.down is not None else f
        if not torch.is_grad_enabled() and self.tri:  # inference: φ's first Linear fused into the TP weights
            y1, _ = self._closed_fused(x)
            return None, self.phi(y1, first_done=True)
        s, _ = self._closed(x)
        return s, self.phi(s)

    def _fused_weights(self):
        """Inference only: α·W_g @ W1ᵀ per group (W1 = φ's first Linear, which s only enters through), cached
        while the parameters are unchanged: the first Linear and its transpose cost nothing per edge."""
        W1 = self.phi.lin[0].weight
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in [W1, *self.tri])
        cache = getattr(self, "_fused_cache", None)
        if cache is None or cache[0] != key:
            with torch.no_grad():
                mats = [self._groups[k]["alpha"] * (tri @ W1.t()) for k, tri in enumerate(self.tri)]
            cache = (key, mats)
            self._fused_cache = cache
        return cache[1]

    def _closed_fused(self, x):
        """φ's first Linear output ``W1 s + b1`` and pull-back pieces, from the fused weights."""
        E = x.shape[0]
        y = self.phi.lin[0].bias.expand(E, -1)
        parts = []
        for k, mat in enumerate(self._fused_weights()):
            grp, cols, iu = self._group(k)
            F = x[:, cols].reshape(E, grp["M"], 2 * grp["l"] + 1)
            G = torch.einsum("eum,evm->euv", F, F).reshape(E, -1)[:, iu[0] * grp["M"] + iu[1]]
            y = y + G @ mat
            parts.append((grp, cols, iu, F, mat, 1.0))
        return y, parts

    def _v_closed(self, f):
        x = self.down(f) if self.down is not None else f
        if not torch.is_grad_enabled() and self.tri:  # inference: s enters φ only through its first Linear
            y1, parts = self._closed_fused(x)
            z, g = self.phi.forward_and_vjp(y1, first_done=True)
        else:
            s, parts = self._closed(x)
            z, g = self.phi.forward_and_vjp(s)
        vx = self._pull_back(parts, g, x)
        if self.down is not None:
            vx = self._down_transpose(vx)
        return z, vx

    def _down_transpose(self, vx):
        """Pull a gradient back through the bottleneck: o3.Linear without biases is ``x ↦ x @ M`` with
        ``M = down(I)``, so ``v_f = v_x @ Mᵀ`` (no autograd: works under inference mode; differentiable)."""
        eye = torch.eye(self.irreps.dim, dtype=vx.dtype, device=vx.device)
        return vx @ self.down(eye).t()

    def _v_autograd(self, f):
        training = torch.is_grad_enabled() and self.training and f.requires_grad
        if training:
            fr = f
        else:
            fr = None
        with torch.inference_mode(False), torch.enable_grad():
            if fr is None:
                fr = f.detach().clone().requires_grad_(True)
            x = self.down(fr) if self.down is not None else fr
            z = self.phi(self.tp(x, x, self.tp_weight()))
            (v,) = torch.autograd.grad(z.sum(), fr, create_graph=training)
        if not training:
            z = z.detach()
            v = v.detach()
        return z, v

    def gradient_feature(self, f, impl: str | None = None):
        """``(z, v = ∂(Σz)/∂f)`` by ``impl`` (default ``cfg.grad_impl``)."""
        impl = impl or self.cfg.grad_impl
        return self._v_autograd(f) if impl == "autograd" else self._v_closed(f)

    def forward(self, f):
        if f.dim() != 2 or f.shape[1] != self.irreps.dim:
            raise ValueError(f"TraceGrad block expects features of shape (E, {self.irreps.dim}) for {self.irreps}, "
                             f"got {tuple(f.shape)}")
        if self.mode in _GRAD_MODES:
            z, v = self.gradient_feature(f)
            if self.cfg.residual == "norm_ratio":
                ratio = (f.norm(dim=1, keepdim=True) / (v.norm(dim=1, keepdim=True) + 1e-5)).detach()
                v = self.cfg.residual_scale * ratio * v
            return f + v, z
        _, z = self.invariants(f)
        if self.mode in _GATE_MODES:
            g = self.gate(z).repeat_interleave(self._gate_rep, dim=1)
            return f + g * f, z
        return f, z  # trace: nothing fed back


class TraceDecoder(nn.Module):
    """Invariant decoder: concatenated z of all hooked blocks -> K trace slots, per edge."""

    def __init__(self, n_in: int, K: int, cfg: TraceGradConfig):
        super().__init__()
        dims = [n_in] + [int(cfg.decoder_hidden)] * int(cfg.decoder_layers) + [K]
        self.mlp = _MLP(dims, cfg.ln_eps, final_linear=True)

    def forward(self, z):
        return self.mlp(z)


# --- trace labels ------------------------------------------------------------------------------------------
def _shell_labels(shells) -> list[tuple[int, int]]:
    """(l, n) of each shell: n = index of the shell among the element's shells of the same l (DeepH-E3)."""
    seen: dict[int, int] = {}
    out = []
    for l in shells:
        out.append((int(l), seen.get(int(l), 0)))
        seen[int(l)] = seen.get(int(l), 0) + 1
    return out


class TraceSlots:
    """Where each basic block of each element pair sits among the decoder's K outputs.

    ``how = "label"`` (the authors' layout, DeepH-E3's targets): one slot per shell-pair label
    ``(l_p, n_p, l_q, n_q)`` occurring in any ordered element pair, shared by every pair that has it (the first
    p shell of H and of C share slots). ``how = "shell"``: one slot per shell-index pair (p, q). Either way a
    pair's missing slots are simply not read (masked).
    """

    def __init__(self, species, how: str = "label"):
        species = {int(z): list(sh) for z, sh in dict(species).items()}
        keys: dict = {}
        per_pair: dict = {}
        for zi in sorted(species):
            for zj in sorted(species):
                li, lj = _shell_labels(species[zi]), _shell_labels(species[zj])
                ids = []
                for p, a in enumerate(li):
                    for q, b in enumerate(lj):
                        key = (a, b) if how == "label" else (p, q)
                        ids.append(keys.setdefault(key, len(keys)))
                per_pair[(zi, zj)] = ids
        if how not in ("label", "shell"):
            raise ValueError(f"unknown trace_slots {how!r}")
        self.K = len(keys)
        self.keys = list(keys)
        zmax = max(species)
        start = torch.zeros(zmax + 1, zmax + 1, dtype=torch.long)
        nsh = torch.zeros(zmax + 1, dtype=torch.long)
        flat = []
        for (zi, zj), ids in per_pair.items():
            start[zi, zj] = len(flat)
            flat.extend(ids)
        for z, sh in species.items():
            nsh[z] = len(sh)
        self._start, self._nsh, self._flat = start, nsh, torch.tensor(flat, dtype=torch.long)

    def __call__(self, Z_src, Z_dst):
        """``(edge, slot, nb)`` for the flat trace list of the edges (p-major per edge: the store's T order)."""
        dev = Z_src.device
        zi, zj = Z_src.long(), Z_dst.long()
        nb = self._nsh.to(dev)[zi] * self._nsh.to(dev)[zj]
        E = zi.shape[0]
        edge = torch.repeat_interleave(torch.arange(E, device=dev), nb)
        first = torch.cumsum(nb, 0) - nb
        t = torch.arange(edge.shape[0], device=dev) - first[edge]
        slot = self._flat.to(dev)[self._start.to(dev)[zi, zj][edge] + t]
        return edge, slot, nb


def normalize_traces(T, edge, nb, how: str, eps: float = 1e-5):
    """Trace labels in the decoder's space (see the module docstring)."""
    if how == "none":
        return T
    if how == "log1p":
        return torch.log1p(T)
    if how != "edge_layernorm":
        raise ValueError(f"unknown trace_norm {how!r}")
    E = nb.shape[0]
    n = nb.clamp_min(1).to(T.dtype)
    mean = torch.zeros(E, dtype=T.dtype, device=T.device).index_add_(0, edge, T) / n
    d = T - mean[edge]
    var = torch.zeros(E, dtype=T.dtype, device=T.device).index_add_(0, edge, d * d) / n
    return d * torch.rsqrt(var[edge] + eps)


# --- the wrapper -------------------------------------------------------------------------------------------
class _Hook(nn.Module):
    def __init__(self, block: TraceGradBlock, sink: list):
        super().__init__()
        self.block = block
        self._sink = sink  # plain list shared with the wrapper (not a module)

    def forward(self, f, ctx=None):
        f_out, z = self.block(f)
        self._sink.append((z, ctx))
        return f_out


class TraceGrad(nn.Module):
    """A backbone with TraceGrad on every hooked block.

    The backbone exposes ``edge_feature_irreps`` (one e3nn Irreps per hooked block) and ``edge_hooks`` (set
    here). ``layout`` gives the species (``layout.species``: Z -> shell l's) that fix the trace slots.
    """

    def __init__(self, backbone: nn.Module, layout, cfg: TraceGradConfig):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        self.backbone = backbone
        self.species = {int(z): list(sh) for z, sh in dict(layout.species).items()}
        self.slots = TraceSlots(self.species, cfg.trace_slots)
        self.K = self.slots.K
        self.k_z = int(cfg.k_z or self.K)
        irreps = list(getattr(backbone, "edge_feature_irreps", None) or [])
        if not irreps:
            raise InputError(type(backbone).__name__, "backbone exposes no edge_feature_irreps: it has no TraceGrad hooks")
        self._sink: list = []
        backbone.edge_hooks = nn.ModuleList(_Hook(TraceGradBlock(ir, cfg, self.k_z), self._sink) for ir in irreps)
        self.decoder = TraceDecoder(len(irreps) * self.k_z, self.K, cfg) if cfg.uses_trace else None

    @property
    def inference_needs_grad(self) -> bool:
        """The engine's validation asks this: only the autograd form of v needs gradients (it enables them
        itself anyway, also under ``no_grad``/``inference_mode``)."""
        return self.cfg.grad_impl == "autograd" and self.cfg.mode in _GRAD_MODES

    @property
    def blocks(self) -> list[TraceGradBlock]:
        return [h.block for h in self.backbone.edge_hooks]

    def _edge_map(self, batch, ctx):
        """Index into the hook edges of each batch edge (None: the hook edges are the batch edges)."""
        ei = None if ctx is None else ctx.get("edge_index")
        if ei is None:
            return None
        src, dst = ei
        bs, bd = batch.edge_src, batch.edge_dst
        if src.shape == bs.shape and torch.equal(src, bs) and torch.equal(dst, bd):
            return None
        A = int(batch.Z.shape[0])
        key = src.long() * A + dst.long()
        order = torch.argsort(key)
        want = bs.long() * A + bd.long()
        pos = torch.searchsorted(key[order], want)
        pos = pos.clamp_max(key.shape[0] - 1)
        idx = order[pos]
        if not torch.equal(key[idx], want):
            raise RuntimeError("TraceGrad: the hooked edge features do not cover every edge of the batch")
        if hasattr(batch, "shift") and batch.shift is not None and bool((batch.shift != 0).any()):
            raise RuntimeError("TraceGrad: hook edges differ from the batch edges in a periodic batch")
        return idx

    def forward(self, batch):
        self._sink.clear()
        out = self.backbone(batch)
        zs = list(self._sink)
        self._sink.clear()
        if self.decoder is not None and zs:
            z = torch.cat([zz for zz, _ in zs], dim=1)
            emap = self._edge_map(batch, zs[0][1])
            if emap is not None:
                z = z[emap]
            full = self.decoder(z)  # (E, K)
            edge, slot, _ = self.slots(batch.Z[batch.edge_src], batch.Z[batch.edge_dst])
            T_hat = full.reshape(-1)[edge * self.K + slot]
            out = dict(out)
            out["T_hat"] = T_hat
            if self.cfg.trace_norm == "none":
                out["T"] = T_hat
        return out

    def trace_target(self, batch):
        if getattr(batch, "T", None) is None:
            where = getattr(batch, "ids", None)
            raise InputError(where[0] if where else "batch",
                             f"TraceGrad mode {self.cfg.mode!r} trains on trace labels, but the batch has no T "
                             "(the store lacks blocks/T)")
        edge, _, nb = self.slots(batch.Z[batch.edge_src], batch.Z[batch.edge_dst])
        T = batch.T
        if T.shape[0] != edge.shape[0]:
            raise InputError(batch.ids[0] if getattr(batch, "ids", None) else "batch",
                             f"batch has {T.shape[0]} trace labels, the layout gives {edge.shape[0]}")
        return normalize_traces(T, edge.to(T.device), nb.to(T.device), self.cfg.trace_norm, self.cfg.trace_norm_eps)

    def extra_loss(self, out, batch, loss_H):
        """``(L_H + λ·μ·L_T, logs)``, μ = (L_H/L_T).detach(); modes without the trace loss return L_H."""
        if not self.cfg.uses_trace:
            return loss_H, {}
        target = self.trace_target(batch)
        if "T_hat" not in out:
            raise RuntimeError("TraceGrad: the forward pass produced no trace predictions")
        d = out["T_hat"] - target.to(out["T_hat"].dtype)
        loss_T = d.abs().mean() if self.cfg.trace_loss == "mae" else (d * d).mean()
        mu = (loss_H / loss_T.clamp_min(torch.finfo(loss_T.dtype).tiny)).detach()
        total = loss_H + self.cfg.lam * mu * loss_T
        return total, {"loss_H": float(loss_H.detach()), "loss_T": float(loss_T.detach()), "mu": float(mu)}


# --- registration: one TraceGrad model per backbone that is present -------------------------------------------
def _config_class(backbone_cls, name: str):
    """The backbone's config dataclass plus a ``tracegrad`` section (``model.tracegrad.*`` in a config)."""
    cls = dataclasses.make_dataclass(
        name, [("tracegrad", TraceGradConfig, field(default_factory=TraceGradConfig))], bases=(backbone_cls,))
    cls.__module__ = __name__
    cls.__doc__ = f"{backbone_cls.__name__} fields (the backbone) + ``tracegrad``: :class:`TraceGradConfig`."
    globals()[name] = cls  # picklable by name
    return cls


def _backbone_config(spec, cfg):
    return spec.config_cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(spec.config_cls) if f.init})


def _make_build(backbone_spec):
    def build(cfg, layout):
        """``TraceGrad(backbone(cfg minus tracegrad), layout, cfg.tracegrad)``."""
        cfg.tracegrad.check("model.tracegrad")
        return TraceGrad(backbone_spec.build(_backbone_config(backbone_spec, cfg), layout), layout, cfg.tracegrad)

    build.__module__ = __name__
    return build


BACKBONES = {"deephe3": "DeepH-E3", "qhnet": "QHNet"}


def _register_all() -> None:
    import importlib

    for bb, title in BACKBONES.items():
        try:
            importlib.import_module(f"{__package__}.{bb}")
            spec = registry.get(bb)
        except Exception:  # the backbone module is absent or broken: its own import error is reported by get()
            continue
        cls = _config_class(spec.config_cls, f"TraceGrad{spec.config_cls.__name__}")
        registry.register(registry.ModelSpec(
            name=f"tracegrad-{bb}", config_cls=cls, build=_make_build(spec), kinds=spec.kinds,
            spinful=spec.spinful,
            description=f"{title} + TraceGrad (Yin et al. 2024): trace supervision and gradient-induced features; "
                        "ablations by model.tracegrad.mode = trace | grad | gate | tracegate"))


_register_all()

"""The TraceGrad module of one hooked block of a backbone (:class:`TraceGradBlock`) and its settings
(:class:`TraceGradConfig`); the wrapper, the trace decoder and the loss are in :mod:`hambench.models.tracegrad`.

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

v's scale (issue 32). φ's LayerNorm after its first Linear makes z (nearly) invariant to the size of f, so the
plain v = ∂z/∂f scales as 1/|f|: small features get a large v and swamp f. Three switches of this one module
(measured by ``tests/test_tracegrad.py::test_v_scale_of_each_variant``, f scaled by 0.1 / 1 / 10):

* ``zero_init``: φ's last affine zeroed, v ≡ 0 at step 0 (the model starts as its backbone); once its
  parameters move, the plain 1/|f| behaviour;
* ``residual = "norm_ratio"`` (NextHAM ``nets/nextham.py``): ``f + 0.2·(‖f‖/(‖v‖+1e-5)).detach()·v`` per edge,
  so ‖v‖ fed back = 0.2‖f‖ whatever φ learns (only v's direction is learnt);
* ``scale_aware``: φ reads f/σ (σ = per-edge RMS of f, detached: an invariant carried apart) and the feature
  fed back is ``v = σ·∂z/∂(f/σ)``, so v(a·f) = a·v(f) exactly; still an equivariant (σ is invariant) and, since
  s is quadratic, v is the plain closed-form pull-back at f of the gradient w.r.t. s/σ² (no extra pass).

``clip`` (``joint`` | ``separate`` | ``none``): how ``train.clip_grad_norm`` treats TraceGrad's parameters
(:meth:`hambench.models.tracegrad.TraceGrad.param_groups_for_clipping`, read by the engine).

Cost (``benchmarks/bench_tracegrad.py``, results in ``benchmarks/results/bench_tracegrad.txt``): per hooked
block and edge the closed form does about 2·T·C + 2·C·H multiply-adds (T = Σ M(M+1)/2 over the irreps of f,
2816 for DeepH-E3's ``64x0e+32x1o+16x2e+8x3o+8x4e``; H = φ's width); at inference φ's first Linear is fused
into the TP weights (α·W @ W1ᵀ, cached until a parameter changes), leaving ≈ 2·T·H. On a CPU this dense work is
not hidden behind the backbone's many small tensor-product kernels as on the paper's GPU (+6.4–7.5 %).
Measured (issue 32, one CPU thread, paper configs, 10 QM9 molecules; a loaded machine, ±5–10 %): inference
+32 % over DeepH-E3 at C = 1024, +11 % at 128, +8 % at 64; over QHNet (bottleneck 32) +14 % at 1024, +2 % at
256 — hence the configs' C = 128 / 256. At batch 1 a fixed ~10 % remains on DeepH-E3 whatever C (the per-group
small ops); the per-edge work avoids gathers and scatters: group slices of f, ``index_select``, A + Aᵀ by one
gather (or, for φ up to ``_SYM_MM_MAX`` wide, one product with the weights gathered once), v by one ``cat``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from e3nn import o3
from torch import nn

from hambench.errors import InputError

__all__ = ["MODES", "TraceGradConfig", "TraceGradBlock"]

MODES = ("tracegrad", "trace", "grad", "gate", "tracegate")
_TRACE_MODES = ("tracegrad", "trace", "tracegate")
_GRAD_MODES = ("tracegrad", "grad")
_GATE_MODES = ("gate", "tracegate")
#: up to this width of φ's input the pull-back builds A + Aᵀ with one (E, H) @ (H, M²) product from weights
#: gathered once; above it with (E, H) @ (H, T) and a gather of the E·M² products (measured crossover ~130 on CPU)
_SYM_MM_MAX = 128


@dataclass
class TraceGradConfig:
    """TraceGrad switches; defaults = the authors' DeepH-E3 kernel (the choices: :mod:`hambench.models.tracegrad`)."""

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
    scale_aware: bool = False                # φ reads f/σ (σ = per-edge RMS of f, detached), v multiplied by σ
    clip: Literal["joint", "separate", "none"] = "joint"  # TraceGrad parameters' gradient clipping

    def problem(self) -> str | None:
        """What is wrong with these settings (None: nothing)."""
        if self.mode not in MODES:
            return f"mode {self.mode!r} is not one of {', '.join(MODES)}"
        if not (isinstance(self.lam, (int, float)) and math.isfinite(self.lam) and self.lam >= 0):
            return f"lam (λ, the trace-loss weight) must be a finite number >= 0, got {self.lam}"
        for name in ("channels", "phi_layers", "decoder_hidden", "decoder_layers"):
            if int(getattr(self, name)) < 1:
                return f"{name} must be >= 1, got {getattr(self, name)}"
        if self.residual not in ("plain", "norm_ratio"):
            return f"residual must be plain or norm_ratio, got {self.residual!r}"
        if self.clip not in ("joint", "separate", "none"):
            return f"clip must be joint, separate or none, got {self.clip!r}"
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


class TraceGradBlock(nn.Module):
    """The TraceGrad module of one hooked block: ``forward(f) -> (f_out, z)``, f of shape (E, irreps.dim)."""

    def __init__(self, irreps, cfg: TraceGradConfig, k_z: int):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        self.irreps = o3.Irreps(irreps)
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
            k = len(self._groups)
            self.register_buffer(f"_cols{k}", cols, persistent=False)
            self.register_buffer(f"_iu{k}", iu, persistent=False)
            self.register_buffer(f"_triflat{k}", iu[0] * M + iu[1], persistent=False)
            # the pull-back's symmetric A + Aᵀ by one gather: entry (u, v) reads the folded row of (min, max),
            # the diagonal rows doubled first (``_dfac``)
            pos = torch.full((M, M), -1, dtype=torch.long)
            pos[iu[0], iu[1]] = torch.arange(iu.shape[1])
            pos = torch.maximum(pos, pos.t())
            self.register_buffer(f"_sym{k}", pos.reshape(-1), persistent=False)
            self.register_buffer(f"_dfac{k}", 1.0 + (iu[0] == iu[1]).to(torch.get_default_dtype()), persistent=False)
            c0 = int(cols[0])
            contiguous = bool(torch.equal(cols, torch.arange(c0, c0 + cols.numel())))
            self._groups.append(dict(l=l, M=M, ins=ins, alpha=alpha,
                                     sl=slice(c0, c0 + cols.numel()) if contiguous else None))
        # the groups tile f in order (each (l, p) once, as after Irreps.simplify): slices and one cat, no scatter
        at = 0
        self._tiled = True
        for g in self._groups:
            if g["sl"] is None or g["sl"].start != at:
                self._tiled = False
                break
            at = g["sl"].stop
        self._tiled = self._tiled and at == irr.dim

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

    def _inv_scale2(self, f):
        """``1/σ²`` per edge (E, 1) when ``scale_aware`` (σ² = mean of f² over its components, detached: an
        invariant carried apart from φ; floored at eps² of the dtype only so that a zero f gives 0, not NaN —
        above the floor v(a·f) = a·v(f) exactly), else None."""
        if not self.cfg.scale_aware:
            return None
        return torch.reciprocal(f.detach().pow(2).mean(1, keepdim=True).clamp_min(torch.finfo(f.dtype).eps ** 2))

    def _closed(self, x):
        """s = Σ_groups α·Gram_triu(x) @ W: the tensor product's degree-0 part, by hand."""
        E = x.shape[0]
        s = None
        parts = []
        for k, tri in enumerate(self.tri):
            grp, cols, iu = self._group(k)
            F = self._take(x, grp, cols)
            G = torch.bmm(F, F.transpose(1, 2)).reshape(E, -1).index_select(1, getattr(self, f"_triflat{k}"))
            sk = grp["alpha"] * (G @ tri)
            s = sk if s is None else s + sk
            parts.append((k, F, tri, grp["alpha"]))
        if s is None:
            s = x.new_zeros(E, int(self.cfg.channels))
        return s, parts

    @staticmethod
    def _take(x, grp, cols):
        """Group ``grp``'s components of x as (E, M, 2l+1): a view when they are contiguous."""
        sl = grp["sl"]
        return (x[:, sl] if sl is not None else x.index_select(1, cols)).reshape(x.shape[0], grp["M"], 2 * grp["l"] + 1)

    def _pull_back(self, parts, g, x):
        """v = ∂(g·s)/∂x: per group v_u = Σ_v (A_uv + A_vu) x_v with A (upper triangle) = g @ (α·W)ᵀ."""
        E = x.shape[0]
        pieces = []
        v = None if self._tiled else torch.zeros_like(x)
        for k, F, mat, scale in parts:
            grp = self._groups[k]
            M = grp["M"]
            dfac = getattr(self, f"_dfac{k}").to(g.dtype)
            dfac = dfac if scale == 1.0 else scale * dfac
            sym = getattr(self, f"_sym{k}")
            if mat.shape[1] <= _SYM_MM_MAX:  # narrow φ: gather the weights (once), not E·M² products
                B = g @ (mat * dfac[:, None]).index_select(0, sym).t()
            else:
                B = (g @ mat.t() * dfac).index_select(1, sym)
            B = B.reshape(E, M, M)  # A + Aᵀ
            vg = torch.bmm(B, F).reshape(E, -1)
            if v is None:
                pieces.append(vg)
            else:
                v = v.index_copy(1, getattr(self, f"_cols{k}"), vg)
        return torch.cat(pieces, dim=1) if v is None else v

    # -- forward -----------------------------------------------------------------------------------------
    def invariants(self, f):
        """``(s, z)`` of f (closed form for s; e3nn's TP gives the same, see the tests); s is None at inference.

        With ``scale_aware`` s is that of f/σ: z does not depend on f's per-edge scale."""
        x = self.down(f) if self.down is not None else f
        inv2 = self._inv_scale2(f)
        if not torch.is_grad_enabled() and self.tri:  # inference: φ's first Linear fused into the TP weights
            y1, _ = self._closed_fused(x, inv2)
            return None, self.phi(y1, first_done=True)
        s, _ = self._closed(x)
        if inv2 is not None:
            s = s * inv2
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

    def _closed_fused(self, x, inv2=None):
        """φ's first Linear output ``W1 s + b1`` and pull-back pieces, from the fused weights (s of x/σ when
        ``inv2`` = 1/σ² is given)."""
        E = x.shape[0]
        y = None
        parts = []
        for k, mat in enumerate(self._fused_weights()):
            grp, cols, iu = self._group(k)
            F = self._take(x, grp, cols)
            G = torch.bmm(F, F.transpose(1, 2)).reshape(E, -1).index_select(1, getattr(self, f"_triflat{k}"))
            y = G @ mat if y is None else y + G @ mat
            parts.append((k, F, mat, 1.0))
        if y is None:
            y = x.new_zeros(E, self.phi.lin[0].out_features)
        if inv2 is not None:
            y = y * inv2
        return y + self.phi.lin[0].bias, parts

    def _v_closed(self, f):
        """``(z, v)`` in closed form. With ``scale_aware``: s of x/σ, and v = σ·∂z/∂(f/σ), which is the
        pull-back of g at x itself (the pull-back is linear in x: the 1/σ of x/σ and the σ cancel)."""
        x = self.down(f) if self.down is not None else f
        inv2 = self._inv_scale2(f)
        if not torch.is_grad_enabled() and self.tri:  # inference: s enters φ only through its first Linear
            y1, parts = self._closed_fused(x, inv2)
            z, g = self.phi.forward_and_vjp(y1, first_done=True)
        else:
            s, parts = self._closed(x)
            z, g = self.phi.forward_and_vjp(s if inv2 is None else s * inv2)
        vx = self._pull_back(parts, g, x)
        if self.down is not None:
            vx = self._down_transpose(vx)
        return z, vx

    def _down_transpose(self, vx):
        """Pull a gradient back through the bottleneck ``x = down(f)`` (an o3.Linear without biases): per path
        ``x_w = α Σ_u W_uw f_u`` (each of the 2l+1 components alike), so ``v_f,u = α Σ_w W_uw v_x,w``, read from
        the Linear's own weight and instructions: no identity pushed through it, no cache to invalidate, works
        under inference mode, differentiable (tested against ``down(I)ᵀ`` and autograd)."""
        lin = self.down
        E = vx.shape[0]
        out = vx.new_zeros(E, self.irreps.dim)
        s_in, s_out = lin.irreps_in.slices(), lin.irreps_out.slices()
        off = 0
        for ins in lin.instructions:
            n_in, n_out = ins.path_shape
            W = lin.weight[off:off + n_in * n_out].reshape(n_in, n_out)
            off += n_in * n_out
            d = lin.irreps_in[ins.i_in].ir.dim
            vo = vx[:, s_out[ins.i_out]].reshape(E, n_out, d)
            vi = torch.einsum("ewm,uw->eum", vo, W.to(vx.dtype))
            if ins.path_weight != 1.0:
                vi = ins.path_weight * vi
            sl = s_in[ins.i_in]
            out = out.index_add(1, torch.arange(sl.start, sl.stop, device=vx.device), vi.reshape(E, -1))
        return out

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
            inv2 = self._inv_scale2(fr)
            if inv2 is not None:  # z of x/σ (σ held fixed); v = σ·∂z/∂(f/σ) = σ²·∂z/∂f
                x = x * inv2.sqrt()
            z = self.phi(self.tp(x, x, self.tp_weight()))
            (v,) = torch.autograd.grad(z.sum(), fr, create_graph=training)
            if inv2 is not None:
                v = v / inv2
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

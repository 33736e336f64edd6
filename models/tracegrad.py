"""TraceGrad (Yin et al., arXiv 2405.05722): invariant trace supervision and gradient-induced equivariant
features, as one module that wraps a backbone (DeepH-E3, QHNet) through its edge hooks.

Each hooked block gets a :class:`TraceGradBlock` (:mod:`hambench.models._tracegrad_block`: the invariants
s = CG0(f ⊗ f), z = φ(s) and the feature fed back by ``mode``, its closed form and its cost).

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
a switch). ``forward`` returns the backbone's dict plus, in training mode (or with ``traces=True``), ``"T_hat"``
(the decoder's output in the normalised space, aligned with ``batch.T_ptr``) and, only when
``trace_norm == "none"``, ``"T"`` (eV², the same); outside training the decoder is not run.

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

**v's scale: the default (issue 32).** The plain v = ∂z/∂f has no scale of its own (|v| ∝ 1/|f|, see
:mod:`hambench.models._tracegrad_block`); three switches of the one module fix it: ``zero_init``,
``residual = norm_ratio`` (NextHAM) and ``scale_aware``. The shipped configs (models/configs/tracegrad-*.yaml)
turn on ``zero_init`` and leave the other two off; the dataclass defaults stay the authors' kernel (all off).
Why: the measured comparison (``benchmarks/bench_tracegrad_variants.py``, ``benchmarks/results/
bench_tracegrad_variants.md``: tiny qhnet on 300 PySCF water conformers, 300 steps, 3 seeds, H MAE on the test
split, paired against qhnet of the same seed) gives zero_init −576 meV (−29 %, better on 3/3 seeds, 95 % interval
[−1864, +711]), norm_ratio +374 meV (+38 %, 1/3, [−3074, +3822]) and scale_aware +1138 meV (+70 %, 0/3,
[−1053, +3329]); norm_ratio and scale_aware each had a validation spike (×4.7 and ×2.6 between two
validations), zero_init on no seed. Every interval contains 0 and every run was still in its first descent at
300 steps (validation MAE 1–4 eV, falling; the shared CPU allowed no longer runs), so the evidence is
**inconclusive**: it only points the same way as the earlier small-data runs of issue 32 (zero_init the one
variant better than qhnet on 3 of 3 seeds, |v|/|f| staying 0.02 where plain reached 7.7). By the rule for inconclusive evidence the default is the
most conservative stable choice, ``zero_init``: the only one under which the model *is* its backbone at step 0
(exactly, tested), so it departs from the backbone only as far as training takes it.
``norm_ratio`` feeds back 0.2·|f| in a random direction from step 0; ``scale_aware`` removes the 1/|f| law but
not φ's own size — both remain switches (they compose with ``zero_init``).

``clip`` (``joint`` default = QH9's one global norm | ``separate`` | ``none`` = the authors' DeepH-E3 kernel,
which clips nothing): see :meth:`TraceGrad.param_groups_for_clipping`.

Outside training the trace decoder is not run (T̂ only enters the loss): predicting costs the backbone plus the
hooked blocks (``benchmarks/results/bench_tracegrad.txt``).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import field

import torch
from torch import nn

from hambench.errors import InputError

from . import registry
from ._tracegrad_block import _GRAD_MODES, _MLP, _TRACE_MODES, MODES, TraceGradBlock, TraceGradConfig  # noqa: F401

__all__ = [
    "TraceGradConfig",
    "TraceGradBlock",
    "TraceDecoder",
    "TraceGrad",
    "TraceSlots",
    "normalize_traces",
    "MODES",
]


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

    def param_groups_for_clipping(self) -> list[list[nn.Parameter]]:
        """How the engine clips gradients (``train.clip_grad_norm``), by ``clip``: ``joint`` one group (one global
        norm, as QH9 clips QHNet), ``separate`` the backbone's and TraceGrad's parameters (hooks and decoder)
        each to the threshold on its own, ``none`` the backbone's only (TraceGrad's unclipped, as the authors'
        DeepH-E3 kernel, which clips nothing)."""
        tg = list(self.backbone.edge_hooks.parameters())
        if self.decoder is not None:
            tg += list(self.decoder.parameters())
        ids = {id(p) for p in tg}
        bb = [p for p in self.parameters() if id(p) not in ids]
        if self.cfg.clip == "joint":
            return [bb + tg]
        return [bb, tg] if self.cfg.clip == "separate" else [bb]

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

    def forward(self, batch, traces: bool | None = None):
        """The backbone's outputs, plus ``T_hat`` when ``traces`` (default: only in training mode, the one place
        T̂ is used, by the loss: the decoder is skipped when predicting or validating)."""
        self._sink.clear()
        out = self.backbone(batch)
        zs = list(self._sink)
        self._sink.clear()
        if traces is None:
            traces = self.training
        if self.decoder is not None and zs and traces:
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

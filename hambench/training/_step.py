"""One optimisation step and one evaluation pass: loss terms, forward + backward, gradient norm and clipping.

Losses (:class:`~hambench.training.TrainConfig` ``loss``): ``mse`` (DeepH-E3's masked MSE: mean of |ΔH|² over
every matrix element of the batch, complex targets by |Δ|²) or ``mse+mae`` (QHNet's: per-structure mean of |Δ|²
plus per-structure mean of |Δ|, averaged over structures); ``reduction`` chooses element- or
structure-normalised means. ``loss_unit`` is the energy unit ΔH is expressed in inside the loss: ``eV`` (the
store's, DeepH-E3's recipe) or ``Ha`` (QH9 trains QHNet in Hartree: ΔH / 27.211386245988 eV). Only the loss and
its gradients change; the sums ``sq``/``abs`` and every MSE/MAE reported stay in eV. A model with ``extra_loss(out, batch, loss_H) -> (total, {name: float})`` adds its
own terms (TraceGrad); it receives ``loss_H`` in the loss unit, so whatever it scales by ``loss_H`` (TraceGrad's
μ = L_H/L_T) follows the unit too.
"""

from __future__ import annotations

import torch

from hambench.basis._conventions import HARTREE_EV

from ._config import TrainConfig
from ._ddp import Comm

__all__ = ["torch_dtype", "loss_scale", "loss_terms", "backward", "grad_norm", "evaluate", "batch_structures"]


def torch_dtype(name: str) -> torch.dtype:
    """``torch.float32`` or ``torch.float64`` for the config's ``dtype`` name."""
    return {"float32": torch.float32, "float64": torch.float64}[name]


def loss_scale(cfg: TrainConfig) -> float:
    """The factor from eV (the store's unit) to the loss unit: 1 for ``eV``, 1/27.211386245988 for ``Ha``."""
    return 1.0 / HARTREE_EV if cfg.loss_unit == "Ha" else 1.0


def batch_structures(batch) -> int:
    """Number of structures in ``batch``."""
    return int(batch.natoms.shape[0])


def _element_structure(batch, n_el: int) -> torch.Tensor:
    """(n_el,) structure index (0..B-1) of every flat H element of the batch."""
    sizes = batch.H_ptr[1:] - batch.H_ptr[:-1]
    edge_of = torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), sizes, output_size=n_el)
    return batch.edge_batch[edge_of]


def loss_terms(pred, batch, cfg: TrainConfig) -> dict:
    """Loss numerator and its normaliser for ``pred`` vs ``batch.H`` (flat, aligned; complex by |Δ|², |Δ|).

    Returns ``num`` (a differentiable 0-d tensor, Δ in ``cfg.loss_unit``), ``den`` (float: elements for
    ``reduction='element'``, structures for ``'structure'``), and the plain sums in eV ``sq`` = Σ|Δ|²,
    ``abs`` = Σ|Δ|, ``n`` = elements. The loss is ``num / den``; under DDP the engine divides by the global ``den``.
    """
    target = batch.H
    if pred.shape != target.shape:
        raise ValueError(f"model output H has shape {tuple(pred.shape)}, the target {tuple(target.shape)}")
    d_ev = pred - target
    scale = loss_scale(cfg)
    d = d_ev * scale if scale != 1.0 else d_ev  # (n,) in the loss unit
    sq = torch.view_as_real(d).pow(2).sum(-1) if d.is_complex() else d.pow(2)  # (n,)
    ab = d.abs() if cfg.loss == "mse+mae" else None
    n = int(sq.numel())
    if cfg.reduction == "element":
        num = sq.sum() if ab is None else sq.sum() + ab.sum()
        den = float(max(n, 1))
    else:
        B = batch_structures(batch)
        s_of = _element_structure(batch, n)
        cnt = torch.zeros(B, dtype=sq.dtype, device=sq.device).index_add_(0, s_of, torch.ones_like(sq))
        per = torch.zeros(B, dtype=sq.dtype, device=sq.device).index_add_(0, s_of, sq)  # (B,)
        if ab is not None:
            per = per + torch.zeros(B, dtype=sq.dtype, device=sq.device).index_add_(0, s_of, ab)
        num = (per / cnt.clamp_min(1)).sum()
        den = float(B)
    with torch.no_grad():
        if scale == 1.0:
            sq_ev, abs_ev = sq.detach(), (ab if ab is not None else d.abs())
        else:  # the reported sums in eV, from ΔH in eV (not the scaled values scaled back)
            sq_ev = torch.view_as_real(d_ev).pow(2).sum(-1) if d_ev.is_complex() else d_ev.pow(2)
            abs_ev = d_ev.abs()
        sq_sum, abs_sum = float(sq_ev.sum()), float(abs_ev.sum())
    return {"num": num, "den": den, "sq": sq_sum, "abs": abs_sum, "n": n}


def _forward_loss(net, model, batch, cfg: TrainConfig, comm: Comm):
    """Forward + loss (normalised by the global count). Returns (loss tensor, stats dict)."""
    out = net(batch)
    t = loss_terms(out["H"], batch, cfg)
    (den,) = comm.allreduce([t["den"]])
    loss_H = t["num"] * (comm.world / den)
    extras = {}
    if hasattr(model, "extra_loss"):
        loss, extras = model.extra_loss(out, batch, loss_H)
    else:
        loss = loss_H
    return loss, {"sq": t["sq"], "abs": t["abs"], "n": t["n"], "num": float(t["num"].detach()),
                  "den": t["den"], "extras": extras}


def backward(net, model, optimizer, batch, cfg: TrainConfig, comm: Comm, device, dtype):
    """Forward, loss and backward for one batch (gradients left in ``.grad``); returns (loss, stats).

    ``net`` is what runs the forward (``model`` or its DDP wrapper), ``model`` the module itself (its
    ``extra_loss``); the batch is moved to ``device`` and ``dtype`` first.
    """
    net.train()
    batch = batch.to(device, dtype)
    optimizer.zero_grad(set_to_none=True)
    loss, stats = _forward_loss(net, model, batch, cfg, comm)
    loss.backward()
    return loss, stats


def grad_norm(model, clip: float | None) -> float:
    """The global 2-norm of the gradients of ``model`` (clipped to ``clip`` first when given; the norm returned
    is the one before clipping, as ``clip_grad_norm_`` reports it). A model with ``param_groups_for_clipping()``
    (a list of parameter lists) has each list clipped apart and the parameters in none of them left unclipped."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    groups = getattr(model, "param_groups_for_clipping", None)
    if clip is not None and groups is None:
        return float(torch.nn.utils.clip_grad_norm_(params, clip))
    total = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])))
    if clip is not None:  # the model's hook: each group clipped to ``clip`` on its own, the rest not at all
        for group in groups():
            group = [p for p in group if p.grad is not None]
            if group:
                torch.nn.utils.clip_grad_norm_(group, clip)
    return total


def evaluate(model, loader, cfg: TrainConfig, comm: Comm, device, dtype) -> dict:
    """Loss (in ``cfg.loss_unit``), MSE (eV²) and MAE (eV) of ``model`` over ``loader``, summed over ranks:
    {loss, mse, mae, n}."""
    model.eval()
    num = den = sq = ab = n = 0.0
    with torch.set_grad_enabled(bool(getattr(model, "inference_needs_grad", False))):
        for batch in loader:
            batch = batch.to(device, dtype)
            t = loss_terms(model(batch)["H"], batch, cfg)
            num += float(t["num"].detach())
            den += t["den"]
            sq += t["sq"]
            ab += t["abs"]
            n += t["n"]
    num, den, sq, ab, n = comm.allreduce([num, den, sq, ab, n])
    return {"loss": num / max(den, 1e-300), "mse": sq / max(n, 1), "mae": ab / max(n, 1), "n": int(n)}

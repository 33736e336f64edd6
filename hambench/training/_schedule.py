"""The optimiser and the learning-rate schedule of a run.

Optimisers ``adam`` / ``adamw`` (betas, weight decay). Schedules (:class:`Schedule`):

* ``plateau`` (DeepH-E3): ReduceLROnPlateau on the exponentially smoothed validation loss; a validation loss
  above ``revert_threshold`` × best for ``revert_patience`` validations in a row asks the loop to revert to
  the best state (the loop then decays the lr by ``revert_decay``); the loop stops when the lr falls below
  ``min_lr``;
* ``warmup_linear`` (QHNet): linear warm-up over ``warmup_steps``, then linear decay to ``lr_end`` at
  ``decay_steps`` (default: the run's last step);
* ``constant``.
"""

from __future__ import annotations

import math

import torch

from ._config import TrainConfig

__all__ = ["Schedule", "make_optimizer", "decay_total"]


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over ``params`` with the config's lr, betas and weight decay."""
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def decay_total(cfg: TrainConfig, steps_per_epoch: int | None) -> int | None:
    """The step at which ``warmup_linear`` reaches ``lr_end``: ``decay_steps``, else ``max_steps``, else every
    epoch's steps (None when the loader has no length)."""
    if cfg.decay_steps is not None or cfg.scheduler != "warmup_linear":
        return cfg.decay_steps
    if cfg.max_steps is not None:
        return cfg.max_steps
    return None if steps_per_epoch is None else cfg.max_epochs * steps_per_epoch


class Schedule:
    """The lr schedule of a run, with a ``state_dict`` for bit-identical resumes.

    Parameters
    ----------
    optimizer : the run's optimiser (its param groups' ``lr`` is what the schedule sets)
    cfg : :class:`~hambench.training.TrainConfig`
    total_steps : the step where ``warmup_linear`` ends its decay (:func:`decay_total`)
    """

    def __init__(self, optimizer, cfg: TrainConfig, total_steps: int | None):
        self.cfg, self.opt = cfg, optimizer
        self.smoothed: float | None = None
        self.bad = 0  # consecutive validations above revert_threshold × best
        self.total = total_steps
        self.plateau = None
        if cfg.scheduler == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
                threshold=cfg.plateau_threshold, threshold_mode="rel", cooldown=cfg.plateau_cooldown, min_lr=0.0,
            )
        if cfg.scheduler == "warmup_linear":
            self.set_step(0)

    # per optimiser step (warmup_linear)
    def lr_at(self, step: int) -> float:
        """The lr of optimiser step ``step`` (``warmup_linear``; the current lr otherwise)."""
        c = self.cfg
        if c.scheduler != "warmup_linear":
            return self.opt.param_groups[0]["lr"]
        if step < c.warmup_steps:
            return c.lr * step / max(1, c.warmup_steps)
        total = self.total if self.total is not None else step + 1
        if step >= total:
            return c.lr_end
        frac = (step - c.warmup_steps) / max(1, total - c.warmup_steps)
        return c.lr - (c.lr - c.lr_end) * frac

    def set_step(self, step: int) -> None:
        """Set the lr of every param group for step ``step`` (``warmup_linear`` only)."""
        if self.cfg.scheduler == "warmup_linear":
            for g in self.opt.param_groups:
                g["lr"] = self.lr_at(step)

    # per validation (plateau / revert)
    def validation(self, val: float, best: float) -> str | None:
        """Feed one validation loss; returns ``"revert"`` when the run should go back to its best state."""
        c = self.cfg
        if c.scheduler != "plateau":
            return None
        a = c.plateau_smoothing
        self.smoothed = val if self.smoothed is None else a * val + (1 - a) * self.smoothed
        if c.revert_patience > 0 and math.isfinite(best) and val > c.revert_threshold * best:
            self.bad += 1
            if self.bad >= c.revert_patience:
                self.bad = 0
                return "revert"
        else:
            self.bad = 0
        self.plateau.step(self.smoothed)
        return None

    def state_dict(self) -> dict:
        return {"smoothed": self.smoothed, "bad": self.bad, "total": self.total,
                "plateau": self.plateau.state_dict() if self.plateau is not None else None}

    def load_state_dict(self, d: dict) -> None:
        self.smoothed, self.bad, self.total = d["smoothed"], d["bad"], d["total"]
        if self.plateau is not None and d.get("plateau") is not None:
            self.plateau.load_state_dict(d["plateau"])

"""The settings of a training run: :class:`TrainConfig` (one dataclass, checked once on construction)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

__all__ = ["TrainConfig", "RESUME_MAY_CHANGE"]

#: TrainConfig fields a ``--resume`` may change (stopping points and logging only; anything else → InputError)
RESUME_MAY_CHANGE = ("max_epochs", "max_steps", "num_workers", "log_every")


@dataclass
class TrainConfig:
    """Settings of the engine; the defaults are DeepH-E3's recipe (``models/configs/*.yaml`` set QHNet's)."""

    # optimiser
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    # scheduler
    scheduler: Literal["plateau", "warmup_linear", "constant"] = "plateau"
    plateau_factor: float = 0.5  # ReduceLROnPlateau on the smoothed val loss (DeepH-E3 scheduler_type 1)
    plateau_patience: int = 120
    plateau_cooldown: int = 40
    plateau_threshold: float = 0.05  # relative
    plateau_smoothing: float = 0.1  # α of s ← α·val + (1 − α)·s
    revert_threshold: float = 2.0  # revert when val > threshold × best ...
    revert_patience: int = 20  # ... for this many validations in a row (0 = never revert)
    revert_decay: float = 0.8  # lr multiplier after a revert
    min_lr: float = 3e-5  # plateau: stop when the lr falls below
    warmup_steps: int = 1000  # warmup_linear (QHNet): 0 → lr linearly over warmup_steps ...
    decay_steps: Optional[int] = None  # ... then linearly to lr_end at this step (None: max_steps / all epochs)
    lr_end: float = 1e-7
    # loss
    loss: Literal["mse", "mse+mae"] = "mse"
    loss_unit: Literal["eV", "Ha"] = "eV"  # energy unit of ΔH inside the loss (the store, logs and scores: eV)
    reduction: Literal["element", "structure"] = "element"  # mean over all elements, or per structure first
    monitor: Literal["loss", "mae"] = "loss"  # validation metric that picks best.pt and drives early stop
    # loop
    batch_size: int = 1
    max_epochs: int = 3000
    max_steps: Optional[int] = None
    val_interval: Optional[int] = None  # validate every N steps instead of each epoch
    early_stop_patience: Optional[int] = None  # validations without improvement of `monitor`
    clip_grad_norm: Optional[float] = None
    # data
    split: Optional[str] = None  # named split of the store: trains on NAME:train, validates on NAME:val
    val_fraction: float = 0.33  # without a split: DeepH-E3's random 0.67 / 0.33 (seeded); 0 → validate on train
    augment_rotations: bool = False
    num_workers: int = 0
    # reproducibility and numerics
    seed: int = 42
    dtype: Literal["float32", "float64"] = "float32"
    # logging
    log_every: int = 10  # steps between metrics.jsonl train lines
    ddp_find_unused: bool = True  # DDP: tolerate parameters that get no gradient (e.g. QHNet's unused modules)

    def __post_init__(self):
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_epochs < 1 or (self.max_steps is not None and self.max_steps < 1):
            raise ValueError(f"max_epochs and max_steps must be >= 1 (a run of no steps trains nothing), got "
                             f"max_epochs {self.max_epochs}, max_steps {self.max_steps}")
        if not 0.0 < self.plateau_smoothing <= 1.0:
            raise ValueError(f"plateau_smoothing must be in (0, 1], got {self.plateau_smoothing}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_interval is not None and self.val_interval < 1:
            raise ValueError("val_interval must be >= 1")
        self._check_ranges()

    def _check_ranges(self) -> None:
        """The other numbers a run cannot use (refused here, before a run folder exists, rather than by torch
        deep inside the run)."""
        at_least = {"num_workers": 0, "log_every": 1, "warmup_steps": 0, "decay_steps": 1, "plateau_patience": 0,
                    "plateau_cooldown": 0, "revert_patience": 0, "early_stop_patience": 0}
        for name, low in at_least.items():
            value = getattr(self, name)
            if value is not None and value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        for name in ("weight_decay", "min_lr", "lr_end", "plateau_threshold"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.clip_grad_norm is not None and not (math.isfinite(self.clip_grad_norm) and self.clip_grad_norm > 0):
            raise ValueError(f"clip_grad_norm must be positive (or null: no clipping), got {self.clip_grad_norm}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must each be in [0, 1), got {list(self.betas)}")
        for name in ("plateau_factor", "revert_decay"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {value}")
        if not (math.isfinite(self.revert_threshold) and self.revert_threshold > 1.0):
            raise ValueError(f"revert_threshold must be a number > 1, got {self.revert_threshold}")

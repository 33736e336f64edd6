"""The one training engine every model of the zoo uses: loop, losses, optimisers, schedulers, checkpoints, DDP.

The engine is core: it gets a model object (any ``torch.nn.Module`` whose ``forward(batch)`` returns a dict with
at least ``"H"``, the flat predicted blocks aligned with ``batch.H_ptr``) and loaders of
:class:`hambench.training._data.Batch` es; it never imports a model or reads a file other than its own checkpoints.
Building the model, resolving configs and opening stores is ``hambench.models.run``'s job.

What it does (:class:`Trainer`):

* losses from :class:`TrainConfig`: ``mse`` (DeepH-E3's masked MSE: mean of |ΔH|² over every matrix element of
  the batch, complex targets by |Δ|²) or ``mse+mae`` (QHNet's: per-structure mean of |Δ|² plus per-structure
  mean of |Δ|, averaged over structures); ``reduction`` chooses element- or structure-normalised means. A model
  with ``extra_loss(out, batch, loss_H) -> (total, {name: float})`` adds its own terms (TraceGrad).
* optimisers ``adam`` / ``adamw`` (betas, weight decay); schedulers ``plateau`` (DeepH-E3: ReduceLROnPlateau
  on the exponentially smoothed validation loss, revert to the best checkpoint with a decayed lr when the
  validation loss stays above ``revert_threshold`` × best for ``revert_patience`` validations, stop when the
  lr falls below ``min_lr``), ``warmup_linear`` (QHNet: linear warm-up then linear decay to ``lr_end``),
  ``constant``; gradient clipping; validation each epoch (or every ``val_interval`` steps); early stop.
* seeds for python, numpy, torch (and the loader, through ``seed``); ``dtype`` float32 / float64.
* checkpoints ``last.pt`` and ``best.pt``, written atomically, holding the model, optimiser and scheduler
  states, the RNG states, the engine's counters, the configs and whatever ``meta`` the caller adds (model
  name, store checksum, basis layout, edge cut-offs, code version). :meth:`Trainer.fit` with ``resume=`` a
  loaded ``last.pt`` continues bit-identically on CPU (the same loader order, the same RNG draws).
* a rich progress bar (loss, lr, structures/s), ``metrics.jsonl`` (one JSON object per line), TensorBoard
  scalars when ``torch.utils.tensorboard`` imports.
* a NaN/Inf loss or gradient stops the run (:class:`TrainingDiverged`, exit 1) without writing the bad state:
  the last good checkpoint stays.
* DDP under ``torchrun`` (gloo on CPU, NCCL on GPU): the caller shards the loaders (``rank``/``world_size``),
  the engine wraps the model, normalises the loss by the *global* element/structure count (so the gradients
  equal one process's on the union batch), reduces validation sums, and writes only on rank 0.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from hambench import __version__
from hambench.atomic import write_bytes
from hambench.errors import HambenchError, InputError
from hambench.store import edge_cutoffs  # noqa: F401  (a store statistic; re-exported for the training API)

__all__ = [
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "RESUME_MAY_CHANGE",
    "seed_everything",
    "rng_state",
    "set_rng_state",
    "save_checkpoint",
    "load_checkpoint",
    "loss_terms",
    "edge_cutoffs",
    "code_version",
    "dist_info",
    "torch_dtype",
    "params_sha256",
]

CHECKPOINT_FORMAT = "hambench-checkpoint"
CHECKPOINT_VERSION = 1

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
        if self.max_epochs < 0 or (self.max_steps is not None and self.max_steps < 0):
            raise ValueError("max_epochs/max_steps must be >= 0")
        if not 0.0 < self.plateau_smoothing <= 1.0:
            raise ValueError(f"plateau_smoothing must be in (0, 1], got {self.plateau_smoothing}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_interval is not None and self.val_interval < 1:
            raise ValueError("val_interval must be >= 1")


class TrainingDiverged(HambenchError):
    """The loss (or a gradient) became NaN/Inf: training stopped and the last good checkpoint was kept."""


# --- small helpers ---------------------------------------------------------------------------------------
def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and CUDA)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every global RNG state, in a form ``torch.load(weights_only=True)`` accepts."""
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    st = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    import torch

    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = st["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(st["cuda"])
        except Exception:  # another GPU count: CPU bit-identity is the promise
            pass


_CODE_VERSION: dict | None = None


def code_version() -> dict:
    """hambench version and, in a git checkout, the commit (with ``dirty`` when files differ)."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        out = {"hambench": __version__}
        here = Path(__file__).resolve().parent
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                    timeout=5).stdout.strip()
            if commit:
                out["git_commit"] = commit
                dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                       capture_output=True, text=True, timeout=5).stdout.strip()
                out["git_dirty"] = bool(dirty)
        except Exception:
            pass
        _CODE_VERSION = out
    return dict(_CODE_VERSION)


def dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment (0, 1, 0 without it)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


# --- checkpoints -----------------------------------------------------------------------------------------
def save_checkpoint(path, obj: dict) -> Path:
    """``torch.save`` (or bytes already serialised) written atomically (:func:`hambench.atomic.write_bytes`): a
    reader never sees half a checkpoint, and a killed run leaves the previous one intact."""
    import torch

    if isinstance(obj, (bytes, bytearray)):
        data = obj
    else:
        buf = io.BytesIO()
        torch.save(obj, buf)
        data = buf.getvalue()
    return write_bytes(path, bytes(data))


_REQUIRED_KEYS = ("format", "version", "model", "train_config", "state", "layout", "engine")


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read and check a hambench checkpoint; one :class:`InputError` line for a missing, corrupt or foreign file."""
    import torch

    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise InputError(path, "a run folder without best.pt or last.pt (not trained yet?)")
    if not path.is_file():
        raise InputError(path, "no such checkpoint")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise InputError(path, f"not a readable checkpoint (corrupt or truncated?): {type(e).__name__}: {msg}") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, "not a hambench checkpoint (no 'format': 'hambench-checkpoint')")
    if ck.get("version") != CHECKPOINT_VERSION:
        raise InputError(path, f"checkpoint version {ck.get('version')}, this hambench reads {CHECKPOINT_VERSION}")
    missing = [k for k in _REQUIRED_KEYS if k not in ck]
    if missing:
        raise InputError(path, f"checkpoint lacks {missing}")
    ck["path"] = str(path)
    return ck


# --- losses ----------------------------------------------------------------------------------------------
def _element_structure(batch, n_el: int):
    """(n_el,) structure index (0..B-1) of every flat H element of the batch."""
    import torch

    sizes = batch.H_ptr[1:] - batch.H_ptr[:-1]
    edge_of = torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), sizes, output_size=n_el)
    return batch.edge_batch[edge_of]


def loss_terms(pred, batch, cfg: TrainConfig) -> dict:
    """Loss numerator and its normaliser for ``pred`` vs ``batch.H`` (flat, aligned; complex by |Δ|², |Δ|).

    Returns ``num`` (a differentiable 0-d tensor), ``den`` (float: elements for ``reduction='element'``,
    structures for ``'structure'``), and the plain sums ``sq`` = Σ|Δ|², ``abs`` = Σ|Δ|, ``n`` = elements.
    The loss is ``num / den``; under DDP the engine divides by the global ``den``.
    """
    import torch

    target = batch.H
    if pred.shape != target.shape:
        raise ValueError(f"model output H has shape {tuple(pred.shape)}, the target {tuple(target.shape)}")
    d = pred - target
    sq = torch.view_as_real(d).pow(2).sum(-1) if d.is_complex() else d.pow(2)
    ab = d.abs() if cfg.loss == "mse+mae" else None
    n = int(sq.numel())
    if cfg.reduction == "element":
        num = sq.sum() if ab is None else sq.sum() + ab.sum()
        den = float(max(n, 1))
    else:
        B = int(batch.natoms.shape[0])
        s_of = _element_structure(batch, n)
        cnt = torch.zeros(B, dtype=sq.dtype, device=sq.device).index_add_(0, s_of, torch.ones_like(sq))
        per = torch.zeros(B, dtype=sq.dtype, device=sq.device).index_add_(0, s_of, sq)
        if ab is not None:
            per = per + torch.zeros(B, dtype=sq.dtype, device=sq.device).index_add_(0, s_of, ab)
        num = (per / cnt.clamp_min(1)).sum()
        den = float(B)
    with torch.no_grad():
        abs_sum = float((ab if ab is not None else d.abs()).sum())
    return {"num": num, "den": den, "sq": float(sq.detach().sum()), "abs": abs_sum, "n": n}


# --- schedulers ------------------------------------------------------------------------------------------
class _Schedule:
    """The lr schedule of a run, with a ``state_dict`` for bit-identical resumes."""

    def __init__(self, optimizer, cfg: TrainConfig, total_steps: int | None):
        import torch

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
        if self.cfg.scheduler == "warmup_linear":
            for g in self.opt.param_groups:
                g["lr"] = self.lr_at(step)

    # per validation (plateau / revert)
    def validation(self, val: float, best: float) -> str | None:
        """Feed one validation loss; returns ``"revert"`` when the run should go back to its best state."""
        c = self.cfg
        if c.scheduler != "plateau":
            return None
        self.smoothed = val if self.smoothed is None else c.plateau_smoothing * val + (1 - c.plateau_smoothing) * self.smoothed
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


def _make_optimizer(params, cfg: TrainConfig):
    import torch

    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


# --- the engine ------------------------------------------------------------------------------------------
def _set_epoch(loader, epoch: int) -> None:
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
            return


def _nstruct(batch) -> int:
    return int(batch.natoms.shape[0])


@dataclass
class _State:
    epoch: int = 0  # completed epochs
    step: int = 0  # optimiser steps done
    batch_in_epoch: int = 0  # batches of the current epoch consumed
    best: float = math.inf  # best validation `monitor`
    best_epoch: int = -1
    best_step: int = -1
    since_best: int = 0  # validations without improvement
    validations: int = 0
    reverts: int = 0
    finished: Optional[str] = None  # reason the run stopped for good (min_lr, early_stop), None otherwise
    last_val: dict = field(default_factory=dict)


class Trainer:
    """Train ``model`` on ``train_loader`` and write ``run_dir/{last,best}.pt`` and ``metrics.jsonl``.

    Parameters
    ----------
    model : ``torch.nn.Module``; ``forward(batch) -> {"H": flat tensor, ...}``; optional ``extra_loss``
    cfg : :class:`TrainConfig`
    train_loader, val_loader : iterables of :class:`hambench.training._data.Batch` (``val_loader`` may be None: the
        training loss of each epoch stands in). Under DDP they must already be sharded per rank.
    run_dir : folder of checkpoints and logs (only rank 0 writes)
    meta : JSON-able facts stored in every checkpoint (``model`` {name, config}, ``layout``, ``store``,
        ``edge_cutoffs``, …); ``meta["model"]`` and ``meta["layout"]`` are required by ``load_checkpoint``
    device : torch device (the model is moved there; batches are moved per step)
    quiet : no progress bar (a summary line per validation goes to ``log``)
    log : callable receiving one-line messages (default: ``print`` on rank 0 when not quiet)
    """

    def __init__(self, model, cfg: TrainConfig, train_loader, val_loader, run_dir, meta: dict, device="cpu",
                 quiet: bool = True, log=None):
        import torch

        self.cfg = cfg
        self.device = torch.device(device)
        self.dtype = torch_dtype(cfg.dtype)
        self.rank, self.world, self.local_rank = dist_info()
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.model = model.to(device=self.device, dtype=self.dtype)
        self.net = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.ddp_find_unused,
            )
        self.train_loader, self.val_loader = train_loader, val_loader
        self.run_dir = Path(run_dir)
        self.meta = dict(meta)
        self.quiet = quiet
        self.log = log or ((lambda s: print(s, flush=True)) if (self.rank == 0 and not quiet) else (lambda s: None))
        self.optimizer = _make_optimizer([p for p in self.model.parameters() if p.requires_grad], cfg)
        try:
            self.steps_per_epoch = len(train_loader)
        except TypeError:
            self.steps_per_epoch = None
        total = cfg.decay_steps
        if total is None and cfg.scheduler == "warmup_linear":
            if cfg.max_steps is not None:
                total = cfg.max_steps
            elif self.steps_per_epoch is not None:
                total = cfg.max_epochs * self.steps_per_epoch
        self.schedule = _Schedule(self.optimizer, cfg, total)
        self.state = _State()
        self._best_copy = None  # (model state, optimizer state) of the best validation, for reverts
        self._tb = None
        self._jsonl = None
        self._improved = False

    # --- one step (also what the DDP test drives) ------------------------------------------------------
    def _allreduce(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def _forward_loss(self, batch):
        """Forward + loss (normalised by the global count). Returns (loss tensor, stats dict)."""
        out = self.net(batch)
        t = loss_terms(out["H"], batch, self.cfg)
        (den,) = self._allreduce([t["den"]])
        loss_H = t["num"] * (self.world / den)
        extras = {}
        model = self.model
        if hasattr(model, "extra_loss"):
            loss, extras = model.extra_loss(out, batch, loss_H)
        else:
            loss = loss_H
        return loss, {"sq": t["sq"], "abs": t["abs"], "n": t["n"], "num": float(t["num"].detach()),
                      "den": t["den"], "extras": extras}

    def backward(self, batch):
        """Forward, loss and backward for one batch (gradients left in ``.grad``); returns (loss, stats)."""
        self.net.train()
        batch = batch.to(self.device, self.dtype)
        self.optimizer.zero_grad(set_to_none=True)
        loss, st = self._forward_loss(batch)
        loss.backward()
        return loss, st

    def _grad_norm(self) -> float:
        import torch

        params = [p for p in self.model.parameters() if p.grad is not None]
        if not params:
            return 0.0
        if self.cfg.clip_grad_norm is not None:
            return float(torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad_norm))
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])))

    # --- validation ------------------------------------------------------------------------------------
    def validate(self, loader=None) -> dict:
        """Loss and MAE (eV) over a loader, reduced over ranks."""
        import torch

        loader = self.val_loader if loader is None else loader
        self.net.eval()
        num = den = sq = ab = n = 0.0
        grad = bool(getattr(self.model, "inference_needs_grad", False))
        with torch.set_grad_enabled(grad):
            for batch in loader:
                batch = batch.to(self.device, self.dtype)
                out = self.model(batch)
                t = loss_terms(out["H"], batch, self.cfg)
                num += float(t["num"].detach())
                den += t["den"]
                sq += t["sq"]
                ab += t["abs"]
                n += t["n"]
        num, den, sq, ab, n = self._allreduce([num, den, sq, ab, n])
        return {"loss": num / max(den, 1e-300), "mse": sq / max(n, 1), "mae": ab / max(n, 1), "n": int(n)}

    # --- checkpoints -----------------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        from dataclasses import asdict

        from hambench.config import to_dict

        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            **self.meta,
            "train_config": to_dict(self.cfg),
            "state": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "engine": asdict(self.state),
            "rng": rng_state(),
            "code": code_version(),
            "world_size": self.world,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def _save(self, which: tuple[str, ...]) -> None:
        """Write the current state to ``RUN/{name}.pt`` for each name (serialised once)."""
        import torch

        if self.rank != 0:
            return
        buf = io.BytesIO()
        torch.save(self.checkpoint(), buf)
        data = buf.getvalue()
        for name in which:
            save_checkpoint(self.run_dir / f"{name}.pt", data)

    def _restore(self, ck: dict, best: dict | None) -> None:
        self.model.load_state_dict(ck["state"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.schedule.load_state_dict(ck["schedule"])
        self.state = _State(**ck["engine"])
        if best is not None:
            self._best_copy = (best["state"], best["optimizer"])

    # --- logging ---------------------------------------------------------------------------------------
    def _emit(self, record: dict) -> None:
        if self.rank != 0:
            return
        if self._jsonl is None:
            self._jsonl = open(self.run_dir / "metrics.jsonl", "a")
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self._tb.add_scalar(f"{record.get('event', 'x')}/{k}", v, record.get("step", 0))

    def _open_tb(self) -> None:
        if self.rank != 0:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed: metrics.jsonl only
            return
        self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    def _close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    # --- the loop --------------------------------------------------------------------------------------
    def _diverged(self, where: str) -> TrainingDiverged:
        st = self.state
        last = self.run_dir / "last.pt"
        kept = (f"the last good checkpoint {last} (epoch {self._saved_at[0]}, step {self._saved_at[1]}) is kept"
                if last.exists() else "no checkpoint was written")
        self._emit({"event": "diverged", "where": where, "epoch": st.epoch, "step": st.step})
        return TrainingDiverged(f"{self.run_dir}: {where} became NaN/Inf at epoch {st.epoch}, step {st.step}; "
                                f"training stopped, {kept}")

    def _after_validation(self, val: dict, train_loss: float | None) -> bool:
        """Best/revert/early stop/min-lr after one validation; True when the run must stop."""
        cfg, st = self.cfg, self.state
        metric = val["loss"] if (cfg.monitor == "loss" or self.val_loader is None) else val["mae"]
        if not math.isfinite(metric):
            raise self._diverged("the validation loss")
        st.validations += 1
        st.last_val = {"loss": val["loss"], "mae": val["mae"]}
        action = self.schedule.validation(val["loss"], st.best if cfg.monitor == "loss" else math.inf)
        improved = metric < st.best
        if improved:
            st.best, st.best_epoch, st.best_step, st.since_best = metric, st.epoch, st.step, 0
        else:
            st.since_best += 1
        lr = self.optimizer.param_groups[0]["lr"]
        rec = {"event": "val", "epoch": st.epoch, "step": st.step, "val_loss": val["loss"], "val_mae": val["mae"],
               "val_mse": val["mse"], "lr": lr, "best": st.best, "smoothed": self.schedule.smoothed}
        if train_loss is not None:
            rec["train_loss"] = train_loss
        self._emit(rec)
        if self.quiet or self._progress is None:
            what = (f"val loss {val['loss']:.4g} mae {val['mae']:.4g} eV" if self.val_loader is not None
                    else f"train loss {val['loss']:.4g} (no validation set)")
            self.log(f"epoch {st.epoch} step {st.step}: {what} lr {lr:.3g}{' *' if improved else ''}")
        stop = None
        if action == "revert" and self._best_copy is not None:
            cur = self.optimizer.param_groups[0]["lr"]
            self.model.load_state_dict(self._best_copy[0])
            self.optimizer.load_state_dict(self._best_copy[1])
            for g in self.optimizer.param_groups:
                g["lr"] = cur * cfg.revert_decay
            st.reverts += 1
            self._emit({"event": "revert", "epoch": st.epoch, "step": st.step, "lr": cur * cfg.revert_decay})
        if cfg.scheduler == "plateau" and self.optimizer.param_groups[0]["lr"] < cfg.min_lr:
            stop = "min_lr"
        if cfg.early_stop_patience is not None and st.since_best >= cfg.early_stop_patience:
            stop = "early_stop"
        if improved:
            self._best_copy = (copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.optimizer.state_dict()))
        self._improved = improved
        if stop:
            st.finished = stop
        return stop is not None

    def fit(self, resume: dict | None = None, best: dict | None = None) -> dict:
        """Run until max_epochs / max_steps / a stop criterion. ``resume``: a loaded ``last.pt`` (and its
        ``best.pt``) to continue from. Returns a summary dict; raises :class:`TrainingDiverged` on NaN."""
        import torch

        cfg = self.cfg
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._open_tb()
        self._progress = None
        self._saved_at = (0, 0)
        if resume is not None:
            self._restore(resume, best)
            self._saved_at = (self.state.epoch, self.state.step)
            self._emit({"event": "resume", "epoch": self.state.epoch, "step": self.state.step})
        else:
            self._emit({"event": "start", "epoch": 0, "step": 0, "world_size": self.world, "config": _jsonable(cfg)})
            self._save(("last",))  # step 0: a good state to fall back to
        st = self.state
        t_start = time.perf_counter()
        n_struct = 0
        reason = st.finished
        total_steps = cfg.max_steps
        if self.steps_per_epoch is not None:
            by_epochs = cfg.max_epochs * self.steps_per_epoch
            total_steps = by_epochs if total_steps is None else min(total_steps, by_epochs)
        progress = self._make_progress(total_steps)
        self._progress = progress
        try:
            restore_rng = resume["rng"] if resume is not None else None
            while reason is None:
                if st.epoch >= cfg.max_epochs:
                    reason = "max_epochs"
                    break
                if cfg.max_steps is not None and st.step >= cfg.max_steps:
                    reason = "max_steps"
                    break
                if restore_rng is not None and st.batch_in_epoch == 0:
                    set_rng_state(restore_rng)
                    restore_rng = None
                _set_epoch(self.train_loader, st.epoch)
                it = iter(self.train_loader)
                for _ in range(st.batch_in_epoch):  # resuming mid-epoch: the same batches, skipped
                    next(it)
                if restore_rng is not None:
                    set_rng_state(restore_rng)
                    restore_rng = None
                ep_num = ep_den = 0.0
                stop_now = False
                for batch in it:
                    self.schedule.set_step(st.step)
                    loss, s = self.backward(batch)
                    lval = float(loss.detach())
                    bad = self._allreduce([0.0 if math.isfinite(lval) else 1.0])[0]
                    if bad:
                        raise self._diverged("the training loss")
                    gnorm = self._grad_norm()
                    if not math.isfinite(self._allreduce([gnorm])[0]):
                        raise self._diverged("the gradient norm")
                    self.optimizer.step()
                    st.step += 1
                    st.batch_in_epoch += 1
                    nb = _nstruct(batch)
                    n_struct += nb
                    ep_num += s["num"]
                    ep_den += s["den"]
                    lr = self.optimizer.param_groups[0]["lr"]
                    rate = n_struct * self.world / max(time.perf_counter() - t_start, 1e-9)
                    if progress is not None:
                        progress.update(self._task, completed=st.step,
                                        info=f"epoch {st.epoch} loss {lval:.4g} lr {lr:.3g} {rate:.1f} struct/s")
                    if cfg.log_every and st.step % cfg.log_every == 0:
                        rec = {"event": "train", "epoch": st.epoch, "step": st.step, "loss": lval, "lr": lr,
                               "grad_norm": gnorm, "structures_per_s": rate}
                        rec.update({k: v for k, v in s["extras"].items() if isinstance(v, (int, float))})
                        self._emit(rec)
                    if cfg.val_interval is not None and st.step % cfg.val_interval == 0:
                        if self._run_validation(ep_num, ep_den):
                            reason = st.finished
                            stop_now = True
                        self._save(("last", "best") if self._improved else ("last",))
                        self._saved_at = (st.epoch, st.step)
                    if stop_now or (cfg.max_steps is not None and st.step >= cfg.max_steps):
                        break
                if stop_now:
                    break
                if cfg.max_steps is not None and st.step >= cfg.max_steps and (
                    self.steps_per_epoch is None or st.batch_in_epoch < self.steps_per_epoch
                ):
                    self._save(("last",))  # mid-epoch stop: no validation, resumable
                    self._saved_at = (st.epoch, st.step)
                    reason = "max_steps"
                    break
                st.epoch += 1
                st.batch_in_epoch = 0
                self._improved = False
                if cfg.val_interval is None:
                    if self._run_validation(ep_num, ep_den):
                        reason = st.finished
                self._save(("last", "best") if self._improved else ("last",))
                self._saved_at = (st.epoch, st.step)
        finally:
            if progress is not None:
                progress.stop()
            self._emit({"event": "stop", "epoch": st.epoch, "step": st.step, "reason": reason})
            self._close()
        elapsed = time.perf_counter() - t_start
        summary = {"reason": reason, "epochs": st.epoch, "steps": st.step, "best": st.best,
                   "best_epoch": st.best_epoch, "last_val": st.last_val, "reverts": st.reverts,
                   "structures_per_s": n_struct * self.world / max(elapsed, 1e-9), "seconds": elapsed,
                   "run_dir": str(self.run_dir), "lr": self.optimizer.param_groups[0]["lr"],
                   "params_sha256": params_sha256(self.model)}
        return summary

    def _run_validation(self, ep_num: float, ep_den: float) -> bool:
        ep_num, ep_den = self._allreduce([ep_num, ep_den])
        train_loss = ep_num / ep_den if ep_den else None
        if self.val_loader is None:
            if train_loss is None:
                return False
            val = {"loss": train_loss, "mse": math.nan, "mae": math.nan, "n": 0}
        else:
            val = self.validate()
        return self._after_validation(val, train_loss)

    def _make_progress(self, total):
        if self.quiet or self.rank != 0:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        p = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     TextColumn("{task.fields[info]}"), transient=False)
        p.start()
        self._task = p.add_task("train", total=total, completed=self.state.step, info="")
        return p


def params_sha256(model) -> str:
    """sha256 of every parameter's bytes, in ``named_parameters`` order (replica identity under DDP)."""
    import hashlib

    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _jsonable(cfg) -> dict:
    from hambench.config import to_dict

    return to_dict(cfg)

"""The training loop every model of the zoo uses: :class:`Trainer` (epochs, validation cadence, best state and
revert, early stop, divergence, checkpoints).

The engine is core: it gets a model object (any ``torch.nn.Module`` whose ``forward(batch)`` returns a dict with
at least ``"H"``, the flat predicted blocks aligned with ``batch.H_ptr``) and loaders of
:class:`hambench.training.Batch` es; it never imports a model or reads a file other than its own checkpoints.
Building the model, resolving configs and opening stores is ``hambench.models.run``'s job.

* one step: :mod:`._step` (losses, forward/backward, gradient norm and clipping); the lr: :mod:`._schedule`;
  what the run writes: :mod:`._checkpoint` (``last.pt``, ``best.pt``) and :mod:`._runlog` (``metrics.jsonl``,
  TensorBoard, progress); several processes: :mod:`._ddp`.
* validation each epoch (or every ``val_interval`` steps) picks ``best.pt``; under ``plateau`` a validation
  loss far above the best for long makes the run revert to its best state with a decayed lr, and an lr below
  ``min_lr`` stops it; ``early_stop_patience`` validations without improvement stop it too.
* seeds for python, numpy, torch (and the loader, through ``seed``); ``dtype`` float32 / float64.
  :meth:`Trainer.fit` with ``resume=`` a loaded ``last.pt`` continues bit-identically on CPU (the same loader
  order, the same RNG draws).
* a NaN/Inf loss or gradient stops the run (:class:`TrainingDiverged`, exit 1) without writing the bad state:
  the last good checkpoint stays.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch

from hambench.config import to_dict
from hambench.errors import HambenchError

from ._checkpoint import Checkpoint, code_version, params_sha256, rng_state, save_checkpoint, set_rng_state
from ._config import TrainConfig
from ._ddp import Comm
from ._runlog import RunLog
from ._schedule import Schedule, decay_total, make_optimizer
from ._step import backward, batch_structures, evaluate, grad_norm, torch_dtype

__all__ = ["Trainer", "TrainingDiverged", "EngineState"]


class TrainingDiverged(HambenchError):
    """The loss (or a gradient) became NaN/Inf: training stopped and the last good checkpoint was kept."""


@dataclass
class EngineState:
    """The loop's counters, saved in every checkpoint (``engine``)."""

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


def _set_epoch(loader, epoch: int) -> None:
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
            return


def _length(loader) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _as_checkpoint(ck) -> Checkpoint | None:
    """A :class:`Checkpoint` from itself or from :func:`load_checkpoint`'s dict."""
    if ck is None or isinstance(ck, Checkpoint):
        return ck
    return Checkpoint.from_dict(ck, ck.get("path"))


class Trainer:
    """Train ``model`` on ``train_loader`` and write ``run_dir/{last,best}.pt`` and ``metrics.jsonl``.

    Parameters
    ----------
    model : ``torch.nn.Module``; ``forward(batch) -> {"H": flat tensor, ...}``; optional ``extra_loss``
    cfg : :class:`~hambench.training.TrainConfig`
    train_loader, val_loader : iterables of :class:`hambench.training.Batch` (``val_loader`` may be None: the
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
        self.cfg = cfg
        self.device = torch.device(device)
        self.dtype = torch_dtype(cfg.dtype)
        self.comm = Comm.start(self.device)
        self.model = model.to(device=self.device, dtype=self.dtype)
        self.net = self.comm.wrap(self.model, cfg.ddp_find_unused)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.run_dir = Path(run_dir)
        self.meta = dict(meta)
        self.quiet = quiet
        self.log = log or ((lambda s: print(s, flush=True)) if (self.comm.main and not quiet) else (lambda s: None))
        self.runlog = RunLog(self.run_dir, self.comm.main, quiet, self.log)
        self.optimizer = make_optimizer([p for p in self.model.parameters() if p.requires_grad], cfg)
        self.steps_per_epoch = _length(train_loader)
        self.schedule = Schedule(self.optimizer, cfg, decay_total(cfg, self.steps_per_epoch))
        self.state = EngineState()
        self._best_copy = None  # (model state, optimizer state) of the best validation, for reverts
        self._improved = False
        self._reason: str | None = None  # why the loop ended (None while it runs)
        self._saved_at = (0, 0)  # (epoch, step) of the last checkpoint written
        self._t_start = time.perf_counter()
        self._n_struct = 0  # structures trained on by this process since fit() began

    # --- one step (also what the DDP test drives) ------------------------------------------------------
    def backward(self, batch):
        """Forward, loss and backward for one batch (gradients left in ``.grad``); returns (loss, stats)."""
        return backward(self.net, self.model, self.optimizer, batch, self.cfg, self.comm, self.device, self.dtype)

    def grad_norm(self) -> float:
        """The gradients' global norm (clipped to ``clip_grad_norm`` first when set)."""
        return grad_norm(self.model, self.cfg.clip_grad_norm)

    def validate(self, loader=None) -> dict:
        """Loss and MAE (eV) over a loader (default: the validation loader), reduced over ranks."""
        return evaluate(self.model, self.val_loader if loader is None else loader, self.cfg, self.comm,
                        self.device, self.dtype)

    # --- checkpoints -----------------------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """The current state as a :class:`Checkpoint` (``meta``'s ``model`` and ``layout`` in their fields)."""
        meta = dict(self.meta)
        return Checkpoint(
            model=meta.pop("model", None), layout=meta.pop("layout", None), meta=meta,
            train_config=to_dict(self.cfg), state=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
            schedule=self.schedule.state_dict(), engine=asdict(self.state), rng=rng_state(), code=code_version(),
            world_size=self.comm.world, saved_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )

    def _save(self, which: tuple[str, ...]) -> None:
        """Write the current state to ``RUN/{name}.pt`` for each name (serialised once; rank 0 only)."""
        self._saved_at = (self.state.epoch, self.state.step)
        if not self.comm.main:
            return
        data = self.checkpoint().to_bytes()
        for name in which:
            save_checkpoint(self.run_dir / f"{name}.pt", data)

    def _save_after_validation(self) -> None:
        # best.pt before last.pt: last.pt is the run's commit point. A kill between the two writes then leaves the
        # old last.pt, from which a resume repeats this validation and writes best.pt again; the other order
        # would leave a last.pt that counts an improvement best.pt never received.
        self._save(("best", "last") if self._improved else ("last",))

    def _restore(self, ck: Checkpoint, best: Checkpoint | None) -> None:
        self.model.load_state_dict(ck.state)
        self.optimizer.load_state_dict(ck.optimizer)
        self.schedule.load_state_dict(ck.schedule)
        self.state = EngineState(**ck.engine)
        if best is not None:
            self._best_copy = (best.state, best.optimizer)

    # --- the run ---------------------------------------------------------------------------------------
    def fit(self, resume=None, best=None) -> dict:
        """Run until max_epochs / max_steps / a stop criterion. ``resume``: a loaded ``last.pt`` (and its
        ``best.pt``), as :class:`Checkpoint` or :func:`load_checkpoint` dicts, to continue from. Returns a
        summary dict; raises :class:`TrainingDiverged` on NaN."""
        resume, best = _as_checkpoint(resume), _as_checkpoint(best)
        self._begin(resume, best)
        st = self.state
        self._t_start, self._n_struct = time.perf_counter(), 0
        self._reason = st.finished
        self.runlog.start_progress(self._total_steps(), st.step)
        try:
            self._epochs(resume.rng if resume is not None else None)
        finally:
            self.runlog.stop_progress()
            self.runlog.emit({"event": "stop", "epoch": st.epoch, "step": st.step, "reason": self._reason})
            self.runlog.close()
        return self._summary()

    def _begin(self, resume: Checkpoint | None, best: Checkpoint | None) -> None:
        self.runlog.open()
        self._saved_at = (0, 0)
        if resume is not None:
            self._restore(resume, best)
            self._saved_at = (self.state.epoch, self.state.step)
            self.runlog.emit({"event": "resume", "epoch": self.state.epoch, "step": self.state.step})
        else:
            self.runlog.emit({"event": "start", "epoch": 0, "step": 0, "world_size": self.comm.world,
                              "config": to_dict(self.cfg)})
            self._save(("last",))  # step 0: a good state to fall back to

    def _total_steps(self) -> int | None:
        """Steps the progress bar counts to: max_steps, or every epoch's, whichever comes first."""
        total = self.cfg.max_steps
        if self.steps_per_epoch is not None:
            by_epochs = self.cfg.max_epochs * self.steps_per_epoch
            total = by_epochs if total is None else min(total, by_epochs)
        return total

    def _steps_done(self) -> bool:
        return self.cfg.max_steps is not None and self.state.step >= self.cfg.max_steps

    def _summary(self) -> dict:
        st = self.state
        elapsed = time.perf_counter() - self._t_start
        return {"reason": self._reason, "epochs": st.epoch, "steps": st.step, "best": st.best,
                "best_epoch": st.best_epoch, "last_val": st.last_val, "reverts": st.reverts,
                "structures_per_s": self._n_struct * self.comm.world / max(elapsed, 1e-9), "seconds": elapsed,
                "run_dir": str(self.run_dir), "lr": self.optimizer.param_groups[0]["lr"],
                "params_sha256": params_sha256(self.model)}

    # --- epochs and steps ------------------------------------------------------------------------------
    def _epochs(self, restore_rng: dict | None) -> None:
        """Epochs until a stop reason is set (``self._reason``)."""
        st = self.state
        while self._reason is None:
            if st.epoch >= self.cfg.max_epochs:
                self._reason = "max_epochs"
                break
            if self._steps_done():
                self._reason = "max_steps"
                break
            batches = self._epoch_batches(restore_rng)
            restore_rng = None
            sums = self._train_epoch(batches)
            if sums is None:
                break
            self._end_epoch(*sums)

    def _epoch_batches(self, restore_rng: dict | None):
        """The iterator of the current epoch, past the batches a resumed run consumed already; the RNG states
        of a resume are restored where the interrupted run stood (before the epoch or after its skipped part)."""
        st = self.state
        if restore_rng is not None and st.batch_in_epoch == 0:
            set_rng_state(restore_rng)
            restore_rng = None
        _set_epoch(self.train_loader, st.epoch)
        it = iter(self.train_loader)
        for _ in range(st.batch_in_epoch):  # resuming mid-epoch: the same batches, skipped
            next(it)
        if restore_rng is not None:
            set_rng_state(restore_rng)
        return it

    def _train_epoch(self, batches) -> tuple[float, float] | None:
        """Train on the epoch's batches; (Σ loss numerators, Σ normalisers) of the epoch, or None when the run
        stopped inside it (a stop criterion at a ``val_interval`` validation, or ``max_steps`` mid-epoch)."""
        cfg, st = self.cfg, self.state
        ep_num = ep_den = 0.0
        for batch in batches:
            s = self._train_step(batch)
            ep_num += s["num"]
            ep_den += s["den"]
            if cfg.val_interval is not None and st.step % cfg.val_interval == 0:
                stop = self._run_validation(ep_num, ep_den)
                self._save_after_validation()
                if stop:
                    return None
            if self._steps_done():
                break
        if self._steps_done() and (self.steps_per_epoch is None or st.batch_in_epoch < self.steps_per_epoch):
            self._save(("last",))  # mid-epoch stop: no validation, resumable
            self._reason = "max_steps"
            return None
        return ep_num, ep_den

    def _end_epoch(self, ep_num: float, ep_den: float) -> None:
        st = self.state
        st.epoch += 1
        st.batch_in_epoch = 0
        self._improved = False
        if self.cfg.val_interval is None:
            self._run_validation(ep_num, ep_den)
        self._save_after_validation()

    def _train_step(self, batch) -> dict:
        """One optimiser step on ``batch`` (after the NaN/Inf checks every rank agrees on); its loss stats."""
        st = self.state
        self.schedule.set_step(st.step)
        loss, s = self.backward(batch)
        lval = float(loss.detach())
        if self.comm.allreduce([0.0 if math.isfinite(lval) else 1.0])[0]:
            raise self._diverged("the training loss")
        gnorm = self.grad_norm()
        if not math.isfinite(self.comm.allreduce([gnorm])[0]):
            raise self._diverged("the gradient norm")
        self.optimizer.step()
        st.step += 1
        st.batch_in_epoch += 1
        self._n_struct += batch_structures(batch)
        self._report_step(lval, gnorm, s["extras"])
        return s

    def _report_step(self, lval: float, gnorm: float, extras: dict) -> None:
        st = self.state
        lr = self.optimizer.param_groups[0]["lr"]
        rate = self._n_struct * self.comm.world / max(time.perf_counter() - self._t_start, 1e-9)
        self.runlog.progress(st.step, f"epoch {st.epoch} loss {lval:.4g} lr {lr:.3g} {rate:.1f} struct/s")
        if self.cfg.log_every and st.step % self.cfg.log_every == 0:
            rec = {"event": "train", "epoch": st.epoch, "step": st.step, "loss": lval, "lr": lr,
                   "grad_norm": gnorm, "structures_per_s": rate}
            rec.update({k: v for k, v in extras.items() if isinstance(v, (int, float))})
            self.runlog.emit(rec)

    # --- validation, best state, revert, stop criteria -------------------------------------------------
    def _run_validation(self, ep_num: float, ep_den: float) -> bool:
        """Validate (or take the epoch's training loss without a validation set); True when the run must stop
        (its reason is then in ``self._reason``)."""
        ep_num, ep_den = self.comm.allreduce([ep_num, ep_den])
        train_loss = ep_num / ep_den if ep_den else None
        if self.val_loader is None:
            if train_loss is None:
                return False
            val = {"loss": train_loss, "mse": math.nan, "mae": math.nan, "n": 0}
        else:
            val = self.validate()
        stop = self._after_validation(val, train_loss)
        if stop:
            self._reason = self.state.finished
        return stop

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
        self._report_validation(val, train_loss, improved)
        if action == "revert" and self._best_copy is not None:
            self._revert()
        stop = None
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

    def _report_validation(self, val: dict, train_loss: float | None, improved: bool) -> None:
        st = self.state
        lr = self.optimizer.param_groups[0]["lr"]
        rec = {"event": "val", "epoch": st.epoch, "step": st.step, "val_loss": val["loss"], "val_mae": val["mae"],
               "val_mse": val["mse"], "lr": lr, "best": st.best, "smoothed": self.schedule.smoothed}
        if train_loss is not None:
            rec["train_loss"] = train_loss
        self.runlog.emit(rec)
        if self.quiet or not self.runlog.has_progress:
            what = (f"val loss {val['loss']:.4g} mae {val['mae']:.4g} eV" if self.val_loader is not None
                    else f"train loss {val['loss']:.4g} (no validation set)")
            self.log(f"epoch {st.epoch} step {st.step}: {what} lr {lr:.3g}{' *' if improved else ''}")

    def _revert(self) -> None:
        """Back to the best state's weights and optimiser, the lr decayed by ``revert_decay``."""
        st = self.state
        lr = self.optimizer.param_groups[0]["lr"] * self.cfg.revert_decay
        self.model.load_state_dict(self._best_copy[0])
        self.optimizer.load_state_dict(self._best_copy[1])
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        st.reverts += 1
        self.runlog.emit({"event": "revert", "epoch": st.epoch, "step": st.step, "lr": lr})

    def _diverged(self, where: str) -> TrainingDiverged:
        st = self.state
        last = self.run_dir / "last.pt"
        kept = (f"the last good checkpoint {last} (epoch {self._saved_at[0]}, step {self._saved_at[1]}) is kept"
                if last.exists() else "no checkpoint was written")
        self.runlog.emit({"event": "diverged", "where": where, "epoch": st.epoch, "step": st.step})
        return TrainingDiverged(f"{self.run_dir}: {where} became NaN/Inf at epoch {st.epoch}, step {st.step}; "
                                f"training stopped, {kept}")

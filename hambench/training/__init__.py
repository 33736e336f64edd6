"""The training engine: data (loader, Batch), optimisation step, loop, checkpoints, schedule and run log.

One concept per private module (MACE's ``tools/train.py`` and ``tools/checkpoint.py`` split further):
``_data`` (batches streamed from a store), ``_config`` (:class:`TrainConfig`), ``_step`` (losses,
forward/backward, gradient norm), ``_schedule`` (optimiser, warm-up/decay/plateau), ``_loop`` (:class:`Trainer`:
epochs, validation, revert, divergence), ``_checkpoint`` (a frozen :class:`Checkpoint`, RNG states),
``_runlog`` (metrics.jsonl, TensorBoard, progress), ``_ddp`` (torchrun processes), ``_cutoffs`` (edge cut-offs
learned from the training data).
"""

from ._data import (  # noqa: F401
    Batch,
    edge_vectors,
    collate,
    batch_from_structures,
    parse_split,
    select_split,
    augment_rotation,
    StoreDataset,
    StoreLoader,
    make_loader,
)
from ._config import TrainConfig, RESUME_MAY_CHANGE  # noqa: F401
from ._ddp import Comm, dist_info  # noqa: F401
from ._step import torch_dtype, loss_terms, backward, grad_norm, evaluate  # noqa: F401
from ._schedule import Schedule, make_optimizer, decay_total  # noqa: F401
from ._checkpoint import (  # noqa: F401
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    Checkpoint,
    save_checkpoint,
    load_checkpoint,
    seed_everything,
    rng_state,
    set_rng_state,
    code_version,
    params_sha256,
)
from ._runlog import RunLog  # noqa: F401
from ._loop import Trainer, TrainingDiverged, EngineState  # noqa: F401
from ._cutoffs import edge_cutoffs  # noqa: F401

__all__ = [
    "Batch",
    "edge_vectors",
    "collate",
    "batch_from_structures",
    "parse_split",
    "select_split",
    "augment_rotation",
    "StoreDataset",
    "StoreLoader",
    "make_loader",
    "TrainConfig",
    "RESUME_MAY_CHANGE",
    "Comm",
    "dist_info",
    "torch_dtype",
    "loss_terms",
    "backward",
    "grad_norm",
    "evaluate",
    "Schedule",
    "make_optimizer",
    "decay_total",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "seed_everything",
    "rng_state",
    "set_rng_state",
    "code_version",
    "params_sha256",
    "RunLog",
    "Trainer",
    "TrainingDiverged",
    "EngineState",
    "edge_cutoffs",
]

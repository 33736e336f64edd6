"""The training engine: data (loader, Batch), optimisation step, loop, checkpoints, schedule and run log.

One concept per private module (MACE's ``tools/train.py`` and ``tools/checkpoint.py`` split further):
``_data`` (batches streamed from a store), ``_config`` (:class:`TrainConfig`), ``_step`` (losses,
forward/backward, gradient norm), ``_schedule`` (optimiser, warm-up/decay/plateau), ``_loop`` (:class:`Trainer`:
epochs, validation, revert, divergence), ``_checkpoint`` (a frozen :class:`Checkpoint`, RNG states),
``_runlog`` (metrics.jsonl, TensorBoard, progress), ``_ddp`` (torchrun processes). ``edge_cutoffs`` (the
longest edge per element pair of the training structures, recorded in checkpoints) is a store statistic,
re-exported here.
"""

from hambench.store import edge_cutoffs  # noqa: F401  (a store statistic, re-exported)

from . import _checkpoint, _config, _data, _ddp, _loop, _runlog, _schedule, _step
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
from ._ddp import dist_info, Comm  # noqa: F401
from ._step import torch_dtype, loss_terms, backward, grad_norm, evaluate, batch_structures  # noqa: F401
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

#: every module's public names (each module's own ``__all__``, imported above)
__all__ = [name for module in (_data, _config, _ddp, _step, _schedule, _checkpoint, _runlog, _loop)
           for name in module.__all__] + ["edge_cutoffs"]

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

from . import _data, _config, _ddp, _step, _schedule, _checkpoint, _runlog, _loop
from ._data import *  # noqa: F401,F403
from ._config import *  # noqa: F401,F403
from ._ddp import *  # noqa: F401,F403
from ._step import *  # noqa: F401,F403
from ._schedule import *  # noqa: F401,F403
from ._checkpoint import *  # noqa: F401,F403
from ._runlog import *  # noqa: F401,F403
from ._loop import *  # noqa: F401,F403

#: the public names of the private modules (each module's own ``__all__``)
__all__ = [*_data.__all__, *_config.__all__, *_ddp.__all__, *_step.__all__, *_schedule.__all__, *_checkpoint.__all__,
           *_runlog.__all__, *_loop.__all__, "edge_cutoffs"]

"""What a run tells: ``metrics.jsonl`` (one JSON object per line), TensorBoard scalars when
``torch.utils.tensorboard`` imports, a rich progress bar (loss, lr, structures/s) and one-line messages.

Only the writing process (rank 0) writes; on the others every method does nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["RunLog"]


class RunLog:
    """The log of one run in ``run_dir``.

    Parameters
    ----------
    run_dir : folder of ``metrics.jsonl`` and ``tensorboard/``
    active : False on the processes that must not write (DDP ranks > 0)
    quiet : no progress bar
    say : callable receiving one-line messages
    """

    def __init__(self, run_dir, active: bool, quiet: bool, say):
        self.run_dir = Path(run_dir)
        self.active, self.quiet, self.say = bool(active), bool(quiet), say
        self._jsonl = None
        self._tb = None
        self._progress = None
        self._task = None

    def open(self) -> None:
        """Create the run folder and open TensorBoard's writer (when tensorboard is installed)."""
        if not self.active:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional: tensorboard may be absent
        except Exception:  # tensorboard not installed: metrics.jsonl only
            return
        self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    def emit(self, record: dict) -> None:
        """Append ``record`` to ``metrics.jsonl``; its numbers (but epoch and step) go to TensorBoard as
        ``{event}/{name}`` at the record's step."""
        if not self.active:
            return
        if self._jsonl is None:
            self._jsonl = open(self.run_dir / "metrics.jsonl", "a")
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self._tb.add_scalar(f"{record.get('event', 'x')}/{k}", v, record.get("step", 0))

    @property
    def has_progress(self) -> bool:
        """True while a progress bar is shown (then per-validation lines are not printed)."""
        return self._progress is not None

    def start_progress(self, total: int | None, completed: int) -> None:
        """Show the progress bar of ``total`` steps (unknown: None), ``completed`` done already."""
        if self.quiet or not self.active:
            return
        p = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     TextColumn("{task.fields[info]}"), transient=False)
        p.start()
        self._task = p.add_task("train", total=total, completed=completed, info="")
        self._progress = p

    def progress(self, completed: int, info: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, info=info)

    def stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def close(self) -> None:
        """Close ``metrics.jsonl`` and TensorBoard's writer (a later :meth:`emit` reopens the file)."""
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

"""The range runner: one function over many structure ranges, locally or on any dask.distributed scheduler.

``prepare`` (one task per item range → a part file) and ``score`` (one task per structure range → partial
metrics) both run through :func:`run_tasks`: serially in this process for one worker, on a forked local process
pool (one native thread per worker: BLAS/OpenMP/PySCF) for several, or on a running scheduler with ``scheduler=ADDRESS`` — the
same code then runs on SLURM/Kubernetes clusters via dask-jobqueue or dask-kubernetes. Results come back in
task order whatever order the tasks finish in, so callers that combine them in that order produce output that
does not depend on the number of workers.

Errors: a :class:`~hambench.errors.HambenchError` raised inside a worker is carried back as data and raised
again here with its file and message (exception classes with extra constructor arguments do not survive
pickling on their own); the other tasks are cancelled.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import signal
import sys
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager, nullcontext

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from threadpoolctl import threadpool_limits

from hambench.errors import HambenchError, InputError

__all__ = ["progress", "run_tasks", "worker_pool"]


def progress(quiet: bool, unit: str = "items"):
    """A rich progress bar (``None`` when quiet) as a context manager; tasks carry a ``note`` field."""
    if quiet:
        return nullcontext(None)
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
        transient=False,
    )


class _Failure:
    """A HambenchError raised in a worker, as picklable data."""

    def __init__(self, e: HambenchError):
        self.cls = type(e)
        self.path = getattr(e, "path", None)
        self.problem = getattr(e, "problem", None)
        self.message = str(e)

    def exception(self) -> HambenchError:
        if issubclass(self.cls, InputError) and self.problem is not None:
            try:
                return self.cls(self.path, self.problem)
            except TypeError:
                return InputError(self.path, self.problem)
        try:
            return self.cls(self.message)
        except TypeError:
            return HambenchError(self.message)


def _call(fn: Callable, args: tuple):
    try:
        return fn(*args)
    except HambenchError as e:
        return _Failure(e)


def _unwrap(result):
    if isinstance(result, _Failure):
        raise result.exception()
    return result


#: environment variables that bound a worker's native thread pools (BLAS, OpenMP, PySCF, Numba)
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")


def _init_worker() -> None:
    """In each forked worker: one native thread (BLAS/OpenMP/PySCF), Ctrl-C left to the parent."""
    for v in _THREAD_VARS:
        os.environ[v] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # pools already loaded in the parent (numpy's BLAS) ignore the variables: limit them directly
        threadpool_limits(1)
    except Exception:  # noqa: BLE001 - best effort; the variables still hold for pools loaded later
        pass
    lib = sys.modules.get("pyscf.lib")
    if lib is not None and hasattr(lib, "num_threads"):
        lib.num_threads(1)


def _local_pool(workers: int):
    """A pool of ``workers`` forked processes (they inherit the loaded modules, Numba's cache included)."""
    method = "fork" if "fork" in mp.get_all_start_methods() else None
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method), initializer=_init_worker)


def _stop_pool(pool) -> None:
    """Cancel what has not started and end the running workers now (a failed run need not wait for them)."""
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            p.terminate()
        except Exception:  # noqa: BLE001 - already gone
            pass
    pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def worker_pool(workers: int, scheduler: str | None = None):
    """A local pool of ``workers`` forked processes that several :func:`run_tasks` calls can share (None for one
    worker or a scheduler); stopped at the end of the ``with`` (terminated if it ends by an exception)."""
    if scheduler is not None or workers <= 1:
        yield None
        return
    pool = _local_pool(workers)
    try:
        yield pool
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def run_tasks(fn: Callable, tasks: Sequence[tuple], *, workers: int = 1, scheduler: str | None = None,
              quiet: bool = True, label: str = "", sizes: Sequence[int] | None = None, done: int = 0,
              unit: str = "items", on_result: Callable[[int, object], str | None] | None = None,
              pool=None) -> list:
    """Run ``fn(*tasks[i])`` for every task; return the results in task order.

    Parameters
    ----------
    fn : a module-level function (picklable) doing one range of work
    tasks : argument tuples, one per task
    workers : local worker processes (1 = serially in this process; more = a forked process pool, one native
        thread per worker)
    scheduler : address of a running dask.distributed scheduler (``workers`` is then ignored)
    quiet : no progress bar
    label, unit : progress-bar text; ``sizes`` = how far each task advances the bar (default 1 each), ``done``
        = work already done before these tasks (resumed runs)
    on_result : ``on_result(i, result) -> note | None`` called in this process as each task finishes (in
        completion order); the note is shown beside the bar
    pool : a :func:`worker_pool` to run on (several calls share its workers: one fork, warm workers); by
        default a pool of ``workers`` is made for this call
    """
    if workers < 1:
        raise InputError(None, f"--workers must be >= 1, got {workers}")
    sizes = [1] * len(tasks) if sizes is None else list(sizes)
    results: list = [None] * len(tasks)
    forked = scheduler is None and workers > 1 and (len(tasks) > 1 or pool is not None)
    own = forked and pool is None
    if forked:  # submitted before the progress bar starts its refresh thread: the pool forks its workers first
        pool = _local_pool(min(workers, len(tasks))) if own else pool
        futures = _submit(pool, fn, tasks)
    try:
        with progress(quiet, unit) as bar:
            task = bar.add_task(label, total=done + sum(sizes), completed=done, note="") if bar else None

            def finished(i, result):
                results[i] = result
                note = on_result(i, result) if on_result else None
                if bar:
                    bar.update(task, advance=sizes[i], **({"note": note} if note is not None else {}))

            if forked:
                _collect(futures, finished)
            elif scheduler is not None:
                _run_dask(fn, tasks, scheduler, finished)
            else:
                for i, args in enumerate(tasks):
                    finished(i, fn(*args))
    except BaseException:
        if forked:
            _stop_pool(pool)
        raise
    if own:
        pool.shutdown(wait=True)
    return results


def _submit(pool, fn: Callable, tasks: Sequence[tuple]) -> dict:
    """Every task on the local pool: {future: task index}."""
    gc.freeze()  # objects made so far stay out of the collector: forked workers copy fewer pages on write
    try:
        return {pool.submit(_call, fn, args): i for i, args in enumerate(tasks)}
    except BaseException:
        _stop_pool(pool)
        raise
    finally:
        gc.unfreeze()


def _collect(futures: dict, finished) -> None:
    """``finished(i, result)`` for each future as it completes (several at once: in task order)."""
    pending = set(futures)
    while pending:
        finished_now, pending = wait(pending, return_when=FIRST_COMPLETED)
        for fut in sorted(finished_now, key=futures.get):
            finished(futures[fut], _unwrap(fut.result()))


def _run_dask(fn: Callable, tasks: Sequence[tuple], scheduler: str, finished) -> None:
    """The tasks on a running dask.distributed scheduler (the optional dependency is imported here, its one use)."""
    from dask.distributed import Client, as_completed

    try:
        client = Client(scheduler)
    except (OSError, TimeoutError, ValueError, TypeError) as e:  # unreachable or malformed address
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise InputError(f"--scheduler {scheduler}", f"cannot reach a dask scheduler there ({msg})") from None
    try:
        tag = uuid.uuid4().hex[:8]
        futures = {client.submit(_call, fn, args, key=f"hambench-range-{i}-{tag}", pure=False): i
                   for i, args in enumerate(tasks)}
        for fut in as_completed(futures):
            try:
                finished(futures[fut], _unwrap(fut.result()))
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        client.close()

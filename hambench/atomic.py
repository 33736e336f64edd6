"""Atomic writes: every file and folder hambench writes appears whole or not at all.

One implementation for the whole project (prepare's parts and manifests, predictions, scores, plots,
checkpoints, leaderboard pages): a file is written to a unique hidden ``.NAME.<random>.partial`` beside its
destination and renamed over it (``os.replace`` is atomic on POSIX within one file system); a folder is built
under a staging name and swapped in with :func:`replace_dir`. An exception or a kill leaves the destination as
it was (a killed process can leave a ``.partial`` behind, which no reader looks at).

>>> write_json(path, {"a": 1})                      # doctest: +SKIP
>>> with atomic_path(path) as tmp:                 # doctest: +SKIP
...     np.savez(tmp, x=x)                         # any writer that wants a path
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path

from hambench.errors import InputError

__all__ = ["partial_path", "atomic_path", "write_bytes", "write_text", "write_json", "replace_dir", "check_output"]


def partial_path(path) -> Path:
    """A unique hidden staging name beside ``path`` (same folder, hence same file system)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.partial")


@contextlib.contextmanager
def atomic_path(path, *, mkdir: bool = True):
    """Yield a staging path; on a clean exit it is renamed to ``path``, on an exception it is removed.

    The staging name keeps ``path``'s suffix last (``.x.npz.<id>.partial`` would make ``np.savez`` append
    ``.npz``), so writers that choose a format by suffix see the right one.
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.partial{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
        raise


def write_bytes(path, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; ``fsync=True`` also flushes it to disk before the rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    return path


def write_text(path, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"), fsync=fsync)


def write_json(path, obj, *, indent=1, fsync: bool = False, **dumps_kw) -> Path:
    """``json.dumps(obj, indent=indent, **dumps_kw)`` written to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=indent, **dumps_kw), fsync=fsync)


def replace_dir(staging, dest) -> Path:
    """Move the finished folder ``staging`` to ``dest``, replacing whatever ``dest`` was, atomically for readers.

    An existing ``dest`` is first renamed aside (hidden: ``.dest.old-<id>``), the staging folder renamed into place, then
    the old copy removed; if the second rename fails the old one is put back. ``staging`` must be on the same
    file system as ``dest`` (build it beside ``dest``).
    """
    staging, dest = Path(staging), Path(dest)
    if not (dest.exists() or dest.is_symlink()):
        os.replace(staging, dest)
        return dest
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(dest, old)
    try:
        os.replace(staging, dest)
    except BaseException:
        os.replace(old, dest)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)
    return dest


def check_output(path, *, folder: bool, flag: str = "-o", what: str | None = None) -> Path:
    """Refuse, before any work, an output ``path`` that cannot be written as asked: a file where a folder goes
    (``folder=True``: a run folder, a store, a plot folder) or a folder where a file goes, or a path under a file.
    One :class:`~hambench.errors.InputError` line naming ``flag`` and the path; nothing is created."""
    path = Path(path)
    what = what or ("a folder" if folder else "a file")
    if folder and path.exists() and not path.is_dir():
        raise InputError(path, f"{flag}: is a file; {flag} takes {what} here")
    if not folder and path.is_dir():
        raise InputError(path, f"{flag}: is a folder; {flag} takes {what} here")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(path, f"{flag}: {parent} is a file, not a folder")
            break
    return path

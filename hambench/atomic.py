"""Atomic writes: every file and folder hambench writes appears whole or not at all.

One implementation for the whole project (prepare's parts and manifests, predictions, scores, plots,
checkpoints, leaderboard pages): a file is written to a unique hidden ``.NAME.<random>.partial`` beside its
destination and renamed over it (``os.replace`` is atomic on POSIX within one file system); a folder is built
under a staging name and swapped in with :func:`replace_dir` (one atomic swap where the system has one). An
exception or a kill leaves the destination as it was (a killed process can leave a ``.partial`` behind, which no
reader looks at).

>>> write_json(path, {"a": 1})                      # doctest: +SKIP
>>> with atomic_path(path) as tmp:                 # doctest: +SKIP
...     np.savez(tmp, x=x)                         # any writer that wants a path
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import shutil
import uuid
from pathlib import Path

from hambench.errors import InputError

__all__ = ["partial_path", "atomic_path", "write_bytes", "write_text", "write_json", "exchange", "replace_dir",
           "check_output"]


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


#: renameat2(2)'s flag that swaps two paths in one step (Linux ≥ 3.15; ext4, xfs, btrfs, tmpfs, overlayfs)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.lru_cache(maxsize=1)
def _renameat2():
    """libc's ``renameat2`` (None where the C library has none: not Linux, or glibc < 2.28)."""
    try:
        f = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    f.restype = ctypes.c_int
    return f


def exchange(a, b) -> bool:
    """Swap the paths ``a`` and ``b`` (files or folders, both existing) in one atomic step; False where the
    system cannot (no ``renameat2``, or a file system without ``RENAME_EXCHANGE``), and nothing was changed."""
    f = _renameat2()
    if f is None:
        return False
    if f(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")


def replace_dir(staging, dest) -> Path:
    """Move the finished folder ``staging`` to ``dest``, replacing whatever ``dest`` was, atomically.

    An existing ``dest`` is swapped with ``staging`` in one step (:func:`exchange`), so a reader — or a process
    killed at any instant — sees the old ``dest`` or the new one, never neither; the old copy, now under the
    staging name, is then removed. Where the system cannot swap, ``dest`` is renamed aside (hidden:
    ``.dest.old-<id>``) and the staging folder renamed into place (the old one is put back if that fails; a kill
    between the two renames leaves the old copy under the hidden name). ``staging`` must be on the same file
    system as ``dest`` (build it beside ``dest``).
    """
    staging, dest = Path(staging), Path(dest)
    if not (dest.exists() or dest.is_symlink()):
        os.replace(staging, dest)
        return dest
    if exchange(staging, dest):
        old = staging
    else:
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

"""``hambench export``: a store → one DeepH folder per structure (DeepH-dock or legacy DeepH-pack/DeepH-E3 layout).

The whole export is written into ``<output>.partial-<uuid>`` and renamed to ``output`` only when every structure
is written, so an interrupted export never leaves a half-filled ``output``. Folder names are the structure ids
made safe for a file system (``a/rot0`` → ``a_rot0``; collisions get ``-<index>``); ``export.json`` in the output
maps every folder back to its structure (id, index, parent, rotation); ``hambench prepare --source deeph/folder``
on the output reads it back (ids, parents and rotations of augmented copies). Re-imported structures have their
edges sorted by (i, j, R), as every DeepH reader gives them: the blocks are those of the store, the flat arrays are
in another order when the store's edges were not sorted.

Progress goes to stderr (quiet with ``quiet``); ``overwrite`` replaces an earlier export (a folder with
``export.json``), never another folder.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from contextlib import nullcontext
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hambench.atomic import check_output, replace_dir
from hambench.errors import InputError
from hambench.store._store import open_store
from . import deeph_format

__all__ = ["FORMATS", "export_store", "folder_names"]

#: ``--format`` → writer name in :mod:`hambench.pipelines.deeph_format`
FORMATS = {"deeph": "write_new_folder", "deeph-legacy": "write_legacy_folder"}

_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


def folder_names(ids) -> list[str]:
    """A safe, unique folder name for every structure id, in order.

    Runs of characters other than letters, digits and ``._+=-`` become ``_``; leading dots are dropped (no hidden
    folders, no ``..``); an empty result becomes ``structure``. Names are unique ignoring case (case-insensitive
    file systems): a name already taken gets ``-<index of the structure>``.
    """
    out, taken = [], set()
    for k, sid in enumerate(ids):
        name = _UNSAFE.sub("_", str(sid)).lstrip(".")[:200] or "structure"
        if name.lower() in taken or name.lower() == "export.json":
            name = f"{name}-{k}"
            while name.lower() in taken:
                name += "_"
        taken.add(name.lower())
        out.append(name)
    return out


def _progress(quiet: bool, total: int):
    if quiet:
        return nullcontext(None)
    return Progress(TextColumn("[bold]export"), BarColumn(), MofNCompleteColumn(), TextColumn("structures"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True))


def export_store(store_path, fmt: str, output, quiet: bool = False, overwrite: bool = False) -> str:
    """Write every structure of the store ``store_path`` as a ``fmt`` folder under ``output``; returns a summary line.

    ``fmt`` is ``"deeph"`` (DeepH-dock: POSCAR, info.json, hamiltonian.h5 / overlap.h5, hambench order) or
    ``"deeph-legacy"`` (element.dat, lat.dat, …, hamiltonians.h5 / overlaps.h5 keyed "[Rx, Ry, Rz, i, j]" 1-based,
    OpenMX order). Raises :class:`~hambench.errors.StoreError` for a store of the wrong kind or version and
    :class:`~hambench.errors.InputError` for an unknown format or an ``output`` that exists and is not empty
    (with ``overwrite``: that is not an earlier export, i.e. has no ``export.json``).
    """
    t0 = time.perf_counter()
    if fmt not in FORMATS:
        raise InputError(None, f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    output = check_output(output, folder=True, what="the export folder")
    replace = output.exists() and any(output.iterdir())
    if replace and not overwrite:
        raise InputError(output, "exists and is not empty; choose another -o or pass --overwrite")
    if replace and not (output / "export.json").is_file():
        raise InputError(output, "is not an earlier hambench export (no export.json): --overwrite replaces only "
                                 "those; choose another -o")
    st = open_store(store_path)
    if len(st) and int(st.meta.counts.S) == 0:
        why = (st.attrs.get("overlap") or {}).get("why")
        raise InputError(store_path, "has no overlap S (a prediction made with --structures"
                                     + (f"; {why}" if why else "") + "): a DeepH folder needs overlap.h5 with "
                                     "real entries, so nothing is exported")
    output.parent.mkdir(parents=True, exist_ok=True)
    write = getattr(deeph_format, FORMATS[fmt])
    n = len(st)
    ids = [str(x) for x in st.array("structures/id")[:]] if n else []
    names = folder_names(ids)
    tmp = output.with_name(f"{output.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    index = []
    try:
        with _progress(quiet, n) as bar:
            task = bar.add_task("export", total=n) if bar else None
            for k, name in enumerate(names):
                s = st[k]
                write(s, tmp / name)
                entry = {"folder": name, "id": s.id, "index": k}
                if s.parent >= 0:
                    entry.update(parent=int(s.parent), rotation=[[float(x) for x in r] for r in s.rotation])
                index.append(entry)
                if bar:
                    bar.update(task, advance=1)
        (tmp / "export.json").write_text(json.dumps(
            {"store": str(Path(store_path).resolve()), "format": fmt, "spinful": st.spinful, "structures": index}, indent=1))
        replace_dir(tmp, output)  # an empty directory, or an earlier export with --overwrite, is replaced
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return f"exported {n} structure{'s' if n != 1 else ''} of {store_path} as {fmt} folders to {output} " \
           f"in {time.perf_counter() - t0:.1f} s"

"""``hambench prepare``: raw DFT outputs → one Zarr store.

A *source* turns one family of raw files into :class:`hambench.store._structure.Structure` records in hambench
conventions; the driver (:mod:`hambench.pipelines.driver`) runs any source over Dask into a store.

The source contract (subclass :class:`Source`):

``Options`` (a frozen dataclass, subclass of :class:`Source.Options`, declared by the source itself)
    The source's options with their types (``int``, ``float``, ``str``, ``Path`` or ``bool``, each optionally
    ``| None``) and defaults, the one place each default lives. :func:`get_source` refuses an unknown or mistyped
    option, or a value outside a field's ``choices``, in one line (:class:`hambench.errors.InputError`) before the
    source is built; ``seed`` and ``cutoff`` (the driver's) are every source's. ``hambench prepare``'s source flags
    are generated from these fields (``--field-name``, a bool is a flag); a field's ``metadata`` gives its CLI
    ``help`` and optionally ``choices`` (fixed values), ``min`` (numbers) and ``flag`` (another flag name, e.g.
    ``--dataset-version`` for qh9's ``version``)::

        count: int = dataclasses.field(default=8, metadata={"help": "number of structures.", "min": 1})
``__init__(self, input_path, **options)``
    Check the input exists and option values make sense; raise :class:`hambench.errors.InputError` (naming the
    file and the problem) otherwise. ``self.opts`` is the filled-in ``Options``.
``items(self) -> list``
    Deterministic list of small picklable work items (a folder path, a file, a (db, start, stop) range…).
``read(self, item) -> list[Structure]``
    The structures of one item, converted to eV, Å and hambench orbital order, *not yet validated*
    (the driver calls ``Structure.validate``). Runs inside Dask workers: no global state.
``attrs(self) -> StoreAttrs``
    Store-level metadata (:class:`hambench.store._meta.StoreAttrs`): ``kind`` ('crystal' | 'molecule'), ``spinful``,
    ``dft`` {code, version, functional, basis, ...}, ``constants`` (which unit constants converted the data),
    optional ``splits``. Whether runs mix spinless and spinful is checked once, by the driver.

The registry (``SOURCES``, :func:`get_source`, :func:`list_sources`) is :mod:`.registry`.
"""

from __future__ import annotations

if __name__ != "hambench.pipelines":  # the folder installs as hambench.pipelines, never as a top-level package
    raise ImportError(f"{__name__!r} is the folder of hambench.pipelines: import hambench.pipelines (DESIGN.md §2)")

import dataclasses
import os
from pathlib import Path

from hambench.store._meta import StoreAttrs
from hambench.errors import InputError

__all__ = ["Source", "StoreAttrs", "SOURCES", "get_source", "list_sources", "option_fields", "prepare", "find_files",
           "check_choices", "choice_problem"]


class Source:
    """Base class of a prepare source (see the module docstring for the contract)."""

    #: ``family/name`` as given to ``--source``
    name: str = ""
    #: one line for ``--list-sources``
    doc: str = ""

    @dataclasses.dataclass(frozen=True)
    class Options:
        """Options every source takes (the driver passes them)."""

        seed: int = 0
        cutoff: float | None = None

    def __init__(self, input_path=None, **options):
        self.input_path = input_path
        known = {f.name for f in dataclasses.fields(self.Options)}
        self.opts = self.Options(**{k: v for k, v in options.items() if k in known and v is not None})

    def items(self) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self, item) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def attrs(self) -> StoreAttrs:  # pragma: no cover - abstract
        raise NotImplementedError


def choice_problem(field: dataclasses.Field, value) -> str | None:
    """What is wrong with ``value`` for an option whose field lists ``metadata["choices"]`` (None: nothing)."""
    choices = field.metadata.get("choices")
    if choices and value is not None and value not in choices:
        return f"must be {' or '.join(repr(c) for c in choices)}, got {value!r}"
    return None


def check_choices(opts) -> None:
    """Refuse (InputError, one line) an option whose field lists ``metadata["choices"]`` and whose value is not one."""
    for f in dataclasses.fields(opts):
        problem = choice_problem(f, getattr(opts, f.name))
        if problem:
            raise InputError(None, f"{f.name} {problem}")


def find_files(root, match) -> list[Path]:
    """Every file under the folder ``root`` whose name satisfies ``match(name)``, following symbolic links.

    Run folders are often folders of links to runs elsewhere: links to folders and files are followed (paths keep
    the link names, so ids do not change). A link back to one of its own ancestors would recurse forever: it
    raises :class:`InputError` naming the link and its target; a folder reached twice through different links is
    read once. Broken links are ignored. Returns paths in walk order (callers sort).
    """
    root = Path(root)
    out: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def walk(folder: Path, ancestors: tuple):
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            raise InputError(folder, f"cannot list this folder ({e.strerror})") from None
        for e in entries:
            try:
                is_dir = e.is_dir()  # follows links
            except OSError:
                continue
            path = folder / e.name
            if is_dir:
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    raise InputError(path, f"symbolic link loop: it points back to {os.path.realpath(path)}, a "
                                           "folder containing it; remove or retarget the link")
                if key in seen:
                    continue
                seen.add(key)
                walk(path, ancestors + (key,))
            elif match(e.name):
                try:
                    if e.is_file():  # follows links; broken ones are skipped
                        out.append(path)
                except OSError:
                    continue

    st = os.stat(root)
    seen.add((st.st_dev, st.st_ino))
    walk(root, ((st.st_dev, st.st_ino),))
    return out


def prepare(source: str, input_path, output, **options):
    """Run ``source`` into the store ``output``; returns a one-line summary. See :func:`driver.run`."""
    from .driver import run  # here, not at the top: the driver imports this package (its registry)

    return run(source, input_path, output, **options)


from .registry import SOURCES, get_source, list_sources, option_fields  # noqa: E402  (needs Source defined)

"""``hambench prepare``: raw DFT outputs → one Zarr store.

A *source* turns one family of raw files into :class:`hambench.structure.Structure` records in hambench
conventions; the driver (:mod:`hambench.pipelines.driver`) runs any source over Dask into a store.

The source contract (subclass :class:`Source`):

``__init__(self, input_path, **options)``
    Check the input exists and options make sense; raise :class:`hambench.errors.InputError` (naming the
    file and the problem) otherwise. Unknown options are ignored (the CLI passes every option given).
``items(self) -> list``
    Deterministic list of small picklable work items (a folder path, a file, a (db, start, stop) range…).
``read(self, item) -> list[Structure]``
    The structures of one item, converted to eV, Å and hambench orbital order, *not yet validated*
    (the driver calls ``Structure.validate``). Runs inside Dask workers: no global state.
``attrs(self) -> dict``
    Store-level metadata: ``kind`` ('crystal' | 'molecule'), ``spinful``, ``dft`` {code, version, functional,
    basis, ...}, ``constants`` (which unit constants converted the data), optional ``splits``.
``cost(self, item) -> float`` (optional)
    Relative work of an item, used to group items into ranges (default 1).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from ..errors import InputError

__all__ = ["Source", "SOURCES", "get_source", "list_sources", "prepare", "find_files"]


class Source:
    """Base class of a prepare source (see the module docstring for the contract)."""

    #: ``family/name`` as given to ``--source``
    name: str = ""
    #: one line for ``--list-sources``
    doc: str = ""

    def __init__(self, input_path=None, **options):
        self.input_path = input_path
        self.options = options

    def items(self) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self, item) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def attrs(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def cost(self, item) -> float:
        return 1.0


#: ``--source`` name → "module:factory" (imported lazily so the CLI starts fast)
SOURCES: dict[str, str] = {
    "deeph/folder": "deeph:DeepHFolderSource",
    "deeph/graphene": "deeph:named_dataset",
    "deeph/mos2": "deeph:named_dataset",
    "deeph/bilayer_graphene": "deeph:named_dataset",
    "deeph/bilayer_bismuthene": "deeph:named_dataset",
    "deeph/bilayer_bi2te3": "deeph:named_dataset",
    "deeph/bilayer_bi2se3": "deeph:named_dataset",
    "openmx/scfout": "openmx:ScfoutSource",
    "pyscf/qm9": "pyscf_qm9:QM9Source",
    "pyscf/outputs": "pyscf_qm9:PySCFOutputsSource",
    "pyscf/crystal": "pyscf_crystal:CrystalSource",
    "qh9/stable": "qh9:QH9Source",
    "qh9/dynamic": "qh9:QH9Source",
    "abacus/csr": "abacus:AbacusSource",
    "siesta/hsx": "siesta:SiestaSource",
    "synthetic/random": "synthetic:SyntheticSource",
}


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


def get_source(name: str, input_path=None, **options) -> Source:
    """Instantiate the source registered as ``name`` (e.g. ``'deeph/folder'``)."""
    target = SOURCES.get(name)
    if target is None:
        raise InputError(None, f"unknown source {name!r}; known sources: {', '.join(sorted(SOURCES))}")
    module, factory = target.split(":")
    try:
        mod = importlib.import_module(f"{__name__}.{module}")
        make = getattr(mod, factory)
    except (ImportError, AttributeError) as e:
        raise InputError(None, f"source {name!r} is not available in this build ({e})") from None
    return make(input_path, source_name=name, **options)


def list_sources() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered source that imports."""
    out = []
    for name, target in SOURCES.items():
        module, factory = target.split(":")
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
            obj = getattr(mod, factory)
            doc = (getattr(obj, "doc", "") or (obj.__doc__ or "").strip().splitlines()[0]) if obj else ""
        except Exception as e:  # keep listing the others
            doc = f"(unavailable: {type(e).__name__})"
        out.append((name, doc))
    return out


def prepare(source: str, input_path, output, **options):
    """Run ``source`` into the store ``output``; returns a one-line summary. See :func:`driver.run`."""
    from .driver import run

    return run(source, input_path, output, **options)

"""The base of sources whose items are run folders or files found under ``--input`` (OpenMX, ABACUS, SIESTA).

:class:`FileTreeSource` does what those sources share, once:

* ``__init__``: ``--input`` must be given (one :class:`InputError` line naming the source and what ``--input``
  must be: the class's :attr:`~FileTreeSource.input_help`) and must exist; option values outside a field's
  ``metadata["choices"]`` are refused (:func:`hambench.pipelines.check_choices`); the tree is scanned with the subclass's
  :meth:`~FileTreeSource.find` and an empty scan is refused with :attr:`~FileTreeSource.none_found`.
* ``items()``: the scanned paths, as strings, in :meth:`find`'s order.
* ``id_of(item)``: the structure id of an item: the path of its run folder relative to ``--input`` (the root's own
  name when the run folder is the root), followed by ``/<suffix>`` where a folder holds several runs
  (:meth:`_run_suffix`). Stores depend on these ids: each source keeps its own rules through the hooks.
* ``read(item)``: ``[read_run(Path(item), id_of(item))]``.
* ``attrs()``: :meth:`_attrs_dict`, computed once, as :class:`~hambench.store._meta.StoreAttrs`.
* ``spinful_of(item)``: the cheap spin pre-check the driver runs before any worker starts (None: unknown, read
  decides). Subclasses read only a header or a keyword file.
"""

from __future__ import annotations

from pathlib import Path

from hambench.store._meta import StoreAttrs
from hambench.errors import InputError
from . import Source, check_choices

__all__ = ["FileTreeSource"]


class FileTreeSource(Source):
    """A source whose items are runs (folders or files) found below ``--input``; subclasses fill the hooks."""

    #: what ``--input`` must be, after "--source NAME needs --input: "
    input_help: str = ""
    #: the error when the scan finds nothing (said of ``--input``)
    none_found: str = ""

    def __init__(self, input_path=None, source_name=None, **options):
        super().__init__(input_path, **options)
        self.source_name = source_name or self.name
        if input_path is None:
            raise InputError(None, f"--source {self.source_name} needs --input: {self.input_help}")
        self.root = Path(input_path)
        if not self.root.exists():
            raise InputError(self.root, "no such file or directory")
        check_choices(self.opts)
        self._items = [str(p) for p in self.find(self.root)]
        if not self._items:
            raise InputError(self.root, self.none_found)
        self._attrs = None

    # --- hooks -------------------------------------------------------------------------------------------
    def find(self, root: Path) -> list[Path]:  # pragma: no cover - abstract
        """The runs below ``root`` (``root`` itself may be one), sorted: the items."""
        raise NotImplementedError

    def read_run(self, path: Path, struct_id: str):  # pragma: no cover - abstract
        """One run → its :class:`~hambench.store._structure.Structure` with id ``struct_id``."""
        raise NotImplementedError

    def _attrs_dict(self) -> dict:  # pragma: no cover - abstract
        """Store metadata (a dict for :meth:`StoreAttrs.from_dict`), from the first item."""
        raise NotImplementedError

    def _run_folder(self, item: Path) -> Path:
        """The folder an item's id names (default: the item itself)."""
        return item

    def _root_id(self, item: Path) -> str:
        """The id of an item whose run folder is ``--input`` itself (default: that folder's real name)."""
        return self._run_folder(item).resolve().name

    def _run_suffix(self, item: Path) -> str | None:
        """What tells this run from the other runs of its folder, or None when the folder holds one run."""
        return None

    def spinful_of(self, item) -> bool | None:
        """Whether the run is spinful, from a header or keyword file only; None when that cannot tell."""
        return None

    # --- the contract ------------------------------------------------------------------------------------
    def items(self) -> list[str]:
        return list(self._items)

    def id_of(self, item) -> str:
        """The structure id of ``item`` (see the module docstring)."""
        p = Path(item)
        folder = self._run_folder(p)
        root = self.root.resolve()
        if p.resolve() == root or folder.resolve() == root:
            base = self._root_id(p)
        else:
            base = folder.relative_to(self.root).as_posix()
        suffix = self._run_suffix(p)
        return f"{base}/{suffix}" if suffix else base

    def read(self, item) -> list:
        return [self.read_run(Path(item), self.id_of(item))]

    def attrs(self) -> StoreAttrs:
        if self._attrs is None:
            self._attrs = self._attrs_dict()
        return StoreAttrs.from_dict(self._attrs)

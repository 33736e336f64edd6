"""The store's attributes as typed values: :class:`StoreMeta` (a whole store's) and :class:`StoreAttrs` (what a
``prepare`` source declares), both frozen, both built from the attribute dict with ``from_dict`` and written back
with ``to_dict``.

Each field has one ``parse_*`` function (the zarr ``core/metadata/v3.py`` habit): it takes the JSON value,
returns the typed value and raises :class:`~hambench.errors.StoreMetaError` naming the store and the attribute.
``to_dict(from_dict(d)) == d`` with the same key order, so a store's bytes do not depend on these classes, and
keys that are no field (``zero_filled_edges``, a source's ``geometry``, …) are kept in ``extra``.

>>> meta = StoreMeta.from_dict(store_attrs, where="x.zarr")        # doctest: +SKIP
>>> meta.kind, meta.spinful, meta.species[6], meta.counts.edges    # doctest: +SKIP
('molecule', False, (0, 0, 1), 1024)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import MISSING, InitVar, dataclass, field, fields
from typing import Any, ClassVar

from hambench.basis._conventions import ORBITAL_CONVENTION
from hambench.errors import StoreMetaError
from hambench.store._schema import ROWS, STORE_VERSION

__all__ = [
    "KINDS", "StoreCounts", "StoreMeta", "StoreAttrs", "parse_version", "parse_kind", "parse_units",
    "parse_orbital_convention", "parse_spinful", "parse_species", "parse_dft", "parse_constants", "parse_splits",
    "parse_split_names", "parse_counts", "parse_source", "parse_created_by", "parse_excluded",
    "parse_predictions_version", "parse_truth", "parse_model", "parse_predicted_split", "parse_content_checksum",
    "parse_shards",
]

KINDS = ("crystal", "molecule")


def _fail(where, key: str, problem: str):
    raise StoreMetaError(where, f"store attribute {key} {problem}")


def _mapping(data, where, key: str) -> dict:
    """A deep copy of the mapping ``data`` (edits of the caller's dict do not reach the attributes)."""
    if not isinstance(data, Mapping):
        _fail(where, key, f"must be a mapping, got {type(data).__name__}")
    return copy.deepcopy(dict(data))


def _optional_mapping(data, where, key: str) -> dict | None:
    return None if data is None else _mapping(data, where, key)


def _integer(data, where, key: str) -> int:
    if isinstance(data, bool) or not isinstance(data, int):
        _fail(where, key, f"must be an integer, got {data!r}")
    return int(data)


# --- one parser per field ------------------------------------------------------------------------------------
def parse_version(data, where=None) -> int:
    """``hambench_store_version``: the schema version this hambench reads (:data:`STORE_VERSION`)."""
    if data != STORE_VERSION or isinstance(data, bool):
        raise StoreMetaError(where, f"store version {data}, this hambench reads version {STORE_VERSION}")
    return STORE_VERSION


def parse_kind(data, where=None) -> str:
    """``kind``: ``'crystal'`` or ``'molecule'``."""
    if data not in KINDS:
        _fail(where, "kind", f"must be one of {', '.join(KINDS)}, got {data!r}")
    return str(data)


def parse_units(data, where=None) -> dict[str, str]:
    """``units``: {energy: "eV", length: "Å"} (names of the units the arrays are in)."""
    units = _mapping(data, where, "units")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in units.items()):
        _fail(where, "units", f"must map quantities to unit names, got {data!r}")
    return units


def parse_orbital_convention(data, where=None) -> str:
    """``orbital_convention``: the one this hambench writes (:data:`ORBITAL_CONVENTION`)."""
    if data != ORBITAL_CONVENTION:
        raise StoreMetaError(where, f"orbital convention {data!r}, expected {ORBITAL_CONVENTION!r}")
    return str(data)


def parse_spinful(data, where=None) -> bool | None:
    """``spinful``: true or false (None: a source that does not say; the driver decides)."""
    if data is not None and not isinstance(data, bool):
        _fail(where, "spinful", f"must be true or false, got {data!r}")
    return data


def parse_species(data, where=None) -> dict[int, tuple[int, ...]]:
    """``species``: {Z: [l of each shell]}, JSON keys the atomic numbers as strings; typed {int: (l, …)}."""
    species = _mapping(data, where, "species")
    out = {}
    for z, shells in species.items():
        try:
            zi = int(z)
        except (TypeError, ValueError):
            zi = -1
        if not 1 <= zi <= 118 or str(zi) != str(z).strip():
            _fail(where, "species", f"has key {z!r}, not an atomic number")
        if isinstance(shells, (str, Mapping)) or not all(isinstance(l, int) and not isinstance(l, bool) and l >= 0
                                                         for l in shells):
            _fail(where, "species", f"of Z={zi} must be a list of shell l's, got {shells!r}")
        out[zi] = tuple(int(l) for l in shells)
    return out


def parse_dft(data, where=None) -> dict[str, Any]:
    """``dft``: {code, version, functional, basis, …} as the source recorded them."""
    return _mapping(data, where, "dft")


def parse_constants(data, where=None) -> str:
    """``constants``: which unit constants converted the data (e.g. ``"CODATA2018"``)."""
    if not isinstance(data, str):
        _fail(where, "constants", f"must be a string, got {data!r}")
    return data


def parse_splits(data, where=None) -> dict[str, tuple[str, ...]]:
    """``splits``: {split name: [subset labels]}; ``splits/<name>`` holds codes into the labels."""
    splits = _mapping(data, where, "splits")
    for name, labels in splits.items():
        if not isinstance(name, str) or isinstance(labels, (str, Mapping)) or not all(
                isinstance(x, str) for x in labels):
            _fail(where, "splits", f"must map split names to lists of labels, got {name!r}: {labels!r}")
    return {name: tuple(labels) for name, labels in splits.items()}


def parse_split_names(data, where=None) -> tuple[str, ...] | None:
    """A source's ``splits``: the names of the splits it assigns (None: it says nothing)."""
    if data is None:
        return None
    if isinstance(data, (str, Mapping)) or not all(isinstance(s, str) for s in data):
        _fail(where, "splits", f"must be a list of names, got {data!r}")
    return tuple(data)


def parse_counts(data, where=None) -> StoreCounts:
    """``counts``: {structures, atoms, edges, H, S, T}, the rows of the store's arrays."""
    if isinstance(data, StoreCounts):
        return data
    counts = _mapping(data, where, "counts")
    if sorted(counts) != sorted(ROWS):
        _fail(where, "counts", f"must have the keys {', '.join(ROWS)}, got {', '.join(map(str, counts)) or 'none'}")
    values = {k: _integer(counts[k], where, f"counts.{k}") for k in ROWS}
    if any(v < 0 for v in values.values()):
        _fail(where, "counts", f"must not be negative, got {counts!r}")
    return StoreCounts(**values)


def parse_source(data, where=None) -> dict[str, Any] | None:
    """``source``: {name, input, options, augment, seed, cutoff} of the ``prepare`` run that made the store."""
    return _optional_mapping(data, where, "source")


def parse_created_by(data, where=None) -> dict[str, Any] | None:
    """``created_by``: {hambench: version, command: …}."""
    return _optional_mapping(data, where, "created_by")


def parse_excluded(data, where=None) -> tuple[dict[str, Any], ...] | None:
    """``excluded``: [{item, reason}] of the input items ``prepare`` left out."""
    if data is None:
        return None
    if isinstance(data, (str, Mapping)) or not all(isinstance(x, Mapping) for x in data):
        _fail(where, "excluded", f"must be a list of {{item, reason}}, got {data!r}")
    return tuple(copy.deepcopy(dict(x)) for x in data)


def parse_predictions_version(data, where=None) -> int | None:
    """``hambench_predictions_version``: set in prediction stores only (checked by ``open_predictions``)."""
    return None if data is None else _integer(data, where, "hambench_predictions_version")


def parse_truth(data, where=None) -> dict[str, Any] | None:
    """``truth``: {path, checksum, store_version} of the store predicted from (None: structures from a file)."""
    return _optional_mapping(data, where, "truth")


def parse_model(data, where=None) -> dict[str, Any] | None:
    """``model``: {name, checkpoint, config, …}, whatever the predictor says about itself."""
    return _optional_mapping(data, where, "model")


def parse_predicted_split(data, where=None) -> str | None:
    """``split``: the ``NAME:SUBSET`` a prediction store predicts (None: the structures given)."""
    if data is not None and not isinstance(data, str):
        _fail(where, "split", f"must be NAME:SUBSET or null, got {data!r}")
    return data


def parse_content_checksum(data, where=None) -> dict[str, Any] | None:
    """``content_checksum``: {algorithm, sha256, fingerprint}, the store's own cached checksum."""
    return _optional_mapping(data, where, "content_checksum")


def parse_shards(data, where=None) -> dict[str, tuple[int, ...]] | None:
    """``shards``: {array name: [bytes of each shard file, 0 = no file]}, the manifest a writer records when it
    finishes a store (:mod:`hambench.store._integrity`); None in stores made before manifests."""
    if data is None:
        return None
    shards = _mapping(data, where, "shards")
    for name, sizes in shards.items():
        if isinstance(sizes, (str, Mapping)) or not all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in sizes):
            _fail(where, "shards", f"must map array names to lists of file sizes, got {name!r}: {sizes!r}")
    return {name: tuple(int(x) for x in sizes) for name, sizes in shards.items()}


# --- the typed values ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreCounts:
    """Rows of a store's arrays: structures, atoms, edges and elements of H, S and T."""

    structures: int
    atoms: int
    edges: int
    H: int
    S: int
    T: int

    def to_dict(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in ROWS}


def _jsonable(value):
    """The JSON form of a parsed value: tuples as lists, mappings with str keys (a deep copy)."""
    if isinstance(value, StoreCounts):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return copy.deepcopy(value)


@dataclass(frozen=True, kw_only=True)
class _Attributes:
    """``from_dict``/``to_dict`` of a frozen dataclass whose fields are keys of an attribute dict.

    Subclasses list ``_KEYS`` (key → (field, parser)) in the order ``to_dict`` writes fields that ``from_dict``
    did not see, and ``_REQUIRED`` (keys ``from_dict`` refuses to miss). ``order`` remembers the keys of the dict
    read, so ``to_dict`` gives it back in the same order; ``extra`` holds the keys that are no field; ``where``
    (not kept) names the store in errors.
    """

    extra: Mapping[str, Any] = field(default_factory=dict)
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)
    where: InitVar[object] = None

    _KEYS: ClassVar[dict[str, tuple[str, Any]]] = {}
    _REQUIRED: ClassVar[tuple[str, ...]] = ()
    #: keys ``to_dict`` writes even when ``from_dict`` did not see them and they hold their default
    _ALWAYS: ClassVar[tuple[str, ...]] = ()
    #: required keys ``from_dict`` parses as soon as it sees them (before looking for the others)
    _FIRST: ClassVar[tuple[str, ...]] = ()
    _WHAT: ClassVar[str] = "store attributes"

    def __post_init__(self, where):
        self._parse_fields(where)

    def _parse_fields(self, where) -> None:
        for key, (name, parse) in self._KEYS.items():
            object.__setattr__(self, name, parse(getattr(self, name), where))
        extra = _mapping(self.extra, where, "extra")
        clash = sorted(set(extra) & set(self._KEYS))
        if clash:
            raise StoreMetaError(where, f"store attributes {', '.join(clash)} are fields, not extra keys")
        object.__setattr__(self, "extra", extra)
        object.__setattr__(self, "order", tuple(self.order))

    @classmethod
    def from_dict(cls, d: Mapping, where=None):
        """The typed attributes of the dict ``d`` (as ``to_dict`` writes it); ``where`` names the store in errors."""
        if not isinstance(d, Mapping):
            raise StoreMetaError(where, f"{cls._WHAT} must be a mapping, got {type(d).__name__}")
        for key in cls._REQUIRED:
            if key not in d:
                raise StoreMetaError(where, cls._missing(key))
            if key in cls._FIRST:
                cls._KEYS[key][1](d[key], where)
        known = {name: d[key] for key, (name, _) in cls._KEYS.items() if key in d}
        extra = {k: v for k, v in d.items() if k not in cls._KEYS}
        return cls(**known, extra=extra, order=tuple(d), where=where)

    @classmethod
    def _missing(cls, key: str) -> str:
        return f"missing attribute {key!r}"

    def to_dict(self) -> dict:
        """The attribute dict: the keys ``from_dict`` read, in their order, then the other fields that are set
        (not their default) and extra keys. JSON values (lists, str keys), deep-copied: edits do not reach here."""
        defaults = {f.name: f.default_factory() if f.default_factory is not MISSING else f.default
                    for f in fields(self)}
        values = {key: getattr(self, name) for key, (name, _) in self._KEYS.items()
                  if key in self.order or key in self._ALWAYS or getattr(self, name) != defaults.get(name, MISSING)}
        values.update(self.extra)
        keys = [k for k in self.order if k in values] + [k for k in values if k not in self.order]
        return {k: _jsonable(values[k]) for k in keys}


#: attribute key → (field, parser) of the fields both a source declares and a store keeps
_DECLARED_KEYS = {
    "kind": ("kind", parse_kind),
    "spinful": ("spinful", parse_spinful),
    "dft": ("dft", parse_dft),
    "constants": ("constants", parse_constants),
}


@dataclass(frozen=True, kw_only=True)
class StoreMeta(_Attributes):
    """The attributes of a store, parsed once when it is opened (``store.meta``) and written by the writer.

    Every store has ``version`` (``hambench_store_version``), ``kind`` ('crystal' | 'molecule'), ``units``,
    ``orbital_convention``, ``spinful``, ``species`` ({Z: (l of each shell)}) and ``counts``; ``dft``,
    ``constants`` and ``splits`` ({name: (labels)}) default to empty. Stores made by ``prepare`` also record
    ``source``, ``created_by`` and ``excluded``; prediction stores ``predictions_version``, ``truth``, ``model``,
    ``predicted_split`` (key ``split``); a finished store has ``content_checksum`` and ``shards`` (its manifest:
    the byte size of every shard file, :mod:`hambench.store._integrity`). Other keys are kept in ``extra``.
    """

    version: int
    units: Mapping[str, str]
    orbital_convention: str
    kind: str
    spinful: bool
    species: Mapping[int, tuple[int, ...]]
    counts: StoreCounts
    dft: Mapping[str, Any] = field(default_factory=dict)
    constants: str = "CODATA2018"
    splits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    source: Mapping[str, Any] | None = None
    created_by: Mapping[str, Any] | None = None
    excluded: tuple[Mapping[str, Any], ...] | None = None
    predictions_version: int | None = None
    truth: Mapping[str, Any] | None = None
    model: Mapping[str, Any] | None = None
    predicted_split: str | None = None
    content_checksum: Mapping[str, Any] | None = None
    shards: Mapping[str, tuple[int, ...]] | None = None

    _KEYS: ClassVar[dict[str, tuple[str, Any]]] = {
        "hambench_store_version": ("version", parse_version),
        "units": ("units", parse_units),
        "orbital_convention": ("orbital_convention", parse_orbital_convention),
        **_DECLARED_KEYS,
        "species": ("species", parse_species),
        "splits": ("splits", parse_splits),
        "source": ("source", parse_source),
        "created_by": ("created_by", parse_created_by),
        "excluded": ("excluded", parse_excluded),
        "hambench_predictions_version": ("predictions_version", parse_predictions_version),
        "truth": ("truth", parse_truth),
        "model": ("model", parse_model),
        "split": ("predicted_split", parse_predicted_split),
        "content_checksum": ("content_checksum", parse_content_checksum),
        "counts": ("counts", parse_counts),
        "shards": ("shards", parse_shards),
    }
    #: checked in this order: a store of another version fails on its version first
    _REQUIRED: ClassVar[tuple[str, ...]] = ("hambench_store_version", "kind", "units", "orbital_convention",
                                            "spinful", "species", "counts")
    _FIRST: ClassVar[tuple[str, ...]] = ("hambench_store_version",)

    def __post_init__(self, where):
        self._parse_fields(where)
        if self.spinful is None:
            _fail(where, "spinful", "must be true or false, got None")

    @classmethod
    def _missing(cls, key: str) -> str:
        if key == "hambench_store_version":
            return "not a hambench store (no hambench_store_version attribute)"
        return f"missing attribute {key!r}"

    @property
    def role(self) -> str:
        """``'predictions'`` for a prediction store (it has ``hambench_predictions_version``), else ``'truth'``:
        DFT labels made by ``prepare``, the only kind training and scoring take as truth."""
        return "predictions" if self.predictions_version is not None else "truth"

    @property
    def split_names(self) -> list[str]:
        """Names of the store's splits, sorted."""
        return sorted(self.splits)


@dataclass(frozen=True, kw_only=True)
class StoreAttrs(_Attributes):
    """What a ``prepare`` source declares about its store (``source.attrs()``): ``kind``, ``spinful`` (None: the
    source does not say; the driver decides from the structures), ``dft``, ``constants``, optional ``splits``
    (split names) and ``extra`` (source-specific keys such as ``geometry``). The driver adds what the structures
    tell (species, counts, …) and writes a :class:`StoreMeta`; ``to_dict()`` gives back exactly the declared dict.
    """

    kind: str
    dft: Mapping[str, Any] = field(default_factory=dict)
    constants: str = "CODATA2018"
    spinful: bool | None = None
    splits: tuple[str, ...] | None = None

    _KEYS: ClassVar[dict[str, tuple[str, Any]]] = {**_DECLARED_KEYS, "splits": ("splits", parse_split_names)}
    _REQUIRED: ClassVar[tuple[str, ...]] = ("kind",)
    _ALWAYS: ClassVar[tuple[str, ...]] = ("kind", "dft", "constants")

    @classmethod
    def _missing(cls, key: str) -> str:
        return "store attributes lack 'kind' (crystal or molecule)"


"""Named splits of a store: ``NAME:SUBSET`` specs (``qh9-stable-id:train``), parsed and selected in one place.

A store's split ``NAME`` labels each structure with one of its subsets (``StoreMeta.splits[NAME]``, codes in
``splits/NAME``). Every option that takes a subset (``--split``, ``train.split``, a board's dataset split, the
SCF scorer's ``intersect``) goes through :func:`parse_split` and :func:`select_split`, whose errors name the
option and list what the store has.
"""

from __future__ import annotations

import numpy as np

from hambench.errors import InputError, StoreError

__all__ = ["parse_split", "select_split"]


def parse_split(spec: str, flag: str = "--split") -> tuple[str, str]:
    """``"name:subset"`` → (name, subset); anything else → :class:`InputError` naming ``flag``."""
    name, sep, subset = str(spec).rpartition(":")
    if not sep or not name or not subset:
        raise InputError(None, f"{flag} {spec!r} is not NAME:SUBSET (e.g. qh9-stable-id:train)")
    return name, subset


def select_split(store, spec: str | None, flag: str = "--split") -> np.ndarray:
    """Sorted store indices (int64) of the subset ``spec`` (``"name:subset"``), or of every structure when None.

    An unknown split or subset raises :class:`InputError` naming the store, ``flag``, the split and the known
    ones.
    """
    if spec is None:
        return np.arange(len(store), dtype=np.int64)
    name, subset = parse_split(spec, flag)
    try:
        members = store.split(name)
    except StoreError:
        known = store.meta.splits
        listed = ", ".join(f"{k}:{{{','.join(v)}}}" for k, v in sorted(known.items())) or "none"
        raise InputError(store.path, f"{flag} {spec}: no split named {name!r} (known splits: {listed})") from None
    if subset not in members:
        raise InputError(store.path, f"{flag} {spec}: split {name!r} has no subset {subset!r} (subsets: "
                                     f"{', '.join(members)})")
    return np.asarray(members[subset], dtype=np.int64)

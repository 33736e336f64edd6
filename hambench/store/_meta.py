"""Store-level attributes a prepare source declares: :class:`StoreAttrs`.

A source's ``attrs()`` returns one frozen :class:`StoreAttrs`; the driver writes ``to_dict()`` into the store.
``to_dict()`` gives back exactly the dict the source declared (same keys, values and key order), so the store's
bytes do not depend on this class.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

from hambench.errors import InputError

__all__ = ["StoreAttrs", "KINDS"]

KINDS = ("crystal", "molecule")
_FIELDS = ("kind", "spinful", "dft", "constants", "splits")


@dataclass(frozen=True)
class StoreAttrs:
    """``kind`` ('crystal' | 'molecule'), ``spinful`` (None: the source does not say; the driver decides from the
    structures), ``dft`` {code, version, functional, basis, ...}, ``constants`` (which unit constants converted
    the data), optional ``splits`` (split names) and ``extra``: any source-specific keys (e.g. ``geometry``).
    """

    kind: str
    dft: Mapping[str, Any] = field(default_factory=dict)
    constants: str = "CODATA2018"
    spinful: bool | None = None
    splits: tuple | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: key order of the dict the source declared (to_dict keeps it); empty: the order of ``_FIELDS`` then extra
    order: tuple = field(default=(), compare=False, repr=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InputError(None, f"store attribute kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.spinful is not None and not isinstance(self.spinful, bool):
            raise InputError(None, f"store attribute spinful must be true or false, got {self.spinful!r}")
        if not isinstance(self.dft, Mapping):
            raise InputError(None, f"store attribute dft must be a mapping, got {type(self.dft).__name__}")
        if not isinstance(self.constants, str):
            raise InputError(None, f"store attribute constants must be a string, got {self.constants!r}")
        if self.splits is not None:
            if isinstance(self.splits, str) or not all(isinstance(s, str) for s in self.splits):
                raise InputError(None, f"store attribute splits must be a list of names, got {self.splits!r}")
            object.__setattr__(self, "splits", tuple(self.splits))
        clash = sorted(set(self.extra) & set(_FIELDS))
        if clash:
            raise InputError(None, f"store attributes {', '.join(clash)} are fields, not extra keys")

    @classmethod
    def from_dict(cls, d: Mapping) -> "StoreAttrs":
        """The attributes of the dict ``d`` (as ``to_dict`` writes it); a missing kind or a wrong value → InputError."""
        if not isinstance(d, Mapping):
            raise InputError(None, f"store attributes must be a mapping, got {type(d).__name__}")
        if "kind" not in d:
            raise InputError(None, "store attributes lack 'kind' (crystal or molecule)")
        known = {k: d[k] for k in _FIELDS if k in d}
        extra = {k: v for k, v in d.items() if k not in _FIELDS}
        return cls(**known, extra=extra, order=tuple(d))

    def to_dict(self) -> dict:
        """The dict the source declared: same keys, values and order (a deep copy: edits do not reach here)."""
        values = {"kind": self.kind, "dft": self.dft, "constants": self.constants}
        if self.spinful is not None:
            values["spinful"] = self.spinful
        if self.splits is not None:
            values["splits"] = list(self.splits)
        values.update(self.extra)
        order = [k for k in self.order if k in values] + [k for k in (*_FIELDS, *self.extra)
                                                          if k in values and k not in self.order]
        return {k: copy.deepcopy(values[k]) for k in order}

"""Errors of hambench. Every user-facing failure is one of these, printed as one line by the CLI."""

from __future__ import annotations

__all__ = ["HambenchError", "InputError", "StoreError", "StoreMetaError", "ExcludedItem"]


class HambenchError(Exception):
    """Base class: a failure the user can act on (bad input, missing data, wrong version)."""

    exit_code = 1


class InputError(HambenchError, ValueError):
    """An input file or folder is missing, truncated, corrupt or inconsistent.

    The message names the file and the problem.
    """

    def __init__(self, path, problem: str):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class StoreError(HambenchError, ValueError):
    """A store is of another version, misses a field, or is inconsistent."""


class StoreMetaError(StoreError, InputError):
    """A store attribute (or a source's declaration of one) is missing or has a wrong value.

    The message names the store (when there is one) and the attribute: ``x.zarr: store attribute kind must be one
    of crystal, molecule, got 'liquid'``. It is a :class:`StoreError` and, for the sources that declare
    attributes, an :class:`InputError`.
    """


class ExcludedItem(InputError):
    """One work item that is reported and left out of a store (e.g. an SCF that did not converge),
    while the rest of ``prepare`` goes on."""

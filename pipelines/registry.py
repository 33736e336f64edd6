"""The registry of prepare sources: ``--source`` name → source class, and the option check of :func:`get_source`.

Sources are imported lazily (the CLI starts fast). This module imports neither the driver nor the sources at
import time, so ``driver`` → ``registry`` has no loop through ``pipelines/__init__``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os

from hambench.errors import InputError
from . import choice_problem

__all__ = ["SOURCES", "get_source", "list_sources", "source_class", "option_fields", "check_options"]

#: ``--source`` name → "module:factory" (a Source subclass, or a function with an ``Options`` attribute)
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
    "pyscf/conformers": "pyscf_conformers:ConformerSource",
    "pyscf/outputs": "pyscf_qm9:PySCFOutputsSource",
    "pyscf/crystal": "pyscf_crystal:CrystalSource",
    "qh9/stable": "qh9:QH9Source",
    "qh9/dynamic": "qh9:QH9Source",
    "abacus/csr": "abacus:AbacusSource",
    "siesta/hsx": "siesta:SiestaSource",
    "synthetic/random": "synthetic:SyntheticSource",
}

_PACKAGE = __name__.rsplit(".", 1)[0]


def source_class(name: str):
    """The factory registered as ``name`` (a Source subclass or a function with ``Options``)."""
    target = SOURCES.get(name)
    if target is None:
        raise InputError(None, f"unknown source {name!r}; known sources: {', '.join(sorted(SOURCES))}")
    module, factory = target.split(":")
    try:
        mod = importlib.import_module(f"{_PACKAGE}.{module}")
        return getattr(mod, factory)
    except (ImportError, AttributeError) as e:
        raise InputError(None, f"source {name!r} is not available in this build ({e})") from None


def option_fields(name: str) -> list[dataclasses.Field]:
    """The fields of the ``Options`` dataclass of source ``name``."""
    return list(dataclasses.fields(source_class(name).Options))


def _types_of(f: dataclasses.Field) -> list[str]:
    ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return [t.strip() for t in ann.split("|")]


def _accepts(t: str, v) -> bool:
    if t == "None":
        return v is None
    if t == "bool":
        return isinstance(v, bool)
    if t == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "str":
        return isinstance(v, str)
    if t == "Path":
        return isinstance(v, (str, os.PathLike))
    raise TypeError(f"option type {t!r} is not one check_options knows")


def check_options(name: str, options: dict, flags: dict[str, str] | None = None) -> None:
    """Refuse (InputError, one line) an option source ``name`` does not have, a value of the wrong type, or a value
    outside the field's ``metadata["choices"]``. ``flags`` (field → CLI flag, e.g. ``{"version":
    "--dataset-version"}``) names options as the user typed them."""
    fields = {f.name: f for f in option_fields(name)}

    def label(k: str, quote: bool = True) -> str:
        if flags is not None:
            return flags.get(k, "--" + k.replace("_", "-"))
        return repr(k) if quote else k

    for k, v in options.items():
        f = fields.get(k)
        if f is None:
            known = ", ".join(sorted(label(x) for x in fields))
            raise InputError(None, f"source {name} has no option {label(k)}; its options: {known}")
        types = _types_of(f)
        if not any(_accepts(t, v) for t in types):
            want = " or ".join(t for t in types)
            raise InputError(None, f"source {name}: option {label(k, quote=False)} must be {want}, got {v!r} "
                                   f"({type(v).__name__})")
        problem = choice_problem(f, v)
        if problem:
            raise InputError(None, f"source {name}: option {label(k, quote=False)} {problem}")


def get_source(name: str, input_path=None, **options):
    """Instantiate the source registered as ``name`` (e.g. ``'deeph/folder'``) after checking ``options``."""
    make = source_class(name)
    check_options(name, options)
    return make(input_path, source_name=name, **options)


def list_sources() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered source that imports."""
    out = []
    for name in SOURCES:
        try:
            obj = source_class(name)
            doc = (getattr(obj, "doc", "") or (obj.__doc__ or "").strip().splitlines()[0]) if obj else ""
        except Exception as e:  # keep listing the others
            doc = f"(unavailable: {type(e).__name__})"
        out.append((name, doc))
    return out



"""Model registry: names → builders, config classes and config files.

Each model module in ``hambench.models`` registers itself at import with :func:`register`. The registry finds
the modules by itself (every module of this package except the shared ones), so adding a model means adding a
file, not editing this one. :func:`get` raises :class:`hambench.errors.InputError` listing the known names.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hambench.errors import InputError

__all__ = ["ModelSpec", "register", "get", "names", "specs", "CONFIG_DIR"]

#: folder of the YAML configs, ``models/configs/<name>.yaml``
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

#: modules of this package that are not models
_NOT_MODELS = {"registry", "common", "run", "equivariance"}


@dataclass
class ModelSpec:
    """What the engine needs to know about one model."""

    name: str  # "deephe3", "qhnet", "tracegrad-deephe3", ...
    config_cls: type  # the model's @dataclass config (defaults = the paper's)
    build: Callable  # build(config, layout: BasisLayout[, stage1=module]) -> torch.nn.Module
    config_file: Path | None = None  # models/configs/<name>.yaml (default: CONFIG_DIR / f"{name}.yaml")
    kinds: tuple[str, ...] = ("molecule", "crystal")  # store kinds it accepts
    spinful: bool = False  # supports spinful (SOC) stores
    # models whose trained checkpoint this one takes as its frozen stage 1 (HarmoSE): the caller loads the file
    # named by ``config.stage1`` (when ``config.needs_stage1``) and passes the module as ``build(..., stage1=)``
    stage1: tuple[str, ...] = ()
    description: str = ""
    module: str = field(default="", repr=False)  # filled by register()

    def __post_init__(self):
        if self.config_file is None:
            self.config_file = CONFIG_DIR / f"{self.name}.yaml"
        self.config_file = Path(self.config_file)
        self.kinds = tuple(self.kinds)
        self.stage1 = tuple(self.stage1)


_REGISTRY: dict[str, ModelSpec] = {}
_FAILED: dict[str, str] = {}  # module -> import error, reported by get()
_discovered = False


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` under ``spec.name``; registering another spec under a taken name is an error."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"register() takes a ModelSpec, got {type(spec).__name__}")
    module = getattr(spec.build, "__module__", "").removeprefix("hambench.")
    old = _REGISTRY.get(spec.name)
    if old is not None and old.module != module:  # the same module re-imported may re-register its own name
        raise ValueError(f"model name {spec.name!r} is already registered by {old.module}")
    spec.module = module
    _REGISTRY[spec.name] = spec
    return spec


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    pkg = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name in _NOT_MODELS or info.name.startswith("_") or info.ispkg:
            continue
        mod = f"{__package__}.{info.name}"
        try:
            importlib.import_module(mod)
        except Exception as exc:  # a broken model module must not hide the others; get() reports it
            _FAILED[mod] = f"{type(exc).__name__}: {exc}"


def names() -> list[str]:
    """Registered model names, sorted."""
    _discover()
    return sorted(_REGISTRY)


def specs() -> list[ModelSpec]:
    _discover()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def get(name: str) -> ModelSpec:
    """The spec registered as ``name``; :class:`InputError` naming the known models otherwise."""
    _discover()
    spec = _REGISTRY.get(name)
    if spec is not None:
        return spec
    known = ", ".join(sorted(_REGISTRY)) or "none"
    msg = f"unknown model {name!r} (known: {known})"
    if _FAILED:
        msg += "; modules that failed to import: " + "; ".join(f"{m} ({e})" for m, e in sorted(_FAILED.items()))
    raise InputError(None, msg)

"""hambench.models: the model zoo (DeepH-E3, QHNet, ...) and the parts they share (:mod:`.common`).

Models are found by name through :mod:`.registry` (``hambench.models.get("deephe3")``).
"""

if __name__ != "hambench.models":  # the folder installs as hambench.models, never as a top-level package
    raise ImportError(f"{__name__!r} is the folder of hambench.models: import hambench.models (DESIGN.md §2)")

from .registry import ModelSpec, get, names, register

__all__ = ["ModelSpec", "get", "names", "register"]

"""hambench.models: the model zoo (DeepH-E3, QHNet, ...) and the parts they share (:mod:`.common`).

Models are found by name through :mod:`.registry` (``hambench.models.get("deephe3")``).
"""

from .registry import ModelSpec, get, names, register

__all__ = ["ModelSpec", "get", "names", "register"]

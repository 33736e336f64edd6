"""Orbital bases and rotations: unit and orbital-order conventions per DFT code, the basis layout (shells,
offsets, basic blocks), Wigner-D and block rotations (so3), neighbour lists and the PySCF bridge.
"""

from . import _conventions, _gaussian, _layout, _neighbors, _pyscf, _so3
from ._conventions import *  # noqa: F401,F403
from ._gaussian import *  # noqa: F401,F403
from ._layout import *  # noqa: F401,F403
from ._neighbors import *  # noqa: F401,F403
from ._pyscf import *  # noqa: F401,F403
from ._so3 import *  # noqa: F401,F403

#: the public names of the private modules (each module's own ``__all__``)
__all__ = [*_conventions.__all__, *_gaussian.__all__, *_layout.__all__, *_neighbors.__all__, *_pyscf.__all__, *_so3.__all__]

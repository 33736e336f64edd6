"""Scoring: one metric catalogue, dense assembly, metrics (pure float64), SCF from a predicted Hamiltonian, band
structures, plots and the score command's core.
"""

from . import _catalogue, _format, _console, _dense, _errors, _orbitals, _metrics, _bands, _scf, _plots, _score, _sparse
from ._catalogue import *  # noqa: F401,F403
from ._format import *  # noqa: F401,F403
from ._console import *  # noqa: F401,F403
from ._dense import *  # noqa: F401,F403
from ._errors import *  # noqa: F401,F403
from ._orbitals import *  # noqa: F401,F403
from ._metrics import *  # noqa: F401,F403
from ._bands import *  # noqa: F401,F403
from ._scf import *  # noqa: F401,F403
from ._plots import *  # noqa: F401,F403
from ._score import *  # noqa: F401,F403
from ._sparse import *  # noqa: F401,F403

#: the public names of the private modules (each module's own ``__all__``)
__all__ = [*_catalogue.__all__, *_format.__all__, *_console.__all__, *_dense.__all__, *_errors.__all__,
           *_orbitals.__all__, *_metrics.__all__, *_bands.__all__, *_scf.__all__, *_plots.__all__, *_score.__all__,
           *_sparse.__all__]

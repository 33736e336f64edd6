"""hambench: a benchmark suite for machine-learned electronic-structure Hamiltonians.

prepare (raw DFT → Zarr store) · train (model zoo) · score (standard metrics) · leaderboard.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hambench")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

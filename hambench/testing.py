"""Helpers reused by tests, benchmarks and leaderboard checks: tolerances, real-data location, assertions.

Tolerances live here, in one place, per dtype.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["TOL", "tol", "realdata_path", "require_realdata"]

#: absolute tolerances of exact identities (rotations, round trips, permutations), per dtype
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def tol(dtype) -> float:
    """Tolerance of an exact identity evaluated in ``dtype``."""
    return TOL[np.dtype(np.float32) if np.dtype(dtype) in (np.float32, np.complex64) else np.dtype(np.float64)]


def realdata_path(*parts: str) -> Path:
    """Location of the shared real DFT fixtures (``$HAMBENCH_REALDATA`` or ``../shared/realdata``)."""
    env = os.environ.get("HAMBENCH_REALDATA")
    base = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
    if not base.is_dir():
        # installed (non-editable) package: fall back to the working directory's checkout
        alt = Path.cwd().resolve().parent / "shared" / "realdata"
        base = alt if alt.is_dir() else base
    return base.joinpath(*parts)


def require_realdata(*parts: str) -> Path:
    """Path of a real-data fixture, or skip the calling test with a clear reason when it is absent.

    In CI (``CI=true``) the fixtures must be present: a missing one fails instead of skipping, so a CI run
    never hides untested work behind a skip.
    """
    import pytest

    p = realdata_path(*parts)
    if not p.exists():
        msg = f"real DFT fixture {p} is absent (it lives in ../shared/realdata beside the checkout)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " — CI must have it")
        pytest.skip(msg)
    return p

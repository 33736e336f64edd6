"""Helpers reused by tests, benchmarks and leaderboard checks: tolerances, real-data location, assertions.

Tolerances live here, in one place, per dtype.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hambench.basis import layout_of, random_rotation, rotate_edge_blocks

__all__ = [
    "TOL",
    "tol",
    "realdata_path",
    "require_realdata",
    "equivariance_residual",
    "rotation_residual",
    "EquivarianceTally",
    "equivariance_error",
    "assert_blocks_equivariant",
    "assert_model_equivariant",
    "random_edge_blocks",
]

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


# --- equivariance: the one measurement (model, prepare and leaderboard tests; hambench equivariance; scores) ---
def equivariance_residual(blocks_x, blocks_Rx, Z_src, Z_dst, species, R, spinful: bool = False) -> np.ndarray:
    """``|blocks_Rx − D_i(R) blocks_x D_j(R)^†|`` per matrix element, flat (the blocks' units, eV for H).

    ``blocks_x`` and ``blocks_Rx`` are flat edge blocks in hambench order over the same edges (see
    :mod:`hambench.basis._so3`): those of a structure and of its copy rotated by ``R`` (positions ``r → R r``).
    """
    expect = rotate_edge_blocks(blocks_x, Z_src, Z_dst, species, R, spinful)
    got = np.asarray(blocks_Rx).reshape(-1)
    if got.shape != expect.shape:
        raise AssertionError(f"blocks of the rotated structure have {got.size} elements, expected {expect.size}")
    return np.abs(got - expect)


def rotation_residual(f, pos, cell, R, Z_src, Z_dst, species, spinful: bool = False, out_x=None) -> np.ndarray:
    """:func:`equivariance_residual` of a block predictor: ``f(pos Rᵀ, cell Rᵀ)`` against ``D f(pos, cell) D^†``.

    ``f(pos, cell)`` returns flat edge blocks (hambench order) for Cartesian positions (N, 3) and a cell (rows
    are lattice vectors, or None for a molecule); the edges (and their shifts) must not change under the
    rotation. ``out_x``: ``f(pos, cell)`` when it is known already.
    """
    pos = np.asarray(pos)
    out_x = np.asarray(f(pos, cell)) if out_x is None else out_x
    out_Rx = np.asarray(f(pos @ R.T, None if cell is None else np.asarray(cell) @ R.T))
    return equivariance_residual(out_x, out_Rx, Z_src, Z_dst, species, R, spinful)


@dataclass
class EquivarianceTally:
    """Running max, sum and count of equivariance residuals (:meth:`add` one array, :meth:`merge` a tally)."""

    max: float = 0.0
    sum: float = 0.0
    count: int = 0

    def add(self, residual: np.ndarray) -> "EquivarianceTally":
        self.max = max(self.max, float(residual.max(initial=0.0)))
        self.sum += float(residual.sum())
        self.count += int(residual.size)
        return self

    def merge(self, other: "EquivarianceTally") -> "EquivarianceTally":
        self.max = max(self.max, other.max)
        self.sum += other.sum
        self.count += other.count
        return self

    @property
    def mean(self) -> float:
        return self.sum / max(self.count, 1)


def equivariance_error(blocks_x, blocks_Rx, Z_src, Z_dst, species, R, spinful: bool = False) -> float:
    """Max abs difference between ``blocks_Rx`` (blocks of the rotated structure) and the rotated ``blocks_x``
    (:func:`equivariance_residual`)."""
    return float(equivariance_residual(blocks_x, blocks_Rx, Z_src, Z_dst, species, R, spinful).max(initial=0.0))


def _check_equivariant(err: float, atol: float) -> float:
    if not err <= atol:
        raise AssertionError(f"blocks are not equivariant: max |H(Rx) - D H(x) D^†| = {err:.3g} > atol {atol:.3g}")
    return err


def assert_blocks_equivariant(blocks_x, blocks_Rx, Z_src, Z_dst, species, R, atol: float | None = None,
                              spinful: bool = False) -> float:
    """Assert ``blocks_Rx == D_i(R) blocks_x D_j(R)^†`` edge by edge to ``atol`` (default: :func:`tol` of the
    dtype). Returns the measured max abs error, so tests can report it.
    """
    atol = tol(np.asarray(blocks_x).dtype) if atol is None else float(atol)
    return _check_equivariant(equivariance_error(blocks_x, blocks_Rx, Z_src, Z_dst, species, R, spinful), atol)


def assert_model_equivariant(f, pos, Z_src, Z_dst, species, R=None, atol: float | None = None,
                             spinful: bool = False, cell=None, rng=None) -> float:
    """Assert that a block predictor is equivariant: ``f(R pos, R cell) == D f(pos, cell) D^†``
    (:func:`rotation_residual`).

    ``R`` defaults to a random rotation from ``rng`` (seeded 0); ``atol`` to :func:`tol` of ``f``'s output
    dtype. Returns the max abs error.
    """
    if R is None:
        R = random_rotation(np.random.default_rng(0) if rng is None else rng)
    out_x = np.asarray(f(np.asarray(pos), cell))
    atol = tol(out_x.dtype) if atol is None else float(atol)
    err = float(rotation_residual(f, pos, cell, R, Z_src, Z_dst, species, spinful, out_x).max(initial=0.0))
    return _check_equivariant(err, atol)


def random_edge_blocks(rng, Z_src, Z_dst, species, spinful: bool = False, dtype=np.float64) -> np.ndarray:
    """Random flat edge blocks of the right sizes (complex when spinful), for algebra tests."""
    ptr = layout_of(species, spinful).block_ptr(Z_src, Z_dst)
    x = rng.standard_normal(int(ptr[-1]))
    if spinful:
        x = x + 1j * rng.standard_normal(int(ptr[-1]))
        return x.astype(np.result_type(dtype, np.complex64))
    return x.astype(dtype)

"""Density of states without diagonalisation: the kernel polynomial method on sparse H(k), S(k) (issue 31 item 5).

The generalised problem H x = E S x is the ordinary spectrum of A = S⁻¹H (similar to L⁻¹HL⁻ᴴ for S = LLᴴ, so
its eigenvalues are the band energies, real). A is applied as one sparse product and one solve with a single
sparse LU of S per k-point (SuperLU; no Löwdin S^-½, no dense matrix). With A scaled into [−1, 1],
Ã = (A − b)/a, the Chebyshev moments μ_n = Tr T_n(Ã) / N follow from the three-term recursion
T_{n+1}(Ã)r = 2Ã T_n(Ã)r − T_{n−1}(Ã)r, the trace estimated with random ±1 vectors r (E[rᴴ M r] = Tr M for any M,
error ~ 1/√(R·N)) or taken exactly over the unit vectors (small matrices, the tests). The DOS is the Jackson-kernel
sum ρ(E) = [g_0 μ_0 + 2 Σ g_n μ_n T_n(ε)] / (π a √(1 − ε²)), ε = (E − b)/a, states per eV per orbital; its
resolution is ≈ π a / n_moments.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

__all__ = ["kpm_moments", "jackson", "kpm_dos", "spectral_bounds"]


def spectral_bounds(Hk, Sk, margin: float = 0.02) -> tuple[float, float]:
    """(b, a): centre and half-width (eV) of an interval holding every eigenvalue of (H, S), widened by ``margin``
    (ARPACK's extreme generalised eigenvalues; the interval must hold the whole spectrum for Chebyshev series)."""
    lo = spla.eigsh(Hk, k=1, M=Sk, which="SA", return_eigenvectors=False, tol=1e-6)[0]
    hi = spla.eigsh(Hk, k=1, M=Sk, which="LA", return_eigenvectors=False, tol=1e-6)[0]
    b, a = 0.5 * (hi + lo), 0.5 * (hi - lo) * (1 + margin)
    return float(b), float(a)


def kpm_moments(Hk, Sk, n_moments: int, bounds: tuple[float, float], vectors=None, seed: int = 0,
                n_random: int = 8) -> np.ndarray:
    """μ_n = Tr T_n(Ã) / N, n = 0 … n_moments−1, for Ã = (S⁻¹H − b)/a with (b, a) = ``bounds``.

    ``vectors``: (N, R) columns whose rᴴ·r̃ estimate the trace (``"exact"``: the N unit vectors), else
    ``n_random`` random ±1 vectors seeded by ``seed``.
    """
    N = Hk.shape[0]
    b, a = bounds
    lu = spla.splu(Sk.tocsc())
    if isinstance(vectors, str) and vectors == "exact":
        R = np.eye(N, dtype=complex)
    elif vectors is None:
        R = np.random.default_rng(seed).choice([-1.0, 1.0], size=(N, n_random)).astype(complex)
    else:
        R = np.asarray(vectors, complex)

    def apply(x):  # Ã x, one product and one LU solve
        return (lu.solve(Hk @ x) - b * x) / a

    mu = np.empty(n_moments)
    t0, t1 = R, apply(R)
    mu[0] = np.vdot(R, t0).real
    if n_moments > 1:
        mu[1] = np.vdot(R, t1).real
    for n in range(2, n_moments):
        t0, t1 = t1, 2 * apply(t1) - t0
        mu[n] = np.vdot(R, t1).real
    return mu / _norm(R, vectors, N)


def _norm(R, vectors, N) -> float:
    """The divisor that makes μ_0 = 1: N for the exact trace (Σ over N unit vectors gives Tr), N·R for R random
    ±1 vectors (each rᴴr = N) or given ones (assumed scaled like them)."""
    return float(N) if isinstance(vectors, str) else float(N * R.shape[1])


def jackson(n_moments: int) -> np.ndarray:
    """The Jackson kernel g_n (n = 0 … n_moments−1): removes Gibbs oscillations, Gaussian-like broadening."""
    M = n_moments + 1
    n = np.arange(n_moments)
    return ((M - n) * np.cos(np.pi * n / M) + np.sin(np.pi * n / M) / np.tan(np.pi / M)) / M


def kpm_dos(mu: np.ndarray, bounds: tuple[float, float], energies) -> np.ndarray:
    """ρ(E) in states per eV per orbital on ``energies`` (eV) from the moments ``mu`` (Jackson kernel)."""
    b, a = bounds
    eps = (np.asarray(energies, float) - b) / a
    inside = np.abs(eps) < 1
    e = np.where(inside, eps, 0.0)
    g = jackson(len(mu)) * mu
    T = np.polynomial.chebyshev.chebval(e, np.concatenate([[g[0]], 2 * g[1:]]))
    return np.where(inside, T / (np.pi * a * np.sqrt(1 - e * e)), 0.0)

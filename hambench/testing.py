"""Helpers reused by tests, benchmarks and leaderboard checks: tolerances, real-data location, assertions.

Tolerances live here, in one place: :data:`TOL` names every tolerance the tests use by the kind of comparison
it bounds, with its value and the reason for that value; :func:`tol` is the exact-identity one of a dtype.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hambench.basis import layout_of, random_rotation, rotate_edge_blocks

__all__ = [
    "TOL",
    "Tolerances",
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

def _t(value: float, why: str):
    """A table entry: its value and the one-line reason for that value (field metadata)."""
    return dataclasses.field(default=value, metadata={"why": why})


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """Every numeric tolerance of the tests, named by the kind of comparison it bounds (STYLE.md: "one tolerance
    table per dtype and quantity … every numeric assert cites a named tolerance").

    An entry is a plain float (``atol=TOL.exact64``, ``<= TOL.reassociation * scale``); its reason is
    ``TOL.why(name)``. Absolute unless the reason says relative; units are the compared quantity's (eV, Ha, Å,
    meV, µEh) where the reason names one. Two kinds may share a value: the name says which comparison it is.
    ``TOL[np.dtype(np.float32)]`` and ``TOL[np.dtype(np.float64)]`` are the exact-identity tolerances of those
    dtypes (:func:`tol`).
    """

    # --- float64 round-off ----------------------------------------------------------------------------------
    subnormal: float = _t(1e-323, "a few ulp of the smallest subnormal doubles (4.9e-324 parsed from text)")
    one_ulp: float = _t(3e-16, "one ulp, relative: a decimal written with 17+ significant digits, parsed back")
    few_ulp: float = _t(1e-15, "a few ulp of a float64 result of order one: closed forms, parsed decimals, short sums")
    roundoff: float = _t(1e-14, "a short float64 computation on unit-scale values against its closed form "
                                "(orthogonal or unitary products, R Rᵀ = 1, a scaled block, a Bloch sum of S)")
    roundoff_long: float = _t(1e-13, "a longer float64 computation, or the same one in another order, on values of "
                                     "order 1-10 (vectorised vs loop, kernel vs reference, spherical harmonics)")
    exact64: float = _t(1e-12, "an exact identity evaluated in float64 on values up to ~100, absolute or relative "
                               "(rotation, round trip, permutation, batching, unit factor): tol(float64)")
    reassociation: float = _t(1e-10, "long float64 chains regrouped or re-rounded, relative to the largest value "
                                     "(autograd vs closed form, DDP all-reduce, a network translated or permuted)")
    fingerprint: float = _t(1e-10, "golden-store fingerprints Σ w_k x_k of float arrays, relative to their L1 norm: "
                                   "libraries differ by ~1 ulp per element")
    network64: float = _t(1e-9, "an exact symmetry of a float64 network (rotation, float32 round trip, another "
                                "edge order), relative: layer norms amplify round-off (measured ≤ 1.7e-12)")
    by_hand: float = _t(1e-9, "a result of hambench's code against the same quantity computed by hand in float64 "
                              "(other order, unit factors such as eV → meV), relative or in the result's unit")
    roundoff_of_roundoff: float = _t(1e-6, "a quantity that is itself round-off (an equivariance error, a mean of "
                                           "rotation residues) obtained two ways, relative")
    product_floor: float = _t(1e-20, "absolute floor of a relative comparison, for products whose exact value is "
                                     "far below any physical scale")
    underflow_floor: float = _t(1e-300, "absolute floor of a relative comparison, for values that underflow "
                                        "(tails of exp(-x) in a radial basis)")

    # --- float32 -------------------------------------------------------------------------------------------
    exact32: float = _t(1e-5, "an exact identity evaluated in float32, or float32 copies of float64 values of "
                              "order one: tol(float32)")
    network32: float = _t(1e-5, "an exact symmetry of a float32 network, relative (measured ≤ 9e-7)")
    network32_layernorm: float = _t(1e-3, "a float32 network whose layer norm divides rounding noise by its eps "
                                          "(two equivalent Bi atoms), relative (measured 1.3e-4)")
    equivariance_vs_error: float = _t(1e-3, "equivariance error of a trained float32 model relative to its H MAE "
                                            "(equivariant by construction: round-off only)")

    # --- eigenproblems and metrics -----------------------------------------------------------------------------
    eigensolver: float = _t(1e-9, "eigenvalues (eV) or eigenvectors of the same matrices from two eigensolvers "
                                  "(ours, SciPy's eigh, DeepH-dock's band.h5; measured ~1e-12)")
    eigensolver_rel: float = _t(1e-7, "orbital-energy errors (differences of eigenvalues) from ours and SciPy's "
                                      "eigensolver, relative: the difference cancels most digits")
    orbital_shift: float = _t(1e-8, "orbital-energy metrics of H + δS, moved by exactly δ, through two "
                                    "eigensolves (meV)")
    level_shift: float = _t(1e-6, "band or orbital energies of H + δS, moved by exactly δ, through two "
                                  "eigensolves, in meV (bands) or µEh")
    first_order: float = _t(2e-3, "band-energy shifts of a 2 µeV perturbation: exact against first-order "
                                  "perturbation theory (second-order terms), relative")
    stochastic_trace: float = _t(0.05, "a trace estimated with a few random ±1 vectors (KPM DOS normalisation): "
                                       "error ~1/√(R·N): a few % for R = 4 vectors on a few hundred orbitals")

    # --- values written as text by DFT codes and converters ---------------------------------------------------
    text_10_digits: float = _t(1e-9, "values written with 10 decimals or significant digits (DeepH-dock K_PATH "
                                     "k-points, SIESTA .XV cell, Si.bands E_F), absolute or relative")
    text_10_decimals: float = _t(1e-10, "a value written with 10 decimals, compared at its last digit (ABACUS "
                                        "log E_F, eV)")
    text_7_decimals: float = _t(1e-7, "a value written with 7 decimals (ABACUS log total energy, eV)")
    text_6_decimals: float = _t(1e-6, "a value written with 6 decimals (SIESTA log energies, band.h5 E_F, eV)")
    text_6_digits: float = _t(2e-6, "a value written with 6 significant digits or decimals, then converted "
                                    "(ABACUS POSCAR relative, SIESTA log E_F in eV, Si.KP k-points)")
    text_5_decimals: float = _t(1e-5, "a value written with 5 decimals (DeepH E_F -4.19348 eV)")
    text_4_decimals: float = _t(1.5e-4, "band energies written with 4 decimals (SIESTA Si.bands, eV)")
    quoted_digits: float = _t(1e-3, "a number quoted with 3-4 significant digits (a paper's 20.42 M parameters, "
                                    "relative; catalogue distances, Å)")
    quoted_level: float = _t(2e-3, "an energy level as a README quotes it (graphene Dirac point +0.030 eV)")
    geometry: float = _t(1e-9, "Cartesian geometry (Å) built in float64 or written by two writers at full "
                               "precision (catalogue cells, exported POSCAR)")
    geometry_text: float = _t(1e-6, "one geometry in two text renderings (DeepH .dat files vs POSCAR, OpenMX "
                                    "fractional input, POSCAR lattice images), Å or fractional")
    xyz_positions: float = _t(1e-6, "H predicted from positions read back from an xyz file (~1e-8 Å kept), eV")
    abacus_log_bands: float = _t(6e-5, "ABACUS band energies printed with 6 significant digits (±5e-5 eV at "
                                       "-64 eV), eV (measured 5.0e-5)")
    abacus_log_bands_rel: float = _t(1e-6, "the relative part of the ABACUS log band tolerance (6 significant "
                                           "digits)")
    dropped_edges: float = _t(2e-4, "ABACUS bands with DeepH-dock's overlap-defined edges: the dropped long-range "
                                    "H (≤ 7e-5 eV each) moves them by 1.3e-4 eV (measured), eV")
    siesta_eig: float = _t(2e-7, "SIESTA Si.EIG valence energies against ours, eV")
    siesta_eig_rel: float = _t(2e-6, "SIESTA Si.EIG energies up to 100 eV against ours, relative: SIESTA's own "
                                     "Ry → eV constant and the EIG print precision")
    siesta_eig_floor: float = _t(1e-7, "absolute floor (eV) of the relative Si.EIG comparison")

    # --- unit constants of other codes ------------------------------------------------------------------------
    rydberg_abacus: float = _t(4e-7, "ABACUS's 13.605698 eV/Ry against CODATA's, relative (3.6e-7)")
    rydberg_siesta: float = _t(1e-7, "DeepH-dock's 27.2113845/2 eV/Ry for SIESTA against CODATA's, relative "
                                     "(6.4e-8)")
    unit_constants: float = _t(1e-6, "another code's eV/Ha or eV/Ry constant (DeepH-dock for OpenMX, sisl), "
                                     "relative (6.4e-8 measured)")
    constants_floor: float = _t(1e-9, "absolute floor (eV) of a comparison across unit constants")
    bohr_cell: float = _t(1e-5, "cells (Å, ~10 Å) through two Bohr constants (7e-8 relative)")

    # --- DFT data: pairs, degeneracies, symmetries ------------------------------------------------------------
    hermitian_pairs: float = _t(1e-7, "H_ij(R) against H_ji(-R)ᴴ as DeepH-dock's MoTe2 files hold them (9e-9 eV), "
                                      "and what that moves (bands from one triangle), eV")
    hermitian_pairs_double: float = _t(1e-8, "H_ij(R) against H_ji(-R)ᴴ of codes that write doubles (OpenMX: "
                                             "8e-10 eV; PySCF crystal FFT), eV")
    hermitian_validate: float = _t(1e-6, "Structure.validate's pairing check on converted OpenMX runs: 100x the "
                                         "measured 1e-8 eV")
    kramers: float = _t(1e-6, "Kramers pairs of an SOC band structure with inversion (OpenMX bismuthene, "
                              "3.4e-7 eV measured at K), eV")
    kramers_loose: float = _t(1e-5, "Kramers pairs of the SOC bismuthene bands at any k, eV")
    grid_splitting: float = _t(1e-3, "a degeneracy split by a DFT code's real-space grid (graphene Dirac point: "
                                     "0.49 meV measured), eV")
    deeph_h2o_h: float = _t(3.2e-4, "H of DeepH-dock's rotated H2O copies: the fixture's stated DFT noise, eV")
    deeph_h2o_s: float = _t(3.3e-6, "S of DeepH-dock's rotated H2O copies: the fixture's stated noise")
    float32_storage_h: float = _t(2e-4, "float32 rounding of DFT H entries up to ~520 eV, eV")
    float32_storage_s: float = _t(2e-6, "float32 rounding of overlap entries (|S| ≤ 1)")
    symmetry_site: float = _t(1e-4, "atom sites of a DFT crystal mapped onto each other by its symmetry, "
                                    "fractional (POSCAR text)")
    symmetry_scf: float = _t(1e-6, "H under an exact symmetry of the DFT grid (graphene, Si): SCF noise "
                                   "(6.5e-8 eV measured), eV")
    symmetry_scf_soc: float = _t(5e-6, "H of SOC bismuthene under an exact symmetry of the grid: SCF noise "
                                       "(5.5e-7 eV measured), eV")
    symmetry_overlap: float = _t(1e-9, "S under a crystal symmetry: analytic integrals (1.2e-10 measured)")
    eggbox_graphene: float = _t(0.02, "graphene H under C3, not a symmetry of OpenMX's FFT grid (3.3e-3 eV "
                                      "measured), eV")
    eggbox_mote2: float = _t(0.05, "MoTe2 H under C3, not a symmetry of the FFT grid (1.3e-2 eV measured), eV")
    eggbox_bismuthene: float = _t(0.1, "SOC bismuthene H under C3, not a symmetry of the FFT grid (2.1e-2 eV "
                                       "measured), eV")

    # --- PySCF and SCF ------------------------------------------------------------------------------------
    integrals: float = _t(1e-12, "analytic Gaussian overlap integrals recomputed by PySCF (a rotated molecule, "
                                 "another code path)")
    pyscf_grid: float = _t(1e-7, "PySCF Fock of a molecule and its rotated copy: grid level 5 is not rotation "
                                 "invariant (1e-8 Ha measured), Ha")
    pyscf_grid32: float = _t(5e-6, "the same in float32 storage (|F| up to 20 Ha; 2.4e-7 Ha measured), Ha")
    pyscf_overlap32: float = _t(1e-6, "PySCF overlaps of a molecule and its rotated copy in float32 storage")
    pyscf_repeat: float = _t(1e-8, "the same PySCF calculation run twice (thread count may differ), Ha")
    scf_last_step: float = _t(1e-5, "a Fock rebuilt from converged MOs against F[D_final]: the last density change "
                                    "at conv_tol 1e-11 (1.7e-7 Ha measured), Ha")
    scf_gradient: float = _t(1e-4, "what vanishes with the orbital gradient of an SCF at conv_tol 1e-9 "
                                   "(FDS - SDF, D[F] - D)")
    scf_fock_mae: float = _t(1e-6, "Fock MAE where an SCF restarted at the stored Fock ends (conv_tol 1e-9), Ha")
    scf_mo_energy: float = _t(2e-4, "PySCF's mo_energy (spectrum of the last-but-one Fock) against the stored "
                                    "Fock's, eV")
    scf_identity: float = _t(1e-10, "identities of SCF matrices in float64 (H C = S C ε, tr(D S) = N; 1.3e-14 "
                                    "measured)")
    pbc_bands: float = _t(1e-4, "PySCF crystal bands from the stored blocks against its SCF and get_bands "
                                "(Fock lattice sums, pairs cut at 1e-8 overlap; 1.3e-5 eV measured), eV")
    pbc_overlap_rotation: float = _t(1e-10, "PySCF periodic overlap of a rotated cell against the rotated blocks "
                                            "(lattice sums)")
    pbc_grid_rotation: float = _t(1e-8, "PySCF periodic Fock of a rotated cell: the FFT grid rotates with the "
                                        "cell (2e-13 eV measured), eV")
    fft_alias: float = _t(1e-11, "overlap from a 15x15 k-mesh FFT against real space: aliases of S(R) beyond "
                                 "7 cells (~1e-12)")

    # --- statistics of seeded random samples ------------------------------------------------------------------
    sampling_mean: float = _t(0.03, "a mean of thousands of seeded random samples against its expectation "
                                    "(~5 standard errors), absolute or relative")
    harmonic_dft: float = _t(0.05, "DFT energy above a minimum against ½ dᵀ H d of the analytic Hessian for thermal "
                                   "displacements of water at 20 K, relative (measured ≤ 2.3 %; cubic "
                                   "anharmonicity grows with the amplitude: 5.1 % at 100 K)")
    sampling_std: float = _t(0.15, "a standard deviation of 384 seeded Gaussian samples against σ, relative "
                                   "(5 standard errors)")
    noise_orbitals: float = _t(1e-2, "orbital-energy MAE of H + δS moved by seeded 0.1 meV noise on one of 8 "
                                     "molecules, meV")
    noise_gauge: float = _t(1e-3, "a gauge shift fitted through that seeded noise on one of 8 molecules, meV")
    noise_gauge_crystal: float = _t(3e-4, "a gauge shift fitted through seeded 1 meV noise on every MoTe2 "
                                          "element, eV")
    noise_residual: float = _t(0.02, "H MAE left after the gauge fit: the seeded noise on one of 8 molecules "
                                     "(≈ 0.01 meV), meV")

    def __getitem__(self, key) -> float:
        """``TOL[np.dtype(np.float32)]`` / ``TOL[np.dtype(np.float64)]``: the exact-identity tolerance of that
        dtype; ``TOL["name"]``: an entry by name."""
        if isinstance(key, str):
            if key not in _NAMES:
                raise KeyError(key)
            return getattr(self, key)
        dtype = np.dtype(key)
        if dtype == np.float32:
            return self.exact32
        if dtype == np.float64:
            return self.exact64
        raise KeyError(key)

    def __contains__(self, key) -> bool:
        try:
            self[key]
        except (KeyError, TypeError):
            return False
        return True

    def names(self) -> tuple[str, ...]:
        """Every entry's name, in table order."""
        return _NAMES

    def why(self, name: str) -> str:
        """The one-line reason of entry ``name``."""
        return _WHY[name]


_NAMES = tuple(f.name for f in dataclasses.fields(Tolerances))
_WHY = {f.name: f.metadata["why"] for f in dataclasses.fields(Tolerances)}

#: the tolerance table (frozen): ``TOL.exact64``, ``TOL.why("exact64")``, ``TOL[np.dtype(np.float64)]``
TOL = Tolerances()


def tol(dtype) -> float:
    """Tolerance of an exact identity evaluated in ``dtype`` (complex64 as float32, anything else as float64)."""
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

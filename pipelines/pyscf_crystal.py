"""``pyscf/crystal``: crystal data sets generated here with PySCF periodic DFT (``pyscf.pbc``).

What one structure goes through
    1. Geometry: a catalogue cell (``graphene``, ``mos2``, ``bilayer_graphene`` AB) tiled to a supercell, or a
       structure read from ``--structures FILE`` (``ase.io.read(index=':')``); Gaussian thermal displacements
       seeded by (seed, structure index), either a fixed amplitude (``displacement``, Å per Cartesian
       component) or an Einstein-model amplitude at ``temperature`` (K): σ² = k_B T / (M ω_E²) with the
       per-element Einstein temperatures :data:`EINSTEIN_K` (a stand-in for the DeepH 300 K MD snapshots).
    2. SCF: PySCF ``KRKS`` on a Γ-centred ``kmesh`` (PBE, GTH pseudopotential ``gth-<xc>``, GTH basis; an element
       the basis lacks falls back to ``<basis>-molopt-sr``), Fermi–Dirac smearing (``smearing`` Ha, default 0.005),
       ``mf.multigrid_numint()``. Slabs are 3-D cells with ``vacuum`` Å between images and one k-point along z.
    3. Dense Fock: from the converged density, the Fock matrix H(k) = h_core(k) + v_eff[D](k) is built (no SCF)
       on an odd, Γ-centred ``fft_mesh`` chosen so the lattice Fourier transform aliases below ``alias_tol``
       (see below), plus two off-mesh check k-points. Everything of steps 2–3 is the raw result, cached per
       structure as ``<id>_<hash>.npz`` under ``raw_dir`` (atomic writes; a rerun reuses converged results).
    4. Real space: for every atom pair (i, j, R) within the cutoff,
       S_ij(R) = <φ_i(r)|φ_j(r − R·cell)> computed directly from the basis functions (exact, no k-mesh), and
       H_ij(R) = (1/N_k) Σ_k e^{−2πi k·R} H_ij(k) over the dense mesh (fractional k, integer R). PySCF's Bloch
       functions are φ_k = Σ_T e^{ik·T} φ(r − T), so H(k) = Σ_R e^{+2πi k·R} H(R) exactly as FACTS.md §3 sums
       DeepH blocks, with no atomic-position phase. Blocks go PySCF order → hambench order, Hartree → eV.

Cutoff and aliasing
    Default pairs: distance < r_c(Z_i, Z_j), the dimer distance beyond which every overlap element of the two
    atoms' basis functions is below ``overlap_tol`` (1e-8) — the analogue of OpenMX's r_i + r_j. ``cutoff`` (Å)
    replaces it by one distance. The transform over an n-mesh returns Σ_L X(R + n·L); the mesh is the smallest odd
    one per periodic direction for which that sum's L ≠ 0 part, evaluated with the exact S(R), is below
    ``alias_tol`` (1e-6) on every kept pair. H decays like S (same basis products), and each structure's
    residual is measured: H(k) rebuilt from the stored blocks against the DFT Fock at the check k-points
    (``raw['check_*']``, see :func:`interpolation_residual`). Measured (graphene gth-szv, 10 Å vacuum,
    ke_cutoff 100 Ha): transform mesh 9x11x1 (2 atoms) / 5x7x1 (2x2 supercell), S aliasing bound 8e-9 (the
    images across the vacuum, folded in by the single k-point along z), band residual at the off-mesh check
    k-points 2.7e-6 eV / 4.0e-6 eV; band energies at the SCF k-points within 3e-5 eV of ``mf.mo_energy``.
    With the pair radius at S < 1e-6 instead of 1e-8 the residual was 3e-4 eV: H reaches a little further
    than S, hence the default 1e-8.

``read(item)`` returns the :class:`~hambench.store._structure.Structure`; with option ``deeph_dir`` it also writes the
structure as a DeepH legacy folder (``deeph_format.write_legacy_folder``: OpenMX order, 1-based keys).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from hambench.basis._conventions import BOHR_ANGSTROM, HARTREE_EV, atom_permutation, pyscf_species_shells, symbol_to_z
from hambench.store._meta import StoreAttrs
from hambench.errors import ExcludedItem, InputError
from hambench.scoring._bands import band_energies as structure_bands  # the one Bloch sum and eigensolver
from hambench.scoring._bands import generalized_eigh
from hambench.store._structure import Structure, file_sha256
from . import Source
from .pyscf_qm9 import _load_raw, _write_npz_atomic

__all__ = [
    "CrystalSource",
    "SCFNotConverged",
    "CATALOGUE",
    "EINSTEIN_K",
    "DEFAULTS",
    "parse_mesh",
    "catalogue_structure",
    "make_supercell",
    "thermal_sigma",
    "build_cell",
    "overlap_blocks",
    "pair_radii",
    "select_pairs",
    "choose_fft_mesh",
    "run_crystal",
    "lattice_transform",
    "structure_bands",
    "interpolation_residual",
]

#: version of the raw .npz layout written by :func:`run_crystal`
RAW_FORMAT = 1
KB_EV = 8.617333262e-5  # Boltzmann constant, eV/K (CODATA 2018)
AMU_EV_FS2_A2 = 103.642697  # 1 amu·Å²/fs² in eV: M ω² x² is in eV with M in amu, ω in 1/fs, x in Å
HBAR_EV_FS = 0.6582119569  # ħ in eV·fs

#: settings that change the raw result; every one can be given as an option
DEFAULTS = {
    "xc": "pbe",
    "basis": "gth-dzvp",
    "pseudo": None,  # None → "gth-<xc>" (gth-pbe for PBE)
    "kmesh": "6x6x1",
    "smearing": 0.005,  # Fermi–Dirac width, Hartree; 0 = none
    "conv_tol": 1e-8,
    "ke_cutoff": None,  # Hartree; None = PySCF's choice from cell.precision
    "density_fit": False,
    "alias_tol": 1e-6,
    "overlap_tol": 1e-8,
    "fft_mesh": None,  # e.g. "11x11x1"; None = chosen from alias_tol
}



def _opt(default, help: str, **meta):
    """A field of :class:`CrystalSource.Options`: its default and its CLI help (``min``, ``choices`` for the CLI)."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


#: Einstein temperatures (K) of the thermal-displacement model, per element (rough, from phonon DOS peaks)
EINSTEIN_K = {"C": 1100.0, "Mo": 330.0, "S": 460.0, "W": 250.0, "Se": 300.0, "B": 1000.0, "N": 1000.0}
_DEFAULT_EINSTEIN_K = 400.0
_ATOMIC_MASS = {"C": 12.011, "Mo": 95.95, "S": 32.06, "W": 183.84, "Se": 78.971, "B": 10.81, "N": 14.007}

_SQ3 = 3.0**0.5
#: catalogue: lattice (rows, Å, in-plane), fractional in-plane positions + z (Å), layer thickness (Å)
CATALOGUE = {
    "graphene": {
        "a": 2.46,
        "atoms": [("C", 0.0, 0.0, 0.0), ("C", 1 / 3, 2 / 3, 0.0)],
        "doc": "graphene monolayer, 2-atom hexagonal cell, a = 2.46 Å",
    },
    "mos2": {
        "a": 3.16,
        "atoms": [("Mo", 1 / 3, 2 / 3, 0.0), ("S", 2 / 3, 1 / 3, 1.586), ("S", 2 / 3, 1 / 3, -1.586)],
        "doc": "2H-MoS2 monolayer, 3-atom cell, a = 3.16 Å, S–S height 3.172 Å",
    },
    "bilayer_graphene": {
        "a": 2.46,
        "atoms": [("C", 0.0, 0.0, 0.0), ("C", 1 / 3, 2 / 3, 0.0), ("C", 1 / 3, 2 / 3, 3.35), ("C", 2 / 3, 1 / 3, 3.35)],
        "doc": "AB (Bernal) bilayer graphene, 4-atom cell, interlayer 3.35 Å",
    },
}


class SCFNotConverged(ExcludedItem):
    """The SCF of one crystal did not converge: the driver reports it and leaves it out of the store."""


# --- options ---------------------------------------------------------------------------------------------
def parse_mesh(text, where="--kmesh", allow_zero=False) -> tuple[int, int, int]:
    """``"6x6x1"`` (or a 3-sequence) → ``(6, 6, 1)``; :class:`InputError` otherwise."""
    try:
        if isinstance(text, str):
            parts = [int(x) for x in text.lower().replace("×", "x").replace(",", "x").split("x")]
        else:
            parts = [int(x) for x in text]
    except (TypeError, ValueError):
        raise InputError(where, f"not a mesh like 6x6x1: {text!r}") from None
    if len(parts) != 3 or any(p < (0 if allow_zero else 1) for p in parts):
        raise InputError(where, f"need three positive integers like 6x6x1, got {text!r}")
    return tuple(parts)


def _protocol(options: dict) -> dict:
    p = dict(DEFAULTS)
    for k in DEFAULTS:
        if options.get(k) is not None:
            p[k] = options[k]
    p["xc"] = str(p["xc"]).lower()
    p["basis"] = str(p["basis"]).lower()
    p["pseudo"] = str(p["pseudo"]).lower() if p["pseudo"] else f"gth-{'pade' if p['xc'] in ('lda', 'lda,vwn') else p['xc']}"
    p["kmesh"] = "x".join(map(str, parse_mesh(p["kmesh"])))
    if p["fft_mesh"] is not None:
        p["fft_mesh"] = "x".join(map(str, parse_mesh(p["fft_mesh"], "--fft-mesh")))
    for k in ("smearing", "conv_tol", "alias_tol", "overlap_tol"):
        try:
            p[k] = float(p[k])
        except (TypeError, ValueError):
            raise InputError(f"--{k.replace('_', '-')}", f"not a number: {p[k]!r}") from None
    if p["smearing"] < 0 or not p["conv_tol"] > 0 or not p["alias_tol"] > 0 or not p["overlap_tol"] > 0:
        raise InputError("pyscf/crystal", "smearing must be >= 0 and conv_tol, alias_tol, overlap_tol > 0")
    if p["ke_cutoff"] is not None:
        p["ke_cutoff"] = float(p["ke_cutoff"])
    p["density_fit"] = bool(p["density_fit"])
    return p


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


# --- geometry --------------------------------------------------------------------------------------------
def catalogue_structure(system: str, vacuum: float = 12.0):
    """``(symbols, pos Å, cell rows Å, pbc)`` of a catalogue system (a slab: 3-D cell with ``vacuum`` Å gap)."""
    if system not in CATALOGUE:
        raise InputError("--system", f"unknown system {system!r}; known: {', '.join(sorted(CATALOGUE))}")
    spec = CATALOGUE[system]
    a = spec["a"]
    zs = [z for *_, z in spec["atoms"]]
    thick = max(zs) - min(zs)
    c = thick + float(vacuum)
    cell = np.array([[a, 0.0, 0.0], [-a / 2, a * _SQ3 / 2, 0.0], [0.0, 0.0, c]])
    z0 = c / 2 - (max(zs) + min(zs)) / 2
    symbols = [s for s, *_ in spec["atoms"]]
    pos = np.array([[f1, f2, 0.0] for _, f1, f2, _ in spec["atoms"]]) @ cell
    pos[:, 2] = np.array(zs) + z0
    return symbols, pos, cell, np.array([True, True, False])


def make_supercell(symbols, pos, cell, reps) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Tile a cell ``reps = (n1, n2, n3)`` times; atoms ordered cell image major (n1, n2, n3), then as given."""
    n1, n2, n3 = reps
    shifts = np.array([[i, j, k] for i in range(n1) for j in range(n2) for k in range(n3)], float) @ cell
    new_pos = (shifts[:, None, :] + np.asarray(pos)[None, :, :]).reshape(-1, 3)
    return list(symbols) * len(shifts), new_pos, np.asarray(cell) * np.array([n1, n2, n3])[:, None]


def thermal_sigma(symbols, temperature: float) -> np.ndarray:
    """Einstein-model RMS displacement (Å, per Cartesian component) of each atom at ``temperature`` K.

    Classical equipartition: M ω_E² σ² = k_B T, ω_E = k_B θ_E / ħ (θ_E from :data:`EINSTEIN_K`).
    """
    out = []
    for s in symbols:
        theta = EINSTEIN_K.get(s, _DEFAULT_EINSTEIN_K)
        mass = _ATOMIC_MASS.get(s)
        if mass is None:
            from pyscf.data.elements import MASSES

            mass = float(MASSES[symbol_to_z(s)])
        omega = KB_EV * theta / HBAR_EV_FS  # 1/fs
        out.append(np.sqrt(KB_EV * float(temperature) / (mass * AMU_EV_FS2_A2 * omega**2)))
    return np.array(out)


# --- PySCF -----------------------------------------------------------------------------------------------
def _basis_for(symbol: str, basis: str) -> str:
    from pyscf.pbc import gto

    import warnings

    for b in (basis, basis + "-molopt-sr"):
        try:
            with warnings.catch_warnings():  # "basis may be available in basis-set-exchange": we try the next one
                warnings.simplefilter("ignore")
                gto.basis.load(b, symbol)
            return b
        except Exception:  # BasisNotFoundError and friends
            continue
    raise InputError("--basis", f"basis {basis!r} (or {basis}-molopt-sr) has no functions for {symbol}")


def build_cell(symbols, pos_ang, cell_ang, protocol: dict, where=None):
    """A PySCF ``Cell`` (3-D periodic; Å input), GTH pseudopotential and basis per element."""
    from pyscf.pbc import gto

    elements = sorted(set(symbols))
    for s in elements:
        try:
            symbol_to_z(s)
        except ValueError:
            raise InputError(where, f"unknown element symbol {s!r}") from None
    cell = gto.Cell()
    cell.a = np.asarray(cell_ang, float)
    cell.atom = [(s, tuple(map(float, p))) for s, p in zip(symbols, pos_ang)]
    cell.unit = "Angstrom"
    cell.basis = {s: _basis_for(s, protocol["basis"]) for s in elements}
    cell.pseudo = protocol["pseudo"]
    cell.verbose = 0
    if protocol.get("ke_cutoff"):
        cell.ke_cutoff = float(protocol["ke_cutoff"])
    try:
        cell.build()
    except Exception as e:  # pyscf raises RuntimeError/KeyError/ValueError on bad input
        raise InputError(where, f"PySCF cannot build the cell ({type(e).__name__}: {e})") from None
    return cell


def _mol_of(symbols, coords_bohr, basis: dict):
    """A molecule of the given atoms (Bohr), basis per element: for exact real-space overlaps."""
    from pyscf import gto

    mol = gto.Mole()
    mol.atom = [(s, tuple(map(float, c))) for s, c in zip(symbols, coords_bohr)]
    mol.unit = "Bohr"
    mol.basis = basis
    mol.spin = sum(symbol_to_z(s) for s in symbols) % 2
    mol.verbose = 0
    mol.build()
    return mol


def overlap_blocks(cell, shifts) -> np.ndarray:
    """Exact S(R) = <φ_a(r)|φ_b(r − R·cell)> for each integer shift R: array (n_R, nao, nao), PySCF order."""
    from pyscf import gto

    shifts = np.asarray(shifts, dtype=np.int64).reshape(-1, 3)
    symbols = [cell.atom_pure_symbol(a) for a in range(cell.natm)]
    basis = {s: cell._basis[s] for s in set(symbols)}
    home = cell.atom_coords()
    lat = cell.lattice_vectors()
    mol0 = _mol_of(symbols, home, basis)
    nao = mol0.nao
    out = np.empty((len(shifts), nao, nao))
    step = max(1, 4096 // max(cell.natm, 1))  # images per integral call
    for a in range(0, len(shifts), step):
        R = shifts[a : a + step]
        coords = (R @ lat)[:, None, :] + home[None, :, :]
        big = _mol_of(symbols * len(R), coords.reshape(-1, 3), basis)
        s = gto.intor_cross("int1e_ovlp", mol0, big)
        out[a : a + len(R)] = s.reshape(nao, len(R), nao).transpose(1, 0, 2)
    return out


def pair_radii(cell, tol: float) -> dict[tuple[str, str], float]:
    """r_c per element pair (Å): the dimer distance beyond which all overlap elements are below ``tol``."""
    from pyscf import gto

    symbols = sorted({cell.atom_pure_symbol(a) for a in range(cell.natm)})
    basis = {s: cell._basis[s] for s in symbols}
    d = np.arange(0.0, 40.0, 0.1)  # Å
    out = {}
    for ia, a in enumerate(symbols):
        for b in symbols[ia:]:
            ma = _mol_of([a], [[0.0, 0.0, 0.0]], basis)
            coords = np.zeros((len(d), 3))
            coords[:, 2] = d / BOHR_ANGSTROM
            mb = _mol_of([b] * len(d), coords, basis)
            s = np.abs(gto.intor_cross("int1e_ovlp", ma, mb)).reshape(ma.nao, len(d), -1).max(axis=(0, 2))
            above = np.flatnonzero(s >= tol)
            r = float(d[above[-1]] + 0.1) if len(above) else 0.1
            out[(a, b)] = out[(b, a)] = r
    return out


def _shift_range(cell_ang, pbc, rmax: float) -> np.ndarray:
    """All integer R along periodic directions with |R·cell| possibly < rmax + cell diameter."""
    cell_ang = np.asarray(cell_ang)
    vol = abs(np.linalg.det(cell_ang))
    diam = np.linalg.norm(cell_ang.sum(axis=0)) + max(np.linalg.norm(cell_ang, axis=1))
    n = []
    for d in range(3):
        if not pbc[d]:
            n.append(0)
            continue
        other = np.cross(cell_ang[(d + 1) % 3], cell_ang[(d + 2) % 3])
        height = vol / np.linalg.norm(other)
        n.append(int(np.ceil((rmax + diam) / height)))
    g = [np.arange(-k, k + 1) for k in n]
    return np.stack(np.meshgrid(*g, indexing="ij"), axis=-1).reshape(-1, 3)


def select_pairs(symbols, pos_ang, cell_ang, pbc, radius) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges (i, j, R) with |r_j + R·cell − r_i| < radius(sym_i, sym_j) (self edges included), sorted (i, j, R).

    ``radius`` is a float (one cutoff, Å) or a dict {(sym_i, sym_j): r_c}.
    """
    pos = np.asarray(pos_ang, float)
    n = len(pos)
    if isinstance(radius, dict):
        rc = np.array([[radius[(a, b)] for b in symbols] for a in symbols])
    else:
        rc = np.full((n, n), float(radius))
    shifts = _shift_range(cell_ang, pbc, float(rc.max()))
    vec = pos[None, :, None, :] + (shifts @ np.asarray(cell_ang))[None, None, :, :] - pos[:, None, None, :]
    dist = np.linalg.norm(vec, axis=-1)  # (i, j, R)
    keep = dist < rc[:, :, None]
    i, j, r = np.nonzero(keep)
    sh = shifts[r]
    order = np.lexsort((sh[:, 2], sh[:, 1], sh[:, 0], j, i))
    return i[order], j[order], sh[order]


def _alias_error(S_big: np.ndarray, big_shifts: np.ndarray, kept: np.ndarray, mesh) -> float:
    """max over kept shifts of |Σ_{R' ≡ R mod mesh, R' ≠ R} S(R')| (elementwise, all orbital pairs)."""
    mesh = np.asarray(mesh)
    cls = np.mod(big_shifts, mesh)
    lookup = {tuple(r): k for k, r in enumerate(big_shifts)}
    worst = 0.0
    acc: dict[tuple, np.ndarray] = {}
    for k, c in enumerate(map(tuple, cls)):
        acc[c] = acc.get(c, 0.0) + S_big[k]
    for r in map(tuple, kept):
        c = tuple(np.mod(r, mesh))
        alias = acc[c] - S_big[lookup[r]]
        worst = max(worst, float(np.abs(alias).max()))
    return worst


def choose_fft_mesh(S_big, big_shifts, kept_shifts, pbc, alias_tol: float, start=(3, 3, 3), nmax: int = 41):
    """Smallest odd mesh (1 along non-periodic directions) whose aliasing of S on the kept shifts is < tol.

    Returns ``(mesh, alias_error)``. The mesh also holds every kept shift uniquely (n ≥ 2 max|R_d| + 1).
    """
    kept = np.unique(np.asarray(kept_shifts).reshape(-1, 3), axis=0)
    base = [max(2 * int(np.abs(kept[:, d]).max(initial=0)) + 1, start[d] | 1) if pbc[d] else 1 for d in range(3)]
    mesh = list(base)
    err = _alias_error(S_big, big_shifts, kept, mesh)
    while err >= alias_tol:
        if max(mesh) >= nmax:
            break
        for d in range(3):
            if pbc[d]:
                mesh[d] += 2
        err = _alias_error(S_big, big_shifts, kept, mesh)
    return tuple(mesh), err


def _frac_mesh(mesh) -> np.ndarray:
    """Γ-centred fractional k-points of a mesh, in PySCF's ``make_kpts`` order."""
    g = [np.arange(n) / n for n in mesh]
    return np.stack(np.meshgrid(*g, indexing="ij"), axis=-1).reshape(-1, 3)


#: off-mesh fractional k-points at which each structure's interpolated H(k) is checked against the DFT Fock
CHECK_KPTS = np.array([[0.1371, 0.4213, 0.0], [0.3107, 0.1709, 0.0]])


def run_crystal(symbols, pos_ang, cell_ang, pbc, protocol: dict, fft_mesh, threads: int = 1, where=None) -> dict:
    """SCF + dense-mesh Fock of one cell; returns the raw result (Hartree, Bohr, PySCF AO order)."""
    import pyscf
    from pyscf import lib
    from pyscf.pbc import dft

    cell = build_cell(symbols, pos_ang, cell_ang, protocol, where)
    kmesh = parse_mesh(protocol["kmesh"])
    old = lib.num_threads()
    lib.num_threads(int(threads))
    try:
        t0 = time.perf_counter()
        kpts = cell.make_kpts(kmesh)
        mf = dft.KRKS(cell, kpts)
        mf.xc = protocol["xc"]
        mf.conv_tol = protocol["conv_tol"]
        mf.max_cycle = int(protocol.get("max_cycle", 50))
        mf.verbose = 0
        if protocol["density_fit"]:
            mf = mf.density_fit()
        else:
            mf = mf.multigrid_numint()
        if protocol["smearing"] > 0:
            mf = mf.smearing(sigma=protocol["smearing"], method="fermi")
        e_tot = mf.kernel()
        t_scf = time.perf_counter() - t0
        dm = mf.make_rdm1()
        fock = np.asarray(mf.get_fock())
        ovlp = np.asarray(mf.get_ovlp())
        t1 = time.perf_counter()
        frac = np.vstack([_frac_mesh(fft_mesh), CHECK_KPTS * np.asarray(pbc, float)])
        if mf.converged:
            kd = cell.get_abs_kpts(frac)
            hd = np.asarray(mf.get_hcore(cell, kd)) + np.asarray(mf.get_veff(cell, dm, kpts=kpts, kpts_band=kd))
            sd = np.asarray(cell.pbc_intor("int1e_ovlp", hermi=1, kpts=kd))
        else:  # excluded anyway: skip the dense Fock
            hd = sd = np.zeros((len(frac), 0, 0), complex)
        t_dense = time.perf_counter() - t1
        nd = int(np.prod(fft_mesh))
        mu = getattr(mf, "mu", None)
        if mu is None:  # no smearing: midgap-free choice, the highest occupied level
            occ = np.concatenate([np.asarray(o) for o in mf.mo_occ])
            eps = np.concatenate([np.asarray(e) for e in mf.mo_energy])
            mu = float(eps[occ > 1e-8].max())
    finally:
        lib.num_threads(old)
    return {
        "format": np.int64(RAW_FORMAT),
        "symbols": np.array(symbols, dtype="U3"),
        "pos_ang": np.asarray(pos_ang, float),
        "cell_ang": np.asarray(cell_ang, float),
        "pbc": np.asarray(pbc, bool),
        "kpts_frac": np.asarray(cell.get_scaled_kpts(kpts)),
        "fock_k": fock,
        "ovlp_k": ovlp,
        "dm_k": np.asarray(dm),
        "mo_energy": np.asarray(mf.mo_energy),
        "mo_occ": np.asarray(mf.mo_occ),
        "e_tot": np.float64(e_tot),
        "mu": np.float64(mu),
        "converged": np.bool_(mf.converged),
        "cycles": np.int64(getattr(mf, "cycles", -1)),
        "nelectron": np.float64(cell.nelectron),
        "fft_mesh": np.array(fft_mesh, np.int64),
        "fft_kpts_frac": frac[:nd],
        "fock_fft": hd[:nd],
        "check_kpts_frac": frac[nd:],
        "check_fock": hd[nd:],
        "check_ovlp": sd[nd:],
        "pyscf_version": np.array(pyscf.__version__),
        "wall_scf_s": np.float64(t_scf),
        "wall_fft_s": np.float64(t_dense),
        "threads": np.int64(threads),
        "protocol": np.array(json.dumps(protocol, sort_keys=True)),
    }


# --- real space ------------------------------------------------------------------------------------------
def lattice_transform(Xk: np.ndarray, kpts_frac: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """X(R) = (1/N_k) Σ_k e^{−2πi k·R} X(k) for each R (rows of ``shifts``); real part (imaginary → ~0)."""
    phase = np.exp(-2j * np.pi * np.asarray(shifts, float) @ np.asarray(kpts_frac, float).T)  # (nR, nk)
    XR = np.einsum("rk,kab->rab", phase, Xk) / len(kpts_frac)
    return XR


def interpolation_residual(s: Structure, raw: dict) -> float:
    """max |ε(k) from the stored blocks − ε(k) of the DFT Fock| (eV) at the raw result's off-mesh check k."""
    exact = generalized_eigh(np.asarray(raw["check_fock"]), np.asarray(raw["check_ovlp"]))
    return float(np.abs(structure_bands(s, raw["check_kpts_frac"]) - exact * HARTREE_EV).max())


def raw_to_structure(raw: dict, sid: str, path, protocol: dict, cutoff=None, sources=()) -> Structure:
    """Real-space :class:`Structure` (eV, Å, hambench order) from a raw result of :func:`run_crystal`."""
    symbols = [str(x) for x in raw["symbols"]]
    pbc = np.asarray(raw["pbc"], bool)
    cell = build_cell(symbols, raw["pos_ang"], raw["cell_ang"], protocol, where=path)
    species = pyscf_species_shells(cell)
    radius = float(cutoff) if cutoff else pair_radii(cell, protocol["overlap_tol"])
    src, dst, shift = select_pairs(symbols, raw["pos_ang"], raw["cell_ang"], pbc, radius)
    uniq, inv = np.unique(shift, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    HR = lattice_transform(raw["fock_fft"], raw["fft_kpts_frac"], uniq)
    SR = overlap_blocks(cell, uniq)
    # one global permutation PySCF → hambench: new[a, b] = s_a s_b old[p_a, p_b]
    Z = [symbol_to_z(x) for x in symbols]
    slices = [slice(int(r[2]), int(r[3])) for r in cell.aoslice_by_atom()]
    perm, sign = [], []
    for a, sl in enumerate(slices):
        p, sg = atom_permutation("pyscf", species[Z[a]])
        perm.append(p + sl.start)
        sign.append(sg)
    perm, sign = np.concatenate(perm), np.concatenate(sign)
    ss = sign[:, None] * sign[None, :]
    HR = HR.real[:, perm][:, :, perm] * ss * HARTREE_EV
    SR = SR[:, perm][:, :, perm] * ss
    sizes = np.array([sl.stop - sl.start for sl in slices])
    off = np.concatenate([[0], np.cumsum(sizes)])
    hb, sb = [], []
    for e in range(len(src)):
        ri = slice(off[src[e]], off[src[e] + 1])
        rj = slice(off[dst[e]], off[dst[e] + 1])
        hb.append(HR[inv[e], ri, rj].ravel())
        sb.append(SR[inv[e], ri, rj].ravel())
    return Structure(
        id=sid,
        Z=Z,
        pos=raw["pos_ang"],
        cell=raw["cell_ang"],
        pbc=pbc,
        src=src,
        dst=dst,
        shift=shift,
        H=np.concatenate(hb),
        S=np.concatenate(sb),
        species=species,
        energy=float(raw["e_tot"]) * HARTREE_EV,
        nelectron=float(raw["nelectron"]),
        fermi_level=float(raw["mu"]) * HARTREE_EV,
        sources=list(sources),
    )


# --- the source ------------------------------------------------------------------------------------------
class CrystalSource(Source):
    """Crystals generated and labelled with PySCF periodic DFT (KRKS PBE, GTH); real-space H(R), S(R)."""

    name = "pyscf/crystal"
    doc = ("crystals made here with PySCF pbc (KRKS PBE/GTH, k-mesh, smearing): graphene, mos2, "
           "bilayer_graphene or --structures FILE; thermal displacements; exact S(R), H(R) by dense-mesh transform")

    @dataclasses.dataclass(frozen=True)
    class Options(Source.Options):
        # geometry
        system: str | None = _opt(None, "catalogue cell: graphene, mos2, bilayer_graphene (default graphene "
                                        "unless --structures is given).", choices=tuple(CATALOGUE))
        structures: Path | None = _opt(None, "ASE-readable structures file (all frames; instead of --system).")
        count: int | None = _opt(None, "number of structures to generate (default 1 for --system, one per frame "
                                       "of --structures).", min=1)
        supercell: str = _opt("1x1x1", "supercell of each structure, e.g. 2x2x1 (non-periodic directions stay 1).")
        displacement: float | None = _opt(None, "Gaussian displacement amplitude (Å per Cartesian component).",
                                          min=0.0)
        temperature: float | None = _opt(None, "thermal displacements at this temperature (K; Einstein model, "
                                               "default 300 for --system, 0 for --structures).", min=0.0)
        vacuum: float = _opt(12.0, "vacuum between slab images of a --system cell (Å, default 12).", min=0.0)
        # DFT protocol (changes the raw result, so it is part of the cache key)
        xc: str = _opt(DEFAULTS["xc"], "exchange-correlation functional (default pbe).")
        basis: str = _opt(DEFAULTS["basis"], "GTH basis set (default gth-dzvp; an element it lacks falls back to "
                                             "<basis>-molopt-sr).")
        pseudo: str | None = _opt(DEFAULTS["pseudo"], "pseudopotential (default gth-<xc>).")
        kmesh: str = _opt(DEFAULTS["kmesh"], "SCF k-point mesh, Γ-centred, e.g. 6x6x1 (default 6x6x1).")
        smearing: float = _opt(DEFAULTS["smearing"], "Fermi-Dirac smearing (Ha, default 0.005; 0 = off).", min=0.0)
        conv_tol: float = _opt(DEFAULTS["conv_tol"], "SCF convergence threshold (Ha, default 1e-8).")
        ke_cutoff: float | None = _opt(DEFAULTS["ke_cutoff"], "plane-wave kinetic-energy cutoff (Ha; default "
                                                              "PySCF's choice).")
        density_fit: bool = _opt(DEFAULTS["density_fit"], "density fitting instead of multigrid.")
        alias_tol: float = _opt(DEFAULTS["alias_tol"], "aliasing bound that chooses the transform mesh (1e-6).")
        overlap_tol: float = _opt(DEFAULTS["overlap_tol"], "overlap below which an atom pair is no edge (1e-8).")
        fft_mesh: str | None = _opt(DEFAULTS["fft_mesh"], "k-mesh of the lattice transform, e.g. 9x9x1 "
                                                          "(default: chosen from --alias-tol).")
        # run
        max_cycle: int | None = _opt(None, "maximum SCF cycles (default 50); unconverged → excluded.", min=1)
        threads: int = _opt(1, "PySCF threads per worker (default 1).", min=1)
        raw_dir: Path | None = _opt(None, "cache of raw DFT results (resumable; default NAME.raw beside the store).")
        deeph_dir: Path | None = _opt(None, "also write each structure as a DeepH legacy folder here.")

    def __init__(self, input_path=None, source_name=None, **options):
        super().__init__(input_path, **options)
        o = self.opts
        self.source_name = source_name or self.name
        self.protocol = _protocol({k: getattr(o, k) for k in DEFAULTS})
        if o.max_cycle is not None:
            self.protocol["max_cycle"] = int(o.max_cycle)
        self.threads = int(o.threads)
        self.cutoff = o.cutoff
        if self.cutoff is not None and not float(self.cutoff) > 0:
            raise InputError("--cutoff", f"must be positive, got {self.cutoff}")
        if self.threads < 1:
            raise InputError("--threads", f"must be a positive integer, got {o.threads}")
        self.raw_dir = Path(o.raw_dir) if o.raw_dir is not None else Path.cwd() / ".hambench_raw"
        if self.raw_dir.exists() and not self.raw_dir.is_dir():
            raise InputError(self.raw_dir, "--raw-dir exists and is not a folder")
        self.deeph_dir = Path(o.deeph_dir) if o.deeph_dir else None
        self.seed = int(o.seed or 0)
        count = o.count
        if count is not None and int(count) < 1:
            raise InputError("--count", f"must be a positive integer, got {count}")
        sc = parse_mesh(o.supercell or "1x1x1", "--supercell")
        disp, temp = o.displacement, o.temperature
        if disp is not None and temp is not None:
            raise InputError("pyscf/crystal", "give --displacement (Å) or --temperature (K), not both")
        if (disp is not None and float(disp) < 0) or (temp is not None and float(temp) < 0):
            raise InputError("pyscf/crystal", "--displacement and --temperature must be >= 0")
        vacuum = float(o.vacuum)
        if not vacuum > 0:
            raise InputError("--vacuum", f"must be positive, got {o.vacuum}")
        structures = o.structures or input_path
        system = o.system
        bases = []  # (name, symbols, pos, cell, pbc)
        if structures is not None and system is not None:
            raise InputError("pyscf/crystal", "give --system or --structures, not both")
        if structures is not None:
            bases = self._read_structures(Path(structures))
            default_temp = 0.0
        else:
            system = system or "graphene"
            symbols, pos, cell, pbc = catalogue_structure(str(system).lower(), vacuum)
            bases = [(str(system).lower(), symbols, pos, cell, pbc)]
            default_temp = 300.0
        n = int(count) if count is not None else (1 if structures is None else len(bases))
        self._items = []
        for k in range(n):
            name, symbols, pos, cell, pbc = bases[k % len(bases)]
            sc_eff = tuple(s if p else 1 for s, p in zip(sc, pbc))
            symbols, pos, cell = make_supercell(symbols, pos, cell, sc_eff)
            rng = np.random.default_rng([self.seed, k])
            if disp is not None:
                sigma = np.full(len(symbols), float(disp))
            else:
                sigma = thermal_sigma(symbols, float(temp) if temp is not None else default_temp)
            pos = pos + rng.standard_normal(pos.shape) * sigma[:, None]
            sid = f"{name}_{'x'.join(map(str, sc_eff))}_{k:04d}"
            self._items.append((sid, tuple(symbols), tuple(map(tuple, pos.tolist())),
                                tuple(map(tuple, np.asarray(cell).tolist())), tuple(bool(x) for x in pbc)))

    @staticmethod
    def _read_structures(path: Path) -> list:
        if not path.exists():
            raise InputError(path, "no such structures file")
        try:
            import ase.io

            frames = ase.io.read(str(path), index=":")
        except Exception as e:  # ASE raises many kinds on unreadable files
            raise InputError(path, f"ASE cannot read structures from this file ({type(e).__name__}: {e})") from None
        out = []
        for n, at in enumerate(frames):
            cell = np.asarray(at.cell[:], float)
            pbc = np.asarray(at.pbc, bool)
            if not pbc.any():
                raise InputError(path, f"structure {n} is not periodic (pbc all False); pyscf/crystal needs a cell")
            if abs(np.linalg.det(cell)) < 1e-6:
                raise InputError(path, f"structure {n} has a degenerate cell; give all three lattice vectors "
                                       "(add vacuum along non-periodic directions)")
            out.append((f"{path.stem}{n:04d}", list(at.get_chemical_symbols()), at.positions.copy(), cell, pbc))
        if not out:
            raise InputError(path, "no structures in this file")
        return out

    def items(self) -> list:
        return list(self._items)

    def expected_seconds(self, item) -> float:
        """Expected DFT time of one structure (0 when cached), from benchmarks/results/bench_pyscf_crystal.txt:
        gth-szv, 100 Ha, 2 threads: 41-48 s for a 2-atom cell, 4.1x for 8 atoms (t ~ 20.7 s · atoms^1.03);
        other bases scaled by (orbitals per atom / gth-szv's)^2 — a rough guide, not a promise."""
        if self.raw_path(item).exists():
            return 0.0
        t = 20.7 * len(item[1]) ** 1.03
        basis = str(self.protocol.get("basis", "")).lower()
        if "dzvp" in basis:
            t *= (13 / 4) ** 2 / 2  # C: 13 vs 4 orbitals; the grid part does not grow
        elif "tzv" in basis:
            t *= (17 / 4) ** 2 / 2
        return t

    def _cache_key(self, item) -> str:
        keep = {k: v for k, v in self.protocol.items() if k != "max_cycle"}
        return _key({"p": keep, "cutoff": self.cutoff, "geom": [item[1], np.round(item[2], 10).tolist(), item[3], item[4]]})

    def raw_path(self, item) -> Path:
        return self.raw_dir / f"{item[0]}_{self._cache_key(item)}.npz"

    def fft_mesh(self, item, cell=None) -> tuple[tuple[int, int, int], float]:
        """Transform mesh for ``item`` and the S aliasing error it leaves on the kept pairs."""
        sid, symbols, pos, cellv, pbc = item
        if cell is None:
            cell = build_cell(symbols, pos, cellv, self.protocol, sid)
        radius = float(self.cutoff) if self.cutoff else pair_radii(cell, self.protocol["overlap_tol"])
        _, _, kept = select_pairs(symbols, pos, cellv, pbc, radius)
        far = pair_radii(cell, self.protocol["alias_tol"] * 1e-3)
        big_radius = max(far.values()) if not self.cutoff else max(max(far.values()), float(self.cutoff))
        _, _, big = select_pairs(symbols, pos, cellv, np.ones(3, bool), big_radius)
        big = np.unique(big, axis=0)
        S_big = overlap_blocks(cell, big)
        if self.protocol["fft_mesh"]:
            mesh = parse_mesh(self.protocol["fft_mesh"], "--fft-mesh")
            return mesh, _alias_error(S_big, big, np.unique(kept, axis=0), mesh)
        mesh, err = choose_fft_mesh(S_big, big, kept, pbc, self.protocol["alias_tol"],
                                    start=parse_mesh(self.protocol["kmesh"]))
        if err >= self.protocol["alias_tol"]:
            raise InputError(sid, f"overlap aliasing {err:.1e} >= alias_tol {self.protocol['alias_tol']:g} even on a "
                                  f"{'x'.join(map(str, mesh))} mesh: the images across a non-periodic direction "
                                  "overlap; add vacuum (or raise alias_tol)")
        return mesh, err

    def compute(self, item) -> tuple[dict, Path, bool]:
        """The raw result of one structure, from the cache or computed; returns (raw, path, computed)."""
        sid, symbols, pos, cellv, pbc = item
        path = self.raw_path(item)
        if path.exists():
            raw = _load_raw(path)
            if raw is not None and int(raw.get("format", -1)) == RAW_FORMAT and bool(raw["converged"]):
                return raw, path, False
        mesh, alias = self.fft_mesh(item)
        raw = run_crystal(symbols, pos, cellv, pbc, self.protocol, mesh, threads=self.threads, where=sid)
        raw["alias_error_S"] = np.float64(alias)
        raw["id"] = np.array(sid)
        _write_npz_atomic(path, raw, compressed=False)
        return raw, path, True

    def read(self, item) -> list:
        raw, path, _ = self.compute(item)
        if not bool(raw["converged"]):
            raise SCFNotConverged(path, f"SCF of {item[0]} did not converge in {self.protocol.get('max_cycle', 50)} cycles")
        s = raw_to_structure(raw, item[0], path, self.protocol, self.cutoff, sources=[(str(path), file_sha256(path))])
        if self.deeph_dir is not None:
            from .deeph_format import write_legacy_folder

            write_legacy_folder(s, self.deeph_dir / item[0])
        return [s]

    def attrs(self) -> StoreAttrs:
        import pyscf

        p = self.protocol
        return StoreAttrs.from_dict({
            "kind": "crystal",
            "spinful": False,
            "dft": {
                "code": "PySCF",
                "version": pyscf.__version__,
                "method": "KRKS" + (" + Fermi-Dirac smearing" if p["smearing"] > 0 else ""),
                "functional": p["xc"],
                "basis": p["basis"],
                "pseudo": p["pseudo"],
                "kmesh": p["kmesh"],
                "smearing_hartree": p["smearing"],
                "conv_tol": p["conv_tol"],
                "ke_cutoff_hartree": p["ke_cutoff"],
                "density_fit": p["density_fit"],
                "numint": "density fitting" if p["density_fit"] else "multigrid",
                "H(R)": "lattice Fourier transform of the non-SCF Fock on a dense odd mesh from the converged density",
                "S(R)": "exact real-space overlap integrals",
                "alias_tol": p["alias_tol"],
                "overlap_tol": p["overlap_tol"],
            },
            "geometry": "pyscf/crystal generator (catalogue or --structures), Gaussian thermal displacements",
            "constants": "CODATA2018",
        })

"""PySCF work of the ``pyscf/crystal`` source: the cell, exact real-space overlaps, the atom pairs within the
cutoff, the transform mesh chosen from the overlap's aliasing, the SCF + dense-mesh Fock of one cell (the raw
result) and its lattice transform into real-space H(R), S(R) blocks (see :mod:`hambench.pipelines.pyscf_crystal`).
PySCF is imported inside the functions that need it, so listing the sources does not import it.
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np

from hambench.basis._conventions import BOHR_ANGSTROM, HARTREE_EV, atom_permutation, pyscf_species_shells, symbol_to_z
from hambench.errors import InputError
from hambench.scoring._bands import band_energies, generalized_eigh
from hambench.store._structure import Structure
from ._crystal_geometry import parse_mesh

__all__ = ["RAW_FORMAT", "CHECK_KPTS", "build_cell", "overlap_blocks", "pair_radii", "select_pairs", "alias_error",
           "choose_fft_mesh", "frac_mesh", "run_crystal", "lattice_transform", "interpolation_residual",
           "raw_to_structure"]

#: version of the raw .npz layout written by :func:`run_crystal`
RAW_FORMAT = 1


def _basis_for(symbol: str, basis: str) -> str:
    from pyscf.pbc import gto

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


def alias_error(S_big: np.ndarray, big_shifts: np.ndarray, kept: np.ndarray, mesh) -> float:
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
    err = alias_error(S_big, big_shifts, kept, mesh)
    while err >= alias_tol:
        if max(mesh) >= nmax:
            break
        for d in range(3):
            if pbc[d]:
                mesh[d] += 2
        err = alias_error(S_big, big_shifts, kept, mesh)
    return tuple(mesh), err


def frac_mesh(mesh) -> np.ndarray:
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
        frac = np.vstack([frac_mesh(fft_mesh), CHECK_KPTS * np.asarray(pbc, float)])
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
    return float(np.abs(band_energies(s, raw["check_kpts_frac"]) - exact * HARTREE_EV).max())


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


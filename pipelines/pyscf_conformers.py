"""``pyscf/conformers``: thermal conformers of one molecule by normal-mode sampling, labelled with PySCF.

Geometry
    A named molecule of :data:`MOLECULES` (each entry states where its starting geometry comes from) or
    ``--xyz FILE``. The start is optimised at the labelling protocol (BFGS on PySCF's analytic gradient, to a
    largest gradient component of :data:`GTOL` Ha/Bohr), the analytic Hessian is computed there, and both are
    cached as one ``.npz`` in ``raw_dir`` (so a rerun, or a larger ``--count``, does no geometry work).
Sampling
    Harmonic normal modes (mass-weighted Hessian with translations and rotations projected out; standard atomic
    weights of ``pyscf.data.elements.MASSES``). Each vibrational mode's coordinate q_k is drawn from the Boltzmann
    distribution of a harmonic oscillator at ``--temperature``: classical (default; σ_k² = k_B T / ω_k², so every
    mode's mean potential energy is k_B T / 2, as in the classical MD behind MD17) or quantum
    (``--distribution quantum``: σ_k² = ħ coth(ħω_k / 2k_B T) / 2ω_k, zero-point motion included). Conformer k
    uses ``default_rng([seed, k])``: it does not depend on ``--count`` or on how the run is split.
    Large-amplitude modes (torsions) are linearised: at high temperature their displacements stretch bonds.
    Why not ab-initio MD (``pyscf.md``): one MD step costs about one labelled conformer and MD frames 0.5 fs
    apart are strongly correlated, while normal-mode samples are independent after one cached Hessian
    (benchmarks/results/bench_pyscf_conformers.txt).
Labels
    Default: the MD17 Hamiltonian protocol of SchNOrb and QHNet's MD17 sets, PBE/def2-SVP (SchNOrb ran ORCA; here
    PySCF RKS ``xc='pbe'``, spherical def2-SVP, grid level 3, ``conv_tol`` 1e-9 — the same functional and basis,
    not ORCA's grids). ``--protocol qh9``: the QH9 protocol of ``pyscf/qm9`` (B3LYP5/def2-SVP). Each conformer's
    raw result is cached and reused exactly as in ``pyscf/qm9`` (:func:`.pyscf_qm9.cached_result`); the target is
    ``mf.get_fock()`` after convergence.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from hambench.basis._conventions import BOHR_ANGSTROM, symbol_to_z, z_to_symbol
from hambench.basis._pyscf import build_mol, make_rks, protocol_key, protocol_of
from hambench.errors import InputError
from hambench.store._meta import StoreAttrs
from . import Source
from .pyscf_qm9 import (SCFNotConverged, _load_raw, _nao_per_element, _write_npz_atomic, cached_result,
                        raw_to_structure)

__all__ = ["ConformerSource", "MOLECULES", "PROTOCOLS", "read_xyz", "equilibrium", "normal_modes",
           "sample_displacements", "mode_sigmas", "KB_HARTREE", "AMU_ME", "HARTREE_CM1", "GTOL"]

#: k_B in Hartree per kelvin, m_u in electron masses, 1 Hartree in cm⁻¹ (CODATA 2018)
KB_HARTREE = 3.1668115634556e-6
AMU_ME = 1822.888486209
HARTREE_CM1 = 219474.6313632
#: geometry optimisation stops when the largest Cartesian gradient component is below this (Ha/Bohr): 10x tighter
#: than Gaussian's default (4.5e-4); 1e-5 is below the grid-level-3 noise (PySCF's gradient has no grid response:
#: ethanol stalled at 1.5e-5 with the energy constant to 1e-11 Ha)
GTOL = 4.5e-5

#: the labelling protocols (fields of :func:`hambench.basis._pyscf.protocol_of`)
PROTOCOLS = {
    "md17": {"xc": "pbe", "basis": "def2-svp", "grid_level": 3, "conv_tol": 1e-9},
    "qh9": {"xc": "b3lyp5", "basis": "def2-svp", "grid_level": 3, "conv_tol": 1e-9},
}
PROTOCOL_TEXT = {
    "md17": "MD17 Hamiltonian protocol (SchNOrb; QHNet's MD17 sets): PBE/def2-SVP — here PySCF RKS, grid level 3, "
            "conv_tol 1e-9 (SchNOrb used ORCA)",
    "qh9": "QH9 protocol (as pyscf/qm9): RKS B3LYP5/def2-SVP, grid level 3, conv_tol 1e-9",
}

#: name → (symbols, starting geometry in Å, where it comes from); every start is optimised at the protocol level
MOLECULES: dict[str, tuple[tuple[str, ...], tuple[tuple[float, float, float], ...], str]] = {
    "water": (("O", "H", "H"), (
        (-0.0343604951, 0.9775395708, 0.0076015923), (0.0647664923, 0.0205721989, 0.0015346341),
        (0.8717903737, 1.3007924048, 0.0006931336)),
        "QM9 molecule 3 (qm9pack; B3LYP/6-31G(2df,p) equilibrium)"),
    "ethanol": (("C", "C", "O", "H", "H", "H", "H", "H", "H"), (
        (-0.0086050396, 1.5020382883, -0.0068121748), (0.0109931006, -0.0176487687, -0.013770355),
        (0.6808884095, -0.4404180314, -1.1931320987), (1.0115333417, 1.896620303, -0.0192015475),
        (-0.5315986204, 1.8807610923, -0.8897465868), (-0.5167457158, 1.876117708, 0.8871073864),
        (0.5237712083, -0.3891229547, 0.8882408183), (-1.0202754406, -0.4050726108, 0.0169067033),
        (0.6952957263, -1.4017956761, -1.2014849452)),
        "QM9 molecule 14, CCO (qm9pack; B3LYP/6-31G(2df,p) equilibrium)"),
    "malondialdehyde": (("C", "C", "C", "O", "O", "H", "H", "H", "H"), (
        (0.0, 0.0, 0.0), (-1.23, -0.70, 0.0), (1.23, -0.70, 0.0), (-1.30, -1.95, 0.0), (1.28, -2.02, 0.0),
        (0.0, 1.08, 0.0), (-2.17, -0.12, 0.0), (2.17, -0.15, 0.0), (0.30, -2.20, 0.0)),
        "the planar H-bonded enol (MD17's form; not in QM9), built by hand from typical bond lengths"),
    "uracil": (("O", "C", "N", "C", "C", "C", "O", "N", "H", "H", "H", "H"), (
        (-0.0177123072, -0.0879549821, 0.003160126), (-0.025485949, 1.1219708657, 0.009490181),
        (-1.202195723, 1.868300133, 0.0292879942), (-1.2332493289, 3.2390292098, 0.0368782143),
        (-0.1084123685, 3.9791498295, 0.0256146645), (1.1935508206, 3.3229997473, 0.0046059214),
        (2.2764361345, 3.8680343881, -0.0069876871), (1.1057524831, 1.9139807838, -0.0014955356),
        (-2.0493438631, 1.3227266227, 0.0378189124), (-2.2239339802, 3.6779467993, 0.0525367664),
        (-0.1335954904, 5.0585433201, 0.031642283), (1.9861384723, 1.4162927927, -0.0159135805)),
        "QM9 molecule 4258, O=C1NC=CC(=O)N1 (qm9pack; B3LYP/6-31G(2df,p) equilibrium)"),
}


# --- input geometry --------------------------------------------------------------------------------------
def read_xyz(path) -> tuple[tuple[str, ...], tuple[tuple[float, float, float], ...]]:
    """(symbols, Å coordinates) of the first frame of an XYZ file; anything malformed → one-line InputError."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"--xyz: cannot read this file ({type(e).__name__})") from None
    try:
        n = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise InputError(path, "--xyz: the first line must be the number of atoms") from None
    if n < 1 or len(lines) < n + 2:
        raise InputError(path, f"--xyz: says {n} atoms but has {max(0, len(lines) - 2)} atom lines")
    symbols, xyz = [], []
    for k, line in enumerate(lines[2 : n + 2], start=3):
        parts = line.split()
        try:
            if len(parts) < 4:
                raise ValueError
            z = symbol_to_z(parts[0])
            pos = tuple(float(x) for x in parts[1:4])
        except ValueError:
            raise InputError(path, f"--xyz: line {k} is not 'Symbol x y z': {line.strip()!r}") from None
        if not np.all(np.isfinite(pos)):
            raise InputError(path, f"--xyz: line {k} has a non-finite coordinate")
        symbols.append(z_to_symbol(z))
        xyz.append(pos)
    d = np.linalg.norm(np.asarray(xyz)[:, None] - np.asarray(xyz)[None], axis=-1) + np.eye(n) * 1e9
    if n > 1 and d.min() < 0.3:
        raise InputError(path, f"--xyz: two atoms are {d.min():.3f} Å apart")
    return tuple(symbols), tuple(xyz)


# --- equilibrium and normal modes ------------------------------------------------------------------------
class _Ticker:
    """Prints ``message, N s`` on stderr every ``every`` seconds while a long PySCF call runs."""

    def __init__(self, message: str, short: str, every: float = 10.0):
        self.message, self.short, self.every, self._stop = message, short, every, threading.Event()

    def __enter__(self):
        self.t0 = time.perf_counter()
        print(f"hambench: {self.message}", file=sys.stderr, flush=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.every):
            print(f"hambench: {self.short}: {time.perf_counter() - self.t0:.0f} s", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _energy_gradient(symbols, xyz_bohr, protocol, dm0, where):
    """(E in Ha, gradient in Ha/Bohr (N,3), density) at ``xyz_bohr``; the SCF (conv_tol ≤ 1e-11, so that the
    gradient is good to ~3e-6 Ha/Bohr, below :data:`GTOL`) must converge."""
    mol = build_mol(symbols, np.asarray(xyz_bohr).reshape(-1, 3) * BOHR_ANGSTROM, protocol, where)
    mf = make_rks(mol, {**protocol, "conv_tol": min(float(protocol["conv_tol"]), 1e-11)})  # gradients to ~3e-6
    e = mf.kernel(dm0=dm0)
    if not mf.converged:
        raise InputError(where, "the SCF did not converge during the geometry optimisation")
    return float(e), np.asarray(mf.nuc_grad_method().kernel()), mf.make_rdm1()


class _Stalled(Exception):
    """The optimisation stopped improving (the energy is flat to 1e-10 Ha over :data:`STALL` gradients)."""


#: gradients without an energy decrease of 1e-10 Ha after which the optimisation keeps its best point
STALL = 8


def equilibrium(symbols, xyz_ang, protocol: dict, where=None, max_steps: int = 200) -> tuple[np.ndarray, dict]:
    """The geometry (Å) optimised at ``protocol`` from ``xyz_ang`` and what the optimisation did (BFGS, starting
    from a model Hessian of 0.5 Ha/Bohr² per coordinate, a typical bond-stretch constant). It ends at max |g| ≤
    :data:`GTOL`, or at its best point when the energy stalls (grid noise) with max |g| ≤ 10 GTOL; otherwise
    InputError."""
    from scipy.optimize import minimize

    state = {"dm": None, "steps": 0, "said": time.perf_counter(), "best": (np.inf, None, None), "best_step": 0}

    def fun(x):
        e, g, state["dm"] = _energy_gradient(symbols, x, protocol, state["dm"], where)
        state["steps"] += 1
        if e < state["best"][0] - 1e-10:
            state["best_step"] = state["steps"]
        if e < state["best"][0]:
            state["best"] = (e, x.copy(), g)
        if time.perf_counter() - state["said"] >= 10.0:
            print(f"hambench: optimising {where}: {state['steps']} gradients, E = {e:.8f} Ha, "
                  f"max |g| = {np.abs(g).max():.1e} Ha/Bohr", file=sys.stderr, flush=True)
            state["said"] = time.perf_counter()
        if state["steps"] - state["best_step"] >= STALL:
            raise _Stalled
        return e, g.ravel()

    x0 = np.asarray(xyz_ang, dtype=np.float64).ravel() / BOHR_ANGSTROM
    try:
        minimize(fun, x0, jac=True, method="BFGS", options={"gtol": GTOL, "maxiter": max_steps, "norm": np.inf,
                                                             "hess_inv0": np.eye(x0.size) / 0.5})
    except _Stalled:
        pass
    e, x, g = state["best"]
    if np.abs(g).max() > 10 * GTOL:
        raise InputError(where, f"the geometry optimisation did not converge (max |gradient| "
                                f"{np.abs(g).max():.1e} Ha/Bohr after {state['steps']} gradients)")
    info = {"energy": e, "max_gradient": float(np.abs(g).max()), "gradients": state["steps"]}
    return x.reshape(-1, 3) * BOHR_ANGSTROM, info


def _rigid_body_basis(masses_au: np.ndarray, xyz_bohr: np.ndarray) -> np.ndarray:
    """Orthonormal rows spanning translations and rotations in mass-weighted coordinates (5 or 6 rows)."""
    sm = np.sqrt(masses_au)
    r = xyz_bohr - (masses_au[:, None] * xyz_bohr).sum(0) / masses_au.sum()
    rows = []
    for a in range(3):
        e = np.zeros(3)
        e[a] = 1.0
        rows.append((sm[:, None] * e[None, :]).ravel())
        rows.append((sm[:, None] * np.cross(e[None, :], r)).ravel())
    u, s, vt = np.linalg.svd(np.array(rows), full_matrices=False)
    return vt[s > 1e-6 * s.max()]


def normal_modes(hessian: np.ndarray, symbols, xyz_ang, where=None) -> dict:
    """Harmonic modes of a Cartesian Hessian (3N × 3N, Ha/Bohr²) at ``xyz_ang``.

    Returns ``omega`` (atomic units, ascending), ``modes`` (3N × n_vib, orthonormal columns in mass-weighted
    coordinates, largest component positive), ``masses`` (amu) and ``frequencies_cm1``. A mode with ω² ≤ 0 (not a
    minimum) → InputError.
    """
    from pyscf.data.elements import MASSES

    masses = np.array([MASSES[symbol_to_z(s)] for s in symbols], dtype=np.float64)
    m_au = masses * AMU_ME
    w = np.repeat(1.0 / np.sqrt(m_au), 3)
    hm = hessian * w[:, None] * w[None, :]
    hm = 0.5 * (hm + hm.T)
    rigid = _rigid_body_basis(m_au, np.asarray(xyz_ang) / BOHR_ANGSTROM)
    _, _, vt = np.linalg.svd(rigid, full_matrices=True)
    vib = vt[rigid.shape[0]:].T  # orthonormal complement of the rigid-body space
    lam, u = np.linalg.eigh(vib.T @ hm @ vib)
    if lam[0] <= 0:
        raise InputError(where, f"the optimised geometry is not a minimum: a vibrational mode has ω² = "
                                f"{lam[0]:.3e} a.u. ({np.sqrt(-lam[0]) * HARTREE_CM1:.0f}i cm⁻¹)")
    modes = vib @ u
    big = np.argmax(np.abs(modes), axis=0)
    modes *= np.sign(modes[big, np.arange(modes.shape[1])])[None, :]
    omega = np.sqrt(lam)
    return {"omega": omega, "modes": modes, "masses": masses, "frequencies_cm1": omega * HARTREE_CM1}


def mode_sigmas(omega: np.ndarray, temperature: float, distribution: str = "classical") -> np.ndarray:
    """Standard deviation of each mass-weighted normal coordinate (atomic units) at ``temperature`` (K)."""
    kt = KB_HARTREE * float(temperature)
    omega = np.asarray(omega, dtype=np.float64)
    if distribution == "classical":
        return np.sqrt(kt) / omega
    if distribution == "quantum":
        return np.sqrt(1.0 / (2.0 * omega * np.tanh(omega / (2.0 * kt))))
    raise ValueError(f"unknown distribution {distribution!r}")


def sample_displacements(modes: dict, temperature: float, seed: int, indices, distribution: str = "classical"
                         ) -> np.ndarray:
    """Cartesian displacements (len(indices), N, 3) in Å; conformer k draws from ``default_rng([seed, k])``."""
    sig = mode_sigmas(modes["omega"], temperature, distribution)
    w = np.repeat(1.0 / np.sqrt(np.asarray(modes["masses"]) * AMU_ME), 3)
    out = []
    for k in indices:
        q = np.random.default_rng([int(seed), int(k)]).standard_normal(sig.size) * sig
        out.append((w * (modes["modes"] @ q)).reshape(-1, 3) * BOHR_ANGSTROM)
    return np.array(out).reshape(len(out), -1, 3)


def _hessian(symbols, xyz_ang, protocol, threads: int, where) -> np.ndarray:
    """The analytic Cartesian Hessian (3N × 3N, Ha/Bohr²) at ``xyz_ang``."""
    from pyscf import lib

    mol = build_mol(symbols, xyz_ang, protocol, where)
    old = lib.num_threads()
    lib.num_threads(int(threads))
    try:
        mf = make_rks(mol, protocol)
        mf.kernel()
        if not mf.converged:
            raise InputError(where, "the SCF at the optimised geometry did not converge")
        h = mf.Hessian().kernel()  # (N, N, 3, 3)
    finally:
        lib.num_threads(old)
    n = len(symbols)
    h = np.asarray(h).transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
    return 0.5 * (h + h.T)


# --- the source ------------------------------------------------------------------------------------------
def _opt(text: str, default=None, **meta):
    """An Options field with its one-line CLI help (and ``choices``/``min``)."""
    return dataclasses.field(default=default, metadata={"help": text, **meta})


def _geometry_key(symbols, xyz) -> str:
    blob = json.dumps([list(symbols), np.asarray(xyz, dtype=np.float64).round(10).tolist()])
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


class ConformerSource(Source):
    """Thermal conformers of one molecule (normal-mode sampling) labelled with PySCF (MD17 protocol by default)."""

    name = "pyscf/conformers"
    doc = ("thermal conformers of a molecule (--molecule water|ethanol|malondialdehyde|uracil or --xyz FILE) by "
           "normal-mode sampling at --temperature, labelled with PySCF (MD17: PBE/def2-SVP; or QH9); cached")

    @dataclasses.dataclass(frozen=True)
    class Options(Source.Options):
        molecule: str | None = _opt("built-in molecule: " + ", ".join(MOLECULES) + " (default water unless --xyz)")
        xyz: Path | None = _opt("XYZ file of the molecule's starting geometry (instead of --molecule)")
        count: int | None = _opt("number of conformers (default 100)", min=1)
        temperature: float | None = _opt("temperature of the normal-mode sampling (K, > 0; default 500, MD17's MD)",
                                         min=0.0)
        distribution: str = _opt("Boltzmann distribution of each normal mode: classical (default) or quantum "
                                 "(zero-point motion included)", "classical", choices=("classical", "quantum"))
        protocol: str = _opt("labelling protocol: md17 (PBE/def2-SVP, default) or qh9 (B3LYP5/def2-SVP)", "md17",
                             choices=tuple(PROTOCOLS))
        xc: str | None = _opt("exchange-correlation functional (overrides --protocol's)")
        basis: str | None = _opt("basis set (overrides --protocol's)")
        grid_level: int | None = _opt("DFT integration grid level, 0..9 (default 3)", min=0)
        conv_tol: float | None = _opt("SCF convergence threshold in Hartree (default 1e-9)")
        max_cycle: int | None = _opt("maximum SCF cycles (default 50); unconverged molecules are excluded", min=1)
        threads: int | None = _opt("PySCF threads per worker (default 1)", min=1)
        raw_dir: Path | None = _opt("cache of raw DFT results, one .npz per molecule (resumable)")

    def __init__(self, input_path=None, source_name=None, **options):
        super().__init__(input_path, **options)
        self.source_name = source_name or self.name
        o = self.opts
        self._check(o)
        self.protocol = protocol_of({**PROTOCOLS[o.protocol], **{k: getattr(o, k) for k in
                                    ("xc", "basis", "grid_level", "conv_tol", "max_cycle") if getattr(o, k) is not None}})
        if not 0 <= self.protocol["grid_level"] <= 9:
            raise InputError("--grid-level", f"PySCF grid levels are 0..9, got {self.protocol['grid_level']}")
        if not self.protocol["conv_tol"] > 0:
            raise InputError("--conv-tol", f"must be positive, got {self.protocol['conv_tol']}")
        self.threads = int(o.threads or 1)
        self.raw_dir = Path(o.raw_dir) if o.raw_dir is not None else Path.cwd() / ".hambench_raw"
        if self.raw_dir.exists() and not self.raw_dir.is_dir():
            raise InputError(self.raw_dir, "--raw-dir exists and is not a folder")
        if o.xyz is not None:
            self.symbols, start = read_xyz(o.xyz)
            self.label, self.origin = Path(o.xyz).stem, f"{Path(o.xyz).name} (--xyz)"
        else:
            name = (o.molecule or "water").lower()
            self.symbols, start, self.origin = MOLECULES[name]
            self.label = name
        build_mol(self.symbols, start, self.protocol, where=o.xyz or self.label)  # elements the basis lacks
        self.start = np.asarray(start, dtype=np.float64)
        self.count = int(o.count if o.count is not None else 100)
        self.temperature = float(o.temperature if o.temperature is not None else 500.0)
        self.modes = self._modes()
        disp = sample_displacements(self.modes, self.temperature, o.seed, range(self.count), o.distribution)
        eq = self.modes["xyz_eq"]
        self._items = [(k, tuple(map(tuple, (eq + d).tolist()))) for k, d in enumerate(disp)]

    @staticmethod
    def _check(o) -> None:
        """Refuse bad options before any work (one line naming the flag)."""
        if o.molecule is not None and o.xyz is not None:
            raise InputError("--molecule", "give --molecule or --xyz, not both")
        if o.molecule is not None and o.molecule.lower() not in MOLECULES:
            raise InputError("--molecule", f"unknown molecule {o.molecule!r}; built in: {', '.join(MOLECULES)} "
                                           "(or give --xyz FILE)")
        if o.xyz is not None and not Path(o.xyz).is_file():
            raise InputError(o.xyz, "--xyz: no such file")
        if o.count is not None and int(o.count) < 1:
            raise InputError("--count", f"must be a positive integer, got {o.count}")
        if o.temperature is not None and not float(o.temperature) > 0:
            raise InputError("--temperature", f"must be positive (K), got {o.temperature}")
        if o.threads is not None and int(o.threads) < 1:
            raise InputError("--threads", f"must be a positive integer, got {o.threads}")

    def _modes_path(self) -> Path:
        return self.raw_dir / (f"{self.label}_modes_{_geometry_key(self.symbols, self.start)}_"
                               f"{protocol_key(self.protocol)}.npz")

    def _modes(self) -> dict:
        """Equilibrium geometry and normal modes at the protocol: from the cache, or computed and cached."""
        path = self._modes_path()
        raw = _load_raw(path) if path.exists() else None
        if raw is None:
            where = f"{self.label} ({self.protocol['xc']}/{self.protocol['basis']})"
            t0 = time.perf_counter()
            with _Ticker(f"pyscf/conformers: optimising the geometry of {where} (once; cached in {path})",
                         f"optimising {self.label}"):
                xyz_eq, info = equilibrium(self.symbols, self.start, self.protocol, where)
            t1 = time.perf_counter()
            with _Ticker(f"pyscf/conformers: Hessian of {where} at its optimised geometry", f"Hessian of {self.label}"):
                hess = _hessian(self.symbols, xyz_eq, self.protocol, self.threads, where)
            m = normal_modes(hess, self.symbols, xyz_eq, where)
            raw = {"xyz_eq": xyz_eq, "hessian": hess, "e_eq": np.float64(info["energy"]),
                   "max_gradient": np.float64(info["max_gradient"]), "gradients": np.int64(info["gradients"]),
                   "opt_wall_s": np.float64(t1 - t0), "hessian_wall_s": np.float64(time.perf_counter() - t1),
                   "symbols": np.array(self.symbols, dtype="U3"), "xyz_start": self.start,
                   "protocol": np.array(json.dumps(self.protocol, sort_keys=True)), **m}
            _write_npz_atomic(path, raw)
        return {k: raw[k] for k in ("xyz_eq", "omega", "modes", "masses", "frequencies_cm1", "hessian", "e_eq")}

    def items(self) -> list:
        return list(self._items)

    def raw_path(self, item) -> Path:
        k, xyz = item
        return self.raw_dir / (f"{self.label}_{k:06d}_{_geometry_key(self.symbols, xyz)}_"
                               f"{protocol_key(self.protocol)}.npz")

    #: pyscf/qm9's fit t = a · n_ao^b scaled by 1.03, the PBE-conformer / qm9-path time ratio of
    #: benchmarks/results/bench_pyscf_conformers.txt (same run, 1 PySCF thread)
    TIME_FIT = (0.00122, 2.07)

    def expected_seconds(self, item) -> float:
        """Expected DFT time of one conformer (0 when cached), from the benchmark's fit t = a · n_ao^b."""
        if self.raw_path(item).exists():
            return 0.0
        nao = sum(_nao_per_element(self.protocol["basis"], s) for s in self.symbols)
        a, b = self.TIME_FIT
        return a * float(nao) ** b

    def compute(self, item) -> tuple[dict, Path, bool]:
        """The raw result of one conformer, from the cache or computed; returns (raw, path, computed)."""
        k, xyz = item
        path = self.raw_path(item)
        raw, computed = cached_result(path, self.symbols, xyz, self.protocol, self.threads,
                                      f"{self.label} conformer {k}", {"conformer": np.int64(k)})
        return raw, path, computed

    def read(self, item) -> list:
        k = item[0]
        raw, path, _ = self.compute(item)
        if not bool(raw["converged"]):
            raise SCFNotConverged(path, f"SCF of {self.label} conformer {k} did not converge in "
                                        f"{self.protocol['max_cycle']} cycles")
        return [raw_to_structure(raw, f"{self.label}_{k:06d}", path, self.protocol["basis"])]

    def attrs(self) -> StoreAttrs:
        import pyscf

        p, o = self.protocol, self.opts
        named = next((n for n, q in PROTOCOLS.items() if protocol_key(protocol_of(q)) == protocol_key(p)), None)
        return StoreAttrs.from_dict({
            "kind": "molecule",
            "spinful": False,
            "dft": {"code": "PySCF", "version": pyscf.__version__, "method": "RKS", "functional": p["xc"],
                    "basis": p["basis"], "grid_level": p["grid_level"], "conv_tol": p["conv_tol"],
                    "density_fit": p["density_fit"],
                    "target": "mf.get_fock() after convergence (Fock of the final density)",
                    "protocol": PROTOCOL_TEXT[named] if named else "custom"},
            "geometry": (f"thermal conformers of {self.label} by harmonic normal-mode sampling at "
                         f"{self.temperature:g} K ({o.distribution} Boltzmann distribution per mode) around its "
                         f"geometry optimised at the labelling protocol; start: {self.origin}"),
            "conformers": {"molecule": self.label, "temperature_K": self.temperature,
                           "distribution": o.distribution, "count": self.count,
                           "frequencies_cm1": [round(float(f), 3) for f in self.modes["frequencies_cm1"]],
                           "equilibrium_energy_Ha": float(self.modes["e_eq"]),
                           "masses": "pyscf.data.elements.MASSES (standard atomic weights)"},
            "constants": "CODATA2018",
        })

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
from pathlib import Path

import numpy as np

from hambench.errors import ExcludedItem, InputError
from hambench.scoring._bands import band_energies as structure_bands  # the one Bloch sum and eigensolver
from hambench.store._meta import StoreAttrs
from hambench.store._structure import file_sha256
from . import Source
from ._crystal_geometry import (CATALOGUE, EINSTEIN_K, catalogue_structure, make_supercell, parse_mesh,
                                read_structures, thermal_sigma)
from ._crystal_pyscf import (RAW_FORMAT, alias_error, build_cell, choose_fft_mesh, frac_mesh, interpolation_residual,
                             lattice_transform, overlap_blocks, pair_radii, raw_to_structure, run_crystal, select_pairs)
from .deeph_format import write_legacy_folder
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
    "frac_mesh",
    "run_crystal",
    "lattice_transform",
    "raw_to_structure",
    "structure_bands",
    "interpolation_residual",
]

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


class SCFNotConverged(ExcludedItem):
    """The SCF of one crystal did not converge: the driver reports it and leaves it out of the store."""




# --- options ---------------------------------------------------------------------------------------------
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
            bases = read_structures(Path(structures))
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
            return mesh, alias_error(S_big, big, np.unique(kept, axis=0), mesh)
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

"""Geometry of the ``pyscf/crystal`` source: the catalogue cells, supercells, thermal displacements (Einstein
model) and ``--structures`` files read with ASE."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hambench.basis._conventions import symbol_to_z
from hambench.errors import InputError

__all__ = ["CATALOGUE", "EINSTEIN_K", "parse_mesh", "catalogue_structure", "make_supercell", "thermal_sigma",
           "read_structures"]

KB_EV = 8.617333262e-5  # Boltzmann constant, eV/K (CODATA 2018)
AMU_EV_FS2_A2 = 103.642697  # 1 amu·Å²/fs² in eV: M ω² x² is in eV with M in amu, ω in 1/fs, x in Å
HBAR_EV_FS = 0.6582119569  # ħ in eV·fs

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



def read_structures(path: Path) -> list:
    """``(name, symbols, pos Å, cell rows Å, pbc)`` of every frame of an ASE-readable file (periodic cells)."""
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

"""Physics conventions of hambench: units, orbital orders per DFT code, shells per species.

This module is the single implementation of these conventions; every reader, model and metric imports it.

Stored order ("hambench-real-sh-v1")
    For each atom, its shells in the species' order; within a shell of angular momentum l, the standard
    real spherical harmonics m = -l..l (p: y, z, x; d: xy, yz, z², xz, x²-y²). Spinful blocks are
    (2 n_i, 2 n_j), spin-outer: [[↑↑, ↑↓], [↓↑, ↓↓]].

Native orders
    For each DFT code and each l a permutation ``perm`` and signs ``sign`` with
    ``new[k] = sign[k] * old[perm[k]]`` (FACTS.md §2, verified on real files).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "HARTREE_EV",
    "BOHR_ANGSTROM",
    "RYDBERG_EV",
    "DEEPH_HARTREE_EV",
    "DEEPH_BOHR_ANGSTROM",
    "ABACUS_RYDBERG_EV",
    "ORBITAL_CONVENTION",
    "ELEMENTS",
    "CODES",
    "OrderTable",
    "order_table",
    "shell_permutation",
    "atom_permutation",
    "to_hambench",
    "from_hambench",
    "parse_openmx_basis",
    "symbol_to_z",
    "z_to_symbol",
    "n_orbitals",
    "shell_slices",
    "shells_from_pyscf",
    "pyscf_species_shells",
    "pyscf_atom_slices",
]

# --- units (CODATA 2018) ---------------------------------------------------------------------------------
HARTREE_EV = 27.211386245988
BOHR_ANGSTROM = 0.529177210903
RYDBERG_EV = HARTREE_EV / 2
# constants peers used (FACTS.md §1): comparisons with their files agree to ~1e-7 relative only
DEEPH_HARTREE_EV = 27.2113845
DEEPH_BOHR_ANGSTROM = 0.529177249
ABACUS_RYDBERG_EV = 13.605698

ORBITAL_CONVENTION = "hambench-real-sh-v1"

# fmt: off
ELEMENTS = (
    "X", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar",
    "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr",
    "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe",
    "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu",
    "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn",
    "Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr",
    "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og",
)
# fmt: on
_SYMBOL_TO_Z = {s.lower(): z for z, s in enumerate(ELEMENTS) if z > 0}


def symbol_to_z(symbol: str) -> int:
    """Atomic number of an element symbol (case-insensitive); ``ValueError`` for an unknown one."""
    z = _SYMBOL_TO_Z.get(str(symbol).strip().lower())
    if z is None:
        raise ValueError(f"unknown element symbol {symbol!r}")
    return z


def z_to_symbol(z: int) -> str:
    """Element symbol of atomic number ``z``; ``ValueError`` outside 1..118."""
    if not 1 <= int(z) < len(ELEMENTS):
        raise ValueError(f"unknown atomic number {z}")
    return ELEMENTS[int(z)]


# --- orbital orders --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderTable:
    """Native order of one DFT code: per l, ``new[k] = sign[k] * old[perm[k]]``."""

    code: str
    perm: dict[int, tuple[int, ...]]
    sign: dict[int, tuple[int, ...]]
    note: str = ""


def _alt_sign(l: int) -> tuple[int, ...]:
    """(-1)^m for m = -l..l."""
    return tuple(1 if (m % 2 == 0) else -1 for m in range(-l, l + 1))


_IDENTITY = {l: tuple(range(2 * l + 1)) for l in range(8)}
_PLUS = {l: (1,) * (2 * l + 1) for l in range(8)}

CODES: dict[str, OrderTable] = {
    "hambench": OrderTable("hambench", _IDENTITY, _PLUS, "real SH, m = -l..l"),
    # DeepH-dock's new format already is the hambench order
    "deeph": OrderTable("deeph", _IDENTITY, _PLUS, "DeepH-dock new format: m = -l..l"),
    "openmx": OrderTable(
        "openmx",
        {0: (0,), 1: (1, 2, 0), 2: (2, 4, 0, 3, 1), 3: (6, 4, 2, 0, 1, 3, 5)},
        {0: (1,), 1: (1, 1, 1), 2: (1,) * 5, 3: (1,) * 7},
        "p x,y,z; d z²,x²-y²,xy,xz,yz; f m=0,+1,-1,+2,-2,+3,-3 (also DeepH legacy folders)",
    ),
    "pyscf": OrderTable(
        "pyscf",
        {**_IDENTITY, 1: (1, 2, 0)},
        _PLUS,
        "p x,y,z; l>=2 already m=-l..l (spherical AOs)",
    ),
    "abacus": OrderTable(
        "abacus",
        {0: (0,), 1: (2, 0, 1), 2: (4, 2, 0, 1, 3), 3: (6, 4, 2, 0, 1, 3, 5)},
        {0: (1,), 1: _alt_sign(1), 2: _alt_sign(2), 3: _alt_sign(3)},
        "m = 0,+1,-1,+2,-2,...; functions carry (-1)^m",
    ),
    "siesta": OrderTable(
        "siesta",
        _IDENTITY,
        {l: _alt_sign(l) for l in range(8)},
        "m = -l..l, functions carry (-1)^m",
    ),
}
# DeepH legacy folders are written in OpenMX order
CODES["deeph-legacy"] = OrderTable("deeph-legacy", CODES["openmx"].perm, CODES["openmx"].sign, CODES["openmx"].note)


def order_table(code: str) -> OrderTable:
    """The native-order table of a DFT code (``openmx``, ``pyscf``, ``abacus``, ``siesta``, ``deeph``, ...)."""
    try:
        return CODES[code.lower()]
    except KeyError:
        raise ValueError(f"unknown orbital convention {code!r}; known: {', '.join(sorted(CODES))}") from None


def shell_permutation(code: str, l: int) -> tuple[np.ndarray, np.ndarray]:
    """``(perm, sign)`` of one shell: ``new = sign * old[perm]`` (native → hambench)."""
    t = order_table(code)
    if l not in t.perm:
        raise ValueError(f"{t.code} order table has no shell with l = {l}")
    return np.asarray(t.perm[l], dtype=np.int64), np.asarray(t.sign[l], dtype=np.float64)


@lru_cache(maxsize=4096)
def _atom_permutation_cached(code: str, shells: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    perms, signs, start = [], [], 0
    for l in shells:
        p, s = shell_permutation(code, l)
        perms.append(p + start)
        signs.append(s)
        start += 2 * l + 1
    perm = np.concatenate(perms) if perms else np.zeros(0, np.int64)
    sign = np.concatenate(signs) if signs else np.zeros(0)
    perm.setflags(write=False)
    sign.setflags(write=False)
    return perm, sign


def atom_permutation(code: str, shells) -> tuple[np.ndarray, np.ndarray]:
    """Orbital ``(perm, sign)`` of one atom with the given shells (l per shell), native → hambench."""
    return _atom_permutation_cached(code.lower(), tuple(int(l) for l in shells))


def _spin_expand(perm: np.ndarray, sign: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(perm)
    return np.concatenate([perm, perm + n]), np.concatenate([sign, sign])


def _block_permutation(block: np.ndarray, code: str, shells_i, shells_j, spinful: bool):
    """Row and column permutations of an (n_i, n_j) block between ``code``'s order and hambench's, and the signs
    (n_i, n_j) float32 (±1, exact in float32: float32/complex64 blocks keep their dtype)."""
    pi, si = atom_permutation(code, shells_i)
    pj, sj = atom_permutation(code, shells_j)
    if spinful:
        pi, si = _spin_expand(pi, si)
        pj, sj = _spin_expand(pj, sj)
    if block.shape[-2:] != (len(pi), len(pj)):
        raise ValueError(f"block shape {block.shape} does not match shells {list(shells_i)} x {list(shells_j)}")
    return pi, pj, (si[:, None] * sj[None, :]).astype(np.float32)


def to_hambench(block: np.ndarray, code: str, shells_i, shells_j, spinful: bool = False) -> np.ndarray:
    """Convert one block (n_i, n_j) — or spinful (2n_i, 2n_j), spin-outer — from ``code`` order to hambench.

    ``new[a, b] = s_a s_b old[p_a, p_b]``.
    """
    block = np.asarray(block)
    pi, pj, signs = _block_permutation(block, code, shells_i, shells_j, spinful)
    return block[..., pi[:, None], pj[None, :]] * signs


def from_hambench(block: np.ndarray, code: str, shells_i, shells_j, spinful: bool = False) -> np.ndarray:
    """Inverse of :func:`to_hambench`: hambench order → ``code``'s native order."""
    block = np.asarray(block)
    pi, pj, signs = _block_permutation(block, code, shells_i, shells_j, spinful)
    out = np.empty_like(block)
    out[..., pi[:, None], pj[None, :]] = block * signs
    return out


# --- shells ----------------------------------------------------------------------------------------------
_L_LETTERS = "spdfghi"
_OPENMX_BASIS = re.compile(r"^([A-Za-z]+)(\d+(?:\.\d*)?)(?:[-_]([spdfghi\d]+))$")


def parse_openmx_basis(spec: str) -> list[int]:
    """Shells of an OpenMX PAO specification: ``'C6.0-s2p2d1'`` → ``[0, 0, 1, 1, 2]``.

    Each letter is an angular momentum and the digit after it the number of radial functions (zeta).
    """
    m = _OPENMX_BASIS.match(spec.strip())
    if not m:
        raise ValueError(f"not an OpenMX basis specification: {spec!r} (expected e.g. 'C6.0-s2p2d1')")
    shells: list[int] = []
    for letter, count in re.findall(r"([spdfghi])(\d+)", m.group(3)):
        shells += [_L_LETTERS.index(letter)] * int(count)
    if not shells or "".join(f"{a}{b}" for a, b in re.findall(r"([spdfghi])(\d+)", m.group(3))) != m.group(3):
        raise ValueError(f"cannot read the shells of OpenMX basis {spec!r}")
    return shells


def n_orbitals(shells, spinful: bool = False) -> int:
    """Number of orbitals of an atom with the given shells (doubled when spinful)."""
    n = sum(2 * int(l) + 1 for l in shells)
    return 2 * n if spinful else n


def shell_slices(shells) -> list[slice]:
    """Slices of each shell inside an atom's orbital vector (spinless)."""
    out, start = [], 0
    for l in shells:
        out.append(slice(start, start + 2 * int(l) + 1))
        start += 2 * int(l) + 1
    return out


# --- PySCF basis descriptions ----------------------------------------------------------------------------
def shells_from_pyscf(mol, atom: int) -> list[int]:
    """Shells (l per radial function) of atom ``atom`` of a PySCF ``Mole``/``Cell``, in PySCF's AO order.

    A PySCF shell with ``bas_nctr > 1`` (general contraction, e.g. cc-pVDZ) holds several radial functions of
    the same l; its AOs come contraction-major, so it counts as ``nctr`` consecutive hambench shells.
    """
    shells: list[int] = []
    for ib in range(mol.nbas):
        if mol.bas_atom(ib) == atom:
            shells += [int(mol.bas_angular(ib))] * int(mol.bas_nctr(ib))
    return shells


def pyscf_species_shells(mol) -> dict[int, list[int]]:
    """``{Z: shells}`` of a PySCF molecule/cell; ``ValueError`` if one element has two different bases."""
    if getattr(mol, "cart", False):
        raise ValueError("PySCF molecule uses Cartesian AOs (mol.cart = True); hambench needs spherical AOs")
    out: dict[int, list[int]] = {}
    for a in range(mol.natm):
        z = symbol_to_z(re.sub(r"[^A-Za-z]", "", mol.atom_pure_symbol(a)))
        shells = shells_from_pyscf(mol, a)
        if z in out and out[z] != shells:
            raise ValueError(f"element {z_to_symbol(z)} has two different bases ({out[z]} and {shells}) in one molecule")
        out[z] = shells
    return out


def pyscf_atom_slices(mol) -> list[slice]:
    """AO range of each atom of a PySCF molecule (PySCF orders AOs atom by atom)."""
    return [slice(int(r[2]), int(r[3])) for r in mol.aoslice_by_atom()]

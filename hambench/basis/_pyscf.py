"""PySCF molecules for hambench: the QH9 protocol, the molecule builder, and PySCF ↔ hambench full matrices.

This is core code (the scorer's SCF acceleration uses it); the ``pyscf/qm9`` source imports it from here.

The QH9 protocol with modern PySCF (FACTS.md §5, research/qh9.md §1.2): RKS, ``xc='b3lyp5'`` (what PySCF
2.2.1's ``'b3lyp'`` meant when QH9-stable was made), def2-SVP with spherical AOs, grid level 3,
``conv_tol`` 1e-9, ``max_cycle`` 50, PySCF defaults otherwise (DIIS space 8, ``init_guess`` minao).

Orbital order: PySCF's spherical AOs are atom-major, shell-major, with p as (x, y, z) and l ≥ 2 already
m = −l…l; :func:`hambench_order` gives the permutation of :mod:`hambench.basis._conventions` ("pyscf" table) for a
whole molecule so that ``M_hambench = M_pyscf[perm][:, perm]`` (all signs are +1 for PySCF).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

import numpy as np

from hambench.basis._conventions import HARTREE_EV, atom_permutation, symbol_to_z, z_to_symbol
from hambench.errors import InputError

__all__ = [
    "DEFAULT_PROTOCOL",
    "protocol_of",
    "protocol_key",
    "protocol_from_attrs",
    "normalize_functional",
    "build_mol",
    "mol_from_structure",
    "make_rks",
    "shells_of_atoms",
    "check_species",
    "hambench_order",
    "to_pyscf_matrix",
    "from_pyscf_matrix",
]

#: the QH9 protocol with modern PySCF (FACTS.md §5); every field can be overridden by an option
DEFAULT_PROTOCOL = {
    "code": "PySCF",
    "method": "RKS",
    "xc": "b3lyp5",
    "basis": "def2-svp",
    "grid_level": 3,
    "conv_tol": 1e-9,
    "density_fit": False,
    "max_cycle": 50,
    "charge": 0,
    "spin": 0,
    "cart": False,
}


def protocol_of(options: dict) -> dict:
    """The DFT protocol: :data:`DEFAULT_PROTOCOL` with the options given (None means default)."""
    p = dict(DEFAULT_PROTOCOL)
    for k in ("xc", "basis", "grid_level", "conv_tol", "density_fit", "max_cycle"):
        if options.get(k) is not None:
            p[k] = options[k]
    p["xc"] = str(p["xc"]).lower()
    p["basis"] = str(p["basis"]).lower()
    p["grid_level"] = int(p["grid_level"])
    p["conv_tol"] = float(p["conv_tol"])
    p["density_fit"] = bool(p["density_fit"])
    p["max_cycle"] = int(p["max_cycle"])
    return p


def protocol_key(protocol: dict) -> str:
    """Short hash of the protocol fields that change the result (``max_cycle`` does not)."""
    keep = {k: v for k, v in protocol.items() if k != "max_cycle"}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:8]


def normalize_functional(text: str, where=None) -> str:
    """A PySCF ``xc`` string from a store's ``dft.functional`` attribute.

    Plain PySCF names pass through (lower case). The QH9 sources write descriptions such as
    ``"b3lyp (VWN5, = b3lyp5 today)"`` → ``'b3lyp5'`` and ``"b3lyp (VWN-RPA, PySCF >= 2.3)"`` → ``'b3lyp'``
    (research/qh9.md §1.2: PySCF's ``'b3lyp'`` meant B3LYP5 before 2.3.0). Anything else with spaces or
    parentheses (e.g. ``"as in the chkfiles"``) → :class:`InputError`.
    """
    t = str(text).strip().lower()
    if "(" in t:
        head = t.split("(", 1)[0].strip()
        detail = t.split("(", 1)[1]
        if head == "b3lyp" and ("vwn5" in detail or "b3lyp5" in detail):
            return "b3lyp5"
        if head == "b3lyp" and ("vwn-rpa" in detail or "vwn3" in detail or "rpa" in detail):
            return "b3lyp"
        t = head
    if not t or not re.fullmatch(r"[a-z0-9_,.*+\-]+", t):
        raise InputError(where, f"the store's dft.functional {text!r} is not a PySCF xc name; pass the protocol "
                                "explicitly (e.g. xc='b3lyp5')")
    return t


def protocol_from_attrs(kind: str | None, dft: Mapping | None, where=None, overrides: dict | None = None) -> dict:
    """The PySCF protocol a store was labelled with, from its ``kind`` and ``dft`` attributes (functional, basis,
    grid, conv_tol), e.g. ``protocol_from_attrs(store.kind, store.meta.dft)``.

    Fields the attributes do not name keep the QH9 defaults (:data:`DEFAULT_PROTOCOL`); ``overrides`` (same keys
    as :func:`protocol_of`) win over both. A store not made with PySCF RKS, or whose basis/functional is not
    recorded, → :class:`InputError` naming ``where`` (unless ``overrides`` supplies them).
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    dft = dict(dft or {})
    if kind not in (None, "molecule"):
        raise InputError(where, f"SCF runs need a molecule store; this store's kind is {kind!r}")
    code = str(dft.get("code", "")).lower()
    if code and code != "pyscf" and not {"xc", "basis"} <= set(overrides):
        raise InputError(where, f"the store was made with {dft.get('code')!r}, not PySCF: its SCF settings cannot be "
                                "reproduced (pass xc and basis explicitly to run PySCF anyway)")
    method = str(dft.get("method", "RKS")).upper()
    if method not in ("RKS", ""):
        raise InputError(where, f"only RKS stores are supported for SCF runs; dft.method is {dft.get('method')!r}")
    opts: dict = {}
    if "xc" not in overrides:
        if "functional" not in dft:
            raise InputError(where, "the store's attrs do not record dft.functional; pass xc explicitly")
        opts["xc"] = normalize_functional(dft["functional"], where)
    if "basis" not in overrides:
        basis = str(dft.get("basis", ""))
        if not basis or " " in basis.strip():
            raise InputError(where, f"the store's attrs do not record a PySCF basis name (dft.basis = {basis!r}); "
                                    "pass basis explicitly")
        opts["basis"] = basis
    for k_attr, k in (("grid_level", "grid_level"), ("conv_tol", "conv_tol"), ("density_fit", "density_fit"),
                      ("max_cycle", "max_cycle")):
        if k_attr in dft and k not in overrides:
            opts[k] = dft[k_attr]
    opts.update(overrides)
    return protocol_of(opts)


def build_mol(symbols, xyz_ang, protocol: dict, where=None):
    """A PySCF ``Mole`` (Å input); unknown elements or a basis without them → :class:`InputError`."""
    from pyscf import gto

    for s in symbols:
        try:
            symbol_to_z(s)
        except ValueError:
            raise InputError(where, f"unknown element symbol {s!r}") from None
    p = {**DEFAULT_PROTOCOL, **protocol}
    try:
        mol = gto.M(
            atom=[(s, tuple(map(float, pos))) for s, pos in zip(symbols, xyz_ang)],
            basis=p["basis"],
            unit="Angstrom",
            charge=p["charge"],
            spin=p["spin"],
            cart=p["cart"],
            verbose=0,
        )
    except (RuntimeError, KeyError, ValueError) as e:
        raise InputError(where, f"PySCF cannot build the molecule ({type(e).__name__}: {e})") from None
    return mol


def mol_from_structure(s, protocol: dict, where=None, check: bool = True):
    """The PySCF molecule of a hambench molecule :class:`~hambench.store._structure.Structure` (Z, positions in Å).

    With ``check``, the PySCF shells of every atom must equal the structure's ``species`` (the store was made
    with this basis); otherwise :class:`InputError`.
    """
    if np.any(np.asarray(s.pbc)):
        raise InputError(where, f"structure {s.id!r} is periodic; PySCF molecule runs need a molecule")
    symbols = [z_to_symbol(int(z)) for z in s.Z]
    mol = build_mol(symbols, s.pos, protocol, where)
    if check:
        check_species(mol, s.Z, s.species, where)
    return mol


def make_rks(mol, protocol: dict):
    """``dft.RKS(mol)`` with the protocol's functional, grid level, conv_tol, max_cycle (and density fitting)."""
    from pyscf import dft

    p = {**DEFAULT_PROTOCOL, **protocol}
    mf = dft.RKS(mol)
    mf.xc = p["xc"]
    mf.grids.level = int(p["grid_level"])
    mf.conv_tol = float(p["conv_tol"])
    mf.max_cycle = int(p["max_cycle"])
    if p["density_fit"]:
        mf = mf.density_fit()
    mf.verbose = 0
    return mf


def shells_of_atoms(mol) -> list[list[int]]:
    """Angular momentum of every contracted shell of every atom, in PySCF's AO order (l repeated per nctr)."""
    shells: list[list[int]] = [[] for _ in range(mol.natm)]
    for ib in range(mol.nbas):
        shells[mol.bas_atom(ib)] += [int(mol.bas_angular(ib))] * int(mol.bas_nctr(ib))
    return shells


def check_species(mol, Z, species: dict, where=None) -> None:
    """:class:`InputError` unless PySCF's shells of each atom equal ``species[Z]`` (the store's basis)."""
    if getattr(mol, "cart", False):
        raise InputError(where, "the PySCF molecule uses Cartesian AOs; hambench stores spherical AOs")
    for a, (z, sh) in enumerate(zip(np.asarray(Z), shells_of_atoms(mol))):
        want = list(species.get(int(z), []))
        if list(sh) != want:
            raise InputError(where, f"PySCF basis {mol.basis!r} gives {z_to_symbol(int(z))} (atom {a}) the shells "
                                    f"{list(sh)}, the store has {want}: the store was made with another basis")


def hambench_order(shells_per_atom) -> np.ndarray:
    """``perm`` over the full AO range: ``M_hambench = M_pyscf[np.ix_(perm, perm)]`` (PySCF signs are all +1)."""
    perm, start = [], 0
    for sh in shells_per_atom:
        p, sign = atom_permutation("pyscf", sh)
        if np.any(sign != 1):  # pragma: no cover - the table says +1 everywhere
            raise AssertionError("PySCF order table has a sign")
        perm.append(np.asarray(p) + start)
        start += len(p)
    return np.concatenate(perm) if perm else np.zeros(0, np.int64)


def to_pyscf_matrix(full_ev: np.ndarray, shells_per_atom, hartree: bool = True) -> np.ndarray:
    """A full matrix in hambench order (eV) → PySCF AO order (Hartree when ``hartree``; pass False for S)."""
    perm = hambench_order(shells_per_atom)
    full = np.asarray(full_ev)
    if full.shape != (len(perm), len(perm)):
        raise ValueError(f"matrix of shape {full.shape} for a basis of {len(perm)} AOs")
    out = np.empty_like(full, dtype=np.result_type(full.dtype, np.float64))
    out[np.ix_(perm, perm)] = full
    return out / HARTREE_EV if hartree else out


def from_pyscf_matrix(full_pyscf: np.ndarray, shells_per_atom, hartree: bool = True) -> np.ndarray:
    """Inverse of :func:`to_pyscf_matrix`: PySCF order (Hartree) → hambench order (eV when ``hartree``)."""
    perm = hambench_order(shells_per_atom)
    m = np.asarray(full_pyscf, dtype=np.float64)[np.ix_(perm, perm)]
    return m * HARTREE_EV if hartree else m

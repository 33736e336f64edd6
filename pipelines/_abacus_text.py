"""The text files of an ABACUS run: ``STRU`` (species, orbital files, cell, positions), ``INPUT`` (keywords) and
``running_scf.log`` (version, shells per species, lattice, Fermi level, energy, electrons, nspin, functional).

Lengths are converted Bohr → Å here (``LATTICE_CONSTANT``); shells per species come from the log
(``L=1, number of zeta = 2``) or from the orbital file name in ``NUMERICAL_ORBITAL`` (``..._4s2p2d1f.orb``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from hambench.basis import _conventions as cv
from hambench.errors import InputError

__all__ = ["read_input_keywords", "input_values", "shells_from_orbital_file", "read_stru", "stru_positions",
           "parse_log", "abacus_spin", "TRUE_WORDS"]

#: how INPUT spells a true logical (``lspinorb 1``, ``.true.``, …)
TRUE_WORDS = ("1", "true", ".true.", "t")
_NSPIN = re.compile(r"^\s*nspin\s*=\s*(\d+)", re.M)

_STRU_KEYS = ("ATOMIC_SPECIES", "NUMERICAL_ORBITAL", "LATTICE_CONSTANT", "LATTICE_VECTORS", "LATTICE_PARAMETERS",
              "ATOMIC_POSITIONS", "NUMERICAL_DESCRIPTOR", "ABFS_ORBITAL", "PAW_FILES")


def _stru_blocks(text: str) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    key = None
    for raw in text.splitlines():
        line = raw.split("#")[0].split("//")[0].strip()
        if not line:
            continue
        if line.split()[0] in _STRU_KEYS:
            key = line.split()[0]
            blocks[key] = []
            continue
        if key is not None:
            blocks[key].append(line)
    return blocks


def read_input_keywords(path: Path) -> dict[str, str]:
    """``key value`` pairs of an ABACUS INPUT file (lower-case keys); empty when the file is absent."""
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.split("#")[0].strip()
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] != "INPUT_PARAMETERS":
            out[parts[0].lower()] = parts[1].strip()
    return out


def _lattice_from_name(latname: str, params: list[float], path: Path) -> np.ndarray | None:
    """Lattice vectors (units of the lattice constant) for the ``latname`` values checked here."""
    if latname == "sc":
        return np.eye(3)
    if latname == "hexagonal":  # checked against running_scf.log of realdata/abacus_MoS2
        if not params:
            raise InputError(path, "latname hexagonal needs LATTICE_PARAMETERS (c/a)")
        return np.array([[1.0, 0.0, 0.0], [-0.5, math.sqrt(3.0) / 2, 0.0], [0.0, 0.0, params[0]]])
    return None


_ORB_FILE = re.compile(r"((?:\d+[spdfghi])+)\.orb$", re.I)


def shells_from_orbital_file(name: str) -> list[int]:
    """Shells of an ABACUS orbital file name: ``Mo_gga_8au_100Ry_4s2p2d1f.orb`` → [0,0,0,0,1,1,2,2,3]."""
    m = _ORB_FILE.search(name.strip())
    if not m:
        raise ValueError(f"cannot read the shells of orbital file {name!r} (expected e.g. '..._2s2p1d.orb')")
    shells: list[int] = []
    counts = {}
    for count, letter in re.findall(r"(\d+)([spdfghi])", m.group(1).lower()):
        counts["spdfghi".index(letter)] = int(count)
    for l in sorted(counts):
        shells += [l] * counts[l]
    return shells


def _element_of(label: str, pseudo: str | None, path: Path) -> str:
    for cand in (label, Path(pseudo).name if pseudo else ""):
        m = re.match(r"([A-Z][a-z]?)", cand) or re.match(r"([a-z][a-z]?)", cand)
        for sym in ([m.group(1), m.group(1)[:1]] if m else []):
            try:
                cv.symbol_to_z(sym)
                return sym.capitalize()
            except ValueError:
                continue
    raise InputError(path, f"unknown species {label!r}: neither its label nor its pseudopotential names an element")


def read_stru(path, latname: str | None = None) -> dict:
    """Species, orbital files, cell (Å, rows = lattice vectors) and positions (Å) of an ABACUS ``STRU`` file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "missing file (every ABACUS run needs its STRU)")
    b = _stru_blocks(path.read_text(errors="replace"))
    for key in ("ATOMIC_SPECIES", "LATTICE_CONSTANT", "ATOMIC_POSITIONS"):
        if key not in b:
            raise InputError(path, f"no {key} block")
    try:
        species = []
        for line in b["ATOMIC_SPECIES"]:
            parts = line.split()
            species.append({"label": parts[0], "pseudo": parts[2] if len(parts) > 2 else None})
        orbitals = [line.split()[0] for line in b.get("NUMERICAL_ORBITAL", [])]
        alat = float(b["LATTICE_CONSTANT"][0].split()[0]) * cv.BOHR_ANGSTROM
        if "LATTICE_VECTORS" in b:
            vec = np.array([[float(x) for x in line.split()[:3]] for line in b["LATTICE_VECTORS"][:3]])
        else:
            params = [float(x) for line in b.get("LATTICE_PARAMETERS", []) for x in line.split()]
            vec = _lattice_from_name((latname or "").lower(), params, path)
            if vec is None:
                vec = np.full((3, 3), np.nan)  # filled from running_scf.log by the caller
    except (ValueError, IndexError):
        raise InputError(path, "cannot read ATOMIC_SPECIES / LATTICE_* blocks") from None
    if len(orbitals) not in (0, len(species)):
        raise InputError(path, f"{len(species)} species but {len(orbitals)} NUMERICAL_ORBITAL files")
    for sp, orb in zip(species, orbitals or [None] * len(species)):
        sp["orbital"] = orb
        sp["element"] = _element_of(sp["label"], sp["pseudo"], path)
    lines = b["ATOMIC_POSITIONS"]
    kind = lines[0].split()[0].lower()
    labels, coords = [], []
    k = 1
    known = {sp["label"] for sp in species}
    try:
        while k < len(lines):
            label = lines[k].split()[0]
            if label not in known:
                raise InputError(path, f"ATOMIC_POSITIONS names species {label!r}, not in ATOMIC_SPECIES")
            count = int(lines[k + 2].split()[0])
            for a in range(count):
                coords.append([float(x) for x in lines[k + 3 + a].split()[:3]])
                labels.append(label)
            k += 3 + count
    except (ValueError, IndexError):
        raise InputError(path, "cannot read ATOMIC_POSITIONS (species label, magnetism, count, coordinates)") from None
    return {"species": species, "labels": labels, "coords": np.array(coords).reshape(-1, 3), "kind": kind,
            "alat": alat, "vec": vec}


def stru_positions(stru: dict, cell: np.ndarray, path: Path) -> np.ndarray:
    """Atomic positions (Å) of a :func:`read_stru` result in the cell ``cell`` (Å)."""
    kind, x = stru["kind"], stru["coords"]
    if kind == "direct":
        return x @ cell
    if kind == "cartesian":
        return x * stru["alat"]
    if kind == "cartesian_angstrom":
        return x.copy()
    if kind in ("cartesian_au", "cartesian_bohr"):
        return x * cv.BOHR_ANGSTROM
    raise InputError(path, f"ATOMIC_POSITIONS type {kind!r} is not supported (Direct, Cartesian, "
                           "Cartesian_angstrom, Cartesian_au)")


def parse_log(text: str) -> dict:
    """What hambench needs from ``running_scf.log``: version, shells per species label, lattice, Fermi level,
    energy, electrons, nspin, functional."""
    info: dict = {"shells": {}}
    m = re.search(r"ABACUS\s+v?(\d+\.\d+(?:\.\d+)?)", text)
    if m:
        info["version"] = m.group(1)
    for block in re.finditer(r"READING ATOM TYPE\s+\d+(.*?)(?=READING ATOM TYPE|TOTAL ATOM NUMBER|\Z)", text, re.S):
        lab = re.search(r"atom label\s*=\s*(\S+)", block.group(1))
        zetas = re.findall(r"L\s*=\s*(\d+),\s*number of zeta\s*=\s*(\d+)", block.group(1))
        if lab:
            shells: list[int] = []
            for l, nz in zetas:
                shells += [int(l)] * int(nz)
            info["shells"][lab.group(1)] = shells
    m = re.search(r"Lattice vectors: \(Cartesian coordinate: in unit of a_0\)\s*\n((?:\s*[-+0-9.eE]+\s+[-+0-9.eE]+\s+"
                  r"[-+0-9.eE]+\s*\n){3})", text)
    if m:
        info["lattice_alat"] = np.array([[float(x) for x in line.split()] for line in m.group(1).strip().splitlines()])
    m = re.search(r"lattice constant \(Bohr\)\s*=\s*([-+0-9.eE]+)", text)
    if m:
        info["alat_bohr"] = float(m.group(1))
    found = re.findall(r"EFERMI\s*=\s*([-+0-9.eE]+)\s*eV", text)
    if found:
        info["fermi_eV"] = float(found[-1])
    found = re.findall(r"final etot is\s*([-+0-9.eE]+)\s*eV", text)
    if found:
        info["energy_eV"] = float(found[-1])
    m = re.search(r"AUTOSET number of electrons:?\s*=\s*([-+0-9.eE]+)", text) or \
        re.search(r"total electron number[^=\n]*=\s*([-+0-9.eE]+)\s*$", text, re.M)
    if m:
        info["nelectron"] = float(m.group(1))
    m = _NSPIN.search(text)
    if m:
        info["nspin"] = int(m.group(1))
    m = re.search(r"exchange-correlation functional\s*=\s*(\S+)", text)
    if m:
        info["functional"] = m.group(1)
    return info



def input_values(path: Path, keys: tuple[str, ...]) -> dict[str, str]:
    """The values of ``keys`` (lower case) in an ABACUS INPUT file as :func:`read_input_keywords` reads them (last
    one wins), found by a literal search per key instead of parsing every line (OUT.*/INPUT echoes ~400)."""
    if not path.is_file():
        return {}
    text = path.read_text(errors="replace")
    low = text.lower()
    out = {}
    for key in keys:
        for m in re.finditer(re.escape(key) + r"[ \t]+([^#\n]*)", low):
            line_start = low.rfind("\n", 0, m.start()) + 1
            value = text[m.start(1):m.end(1)].strip()
            if value and not low[line_start:m.start()].strip():
                out[key] = value
    return out


def abacus_spin(out_dir) -> tuple[int, bool] | None:
    """``(nspin, lspinorb)`` of a run from its INPUT files (run folder first, then ``OUT.*``); when INPUT names
    no nspin, the log's ``nspin =`` line, else 1 — what ``read_abacus_run`` reads. None when a file cannot be
    read or nspin is not a number."""
    out_dir = Path(out_dir)
    keys = ("nspin", "lspinorb")
    try:
        kw = input_values(out_dir.parent / "INPUT", keys)
        if len(kw) < len(keys):
            for k, v in input_values(out_dir / "INPUT", keys).items():
                kw.setdefault(k, v)
        soc = kw.get("lspinorb", "0").lower() in TRUE_WORDS
        if "nspin" in kw:
            return int(kw["nspin"]), soc
        log = out_dir / "running_scf.log"
        if log.is_file():
            m = _NSPIN.search(log.read_text(errors="replace"))
            if m:
                return int(m.group(1)), soc
        return 1, soc
    except (OSError, ValueError):
        return None


"""``abacus/csr``: ABACUS LCAO runs (``OUT.*/data-HR-sparse_SPIN*.csr`` + ``data-SR-sparse_SPIN0.csr``) → Structures.

A run is a folder holding ``STRU`` (+ ``INPUT``) and an output folder ``OUT.<suffix>/`` with the sparse matrices
(``out_mat_hs2 1``) and ``running_scf.log``. ``--input`` is one run or a directory searched recursively.

* **CSR text** (verified on realdata/abacus_MoS2): a header (``STEP: 0``, ``Matrix Dimension of H(R): N``,
  ``Matrix number of H(R): M``) then, per lattice vector R, a line ``Rx Ry Rz nnz`` and, when nnz > 0, three
  lines: nnz values, nnz column indices (0-based), N + 1 row pointers. The text is parsed by a Numba kernel on
  the raw bytes (:func:`parse_csr`): one pass, no Python loop over lines or tokens.
* **units**: H in Rydberg → eV with hambench's CODATA constant (``conventions.RYDBERG_EV``; DeepH-dock uses
  13.605698, 3.4e-8 relative apart); lengths in Bohr (``LATTICE_CONSTANT``) → Å.
* **orbitals**: per atom (STRU order), shells l = 0, 1, … each with its zetas, each shell in ABACUS order
  m = 0, +1, −1, +2, −2, … with (−1)^m signs → hambench order through ``conventions`` (code ``'abacus'``),
  f shells included. Shells per species come from ``running_scf.log`` (``L=1, number of zeta = 2``) or else from
  the orbital file name in ``NUMERICAL_ORBITAL`` (``..._4s2p2d1f.orb``).
* **edges** (option ``edges``): ``'overlap'`` (default) — every (i, j, R) whose overlap block has a stored
  element, self pairs included: DeepH-dock's choice, so the store equals its conversion. ABACUS also stores
  Hamiltonian elements between atoms whose orbitals do not overlap (non-local pseudopotential reach, here
  ≤ 7e-5 eV on MoS2); ``'hamiltonian'`` keeps those too (their overlap blocks are zero). Edges sorted (i, j, R).
* **spin**: ``nspin 1`` real blocks. ``nspin 2`` (``SPIN0`` = ↑, ``SPIN1`` = ↓) is stored as a block-diagonal
  spinor [[H↑, 0], [0, H↓]] (complex, spinful), like the OpenMX source. ``nspin 4`` (non-collinear / SOC): the
  matrix has 2N rows, orbital-major with spin fastest (index 2·orbital + σ), complex values written ``(re,im)``;
  regrouped into spin-outer (2n_i, 2n_j) blocks; the overlap keeps its ↑↑ part (real). The nspin 2 and 4 layouts
  follow deeph_formats.md §3 and DeepH-dock's converter; **no real file of either was available to test them**
  (the GaAs SOC example's H file is missing from the snapshot), so they are exercised on synthetic files only.
* **metadata**: Fermi level and total energy (eV) and electron count from ``running_scf.log``; version from its
  banner; functional from the pseudopotential lines (or ``dft_functional`` in INPUT).
"""

from __future__ import annotations

import dataclasses

import math
import re
from pathlib import Path

import numpy as np
from numba import njit

from hambench.basis import _conventions as cv
from hambench.errors import InputError
from hambench.store._structure import Structure, file_sha256
from . import find_files
from ._lcao_sparse import check_edges, edges_option, decode_edges, edge_keys, orbital_map, scatter_blocks, select_edges
from .filetree import FileTreeSource

__all__ = ["AbacusSource", "abacus_spin", "parse_csr", "read_csr", "read_stru", "read_abacus_run", "find_abacus_runs"]

_HR = "data-HR-sparse_SPIN{}.csr"
_SR = "data-SR-sparse_SPIN0.csr"

# --- the CSR kernel --------------------------------------------------------------------------------------
_POW10 = np.array([10.0**k for k in range(23)])
_ERRORS = {
    1: "bad 'Rx Ry Rz nnz' line",
    2: "truncated: the file ends inside a matrix",
    3: "bad value (expected a number)",
    4: "a line holds more entries than its R line's nnz",
    5: "column index out of range",
    6: "row pointers do not match the values (first must be 0, non-decreasing, last = nnz)",
    7: "unexpected text after the last matrix",
    8: "more values than the file can hold",
}


@njit(cache=True)
def _skip_blank(buf, p, n):
    while p < n and (buf[p] == 32 or buf[p] == 9 or buf[p] == 13):
        p += 1
    return p


@njit(cache=True)
def _skip_lines(buf, p, n):
    while p < n and (buf[p] == 32 or buf[p] == 9 or buf[p] == 13 or buf[p] == 10):
        p += 1
    return p


@njit(cache=True)
def _at_eol(buf, p, n):
    p = _skip_blank(buf, p, n)
    return p, (p >= n or buf[p] == 10)


@njit(cache=True)
def _int(buf, p, n):
    p = _skip_blank(buf, p, n)
    neg = False
    if p < n and (buf[p] == 45 or buf[p] == 43):
        neg = buf[p] == 45
        p += 1
    start = p
    v = 0
    while p < n and 48 <= buf[p] <= 57:
        v = v * 10 + (buf[p] - 48)
        p += 1
    ok = p > start and (p >= n or buf[p] in (32, 9, 13, 10))
    return (-v if neg else v), p, ok


@njit(cache=True)
def _float(buf, p, n, pow10):
    p = _skip_blank(buf, p, n)
    neg = False
    if p < n and (buf[p] == 45 or buf[p] == 43):
        neg = buf[p] == 45
        p += 1
    m = 0
    e = 0
    nd = 0
    seen = False
    while p < n and 48 <= buf[p] <= 57:
        seen = True
        if nd < 18:
            m = m * 10 + (buf[p] - 48)
            if m:
                nd += 1
        else:
            e += 1
        p += 1
    if p < n and buf[p] == 46:
        p += 1
        while p < n and 48 <= buf[p] <= 57:
            seen = True
            if nd < 18:
                m = m * 10 + (buf[p] - 48)
                e -= 1
                if m:
                    nd += 1
            p += 1
    if not seen:
        return 0.0, p, False
    if p < n and (buf[p] == 101 or buf[p] == 69 or buf[p] == 100 or buf[p] == 68):
        p += 1
        eneg = False
        if p < n and (buf[p] == 45 or buf[p] == 43):
            eneg = buf[p] == 45
            p += 1
        start = p
        x = 0
        while p < n and 48 <= buf[p] <= 57:
            if x < 100000:
                x = x * 10 + (buf[p] - 48)
            p += 1
        if p == start:
            return 0.0, p, False
        e += -x if eneg else x
    # m * 10^e is one correctly rounded operation (= strtod) when m < 2**53 (<= 15 significant digits, as ABACUS
    # writes) and |e| <= 22; longer mantissas or larger exponents are within a few ulp
    v = float(m)
    if m == 0:
        v = 0.0
    elif 0 <= e <= 22:
        v = v * pow10[e]
    elif -22 <= e < 0:
        v = v / pow10[-e]
    elif e < -22 and e >= -330:
        v = v / pow10[22]
        e += 22
        while e < -22:
            v = v / pow10[22]
            e += 22
        v = v / pow10[-e]
    else:
        v = v * 10.0**e
    return (-v if neg else v), p, True


@njit(cache=True)
def _value(buf, p, n, pow10, cplx):
    """One matrix value: a number, or ``(re,im)`` when ``cplx``. Returns re, im, p, ok."""
    if not cplx:
        v, p, ok = _float(buf, p, n, pow10)
        return v, 0.0, p, ok
    p = _skip_blank(buf, p, n)
    if p >= n or buf[p] != 40:  # '('
        return 0.0, 0.0, p, False
    re_, p, ok = _float(buf, p + 1, n, pow10)
    if not ok or p >= n or buf[p] != 44:  # ','
        return 0.0, 0.0, p, False
    im, p, ok = _float(buf, p + 1, n, pow10)
    if not ok or p >= n or buf[p] != 41:  # ')'
        return 0.0, 0.0, p, False
    return re_, im, p + 1, True


@njit(cache=True)
def _parse_csr_kernel(buf, p, n_r, dim, cplx, pow10):
    n = buf.size
    cap = n // 4 + 16
    re_ = np.empty(cap, np.float64)
    im = np.empty(cap if cplx else 0, np.float64)
    rows = np.empty(cap, np.int32)
    cols = np.empty(cap, np.int32)
    ridx = np.empty(cap, np.int32)
    rvec = np.zeros((n_r, 3), np.int64)
    nnzs = np.zeros(n_r, np.int64)
    rp = np.empty(dim + 1, np.int64)
    total = 0
    for k in range(n_r):
        p = _skip_lines(buf, p, n)
        if p >= n:
            return 2, p, rvec, nnzs, re_, im, rows, cols, ridx, total
        for a in range(3):
            x, p, ok = _int(buf, p, n)
            if not ok:
                return 1, p, rvec, nnzs, re_, im, rows, cols, ridx, total
            rvec[k, a] = x
        nnz, p, ok = _int(buf, p, n)
        p, eol = _at_eol(buf, p, n)
        if not ok or not eol or nnz < 0:
            return 1, p, rvec, nnzs, re_, im, rows, cols, ridx, total
        nnzs[k] = nnz
        if nnz == 0:
            continue
        if 4 * nnz > n - p:  # every element needs >= 2 bytes of value and >= 2 of column index
            return 2, p, rvec, nnzs, re_, im, rows, cols, ridx, total
        if total + nnz > cap:
            return 8, p, rvec, nnzs, re_, im, rows, cols, ridx, total
        p = _skip_lines(buf, p, n)
        for t in range(nnz):
            a_re, a_im, p, ok = _value(buf, p, n, pow10, cplx)
            if not ok:
                return (2 if p >= n else 3), p, rvec, nnzs, re_, im, rows, cols, ridx, total
            re_[total + t] = a_re
            if cplx:
                im[total + t] = a_im
        p, eol = _at_eol(buf, p, n)
        if not eol:
            return 4, p, rvec, nnzs, re_, im, rows, cols, ridx, total
        p = _skip_lines(buf, p, n)
        for t in range(nnz):
            c, p, ok = _int(buf, p, n)
            if not ok:
                return (2 if p >= n else 3), p, rvec, nnzs, re_, im, rows, cols, ridx, total
            if c < 0 or c >= dim:
                return 5, p, rvec, nnzs, re_, im, rows, cols, ridx, total
            cols[total + t] = c
        p, eol = _at_eol(buf, p, n)
        if not eol:
            return 4, p, rvec, nnzs, re_, im, rows, cols, ridx, total
        p = _skip_lines(buf, p, n)
        for t in range(dim + 1):
            x, p, ok = _int(buf, p, n)
            if not ok:
                return (2 if p >= n else 6), p, rvec, nnzs, re_, im, rows, cols, ridx, total
            rp[t] = x
        p, eol = _at_eol(buf, p, n)
        if not eol or rp[0] != 0 or rp[dim] != nnz:
            return 6, p, rvec, nnzs, re_, im, rows, cols, ridx, total
        for r in range(dim):
            if rp[r + 1] < rp[r]:
                return 6, p, rvec, nnzs, re_, im, rows, cols, ridx, total
            for q in range(rp[r], rp[r + 1]):
                rows[total + q] = r
                ridx[total + q] = k
        total += nnz
    p = _skip_lines(buf, p, n)
    if p < n:
        return 7, p, rvec, nnzs, re_, im, rows, cols, ridx, total
    return 0, p, rvec, nnzs, re_, im, rows, cols, ridx, total


_HEADER_DIM = re.compile(rb"Matrix Dimension of [A-Za-z]+\(R\)\s*:\s*(\d+)")
_HEADER_NUM = re.compile(rb"Matrix number of [A-Za-z]+\(R\)\s*:\s*(\d+)")


def parse_csr(data: bytes, path="<csr>") -> dict:
    """Parse the text of one ABACUS ``data-?R-sparse_SPIN*.csr`` file.

    Returns ``dim``, ``R`` (n_R, 3), ``nnz`` (n_R,), and one entry per stored element: ``values`` (float64, or
    complex128 for ``(re,im)`` files), ``rows``, ``cols`` (0-based orbital indices), ``ridx`` (index into ``R``).
    Raises :class:`InputError` naming ``path``, the line and the problem.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    head = data[:4096]
    md, mn = _HEADER_DIM.search(head), _HEADER_NUM.search(head)
    if not md or not mn:
        raise InputError(path, "not an ABACUS sparse-matrix file (no 'Matrix Dimension of ...' / 'Matrix number "
                               "of ...' header)" if data else "empty file")
    dim, n_r = int(md.group(1)), int(mn.group(1))
    start = data.find(b"\n", mn.end())
    start = len(data) if start < 0 else start + 1
    probe = data[start:start + 65536]
    cplx = b"(" in probe
    err, pos, rvec, nnzs, re_, im, rows, cols, ridx, total = _parse_csr_kernel(buf, start, n_r, dim, cplx, _POW10)
    if err:
        line = data.count(b"\n", 0, min(pos, len(data))) + 1
        raise InputError(path, f"line {line}: {_ERRORS[err]}")
    keys = rvec[:, 0] * 1_000_003 ** 2 + rvec[:, 1] * 1_000_003 + rvec[:, 2]
    if np.unique(keys).size != n_r:
        raise InputError(path, "the same lattice vector R is listed twice")
    values = re_[:total] + 1j * im[:total] if cplx else re_[:total].copy()
    return {"dim": dim, "R": rvec, "nnz": nnzs, "values": values, "rows": rows[:total].copy(),
            "cols": cols[:total].copy(), "ridx": ridx[:total].copy(), "complex": cplx}


def read_csr(path) -> dict:
    """:func:`parse_csr` of a file; a missing or unreadable file is an :class:`InputError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "missing file") from None
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or e})") from None
    return parse_csr(data, path)


# --- STRU, INPUT, running_scf.log ------------------------------------------------------------------------
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


def _positions(stru: dict, cell: np.ndarray, path: Path) -> np.ndarray:
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
    m = re.search(r"^\s*nspin\s*=\s*(\d+)", text, re.M)
    if m:
        info["nspin"] = int(m.group(1))
    m = re.search(r"exchange-correlation functional\s*=\s*(\S+)", text)
    if m:
        info["functional"] = m.group(1)
    return info


# --- one run ---------------------------------------------------------------------------------------------

def find_abacus_runs(root: Path) -> list[Path]:
    """Every ``OUT.*`` folder holding ``data-HR-sparse_SPIN0.csr`` under ``root`` (``root`` may be the OUT
    folder itself, a run folder, or a directory of runs), sorted by path."""
    root = Path(root)
    if not root.exists():
        raise InputError(root, "no such file or directory")
    if root.is_file():
        raise InputError(root, "expected an ABACUS run folder (with OUT.*/data-HR-sparse_SPIN0.csr) or a "
                               "directory of them, got a file")
    if (root / _HR.format(0)).is_file():
        return [root]
    return sorted({p.parent for p in find_files(root, _HR.format(0).__eq__)}, key=lambda p: p.as_posix())


def _run_metadata(out_dir: Path) -> dict:
    run_dir = out_dir.parent
    kw = read_input_keywords(run_dir / "INPUT")
    kw_out = read_input_keywords(out_dir / "INPUT")
    for k, v in kw_out.items():
        kw.setdefault(k, v)
    log = out_dir / "running_scf.log"
    info = parse_log(log.read_text(errors="replace")) if log.is_file() else {"shells": {}}
    stru_path = run_dir / kw.get("stru_file", "STRU")
    if not stru_path.is_file() and (run_dir / "STRU").is_file():
        stru_path = run_dir / "STRU"
    stru = read_stru(stru_path, kw.get("latname"))
    return {"kw": kw, "log": info, "log_path": log, "stru": stru, "stru_path": stru_path}


def _species_shells(meta: dict) -> dict[str, list[int]]:
    """{species label: shells}, from running_scf.log, else from the orbital file names; cross-checked."""
    stru, info = meta["stru"], meta["log"]
    out = {}
    for sp in stru["species"]:
        from_log = info["shells"].get(sp["label"])
        from_file = None
        if sp["orbital"]:
            try:
                from_file = shells_from_orbital_file(sp["orbital"])
            except ValueError as e:
                if from_log is None:
                    raise InputError(meta["stru_path"], str(e)) from None
        if from_log is not None and from_file is not None and from_log != from_file:
            raise InputError(meta["log_path"], f"species {sp['label']}: shells {from_log} in the log differ from "
                                               f"{from_file} of orbital file {sp['orbital']}")
        shells = from_log if from_log is not None else from_file
        if not shells:
            raise InputError(meta["stru_path"], f"no orbital shells known for species {sp['label']!r} (need "
                                                "running_scf.log or a NUMERICAL_ORBITAL file name like '..._2s2p1d.orb')")
        out[sp["label"]] = shells
    return out


def read_abacus_run(out_dir, *, struct_id: str | None = None, edges: str = "overlap") -> Structure:
    """One ABACUS run (its ``OUT.*`` folder) → :class:`Structure` in hambench conventions."""
    out_dir = Path(out_dir)
    check_edges(edges)
    meta = _run_metadata(out_dir)
    stru, info = meta["stru"], meta["log"]
    vec = stru["vec"]
    if "lattice_alat" in info:
        if np.isnan(vec).any():
            vec = info["lattice_alat"]  # latname not tabulated here: the log's 6-digit vectors
        elif not np.allclose(vec, info["lattice_alat"], atol=2e-6 * max(1.0, np.abs(vec).max())):
            raise InputError(meta["stru_path"], f"lattice vectors {vec.tolist()} differ from running_scf.log's "
                                                f"{info['lattice_alat'].tolist()}")
    elif np.isnan(vec).any():
        raise InputError(meta["stru_path"], f"latname {meta['kw'].get('latname')!r} is not supported and "
                                            "running_scf.log (which prints the lattice vectors) is missing")
    cell = vec * stru["alat"]
    pos = _positions(stru, cell, meta["stru_path"])
    label_shells = _species_shells(meta)
    el_of = {sp["label"]: sp["element"] for sp in stru["species"]}
    Z = np.array([cv.symbol_to_z(el_of[lab]) for lab in stru["labels"]], np.int64)
    species: dict[int, list[int]] = {}
    for lab in stru["labels"]:
        z = cv.symbol_to_z(el_of[lab])
        if z in species and species[z] != label_shells[lab]:
            raise InputError(meta["stru_path"], f"element {el_of[lab]} appears with different bases "
                                                f"({species[z]} vs {label_shells[lab]}); hambench needs one basis per element")
        species[z] = label_shells[lab]
    omap = orbital_map(Z, species, "abacus")
    nlocal = omap.n
    nspin = int(meta["kw"].get("nspin", info.get("nspin", 1)))
    if nspin not in (1, 2, 4):
        raise InputError(out_dir, f"nspin = {nspin} is not an ABACUS spin setting (1, 2 or 4)")

    h_paths = [out_dir / _HR.format(s) for s in range(2 if nspin == 2 else 1)]
    s_path = out_dir / _SR
    hs = [read_csr(p) for p in h_paths]
    sm = read_csr(s_path)
    spinful = nspin in (2, 4)
    fh = 2 if nspin == 4 else 1
    for p, h in zip(h_paths, hs):
        if h["dim"] != fh * nlocal:
            raise InputError(p, f"matrix dimension {h['dim']} does not match the {nlocal} orbitals of STRU"
                                + (" (x2 for nspin 4)" if nspin == 4 else ""))
        if nspin != 4 and h["complex"]:
            raise InputError(p, "complex values in a run with nspin != 4")
    if sm["dim"] not in (nlocal, 2 * nlocal) or (sm["dim"] == 2 * nlocal) != (nspin == 4):
        raise InputError(s_path, f"matrix dimension {sm['dim']} does not match the {nlocal} orbitals of STRU")

    # one R table for every file; the overlap's non-empty R must have Hamiltonian elements
    r_all = np.unique(np.concatenate([h["R"] for h in hs] + [sm["R"]]), axis=0)
    r_code = lambda R: (R[:, 0] * 100003 + R[:, 1]) * 100003 + R[:, 2]  # noqa: E731
    codes_all = r_code(r_all)
    h_nonempty = set(r_code(hs[0]["R"][hs[0]["nnz"] > 0]).tolist())
    s_nonempty = r_code(sm["R"][sm["nnz"] > 0])
    missing = [tuple(int(x) for x in r) for r, c in zip(sm["R"][sm["nnz"] > 0], s_nonempty) if c not in h_nonempty]
    if missing:
        raise InputError(s_path, f"overlap has elements at R = {missing[0]} (and {len(missing) - 1} more) where "
                                 f"{h_paths[0].name} has none: the two files do not describe the same run")

    def rank_of(m):
        return np.searchsorted(codes_all, r_code(m["R"]))[m["ridx"]]

    na, nr = len(Z), len(r_all)

    def elements(m, spin_fastest: bool):
        rows, cols = m["rows"].astype(np.int64), m["cols"].astype(np.int64)
        if spin_fastest:
            rs, cs = rows % 2, cols % 2
            rows, cols = rows // 2, cols // 2
        else:
            rs = cs = None
        keys = edge_keys(omap.atom[rows], omap.atom[cols], rank_of(m), na, nr)
        return keys, rows, cols, rs, cs

    s_keys, s_rows, s_cols, s_rs, s_cs = elements(sm, nspin == 4)
    s_vals = sm["values"]
    if nspin == 4:  # keep the ↑↑ part of the spinor overlap
        up = (s_rs == 0) & (s_cs == 0)
        s_keys, s_rows, s_cols, s_vals = s_keys[up], s_rows[up], s_cols[up], s_vals[up].real
    h_parts = [elements(h, nspin == 4) for h in hs]
    if edges == "overlap":
        edge_list = select_edges(s_keys)
    else:
        edge_list = select_edges(np.concatenate([p[0] for p in h_parts] + [s_keys]))
    src, dst, shift = decode_edges(edge_list, na, r_all)
    spinless = omap.blocks(src, dst, False)
    S, _ = scatter_blocks(edge_list, s_keys, s_vals, omap.pos[s_rows], omap.pos[s_cols], omap.sign[s_rows],
                          omap.sign[s_cols], spinless, False, np.float64)
    if nspin == 1:
        k, r, c, _, _ = h_parts[0]
        H, _ = scatter_blocks(edge_list, k, hs[0]["values"] * cv.RYDBERG_EV, omap.pos[r], omap.pos[c],
                              omap.sign[r], omap.sign[c], spinless, False, np.float64)
    else:
        if nspin == 2:
            ks, rsl, csl, vals, rsp, csp = [], [], [], [], [], []
            for s, (k, r, c, _, _) in enumerate(h_parts):
                ks.append(k), rsl.append(r), csl.append(c), vals.append(hs[s]["values"])
                rsp.append(np.full(k.size, s, np.int64)), csp.append(np.full(k.size, s, np.int64))
            k, r, c, v = (np.concatenate(x) for x in (ks, rsl, csl, vals))
            rs, cs = np.concatenate(rsp), np.concatenate(csp)
        else:
            k, r, c, rs, cs = h_parts[0]
            v = hs[0]["values"]
        H, _ = scatter_blocks(edge_list, k, v.astype(np.complex128) * cv.RYDBERG_EV, omap.pos[r], omap.pos[c],
                              omap.sign[r], omap.sign[c], omap.blocks(src, dst, True), True, np.complex128, rs, cs)

    files = [meta["stru_path"], *h_paths, s_path] + ([meta["log_path"]] if meta["log_path"].is_file() else [])
    return Structure(
        id=struct_id or out_dir.parent.name,
        Z=Z, pos=pos, cell=cell, pbc=np.ones(3, bool),
        src=src, dst=dst, shift=shift, H=H, S=S,
        species=species, spinful=spinful,
        energy=info.get("energy_eV", float("nan")),
        nelectron=info.get("nelectron", float("nan")),
        fermi_level=info.get("fermi_eV", float("nan")),
        sources=[(str(p), file_sha256(p)) for p in files],
    )


_TRUE = ("1", "true", ".true.", "t")


def _input_values(path: Path, keys: tuple[str, ...]) -> dict[str, str]:
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
    no nspin, the log's ``nspin =`` line, else 1 — what :func:`read_abacus_run` reads. None when a file cannot be
    read or nspin is not a number."""
    out_dir = Path(out_dir)
    keys = ("nspin", "lspinorb")
    try:
        kw = _input_values(out_dir.parent / "INPUT", keys)
        if len(kw) < len(keys):
            for k, v in _input_values(out_dir / "INPUT", keys).items():
                kw.setdefault(k, v)
        soc = kw.get("lspinorb", "0").lower() in _TRUE
        if "nspin" in kw:
            return int(kw["nspin"]), soc
        log = out_dir / "running_scf.log"
        if log.is_file():
            m = re.search(r"^\s*nspin\s*=\s*(\d+)", log.read_text(errors="replace"), re.M)
            if m:
                return int(m.group(1)), soc
        return 1, soc
    except (OSError, ValueError):
        return None


class AbacusSource(FileTreeSource):
    """Raw ABACUS LCAO runs (STRU + OUT.*/data-HR-sparse_SPIN*.csr, data-SR-sparse_SPIN0.csr)."""

    name = "abacus/csr"
    doc = "raw ABACUS LCAO runs (STRU + OUT.*/data-[HS]R-sparse_SPIN*.csr): spinless, nspin 2, SOC"
    input_help = "an ABACUS run folder (STRU + OUT.*/data-HR-sparse_SPIN0.csr) or a directory of them"
    none_found = "no ABACUS run found (no OUT.*/data-HR-sparse_SPIN0.csr below it; run ABACUS with out_mat_hs2 1)"

    @dataclasses.dataclass(frozen=True)
    class Options(FileTreeSource.Options):
        edges: str = edges_option("overlap", "keep pairs with a stored overlap (DeepH-dock's choice) or every pair "
                                             "with Hamiltonian elements")

    def find(self, root: Path) -> list[Path]:
        return find_abacus_runs(root)

    def _run_folder(self, out_dir: Path) -> Path:
        return out_dir.parent

    def _run_suffix(self, out_dir: Path) -> str | None:
        siblings = [p for p in out_dir.parent.glob("OUT.*") if (p / _HR.format(0)).is_file()]
        return out_dir.name if len(siblings) > 1 else None

    def read_run(self, out_dir: Path, struct_id: str):
        return read_abacus_run(out_dir, struct_id=struct_id, edges=self.opts.edges)

    def spinful_of(self, item) -> bool | None:
        """nspin 2 or 4 (or lspinorb), from INPUT (the log's nspin line when INPUT has none)."""
        spin = abacus_spin(item)
        return None if spin is None or spin[0] not in (1, 2, 4) else spin[0] != 1

    def _attrs_dict(self) -> dict:
        """Store metadata, read from the first run's INPUT, STRU and running_scf.log."""
        meta = _run_metadata(Path(self._items[0]))
        kw, info = meta["kw"], meta["log"]
        nspin = int(kw.get("nspin", info.get("nspin", 1)))
        soc = kw.get("lspinorb", "0").lower() in _TRUE
        return {
            "kind": "crystal",
            "spinful": nspin in (2, 4),
            "dft": {
                "code": "ABACUS",
                "version": info.get("version", "unknown"),
                "functional": (kw.get("dft_functional", "default").lower() != "default"
                               and kw["dft_functional"]) or info.get("functional", "unknown"),
                "basis": {sp["element"]: sp["orbital"] for sp in meta["stru"]["species"]},
                "pseudopotential": {sp["element"]: sp["pseudo"] for sp in meta["stru"]["species"]},
                "spin": {1: "off", 2: "collinear (stored as block-diagonal spinor)",
                         4: "non-collinear" + (" + SOC" if soc else "")}[nspin],
                "edges": self.opts.edges,
            },
            "constants": "CODATA2018",
        }

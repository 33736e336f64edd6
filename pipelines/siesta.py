"""``siesta/hsx``: SIESTA runs (``<label>.HSX`` + ``.XV`` / ``.fdf`` / ``.ORB_INDX``) → Structures.

* **HSX** (SIESTA ≥ 4.1 writes version 1, SIESTA 5 version 2): Fortran unformatted sequential records, each
  framed by 4-byte little-endian length markers. Layout, checked record by record on realdata/siesta_Si
  (SIESTA 5.4.2, version 2, 87 records consumed exactly):

  ====  ==========================================================================================
  rec   content
  ====  ==========================================================================================
  1     version (int32): 1 or 2
  2     is_dp (Fortran logical, 4 bytes): float64 matrices if true, else float32
  3     na_u, no_u, nspin, nspecies, nsc(3) (int32)
  4     ucell(3,3) (Bohr, columns = lattice vectors), Ef (Ry), qtot (electrons), temp (Ry) (float64)
  5     isc_off(3, prod(nsc)) int32, xa(3, na_u) float64 (Bohr), isa(na_u) int32, lasto(1:na_u) int32
  6     (label char*20, zval float64, no int32) per species
  7..   per species: (n, l, zeta) int32 per orbital of the species
  [v2]  kcell(3,3) int32, kdispl(3) float64 (the k-point grid)
  then  numh(no_u); no_u records of listh (1-based supercell column); nspin × no_u records of H (Ry);
        no_u records of S
  ====  ==========================================================================================

  Column ``c`` (1-based) of row ``io`` is orbital ``(c−1) mod no_u`` in supercell image ``(c−1) div no_u``,
  whose lattice vector is ``R = isc_off[:, image]``: H_ij(R) = ⟨φ_i(0)|H|φ_j(R)⟩, the DeepH convention
  (checked against the deeph_new conversion: the same 294 (i, j, R) pairs). Version 0 files (SIESTA ≤ 4.0, no
  geometry, xij instead of supercell indices) are refused with a clear message.
* **orbitals**: per atom, the species' orbitals in HSX order; consecutive orbitals with the same (n, l, zeta)
  form one shell of 2l + 1 functions in SIESTA order m = −l..l, whose real harmonics carry (−1)^m → hambench
  order via ``conventions`` (code ``'siesta'``). When ``<label>.ORB_INDX`` is present its m column is checked.
* **elements**: ``<label>.XV`` (Z per atom), else the fdf ``ChemicalSpeciesLabel`` block, else the species label.
* **units**: Ry → eV (``conventions.RYDBERG_EV``, CODATA; DeepH-dock uses 27.2113845/2, 6e-8 relative apart),
  Bohr → Å. fermi_level = Ef, nelectron = qtot, energy = the ``siesta: Total =`` of the final energy in the
  log (eV), when a log is found.
* **edges** (option ``edges``), sorted (i, j, R): ``'hamiltonian'`` (default) — every (i, j, R) with a stored
  element (the HSX sparsity pattern, shared by H and S): what DeepH-dock's conversion keeps (294 pairs on
  realdata/siesta_Si). The pattern includes pairs whose orbitals do not overlap but which interact through the
  non-local pseudopotential (120 of those 294 have an all-zero overlap block); ``'overlap'`` drops them, keeping
  the pairs with a non-zero overlap element — the set ABACUS's default ``'overlap'`` keeps.
* **spin** (from deeph_formats.md §3 and SIESTA's conventions; only nspin 1 was available as a real file, the
  others are exercised on synthetic files): nspin 2 → block-diagonal spinor [[H↑, 0], [0, H↓]]; nspin 4
  (non-collinear) → ↑↑ = H0, ↓↓ = H1, ↑↓ = H2 − i·H3, ↓↑ = H2 + i·H3; nspin 8 (spin–orbit) → ↑↑ = H0 + i·H4,
  ↓↓ = H1 + i·H5, ↑↓ = H2 − i·H3, ↓↑ = H6 + i·H7. The overlap stays real (n_i, n_j).
"""

from __future__ import annotations

import dataclasses

import re
import struct
from pathlib import Path

import numpy as np
from numba import njit

from hambench.basis import _conventions as cv
from hambench.errors import InputError
from hambench.store._structure import Structure, file_sha256
from . import find_files
from ._lcao_sparse import (check_edges, decode_edges, edge_keys, edges_option, element_shells, orbital_map, read_bytes,
                           select_edges, stack_spin_parts)
from .filetree import FileTreeSource

__all__ = ["SiestaSource", "hsx_spin", "read_hsx", "hsx_to_structure", "find_hsx_files"]


@njit(cache=True)
def _record_table(buf):
    """Start and length of every Fortran record; err 1 = truncated, 2 = end marker differs from start."""
    n = buf.size
    cap = n // 8 + 1
    start = np.empty(cap, np.int64)
    length = np.empty(cap, np.int64)
    k = 0
    p = 0
    while p < n:
        if p + 4 > n:
            return 1, p, start[:k], length[:k]
        m = np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8) | (np.int64(buf[p + 2]) << 16) | (np.int64(buf[p + 3]) << 24)
        if m >= 2**31:
            return 2, p, start[:k], length[:k]
        if p + 8 + m > n:
            return 1, p, start[:k], length[:k]
        q = p + 4 + m
        m2 = np.int64(buf[q]) | (np.int64(buf[q + 1]) << 8) | (np.int64(buf[q + 2]) << 16) | (np.int64(buf[q + 3]) << 24)
        if m2 != m:
            return 2, p, start[:k], length[:k]
        start[k] = p + 4
        length[k] = m
        k += 1
        p = q + 4
    return 0, p, start[:k], length[:k]



class _Records:
    """The Fortran records of one file: ``rec(k)`` (bytes), ``ints(k, count)`` (int32), ``length`` (bytes each)."""

    def __init__(self, data: bytes, path: Path):
        buf = np.frombuffer(data, np.uint8)
        err, pos, self.start, self.length = _record_table(buf)
        if err == 1:
            raise InputError(path, f"truncated: the Fortran record at byte {pos} runs past the end of the file "
                                   f"({len(data)} bytes)")
        if err == 2:
            raise InputError(path, f"not a Fortran unformatted file or corrupt: record markers disagree at byte {pos}")
        self.data, self.path, self.n = data, path, len(self.start)

    def rec(self, k: int) -> bytes:
        if k >= self.n:
            raise InputError(self.path, f"truncated: {self.n} records, the layout needs at least {k + 1}")
        return self.data[self.start[k]:self.start[k] + self.length[k]]

    def ints(self, k: int, count: int | None = None) -> np.ndarray:
        b = self.rec(k)
        a = np.frombuffer(b, "<i4")
        if count is not None and a.size != count:
            raise InputError(self.path, f"record {k + 1} has {len(b)} bytes, expected {4 * count}")
        return a

    def rows(self, k: int, no_u: int, width: int, numh: np.ndarray, what: str, dtype: str) -> np.ndarray:
        """Records ``k .. k + no_u - 1`` (one per orbital, ``width`` bytes per element) concatenated."""
        lens = self.length[k:k + no_u]
        if np.any(lens != width * numh):
            bad = int(np.flatnonzero(lens != width * numh)[0])
            raise InputError(self.path, f"{what} record of orbital {bad + 1} has {lens[bad]} bytes, "
                                        f"{'numh says' if what == 'column' else 'expected'} {width * numh[bad]}")
        return np.concatenate([np.frombuffer(self.rec(k + i), dtype) for i in range(no_u)])


def read_hsx(path) -> dict:
    """Parse a SIESTA ``.HSX`` (versions 1 and 2) into numpy arrays (native units: Ry, Bohr).

    Returns a dict with ``version, is_dp, na_u, no_u, nspin, nsc, ucell (rows = lattice vectors, Bohr), Ef,
    qtot, temp, isc_off (n_images, 3), xa (na_u, 3), isa, lasto, species [{label, zval, n, l, zeta}], numh,
    col (0-based supercell column per element), H (nnz, nspin), S (nnz,)``.
    """
    path = Path(path)
    data = read_bytes(path)
    if not data:
        raise InputError(path, "empty file")
    r = _Records(data, path)
    out = _header(r)
    out.update(_geometry(r, out["na_u"], int(np.prod(out["nsc"]))))
    out["species"] = _species(r, out["nspecies"])
    k = 6 + out.pop("nspecies") + (1 if out["version"] == 2 else 0)  # version 2: kcell(3,3), kdispl(3)
    out.update(_sparse(r, k, out["no_u"], out["nspin"], int(np.prod(out["nsc"])), out["is_dp"]))
    return out


def _header(r: _Records) -> dict:
    """Records 1-4: version, precision, dimensions, cell (Bohr), Fermi level (Ry), electrons, temperature (Ry)."""
    first = r.rec(0)
    if len(first) != 4:
        raise InputError(r.path, "HSX version 0 (SIESTA <= 4.0, no geometry in the file) is not supported: rerun "
                                 "with SIESTA >= 4.1 or convert it")
    version = int(np.frombuffer(first, "<i4")[0])
    if version not in (1, 2):
        raise InputError(r.path, f"unknown HSX version {version} (supported: 1, 2)")
    is_dp = bool(r.ints(1, 1)[0])
    head = r.ints(2, 7)
    na_u, no_u, nspin, nspecies = (int(x) for x in head[:4])
    nsc = head[4:7].astype(np.int64)
    if min(na_u, no_u, nspin, nspecies) < 1 or nsc.min() < 1 or nspin not in (1, 2, 4, 8):
        raise InputError(r.path, f"implausible header: na_u={na_u} no_u={no_u} nspin={nspin} nspecies={nspecies} "
                                 f"nsc={nsc.tolist()}")
    r4 = np.frombuffer(r.rec(3), "<f8")
    if r4.size != 12:
        raise InputError(r.path, "record 4 (cell, Ef, qtot, temp) has the wrong size")
    # Fortran ucell(3,3) is column-major, so rows here are the lattice vectors
    return {"version": version, "is_dp": is_dp, "na_u": na_u, "no_u": no_u, "nspin": nspin, "nspecies": nspecies,
            "nsc": nsc, "ucell": r4[:9].reshape(3, 3), "Ef": float(r4[9]), "qtot": float(r4[10]),
            "temp": float(r4[11])}


def _geometry(r: _Records, na_u: int, n_img: int) -> dict:
    """Record 5: supercell image vectors, positions (Bohr), species and last orbital of each atom."""
    b5 = r.rec(4)
    need = 12 * n_img + 24 * na_u + 8 * na_u
    if len(b5) != need:
        raise InputError(r.path, f"record 5 (isc_off, xa, isa, lasto) has {len(b5)} bytes, expected {need}")
    o = 12 * n_img
    return {"isc_off": np.frombuffer(b5[:o], "<i4").reshape(n_img, 3).astype(np.int64),
            "xa": np.frombuffer(b5[o:o + 24 * na_u], "<f8").reshape(na_u, 3),
            "isa": np.frombuffer(b5[o + 24 * na_u:o + 28 * na_u], "<i4").astype(np.int64),
            "lasto": np.frombuffer(b5[o + 28 * na_u:], "<i4").astype(np.int64)}


def _species(r: _Records, nspecies: int) -> list[dict]:
    """Record 6 (label, valence charge, orbital count per species) and one (n, l, zeta) record per species."""
    b6 = r.rec(5)
    if len(b6) != 32 * nspecies:
        raise InputError(r.path, f"record 6 (species) has {len(b6)} bytes, expected {32 * nspecies}")
    species = []
    for s in range(nspecies):
        chunk = b6[32 * s:32 * (s + 1)]
        no_s = int(np.frombuffer(chunk[28:32], "<i4")[0])
        q = r.ints(6 + s, 3 * no_s).reshape(no_s, 3)
        species.append({"label": chunk[:20].decode("latin-1").strip(),
                        "zval": float(np.frombuffer(chunk[20:28], "<f8")[0]),
                        "n": q[:, 0].copy(), "l": q[:, 1].copy(), "zeta": q[:, 2].copy()})
    return species


def _sparse(r: _Records, k: int, no_u: int, nspin: int, n_img: int, is_dp: bool) -> dict:
    """From record ``k`` on: elements per row (numh), their supercell columns, H per spin (Ry) and S."""
    numh = r.ints(k, no_u).astype(np.int64)
    k += 1
    if numh.min(initial=0) < 0:
        raise InputError(r.path, "negative element count in numh")
    expect = k + no_u * (nspin + 2)
    if r.n != expect:
        raise InputError(r.path, f"{'truncated: ' if r.n < expect else ''}{r.n} records, the header "
                                 f"(no_u={no_u}, nspin={nspin}) needs {expect}")
    col = r.rows(k, no_u, 4, numh, "column", "<i4").astype(np.int64) - 1
    k += no_u
    if int(numh.sum()) and (col.min() < 0 or col.max() >= no_u * n_img):
        raise InputError(r.path, f"column index out of range 1..{no_u * n_img}")
    width, dt = (8, "<f8") if is_dp else (4, "<f4")
    mats = []
    for s in range(nspin + 1):
        what = f"H (spin {s + 1})" if s < nspin else "S"
        mats.append(r.rows(k, no_u, width, numh, what, dt).astype(np.float64))
        k += no_u
    return {"numh": numh, "col": col, "H": np.stack(mats[:nspin], axis=1), "S": mats[nspin]}


# --- side files ------------------------------------------------------------------------------------------
def _read_xv_z(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    lines = path.read_text(errors="replace").split("\n")
    try:
        na = int(lines[3].split()[0])
        return np.array([int(lines[4 + a].split()[1]) for a in range(na)], np.int64)
    except (ValueError, IndexError):
        raise InputError(path, "cannot read atoms (expected 3 cell lines, the atom count, then 'species Z x y z ...')") from None


def _read_fdf(path: Path) -> dict:
    """Keywords (lower-case, '.', '_', '-' removed) and blocks of an fdf file; empty when absent."""
    out: dict = {"kw": {}, "blocks": {}}
    if not path.is_file():
        return out
    norm = lambda s: re.sub(r"[._-]", "", s).lower()  # noqa: E731
    block = None
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.split("#")[0].split("!")[0].strip()
        if not line:
            continue
        low = line.lower()
        if low.startswith("%block"):
            block = norm(line.split()[1])
            out["blocks"][block] = []
        elif low.startswith("%endblock"):
            block = None
        elif block is not None:
            out["blocks"][block].append(line)
        else:
            parts = line.split(None, 1)
            out["kw"][norm(parts[0])] = parts[1].strip() if len(parts) > 1 else ""
    return out


def _check_orb_indx(path: Path, hsx: dict, Z_species_l) -> None:
    """Check the m sequence of the unit-cell orbitals in ``.ORB_INDX`` is m = −l..l per shell."""
    if not path.is_file():
        return
    no_u = hsx["no_u"]
    with open(path, errors="replace") as f:
        lines = [next(f, "") for _ in range(no_u + 3)]
    try:
        rows = [ln.split() for ln in lines[3:3 + no_u]]
        l = np.array([int(r[6]) for r in rows])
        m = np.array([int(r[7]) for r in rows])
    except (ValueError, IndexError):
        raise InputError(path, "cannot read the orbital table (columns io ia is spec iao n l m ...)") from None
    expect_l, expect_m = Z_species_l
    if not (np.array_equal(l, expect_l) and np.array_equal(m, expect_m)):
        bad = int(np.flatnonzero((l != expect_l) | (m != expect_m))[0])
        raise InputError(path, f"orbital {bad + 1} has (l, m) = ({l[bad]}, {m[bad]}), hambench expects "
                               f"({expect_l[bad]}, {expect_m[bad]}) (SIESTA order m = -l..l)")


def _shells_of(sp: dict, path: Path) -> list[int]:
    shells, i, n = [], 0, len(sp["l"])
    while i < n:
        l = int(sp["l"][i])
        if l < 0 or l > 7:
            raise InputError(path, f"species {sp['label']}: orbital {i + 1} has l = {l}")
        same = (sp["n"][i:i + 2 * l + 1] == sp["n"][i]) & (sp["l"][i:i + 2 * l + 1] == l) & \
               (sp["zeta"][i:i + 2 * l + 1] == sp["zeta"][i])
        if same.size != 2 * l + 1 or not same.all():
            raise InputError(path, f"species {sp['label']}: orbitals {i + 1}.. do not form a full l = {l} shell "
                                   "(2l + 1 functions with the same n, l, zeta)")
        shells.append(l)
        i += 2 * l + 1
    return shells


def _log_info(folder: Path, label: str) -> dict:
    info: dict = {}
    cands = [folder / "SIESTA.log", folder / f"{label}.out", *sorted(folder.glob("*.out")), *sorted(folder.glob("*.log"))]
    for p in cands:
        if not p.is_file():
            continue
        text = p.read_text(errors="replace")
        if "siesta" not in text.lower():
            continue
        m = re.search(r"^Version\s*:\s*(\S+)", text, re.M) or re.search(r"Siesta Version\s*:?\s*(\S+)", text)
        if m:
            info.setdefault("version", m.group(1))
        found = re.findall(r"siesta:\s+Total\s*=\s*([-+0-9.eE]+)", text)
        if found:
            info.setdefault("energy_eV", float(found[-1]))
        m = re.search(r"xc_check: Exchange-correlation functional:\s*\n\s*xc_check:\s*(.+)", text)
        if m:
            info.setdefault("functional", m.group(1).strip())
        info.setdefault("log", p)
    yml = folder / "OUTVARS.yml"
    if yml.is_file() and "version" not in info:
        m = re.search(r'version:\s*"?([^"\n]+)"?', yml.read_text(errors="replace"))
        if m:
            info["version"] = m.group(1).strip()
    return info


# --- one run ---------------------------------------------------------------------------------------------
def _elements(hsx: dict, folder: Path, label: str) -> tuple[np.ndarray, list[Path]]:
    used = []
    xv = folder / f"{label}.XV"
    z = _read_xv_z(xv)
    if z is not None:
        if z.size != hsx["na_u"]:
            raise InputError(xv, f"{z.size} atoms, the HSX has {hsx['na_u']}")
        return z, [xv]
    fdf = _read_fdf(folder / f"{label}.fdf")
    z_of_species = {}
    for line in fdf["blocks"].get("chemicalspecieslabel", []):
        parts = line.split()
        try:
            z_of_species[int(parts[0])] = int(parts[1])
        except (ValueError, IndexError):
            raise InputError(folder / f"{label}.fdf", f"bad ChemicalSpeciesLabel line {line!r}") from None
    if z_of_species:
        used.append(folder / f"{label}.fdf")
    zs = []
    for s in hsx["isa"]:
        if int(s) in z_of_species:
            zs.append(z_of_species[int(s)])
            continue
        lab = hsx["species"][int(s) - 1]["label"]
        m = re.match(r"([A-Z][a-z]?)", lab)
        try:
            zs.append(cv.symbol_to_z(m.group(1) if m else lab))
        except ValueError:
            raise InputError(folder, f"unknown species {lab!r}: no {label}.XV or ChemicalSpeciesLabel gives its "
                                     "element") from None
    return np.array(zs, np.int64), used


def hsx_to_structure(path, *, struct_id: str | None = None, edges: str = "hamiltonian") -> Structure:
    """One SIESTA run (its ``.HSX`` and the files beside it) → :class:`Structure` in hambench conventions.

    ``edges``: ``'hamiltonian'`` keeps every (i, j, R) of the sparsity pattern; ``'overlap'`` only those whose
    overlap block has a non-zero element (see the module docstring)."""
    check_edges(edges)
    path = Path(path)
    folder, label = path.parent, path.stem
    hsx = read_hsx(path)
    na, no_u, nspin = hsx["na_u"], hsx["no_u"], hsx["nspin"]
    Z, side = _elements(hsx, folder, label)
    isa = hsx["isa"]
    if isa.min() < 1 or isa.max() > len(hsx["species"]):
        raise InputError(path, "atom species index out of range")
    species = element_shells(Z, [_shells_of(hsx["species"][int(isa[a]) - 1], path) for a in range(na)], path)
    omap = orbital_map(Z, species, "siesta")
    if omap.n != no_u or not np.array_equal(np.cumsum(omap.norb), hsx["lasto"]):
        raise InputError(path, f"the species' orbitals ({omap.n}) do not add up to no_u = {no_u} / lasto")
    l_exp = np.concatenate([np.repeat(species[int(z)], [2 * l + 1 for l in species[int(z)]]) for z in Z])
    m_exp = np.concatenate([np.arange(-l, l + 1) for z in Z for l in species[int(z)]])
    _check_orb_indx(folder / f"{label}.ORB_INDX", hsx, (l_exp, m_exp))

    rows = np.repeat(np.arange(no_u), hsx["numh"])
    image, cols = np.divmod(hsx["col"], no_u)
    isc = hsx["isc_off"]
    r_sorted, inverse = np.unique(isc, axis=0, return_inverse=True)
    if len(r_sorted) != len(isc):
        raise InputError(path, "the supercell index table lists the same lattice vector twice")
    keys = edge_keys(omap.atom[rows], omap.atom[cols], inverse.reshape(-1)[image], na, len(r_sorted))
    if np.unique(keys * no_u * no_u + rows * no_u + cols).size != keys.size:
        raise InputError(path, "an element (row, column) is stored twice")
    edge_list = select_edges(keys if edges == "hamiltonian" else keys[hsx["S"] != 0])
    src, dst, shift = decode_edges(edge_list, na, r_sorted)
    S = omap.scatter(edge_list, src, dst, keys, rows, cols, hsx["S"])
    H = _hamiltonian(hsx["H"] * cv.RYDBERG_EV, omap, edge_list, src, dst, keys, rows, cols)
    info = _log_info(folder, label)
    files = [path, *side] + ([info["log"]] if "log" in info else [])
    return Structure(
        id=struct_id or label,
        Z=Z, pos=hsx["xa"] * cv.BOHR_ANGSTROM, cell=hsx["ucell"] * cv.BOHR_ANGSTROM, pbc=np.ones(3, bool),
        src=src, dst=dst, shift=shift, H=H, S=S, species=species, spinful=nspin > 1,
        energy=info.get("energy_eV", float("nan")), nelectron=hsx["qtot"], fermi_level=hsx["Ef"] * cv.RYDBERG_EV,
        sources=[(str(p), file_sha256(p)) for p in files],
    )


def _hamiltonian(Hr: np.ndarray, omap, edge_list, src, dst, keys, rows, cols) -> np.ndarray:
    """Flat H blocks (eV) from the spin components ``Hr`` (nnz, nspin): real for nspin 1, else spin-outer spinors
    (see the module docstring for nspin 2, 4 and 8)."""
    nspin = Hr.shape[1]
    if nspin == 1:
        return omap.scatter(edge_list, src, dst, keys, rows, cols, Hr[:, 0])
    if nspin == 2:
        comps = [(0, 0, Hr[:, 0] + 0j), (1, 1, Hr[:, 1] + 0j)]
    elif nspin == 4:
        comps = [(0, 0, Hr[:, 0] + 0j), (1, 1, Hr[:, 1] + 0j), (0, 1, Hr[:, 2] - 1j * Hr[:, 3]),
                 (1, 0, Hr[:, 2] + 1j * Hr[:, 3])]
    else:
        comps = [(0, 0, Hr[:, 0] + 1j * Hr[:, 4]), (1, 1, Hr[:, 1] + 1j * Hr[:, 5]),
                 (0, 1, Hr[:, 2] - 1j * Hr[:, 3]), (1, 0, Hr[:, 6] + 1j * Hr[:, 7])]
    return omap.scatter(edge_list, src, dst, *stack_spin_parts([(keys, rows, cols, v, a, b) for a, b, v in comps]))


def find_hsx_files(root: Path) -> list[Path]:
    """Every ``*.HSX`` under ``root`` (or ``root`` itself when it is one), sorted by path."""
    root = Path(root)
    if not root.exists():
        raise InputError(root, "no such file or directory")
    if root.is_file():
        if root.suffix.upper() != ".HSX":
            raise InputError(root, "expected a SIESTA .HSX file, a run folder or a directory of run folders")
        return [root]
    return sorted(find_files(root, lambda n: n.endswith(".HSX")), key=lambda p: p.as_posix())


def hsx_spin(path) -> int | None:
    """``nspin`` of a ``.HSX`` from its first three records only (version, is_dp, the 7 dimensions); None when
    the file is unreadable, of version 0 or its header is not plausible (:func:`read_hsx` says why)."""
    try:
        with open(path, "rb") as f:
            head = f.read(56)  # 3 records: (4 + 4 + 4) x 2 + 4 + 28
    except OSError:
        return None
    if len(head) < 56:
        return None
    m1, version, e1, m2, _, e2, m3 = struct.unpack("<7i", head[:28])
    if (m1, e1, m2, e2, m3) != (4, 4, 4, 4, 28) or version not in (1, 2):
        return None
    nspin = struct.unpack("<7i", head[28:56])[2]
    return nspin if nspin in (1, 2, 4, 8) else None


class SiestaSource(FileTreeSource):
    """Raw SIESTA runs (.HSX + .XV/.fdf/.ORB_INDX): spinless, collinear, non-collinear, SOC."""

    name = "siesta/hsx"
    doc = "raw SIESTA >= 4.1 runs (<label>.HSX + .XV/.fdf): spinless, collinear, non-collinear, SOC"
    input_help = "a SIESTA run folder (<label>.HSX, written with SaveHS true), a .HSX file, or a directory of runs"
    none_found = "no .HSX file found below it (run SIESTA with 'SaveHS true')"

    @dataclasses.dataclass(frozen=True)
    class Options(FileTreeSource.Options):
        edges: str = edges_option("hamiltonian", "keep every pair of the HSX sparsity pattern (DeepH-dock's "
                                                 "conversion keeps them) or only pairs with a non-zero overlap")

    def find(self, root: Path) -> list[Path]:
        return find_hsx_files(root)

    def _run_folder(self, path: Path) -> Path:
        return path.parent

    def _run_suffix(self, path: Path) -> str | None:
        return path.stem if len(list(path.parent.glob("*.HSX"))) > 1 else None

    def read_run(self, path: Path, struct_id: str):
        return hsx_to_structure(path, struct_id=struct_id, edges=self.opts.edges)

    def spinful_of(self, item) -> bool | None:
        """nspin > 1, from the HSX's third record."""
        nspin = hsx_spin(item)
        return None if nspin is None else nspin > 1

    def _attrs_dict(self) -> dict:
        path = Path(self._items[0])
        hsx = read_hsx(path)
        info = _log_info(path.parent, path.stem)
        fdf = _read_fdf(path.parent / f"{path.stem}.fdf")["kw"]
        functional = info.get("functional")
        if functional is None and "xcfunctional" in fdf:
            functional = f"{fdf['xcfunctional'].split()[0]}-{fdf.get('xcauthors', '').split()[0] if fdf.get('xcauthors') else ''}".rstrip("-")
        return {
            "kind": "crystal",
            "spinful": hsx["nspin"] > 1,
            "dft": {
                "code": "SIESTA",
                "version": info.get("version", "unknown"),
                "hsx_version": hsx["version"],
                "functional": functional or "unknown",
                "basis": fdf.get("paobasissize", "DZP (SIESTA default)").split()[0],
                "spin": {1: "off", 2: "collinear (stored as block-diagonal spinor)", 4: "non-collinear",
                         8: "spin-orbit"}[hsx["nspin"]],
                "electronic_temperature_K": hsx["temp"] * cv.RYDBERG_EV / 8.617333262e-5,
            },
            "constants": "CODATA2018",
        }

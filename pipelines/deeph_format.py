"""DeepH folder formats: read and write the legacy (DeepH-pack / DeepH-E3) and the DeepH-dock layouts.

Legacy folder (FACTS.md §3): element.dat (Z per atom), lat.dat (3×3 Å, **columns** are lattice vectors),
site_positions.dat (3×N Å, columns are atoms), orbital_types.dat (l of each shell, one line per atom),
info.json (fermi_level, isspinful), hamiltonians.h5 / overlaps.h5 with one dataset per pair named
"[Rx, Ry, Rz, i, j]" (1-based atoms), blocks in OpenMX order, eV.

DeepH-dock folder: POSCAR (Å), info.json (elements_orbital_map, spinful, fermi_energy_eV, …), hamiltonian.h5 /
overlap.h5 with atom_pairs (N, 5) [R1, R2, R3, i, j] 0-based, chunk_boundaries, chunk_shapes, entries (flat,
row-major blocks) in hambench order, eV.

Both become a :class:`~hambench.store._structure.Structure` with edges sorted by (i, j, R) whatever the order in the file
(legacy files list datasets by name, DeepH-dock files in the writer's order); the writers keep the Structure's
order, so folder → Structure → folder gives the same pairs and blocks, possibly listed in another order.

Every structure is read with ``pbc = (True, True, True)``: DeepH folders have no periodicity flag, and a molecule
comes in a large pseudo-cell with only R = 0 pairs (e.g. realdata ``pyscf_H2O_MgO/H2O``), which is exactly what
a periodic reading of that file means. ``energy`` and ``nelectron`` are NaN (the folders do not store them);
``fermi_level`` comes from info.json (NaN when absent).

Every failure — missing file, truncated or corrupt HDF5, NaN/Inf, a block whose shape does not match the orbital
counts, an unknown element, a dataset name that is not a pair key — raises
:class:`~hambench.errors.InputError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from pathlib import Path

import numpy as np

from hambench.atomic import partial_path, replace_dir
from hambench.basis._conventions import atom_permutation, from_hambench, symbol_to_z, z_to_symbol
from hambench.errors import InputError
from hambench.scoring._dense import bloch_matrices  # noqa: F401  (re-exported)
from hambench.store._structure import Structure, file_sha256
from hambench.basis._layout import layout_of
from .h5fast import read_datasets

__all__ = [
    "detect_layout",
    "read_legacy_folder",
    "read_new_folder",
    "write_legacy_folder",
    "write_new_folder",
    "read_poscar",
    "bloch_matrices",
]

_KEY = re.compile(r"^\[\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]$")


def detect_layout(folder) -> str:
    """``'legacy'`` (hamiltonians.h5) or ``'new'`` (hamiltonian.h5); InputError otherwise."""
    folder = Path(folder)
    if (folder / "hamiltonians.h5").exists():
        return "legacy"
    if (folder / "hamiltonian.h5").exists():
        return "new"
    raise InputError(folder, "no hamiltonians.h5 (legacy DeepH) or hamiltonian.h5 (DeepH-dock) here")


def _need(folder: Path, name: str) -> Path:
    p = folder / name
    if not p.exists():
        raise InputError(p, "missing file")
    return p


def _loadtxt(path: Path, ndim: int) -> np.ndarray:
    try:
        a = np.loadtxt(path, ndmin=ndim)
    except ValueError as e:
        raise InputError(path, f"not a numeric table ({e})") from None
    if not np.all(np.isfinite(a)):
        raise InputError(path, "contains NaN/Inf")
    return a


def _read_json(path: Path) -> dict:
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise InputError(path, f"expected a JSON object, got {type(info).__name__}")
    return info


def _read_h5(path: Path, digests: dict | None = None) -> dict[str, np.ndarray]:
    try:
        return read_datasets(path, digests)
    except OSError as e:
        raise InputError(path, f"cannot read HDF5 (truncated or corrupt?): {e}") from None


def _sorted_edges(src, dst, shift):
    """Order of edges by (i, j, R)."""
    return np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], dst, src))


def _edge_blocks(species, Z, src, dst, spinful: bool, where):
    """``(n_i, n_j, ptr)`` of the edges' blocks from the :class:`~hambench.basis._layout.BasisLayout` of ``species``."""
    try:
        layout = layout_of(species, spinful)
        zi, zj = np.asarray(Z, np.int64)[src], np.asarray(Z, np.int64)[dst]
        ni, nj = layout.block_sizes(zi, zj)
        return ni, nj, layout.block_ptr(zi, zj)
    except ValueError as e:  # an element without shells
        raise InputError(where, str(e)) from None


def _assemble(blocks: list[np.ndarray], Z, species, src, dst, code: str, where, spinful: bool, label):
    """Flat array of blocks converted to hambench order; blocks are checked against the orbital counts and for
    NaN/Inf (``label(e)`` names edge ``e`` in messages, as the file names it).

    Edges are grouped by element pair: each group is stacked once and reordered with one fancy index.
    """
    ni, nj, ptr = _edge_blocks(species, Z, src, dst, spinful, where)
    dtype = np.complex128 if spinful else np.float64
    out = np.empty(int(ptr[-1]), dtype=dtype)
    for e, b in enumerate(blocks):
        if b.shape != (ni[e], nj[e]):
            raise InputError(where, f"block {label(e)} has shape {b.shape}, the orbitals of its atoms need "
                                    f"{(int(ni[e]), int(nj[e]))}")
        if np.iscomplexobj(b) and not np.iscomplexobj(out):
            raise InputError(where, f"block {label(e)} is complex but the structure is not spinful")
    Za, Zb = np.asarray(Z)[src], np.asarray(Z)[dst]
    for za, zb in {(int(a), int(b)) for a, b in zip(Za, Zb)}:
        edges = np.flatnonzero((Za == za) & (Zb == zb))
        stack = np.stack([blocks[e] for e in edges])
        if code != "hambench":
            pi, si = atom_permutation(code, species[za])
            pj, sj = atom_permutation(code, species[zb])
            if spinful:
                pi, si = np.concatenate([pi, pi + len(pi)]), np.concatenate([si, si])
                pj, sj = np.concatenate([pj, pj + len(pj)]), np.concatenate([sj, sj])
            stack = stack[:, pi[:, None], pj[None, :]] * (si[:, None] * sj[None, :])
        size = stack.shape[1] * stack.shape[2]
        idx = ptr[edges][:, None] + np.arange(size)[None, :]
        out[idx] = stack.reshape(len(edges), size)
    bad = np.flatnonzero(~np.isfinite(out))
    if len(bad):
        e = int(np.searchsorted(ptr, bad[0], side="right") - 1)
        raise InputError(where, f"block {label(e)} contains NaN/Inf")
    return out


def _float(info: dict, key: str, path) -> float:
    v = info.get(key)
    if v is None:
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise InputError(path, f"{key} is not a number: {v!r}") from None


def _species(Z, shells_of_atom, where) -> dict[int, list[int]]:
    species: dict[int, list[int]] = {}
    for z, sh in zip(Z, shells_of_atom):
        if species.setdefault(int(z), list(sh)) != list(sh):
            raise InputError(where, f"element {z_to_symbol(int(z))} has different shells on different atoms: "
                                    f"{species[int(z)]} vs {list(sh)}")
    return species


# --- legacy ----------------------------------------------------------------------------------------------
def read_legacy_folder(folder) -> Structure:
    """Read a legacy DeepH processed folder into a Structure (hambench order, edges sorted by (i, j, R))."""
    folder = Path(folder)
    digests: dict[str, str] = {}  # sha256 of the HDF5 files from the bytes read to parse them
    Zf = _need(folder, "element.dat")
    Zr = _loadtxt(Zf, 1)
    if Zr.ndim != 1 or not len(Zr) or np.any(Zr != np.round(Zr)):
        raise InputError(Zf, "expected one integer atomic number per line")
    Z = Zr.astype(int)
    for z in Z:
        if not 1 <= z <= 118:
            raise InputError(Zf, f"unknown atomic number {z}")
    lat = _loadtxt(_need(folder, "lat.dat"), 2)
    pos = _loadtxt(_need(folder, "site_positions.dat"), 2)
    if lat.shape != (3, 3):
        raise InputError(folder / "lat.dat", f"expected a 3x3 matrix, got shape {lat.shape}")
    if pos.shape != (3, len(Z)):
        raise InputError(folder / "site_positions.dat", f"expected shape (3, {len(Z)}), got {pos.shape}")
    ot = _need(folder, "orbital_types.dat")
    try:
        shells = [list(map(int, line.split())) for line in ot.read_text().splitlines() if line.strip()]
    except ValueError:
        raise InputError(ot, "expected integers (l of each shell), one line per atom") from None
    if len(shells) != len(Z):
        raise InputError(ot, f"{len(shells)} lines for {len(Z)} atoms")
    if any(l < 0 for sh in shells for l in sh):
        raise InputError(ot, "negative angular momentum")
    info_p = folder / "info.json"
    info = _read_json(info_p) if info_p.exists() else None
    species = _species(Z, shells, ot)

    edges = {}
    data = {}
    for name, fname in (("H", "hamiltonians.h5"), ("S", "overlaps.h5")):
        path = _need(folder, fname)
        ds = _read_h5(path, digests)
        keys = []
        for k in ds:
            m = _KEY.match(k)
            if not m:
                raise InputError(path, f"dataset name {k!r} is not of the form '[Rx, Ry, Rz, i, j]'")
            r1, r2, r3, i, j = map(int, m.groups())
            if not (1 <= i <= len(Z) and 1 <= j <= len(Z)):
                raise InputError(path, f"dataset {k!r}: atom index out of 1..{len(Z)}")
            keys.append((i - 1, j - 1, r1, r2, r3, k))
        keys.sort()
        if any(a[:5] == b[:5] for a, b in zip(keys, keys[1:])):
            raise InputError(path, "two datasets name the same atom pair")
        edges[name] = [k[:5] for k in keys]
        data[name] = ([ds[k[5]] for k in keys], path)
    if info is None:  # no info.json: spinful exactly when the Hamiltonian blocks are complex
        spinful = any(np.iscomplexobj(b) for b in data["H"][0][:1])
    else:
        spinful = bool(info.get("isspinful", False))
    if edges["H"] != edges["S"]:
        raise InputError(folder / "overlaps.h5", "the overlap's atom pairs differ from the Hamiltonian's")
    e = np.array(edges["H"], dtype=np.int64).reshape(-1, 5)
    src, dst, shift = e[:, 0], e[:, 1], e[:, 2:5]
    def label(e):
        r = shift[e]
        return f"'[{r[0]}, {r[1]}, {r[2]}, {src[e] + 1}, {dst[e] + 1}]'"

    H = _assemble(data["H"][0], Z, species, src, dst, "deeph-legacy", data["H"][1], spinful, label)
    S = _assemble(data["S"][0], Z, species, src, dst, "deeph-legacy", data["S"][1], False, label)
    files = [folder / f for f in ("element.dat", "lat.dat", "site_positions.dat", "orbital_types.dat",
                                  "info.json", "hamiltonians.h5", "overlaps.h5") if (folder / f).exists()]
    return Structure(
        id=folder.name, Z=Z, pos=pos.T, cell=lat.T, pbc=[True, True, True], src=src, dst=dst, shift=shift,
        H=H, S=S, species=species, spinful=spinful,
        fermi_level=_float(info or {}, "fermi_level", info_p),
        sources=[(str(f), digests.get(str(f)) or file_sha256(f)) for f in files],
    )


# --- DeepH-dock ------------------------------------------------------------------------------------------
def _gather_dock(order, bounds, shapes, entries, species, Z, src, dst, spinful: bool, where, label):
    """The flat block array of a DeepH-dock file with its pairs taken in ``order`` (already hambench order):
    one vectorised gather, after checking every chunk shape against the orbital counts."""
    ni, nj, ptr = _edge_blocks(species, Z, src, dst, spinful, where)
    sh = shapes[order]
    bad = np.flatnonzero((sh[:, 0] != ni) | (sh[:, 1] != nj))
    if len(bad):
        e = int(bad[0])
        raise InputError(where, f"block {label(e)} has shape {tuple(int(x) for x in sh[e])}, the orbitals of its "
                                f"atoms need {(int(ni[e]), int(nj[e]))}")
    if np.iscomplexobj(entries) and not spinful:
        raise InputError(where, "entries are complex but the structure is not spinful (info.json)")
    sizes = ni * nj
    dtype = np.complex128 if spinful else np.float64
    if np.array_equal(bounds[order], ptr[:-1]):  # pairs already in (i, j, R) order: the entries as they are
        out = np.array(entries[: ptr[-1]], dtype=dtype)
    else:
        idx = np.repeat(bounds[order] - ptr[:-1], sizes) + np.arange(ptr[-1])
        out = entries[idx].astype(dtype)
    bad = np.flatnonzero(~np.isfinite(out))
    if len(bad):
        e = int(np.searchsorted(ptr, bad[0], side="right") - 1)
        raise InputError(where, f"block {label(e)} contains NaN/Inf")
    return out


def read_poscar(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(element symbol per atom, cell rows Å, Cartesian positions Å) of a VASP 5 POSCAR."""
    path = Path(path)
    lines = [l.split() for l in path.read_text().splitlines()]
    try:
        scale = float(lines[1][0])
        cell = np.array([[float(x) for x in lines[k][:3]] for k in (2, 3, 4)]) * scale
        symbols, counts = lines[5], [int(x) for x in lines[6]]
        k = 7
        if lines[k][0][0] in "sS":  # selective dynamics
            k += 1
        direct = lines[k][0][0] in "dD"
        n = sum(counts)
        coords = np.array([[float(x) for x in lines[k + 1 + a][:3]] for a in range(n)])
    except (IndexError, ValueError) as e:
        raise InputError(path, f"not a VASP 5 POSCAR ({e})") from None
    if len(symbols) != len(counts):
        raise InputError(path, "element line and count line differ in length")
    pos = coords @ cell if direct else coords * scale
    return [s for s, c in zip(symbols, counts) for _ in range(c)], cell, pos


def read_new_folder(folder) -> Structure:
    """Read a DeepH-dock folder (POSCAR, info.json, hamiltonian.h5, overlap.h5) into a Structure."""
    folder = Path(folder)
    digests: dict[str, str] = {}  # sha256 of the HDF5 files from the bytes read to parse them
    pp = _need(folder, "POSCAR")
    symbols, cell, pos = read_poscar(pp)
    info_p = _need(folder, "info.json")
    info = _read_json(info_p)
    try:
        Z = np.array([symbol_to_z(s) for s in symbols])
    except ValueError as e:
        raise InputError(pp, str(e)) from None
    omap = info.get("elements_orbital_map", {})
    try:
        shells = [list(map(int, omap[s])) for s in symbols]
    except KeyError as e:
        raise InputError(info_p, f"elements_orbital_map has no entry for {e}") from None
    spinful = bool(info.get("spinful", False))
    species = _species(Z, shells, info_p)
    arrays = {}
    for name, fname in (("H", "hamiltonian.h5"), ("S", "overlap.h5")):
        path = _need(folder, fname)
        ds = _read_h5(path, digests)
        for need in ("atom_pairs", "chunk_boundaries", "chunk_shapes", "entries"):
            if need not in ds:
                raise InputError(path, f"missing dataset {need}")
        pairs, bounds, shapes, entries = (np.asarray(ds[k]) for k in ("atom_pairs", "chunk_boundaries",
                                                                      "chunk_shapes", "entries"))
        if pairs.ndim != 2 or pairs.shape[1] != 5 or shapes.ndim != 2 or shapes.shape[1] != 2 or bounds.ndim != 1:
            raise InputError(path, f"atom_pairs {pairs.shape} / chunk_shapes {shapes.shape} / chunk_boundaries "
                                   f"{bounds.shape} do not have the shapes (N, 5) / (N, 2) / (N+1,)")
        if not all(np.issubdtype(a.dtype, np.integer) for a in (pairs, bounds, shapes)):
            raise InputError(path, "atom_pairs, chunk_boundaries and chunk_shapes must be integers")
        pairs, bounds, shapes = pairs.astype(np.int64), bounds.astype(np.int64), shapes.astype(np.int64)
        entries = entries.reshape(-1)
        if len(bounds) != len(pairs) + 1 or len(shapes) != len(pairs) or bounds[-1] != entries.size:
            raise InputError(path, "atom_pairs, chunk_boundaries, chunk_shapes and entries are inconsistent")
        if len(bounds) and bounds[0] != 0 or np.any(np.diff(bounds) != shapes[:, 0] * shapes[:, 1]):
            raise InputError(path, "chunk_shapes do not match chunk_boundaries")
        if pairs.size and (pairs[:, 3:].min() < 0 or pairs[:, 3:].max() >= len(Z)):
            raise InputError(path, f"atom index out of 0..{len(Z) - 1}")
        arrays[name] = (pairs, bounds, shapes, entries, path)
    pH, pS = arrays["H"][0], arrays["S"][0]
    oH = _sorted_edges(pH[:, 3], pH[:, 4], pH[:, :3])
    oS = _sorted_edges(pS[:, 3], pS[:, 4], pS[:, :3])
    if not np.array_equal(pH[oH], pS[oS]):
        raise InputError(arrays["S"][4], "the overlap's atom pairs differ from the Hamiltonian's")
    src, dst, shift = pH[oH, 3], pH[oH, 4], pH[oH, :3]
    if len(src) > 1:
        same = np.all(np.diff(np.column_stack([src, dst, shift]), axis=0) == 0, axis=1)
        if np.any(same):
            raise InputError(arrays["H"][4], "an atom pair is listed twice in atom_pairs")

    def label(e):
        return f"of atom_pairs row [{shift[e][0]}, {shift[e][1]}, {shift[e][2]}, {src[e]}, {dst[e]}]"

    flat = {}
    for name, order in (("H", oH), ("S", oS)):
        pairs, bounds, shapes, entries, path = arrays[name]
        flat[name] = _gather_dock(order, bounds, shapes, entries, species, Z, src, dst, spinful and name == "H", path,
                                  label)
    files = [folder / f for f in ("POSCAR", "info.json", "hamiltonian.h5", "overlap.h5")]
    return Structure(
        id=folder.name, Z=Z, pos=pos, cell=cell, pbc=[True, True, True], src=src, dst=dst, shift=shift,
        H=flat["H"], S=flat["S"], species=species, spinful=spinful,
        fermi_level=_float(info, "fermi_energy_eV", info_p),
        sources=[(str(f), digests.get(str(f)) or file_sha256(f)) for f in files],
    )


# --- writers ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _atomic_folder(folder):
    """Yield a staging folder beside ``folder`` (:func:`hambench.atomic.partial_path`); on success it becomes
    ``folder`` (:func:`hambench.atomic.replace_dir`), on an exception it is removed. ``folder`` must not exist."""
    folder = Path(folder)
    if folder.exists():
        raise InputError(folder, "exists already")
    tmp = partial_path(folder)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, folder)


def _blocks_in(s: Structure, which: str, code: str) -> list[np.ndarray]:
    """Blocks of ``s`` converted from hambench to ``code`` order, one (n_i, n_j) array per edge.

    Edges are grouped by element pair; each group is gathered and reordered with one fancy index.
    """
    spin = s.spinful if which == "H" else False
    arr = s.H if which == "H" else s.S
    ptr = s.block_ptr(spin)
    ni, nj = s.block_shapes(spin)
    Za, Zb = s.Z[s.src].astype(np.int64), s.Z[s.dst].astype(np.int64)
    out: list[np.ndarray] = [np.empty((0, 0))] * s.nedges
    for key in np.unique(Za * 1000 + Zb):
        edges = np.flatnonzero(Za * 1000 + Zb == key)
        a, b = int(ni[edges[0]]), int(nj[edges[0]])
        stack = arr[ptr[edges][:, None] + np.arange(a * b)[None, :]].reshape(len(edges), a, b)
        if code != "hambench":
            stack = from_hambench(stack, code, s.species[int(key // 1000)], s.species[int(key % 1000)], spin)
        for k, e in enumerate(edges):
            out[e] = stack[k]
    return out


#: vacuum (Å) added to a molecule's extent to make the pseudo-cell DeepH folders need
MOLECULE_VACUUM = 20.0


def _export_cell(s: Structure) -> np.ndarray:
    """The cell written to a folder: the structure's own, or for a molecule (no periodic direction, no cell) an
    orthorhombic pseudo-cell of its extent + :data:`MOLECULE_VACUUM` Å, as DeepH-dock's PySCF molecules have."""
    if abs(np.linalg.det(s.cell)) > 1e-9:
        return s.cell
    if s.pbc.any() or s.shift.any():
        raise InputError(s.id, "periodic structure with a singular cell cannot be written as a DeepH folder")
    extent = s.pos.max(axis=0) - s.pos.min(axis=0) if s.natoms else np.zeros(3)
    return np.diag(extent + MOLECULE_VACUUM)


def write_legacy_folder(s: Structure, folder) -> Path:
    """Write ``s`` as a legacy DeepH folder (DeepH-pack / DeepH-E3), atomically, and return its path.

    Files as DeepH-pack writes them: element.dat, lat.dat and rlat.dat (columns are vectors; rlat = 2π lat⁻ᵀ),
    site_positions.dat (columns are atoms), orbital_types.dat, R_list.dat (the R of the pairs, sorted),
    info.json (nsites, isorthogonal, isspinful, fermi_level — 0.0 when unknown), hamiltonians.h5 and overlaps.h5:
    one float64 (complex128 (2n_i, 2n_j) spin-outer when spinful) dataset per edge, named "[Rx, Ry, Rz, i, j]"
    with 1-based atoms, blocks in OpenMX order. Written to a hidden staging folder beside it and swapped in when
    complete (:func:`hambench.atomic.replace_dir`); ``folder`` must not exist. A molecule gets a pseudo-cell (:func:`_export_cell`).
    """
    import h5py

    cell = _export_cell(s)
    with _atomic_folder(folder) as tmp:
        np.savetxt(tmp / "element.dat", s.Z.astype(int), fmt="%d")
        np.savetxt(tmp / "lat.dat", cell.T)
        np.savetxt(tmp / "rlat.dat", 2 * np.pi * np.linalg.inv(cell.T).T)
        np.savetxt(tmp / "site_positions.dat", s.pos.T)
        np.savetxt(tmp / "R_list.dat", np.unique(s.shift, axis=0).reshape(-1, 3), fmt="%d")
        (tmp / "orbital_types.dat").write_text(
            "\n".join(" ".join(str(l) for l in s.species[int(z)]) for z in s.Z) + "\n")
        (tmp / "info.json").write_text(json.dumps(
            {"nsites": s.natoms, "isorthogonal": False, "isspinful": bool(s.spinful),
             "fermi_level": float(s.fermi_level) if np.isfinite(s.fermi_level) else 0.0}, indent=1))
        names = [f"[{r[0]}, {r[1]}, {r[2]}, {i + 1}, {j + 1}]".encode()
                 for r, i, j in zip(s.shift.tolist(), s.src.tolist(), s.dst.tolist())]
        for which, fname in (("H", "hamiltonians.h5"), ("S", "overlaps.h5")):
            blocks = _blocks_in(s, which, "deeph-legacy")
            with h5py.File(tmp / fname, "w") as f:
                # h5py's low-level calls: the same contiguous datasets as ``f[name] = block`` in ~60 % of the time
                tid = h5py.h5t.py_create(blocks[0].dtype if blocks else np.dtype("<f8"))
                spaces: dict = {}
                for name, b in zip(names, blocks):
                    b = np.ascontiguousarray(b)
                    space = spaces.get(b.shape) or spaces.setdefault(b.shape, h5py.h5s.create_simple(b.shape))
                    h5py.h5d.create(f.id, name, tid, space).write(h5py.h5s.ALL, h5py.h5s.ALL, b)
    return Path(folder)


def write_new_folder(s: Structure, folder) -> Path:
    """Write ``s`` as a DeepH-dock folder, atomically, and return its path.

    Files: POSCAR (Cartesian Å, floats written with ``repr`` so they read back exactly), info.json
    (atoms_quantity, orbits_quantity, orthogonal_basis, spinful, fermi_energy_eV — 0.0 when unknown,
    elements_orbital_map), hamiltonian.h5 and overlap.h5 with atom_pairs (E, 5) int64 [R1, R2, R3, i, j] 0-based,
    chunk_boundaries (E+1,) int64, chunk_shapes (E, 2) int64, entries (float64, complex128 for a spinful H; the
    overlap stays real (n_i, n_j)) in hambench order. Pairs are in the structure's edge order. Atoms keep the
    structure's order: the POSCAR lists consecutive runs of one element (``O H O`` / ``1 1 1`` when atoms of one
    element are not adjacent), so atom indices mean the same in the folder as in the store. A molecule gets a
    pseudo-cell (:func:`_export_cell`). Written to a hidden staging folder beside it and swapped in when complete.
    """
    import h5py

    cell = _export_cell(s)
    with _atomic_folder(folder) as tmp:
        runs = []
        for z in s.Z:
            if runs and runs[-1][0] == int(z):
                runs[-1][1] += 1
            else:
                runs.append([int(z), 1])
        lines = [s.id.replace("\n", " ") or "hambench", "1.0"] + [" ".join(repr(float(x)) for x in v) for v in cell]
        lines += [" ".join(z_to_symbol(z) for z, _ in runs), " ".join(str(c) for _, c in runs), "Cartesian"]
        lines += [" ".join(repr(float(x)) for x in p) for p in s.pos]
        (tmp / "POSCAR").write_text("\n".join(lines) + "\n")
        info = {
            "atoms_quantity": s.natoms,
            "orbits_quantity": int(s.layout.norb(s.Z, spinful=False).sum()) if s.natoms else 0,
            "orthogonal_basis": False,
            "spinful": bool(s.spinful),
            "fermi_energy_eV": float(s.fermi_level) if np.isfinite(s.fermi_level) else 0.0,
            "elements_orbital_map": {z_to_symbol(z): sh for z, sh in sorted(s.species.items())},
        }
        (tmp / "info.json").write_text(json.dumps(info, indent=2))
        pairs = np.column_stack([s.shift, s.src, s.dst]).astype(np.int64)
        # the flat arrays already are DeepH-dock's entries: blocks in edge order, row-major, hambench order
        for arr, spin, fname in ((s.H, s.spinful, "hamiltonian.h5"), (s.S, False, "overlap.h5")):
            ni, nj = s.block_shapes(spin)
            with h5py.File(tmp / fname, "w") as f:
                f["atom_pairs"] = pairs
                f["chunk_boundaries"] = s.block_ptr(spin).astype(np.int64)
                f["chunk_shapes"] = np.column_stack([ni, nj]).astype(np.int64).reshape(-1, 2)
                f["entries"] = np.ascontiguousarray(arr)
    return Path(folder)


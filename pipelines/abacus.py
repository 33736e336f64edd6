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
from pathlib import Path

import numpy as np

from hambench.basis import _conventions as cv
from hambench.errors import InputError
from hambench.store._structure import Structure, file_sha256
from . import find_files
from ._abacus_csr import parse_csr, read_csr
from ._abacus_text import (TRUE_WORDS, abacus_spin, input_values, parse_log, read_input_keywords, read_stru,
                           shells_from_orbital_file, stru_positions)
from ._lcao_sparse import (check_edges, decode_edges, edge_keys, edges_option, element_shells, orbital_map,
                           select_edges, stack_spin_parts)
from .filetree import FileTreeSource

__all__ = ["AbacusSource", "abacus_spin", "parse_csr", "read_csr", "read_stru", "read_abacus_run", "find_abacus_runs",
           "read_input_keywords", "input_values", "shells_from_orbital_file", "parse_log"]

_HR = "data-HR-sparse_SPIN{}.csr"
_SR = "data-SR-sparse_SPIN0.csr"


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


def _nspin(meta: dict) -> int:
    """nspin of a run: INPUT's keyword, else the log's line, else 1."""
    return int(meta["kw"].get("nspin", meta["log"].get("nspin", 1)))


def _cell(meta: dict) -> np.ndarray:
    """The cell (Å, rows = lattice vectors): STRU's, checked against (or, for an untabulated latname, taken from)
    the log's 6-digit vectors."""
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
    return vec * stru["alat"]


def _elements(meta: dict) -> tuple[np.ndarray, dict[int, list[int]]]:
    """Atomic numbers (STRU order) and the shells of each element (one basis per element)."""
    stru = meta["stru"]
    label_shells = _species_shells(meta)
    el_of = {sp["label"]: sp["element"] for sp in stru["species"]}
    Z = np.array([cv.symbol_to_z(el_of[lab]) for lab in stru["labels"]], np.int64)
    return Z, element_shells(Z, [label_shells[lab] for lab in stru["labels"]], meta["stru_path"])


def _read_matrices(out_dir: Path, nspin: int, nlocal: int) -> tuple[list[Path], list[dict], Path, dict]:
    """The H files (two for nspin 2) and the S file, parsed and checked against the orbital count."""
    h_paths = [out_dir / _HR.format(s) for s in range(2 if nspin == 2 else 1)]
    s_path = out_dir / _SR
    hs = [read_csr(p) for p in h_paths]
    sm = read_csr(s_path)
    fh = 2 if nspin == 4 else 1
    for p, h in zip(h_paths, hs):
        if h["dim"] != fh * nlocal:
            raise InputError(p, f"matrix dimension {h['dim']} does not match the {nlocal} orbitals of STRU"
                                + (" (x2 for nspin 4)" if nspin == 4 else ""))
        if nspin != 4 and h["complex"]:
            raise InputError(p, "complex values in a run with nspin != 4")
    if sm["dim"] not in (nlocal, 2 * nlocal) or (sm["dim"] == 2 * nlocal) != (nspin == 4):
        raise InputError(s_path, f"matrix dimension {sm['dim']} does not match the {nlocal} orbitals of STRU")
    return h_paths, hs, s_path, sm


def _r_code(R: np.ndarray) -> np.ndarray:
    return (R[:, 0] * 100003 + R[:, 1]) * 100003 + R[:, 2]


def _lattice_vectors(hs: list[dict], sm: dict, h_path: Path, s_path: Path) -> np.ndarray:
    """One sorted R table for every file; the overlap's non-empty R must have Hamiltonian elements."""
    r_all = np.unique(np.concatenate([h["R"] for h in hs] + [sm["R"]]), axis=0)
    h_nonempty = set(_r_code(hs[0]["R"][hs[0]["nnz"] > 0]).tolist())
    s_r = sm["R"][sm["nnz"] > 0]
    missing = [tuple(int(x) for x in r) for r, c in zip(s_r, _r_code(s_r)) if c not in h_nonempty]
    if missing:
        raise InputError(s_path, f"overlap has elements at R = {missing[0]} (and {len(missing) - 1} more) where "
                                 f"{h_path.name} has none: the two files do not describe the same run")
    return r_all


def _elements_of(m: dict, omap, r_all: np.ndarray, spin_fastest: bool):
    """Edge keys, native orbital rows and columns (and, for nspin 4's spin-fastest rows, their spins) of every
    element of a parsed file."""
    rows, cols = m["rows"].astype(np.int64), m["cols"].astype(np.int64)
    rs = cs = None
    if spin_fastest:
        rs, cs = rows % 2, cols % 2
        rows, cols = rows // 2, cols // 2
    rank = np.searchsorted(_r_code(r_all), _r_code(m["R"]))[m["ridx"]]
    return edge_keys(omap.atom[rows], omap.atom[cols], rank, len(omap.Z), len(r_all)), rows, cols, rs, cs


def _edge_blocks(hs: list[dict], sm: dict, omap, nspin: int, edges: str, r_all: np.ndarray):
    """``(src, dst, shift, H, S)``: the edges (pairs with a stored overlap, or every pair with elements) and their
    blocks; H in eV (block-diagonal spinor for nspin 2, spin-outer for nspin 4), S real (its ↑↑ part)."""
    s_keys, s_rows, s_cols, s_rs, s_cs = _elements_of(sm, omap, r_all, nspin == 4)
    s_vals = sm["values"]
    if nspin == 4:  # keep the ↑↑ part of the spinor overlap
        up = (s_rs == 0) & (s_cs == 0)
        s_keys, s_rows, s_cols, s_vals = s_keys[up], s_rows[up], s_cols[up], s_vals[up].real
    h_parts = [_elements_of(h, omap, r_all, nspin == 4) for h in hs]
    edge_list = select_edges(s_keys if edges == "overlap" else np.concatenate([p[0] for p in h_parts] + [s_keys]))
    src, dst, shift = decode_edges(edge_list, len(omap.Z), r_all)
    S = omap.scatter(edge_list, src, dst, s_keys, s_rows, s_cols, s_vals)
    if nspin == 1:
        k, r, c, _, _ = h_parts[0]
        H = omap.scatter(edge_list, src, dst, k, r, c, hs[0]["values"] * cv.RYDBERG_EV)
    elif nspin == 2:  # SPIN0 = ↑↑, SPIN1 = ↓↓
        H = omap.scatter(edge_list, src, dst, *stack_spin_parts(
            [(k, r, c, h["values"] * cv.RYDBERG_EV, s, s) for s, ((k, r, c, _, _), h) in enumerate(zip(h_parts, hs))]))
    else:
        k, r, c, rs, cs = h_parts[0]
        H = omap.scatter(edge_list, src, dst, *stack_spin_parts([(k, r, c, hs[0]["values"] * cv.RYDBERG_EV, rs, cs)]))
    return src, dst, shift, H, S


def read_abacus_run(out_dir, *, struct_id: str | None = None, edges: str = "overlap") -> Structure:
    """One ABACUS run (its ``OUT.*`` folder) → :class:`Structure` in hambench conventions."""
    out_dir = Path(out_dir)
    check_edges(edges)
    meta = _run_metadata(out_dir)
    cell = _cell(meta)
    pos = stru_positions(meta["stru"], cell, meta["stru_path"])
    Z, species = _elements(meta)
    omap = orbital_map(Z, species, "abacus")
    nspin = _nspin(meta)
    if nspin not in (1, 2, 4):
        raise InputError(out_dir, f"nspin = {nspin} is not an ABACUS spin setting (1, 2 or 4)")
    h_paths, hs, s_path, sm = _read_matrices(out_dir, nspin, omap.n)
    r_all = _lattice_vectors(hs, sm, h_paths[0], s_path)
    src, dst, shift, H, S = _edge_blocks(hs, sm, omap, nspin, edges, r_all)
    info = meta["log"]
    files = [meta["stru_path"], *h_paths, s_path] + ([meta["log_path"]] if meta["log_path"].is_file() else [])
    return Structure(
        id=struct_id or out_dir.parent.name,
        Z=Z, pos=pos, cell=cell, pbc=np.ones(3, bool),
        src=src, dst=dst, shift=shift, H=H, S=S,
        species=species, spinful=nspin in (2, 4),
        energy=info.get("energy_eV", float("nan")),
        nelectron=info.get("nelectron", float("nan")),
        fermi_level=info.get("fermi_eV", float("nan")),
        sources=[(str(p), file_sha256(p)) for p in files],
    )


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
        nspin = _nspin(meta)
        soc = kw.get("lspinorb", "0").lower() in TRUE_WORDS
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

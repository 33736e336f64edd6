"""``openmx/scfout``: raw OpenMX 3.9 runs (``.scfout`` + input) → :class:`Structure` records.

The binary file is parsed by the C++ reader :func:`hambench._core.read_scfout` (one pass, no Python loop per
pair); this module turns its flat arrays into hambench conventions with vectorised numpy:

* units: Hartree → eV and Bohr → Å with hambench's CODATA 2018 constants (:mod:`hambench.basis._conventions`).
  OpenMX itself converts with 27.2113845 eV and 0.529177249 Å, so energies and lengths differ from peers that
  reuse those constants (DeepH, DeepH-dock) by ~7e-8 relative — e.g. a cell given as 2.46 Å in the input is
  2.4599998 Å here.
* orbital order: OpenMX → hambench per shell (``conventions.to_hambench`` tables, code ``'openmx'``); the shells
  of each species come from the input's ``<Definition.of.Atomic.Species`` block (``C6.0-s2p2d1`` →
  s, s, p, p, d). The input is read from the text OpenMX embeds in the ``.scfout``; if that lacks the blocks,
  from text appended after it (DeepH's ``cat openmx.out >> openmx.scfout``), then from ``<name>.out`` beside it.
* edges: the file's own pair list (i, j, R), self pairs included, in file order (atom, then neighbour).
* spin:
  - ``SpinP_switch = 0``: real blocks (n_i, n_j).
  - ``SpinP_switch = 3`` (non-collinear, with or without SOC): complex spinor blocks (2n_i, 2n_j),
    spin-outer [[↑↑, ↑↓], [↓↑, ↓↓]] with ↑↑ = H0 + i·iHNL0, ↓↓ = H1 + i·iHNL1, ↑↓ = H2 + i·(H3 + iHNL2),
    and ↓↑(i, j, R) = ↑↓(j, i, −R)ᴴ taken from the partner pair (OpenMX stores only one spin-off-diagonal
    triangle; every reader, DeepH-dock included, rebuilds ↓↑ this way).
  - ``SpinP_switch = 1`` (collinear): stored **as a spinor** [[H↑, 0], [0, H↓]] (complex, spinful store). This is
    exact — a collinear Hamiltonian is the block-diagonal special case of the non-collinear one, H(k) has the
    union of ↑ and ↓ bands — and keeps one structure per run. Pass ``collinear='reject'`` to refuse such runs.
  The overlap always stays real (n_i, n_j).
* fermi_level = ChemP (eV), nelectron = Total_Num_Electrons, energy = the last ``Utot.`` of the ``.out`` when
  one is found (else NaN). Positions are OpenMX's final ``Gxyz``; cell rows = ``tv``.
"""

from __future__ import annotations

import dataclasses

import re
import struct
from pathlib import Path

import numpy as np

from hambench._core import read_scfout as _read
from hambench.basis import _conventions as cv
from hambench.errors import InputError
from hambench.store._structure import Structure, file_sha256, partner_index
from hambench.basis._layout import layout_of
from . import find_files
from ._lcao_sparse import element_shells
from .filetree import FileTreeSource

__all__ = ["ScfoutSource", "read_scfout", "scfout_spin", "scfout_to_structure", "parse_openmx_input", "openmx_species"]

#: the .scfout version OpenMX 3.9 writes (the C++ reader accepts only it)
_SCFOUT_VERSION = 3

_BLOCK = re.compile(r"^\s*<\s*([A-Za-z0-9_.]+)\s*$")


def read_scfout(path, what: str = "default") -> dict:
    """:func:`hambench._core.read_scfout` with errors turned into :class:`InputError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such .scfout file")
    try:
        return _read(str(path), what)
    except InputError:
        raise
    except (ValueError, OSError) as e:
        msg = str(e)
        prefix = f"{path}: "
        raise InputError(path, msg[len(prefix):] if msg.startswith(prefix) else msg) from None


def parse_openmx_input(text: str) -> dict:
    """Keywords and ``<Block ... Block>`` sections of an OpenMX input (or of a ``.out``, which echoes it).

    Returns ``{"keywords": {lower-case key: value string}, "blocks": {lower-case name: [list of tokens per line]}}``;
    ``#`` starts a comment. The first occurrence of a keyword or block wins.
    """
    keywords: dict[str, str] = {}
    blocks: dict[str, list[list[str]]] = {}
    current, rows = None, []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if current is not None:
            if line.lower().rstrip(">").strip() == current and line.endswith(">"):
                blocks.setdefault(current, rows)
                current, rows = None, []
            else:
                rows.append(line.split())
            continue
        m = _BLOCK.match(line)
        if m:
            current, rows = m.group(1).lower(), []
            continue
        parts = line.split(None, 1)
        if len(parts) == 2 and not parts[0].endswith(">"):
            keywords.setdefault(parts[0].lower(), parts[1].strip())
    return {"keywords": keywords, "blocks": blocks}


def _element_of(label: str, pao: str, vps: str) -> str:
    """Element of an OpenMX species: the pseudopotential's prefix (``Bi_PBE19``), else the PAO's (``Bi8.0``)."""
    for cand in (vps.split("_", 1)[0], re.match(r"[A-Za-z]*", pao).group(0), re.match(r"[A-Za-z]*", label).group(0)):
        try:
            cv.symbol_to_z(cand)
            return cand[0].upper() + cand[1:].lower()
        except ValueError:
            continue
    raise ValueError(f"cannot tell the element of species {label!r} ({pao} {vps})")


def openmx_species(parsed: dict) -> tuple[dict[str, dict], list[str]]:
    """Species table {label: {element, Z, pao, vps, shells}} and the species label of each atom, input order."""
    blocks = parsed["blocks"]
    spec_rows = blocks.get("definition.of.atomic.species")
    atom_rows = blocks.get("atoms.speciesandcoordinates")
    if spec_rows is None or atom_rows is None:
        raise ValueError("no <Definition.of.Atomic.Species / <Atoms.SpeciesAndCoordinates block")
    species = {}
    for row in spec_rows:
        if len(row) < 3:
            raise ValueError(f"bad species line {' '.join(row)!r}")
        label, pao, vps = row[:3]
        el = _element_of(label, pao, vps)
        species[label] = {"element": el, "Z": cv.symbol_to_z(el), "pao": pao, "vps": vps,
                          "shells": cv.parse_openmx_basis(pao)}
    labels = []
    for row in atom_rows:
        if len(row) < 2 or row[1] not in species:
            raise ValueError(f"atom line {' '.join(row)!r} names no species of <Definition.of.Atomic.Species")
        labels.append(row[1])
    return species, labels



def _out_info(text: str) -> dict:
    """OpenMX version and last total energy (Hartree) from ``.out`` text, when present."""
    info = {}
    m = re.search(r"performed by OpenMX Ver\.\s*([0-9][0-9.]*)", text)
    if m:
        info["version"] = m.group(1).rstrip(".")
    # the last line "Utot.  <number>": scan back from the end over the lines holding "Utot." (a regex over
    # the whole text costs ~1 ms per run)
    end = len(text)
    while (k := text.rfind("Utot.", 0, end)) >= 0:
        start, stop = text.rfind("\n", 0, k) + 1, text.find("\n", k)
        m = _UTOT.search(text, start, len(text) if stop < 0 else stop)
        if m:
            info["utot"] = float(m.group(1))
            break
        end = k
    return info


_UTOT = re.compile(r"\bUtot\.[ \t]+(-?\d+\.\d*(?:[eE][-+]?\d+)?)[ \t]*$", re.M)


def _input_texts(path: Path, d: dict):
    """Candidate texts holding the input: embedded lines, appended text, ``<stem>.out`` beside the file."""
    yield "embedded input", "\n".join(d["input_lines"])
    appended = d["appended"].decode("latin-1") if d["appended"] else ""
    if appended.strip():
        yield "appended text", appended
    out = path.with_suffix(".out")
    if out.is_file():
        yield str(out), out.read_text(errors="replace")


def _run_metadata(path: Path, d: dict) -> dict:
    """Species, atom labels, keywords and ``.out`` info of one run, from the first text that has them."""
    errors, meta = [], None
    out_info = {}
    for name, text in _input_texts(path, d):
        if name != "embedded input":
            out_info = out_info or _out_info(text)
        if meta is None:
            parsed = parse_openmx_input(text)
            try:
                species, labels = openmx_species(parsed)
            except ValueError as e:
                errors.append(f"{name}: {e}")
                continue
            meta = {"species": species, "labels": labels, "keywords": parsed["keywords"], "from": name}
    if meta is None:
        raise InputError(path, "cannot find the species and atoms of the run (" + "; ".join(errors) + ")")
    meta["out"] = out_info
    return meta


def _partners(i, j, R, natoms: int, path) -> np.ndarray:
    """Index of the partner (j, i, −R) of every pair (:func:`hambench.store._structure.partner_index`); InputError when
    one is missing or a pair is listed twice (then the partner of a partner is not the pair itself)."""
    partner = partner_index(i, j, R, natoms)
    missing = np.flatnonzero(partner < 0)
    if missing.size:
        e = int(missing[0])
        raise InputError(path, f"pair (i={i[e]}, j={j[e]}, R={tuple(int(x) for x in R[e])}) has no partner (j, i, -R)")
    if not np.array_equal(partner[partner], np.arange(partner.size)):
        raise InputError(path, "duplicate atom pair (i, j, R) in the neighbour list")
    return partner


def _gather_index(ni, nj, ptr, perm_i, perm_j, transpose=False):
    """Flat indices into native arrays giving hambench-ordered blocks for a group of equal-shape pairs.

    new[e][a, b] = old[ptr[e] + perm_i[a] * nj + perm_j[b]]  (or, with ``transpose``, the partner block
    of shape (nj, ni): old[ptr[e] + perm_j[b] * ni + perm_i[a]]).
    """
    if transpose:
        local = perm_j[None, :] * ni + perm_i[:, None]
    else:
        local = perm_i[:, None] * nj + perm_j[None, :]
    return ptr[:, None] + local.reshape(1, -1)


def scfout_to_structure(path, *, struct_id: str | None = None, collinear: str = "spinor") -> Structure:
    """One OpenMX run → :class:`Structure` in hambench conventions (see the module docstring)."""
    path = Path(path)
    d = read_scfout(path)
    meta = _run_metadata(path, d)
    species, labels = meta["species"], meta["labels"]
    natoms, spin = int(d["atomnum"]), int(d["SpinP_switch"])
    if len(labels) != natoms:
        raise InputError(path, f"the input lists {len(labels)} atoms, the .scfout has {natoms}")
    if spin == 1 and collinear == "reject":
        raise InputError(path, "collinear spin-polarised run (SpinP_switch = 1) refused (collinear='reject')")
    Z = np.array([species[lab]["Z"] for lab in labels], dtype=np.int64)
    shells_by_z = element_shells(Z, [species[lab]["shells"] for lab in labels], path)
    spinful = spin in (1, 3)
    try:
        layout = layout_of(shells_by_z, spinful)
    except ValueError as e:  # a species without shells
        raise InputError(path, str(e)) from None
    norb_atom = layout.norb(Z, spinful=False)
    bad = np.flatnonzero(norb_atom != d["Total_NumOrbs"])
    if bad.size:
        a = int(bad[0])
        raise InputError(path, f"atom {a + 1} ({labels[a]}) has {d['Total_NumOrbs'][a]} orbitals in the .scfout but "
                               f"its basis {species[labels[a]]['pao']} gives {norb_atom[a]}")
    H, S = _blocks(d, Z, shells_by_z, layout, path)
    hartree = cv.HARTREE_EV
    energy = meta["out"].get("utot", float("nan")) * hartree
    return Structure(
        id=struct_id or path.parent.name or path.stem,
        Z=Z,
        pos=np.asarray(d["Gxyz"]) * cv.BOHR_ANGSTROM,
        cell=np.asarray(d["tv"]) * cv.BOHR_ANGSTROM,
        pbc=np.ones(3, dtype=bool),
        src=d["pair_i"],
        dst=d["pair_j"],
        shift=d["pair_R"],
        H=H,
        S=S,
        species=shells_by_z,
        spinful=spinful,
        energy=energy,
        nelectron=float(d["Total_Num_Electrons"]),
        fermi_level=float(d["ChemP"]) * hartree,
        sources=[(str(path), file_sha256(path))],
    )


def _blocks(d: dict, Z: np.ndarray, shells_by_z: dict, layout, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The native blocks of every pair, reordered to hambench order with signs, one element pair at a time:
    ``(H (eV; spinor blocks for SpinP_switch 1 and 3), S)``."""
    spin = int(d["SpinP_switch"])
    spinful = spin in (1, 3)
    pi, pj, R, ptr = d["pair_i"], d["pair_j"], d["pair_R"], d["block_ptr"]
    H_nat, OLP = d["H"], d["OLP"]
    # hambench layout: one output offset per pair (spinful blocks are 4x larger)
    out_ptr = layout.block_ptr(Z[pi], Z[pj])
    S = np.empty(int(ptr[-1]), dtype=np.float64)
    H = np.empty(int(out_ptr[-1]), dtype=np.complex128 if spinful else np.float64)
    if spin == 3:
        iH = d["iHNL"]
        uu = H_nat[0] + 1j * iH[0]
        dd = H_nat[1] + 1j * iH[1]
        ud = H_nat[2] + 1j * (H_nat[3] + iH[2])
        partner = _partners(pi, pj, R, int(d["atomnum"]), path)
    elif spin == 1:
        uu, dd = H_nat[0].astype(np.complex128), H_nat[1].astype(np.complex128)
    Zi, Zj = Z[pi], Z[pj]
    for zi, zj in sorted({(int(a), int(b)) for a, b in zip(Zi, Zj)}):
        sel = np.flatnonzero((Zi == zi) & (Zj == zj))
        p_i, s_i = cv.atom_permutation("openmx", shells_by_z[zi])
        p_j, s_j = cv.atom_permutation("openmx", shells_by_z[zj])
        a, b = len(p_i), len(p_j)
        sgn = (s_i[:, None] * s_j[None, :]).reshape(1, -1)  # new[a, b] = s_a s_b old[p_a, p_b]
        idx = _gather_index(a, b, ptr[sel], p_i, p_j)  # (G, a*b) indices into the native arrays
        S[ptr[sel][:, None] + np.arange(a * b)[None, :]] = OLP[idx] * sgn
        if not spinful:
            H[ptr[sel][:, None] + np.arange(a * b)[None, :]] = H_nat[0][idx] * sgn
            continue
        blk = np.zeros((len(sel), 2 * a, 2 * b), dtype=np.complex128)
        blk[:, :a, :b] = (uu[idx] * sgn).reshape(-1, a, b)
        blk[:, a:, b:] = (dd[idx] * sgn).reshape(-1, a, b)
        if spin == 3:
            blk[:, :a, b:] = (ud[idx] * sgn).reshape(-1, a, b)
            # ↓↑(i, j, R) = ↑↓(j, i, −R)ᴴ: the partner's native block has shape (b, a)
            pidx = _gather_index(a, b, ptr[partner[sel]], p_i, p_j, transpose=True)
            blk[:, a:, :b] = (np.conj(ud[pidx]) * sgn).reshape(-1, a, b)
        H[out_ptr[sel][:, None] + np.arange(4 * a * b)[None, :]] = blk.reshape(len(sel), -1)
    H *= cv.HARTREE_EV
    return H, S


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.as_posix())]


def _find_scfout(folder: Path) -> Path | None:
    """The ``.scfout`` of one run folder: ``openmx.scfout`` or the only ``*.scfout``; None when there is none."""
    preferred = folder / "openmx.scfout"
    if preferred.is_file():
        return preferred
    found = sorted(folder.glob("*.scfout"))
    if len(found) > 1:
        raise InputError(folder, f"several .scfout files ({', '.join(p.name for p in found)}); keep one per run folder")
    return found[0] if found else None


def scfout_spin(path) -> int | None:
    """``SpinP_switch`` of a ``.scfout`` from its first 8 bytes (atomnum, 4·version + SpinP_switch), either byte
    order, as :func:`hambench._core.read_scfout` reads them; None when the file is unreadable or not plausible."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    if len(head) < 8:
        return None
    for order in ("<", ">"):
        atomnum, field = struct.unpack(order + "ii", head)
        if atomnum >= 1 and 0 <= field < 4 * (_SCFOUT_VERSION + 1):
            return field % 4
    return None


class ScfoutSource(FileTreeSource):
    """Raw OpenMX 3.9 runs (.scfout + embedded input or .out): spinless, collinear and SOC."""

    name = "openmx/scfout"
    doc = "raw OpenMX 3.9 runs (.scfout + input): spinless, collinear, non-collinear/SOC"
    input_help = "a run folder (openmx.scfout + openmx.out), a folder of run folders, or a .scfout file"
    none_found = "no .scfout file found (expected openmx.scfout in a run folder or in its sub-folders)"

    @dataclasses.dataclass(frozen=True)
    class Options(FileTreeSource.Options):
        collinear: str = dataclasses.field(default="spinor", metadata={
            "help": "collinear spin-polarised runs (SpinP_switch 1): store as a block-diagonal spinor, or reject them",
            "choices": ("spinor", "reject")})

    def find(self, root: Path) -> list[Path]:
        if root.is_file():
            return [root]
        if _find_scfout(root) is not None:
            return [root]
        runs = {p.parent for p in find_files(root, lambda n: n.endswith(".scfout"))}
        return [r for r in sorted(runs, key=_natural_key) if _find_scfout(r) is not None]

    def _scfout_of(self, item) -> Path:
        p = Path(item)
        return p if p.is_file() else _find_scfout(p)

    def _root_id(self, item: Path) -> str:
        return item.stem if item.is_file() else super()._root_id(item)

    def read_run(self, path: Path, struct_id: str):
        return scfout_to_structure(self._scfout_of(path), struct_id=struct_id, collinear=self.opts.collinear)

    def spinful_of(self, item) -> bool | None:
        """SpinP_switch 1 or 3, from the first 8 bytes of the ``.scfout``."""
        try:
            path = self._scfout_of(item)
        except InputError:
            return None
        spin = scfout_spin(path) if path is not None else None
        return None if spin not in (0, 1, 3) else spin != 0

    def _attrs_dict(self) -> dict:
        """Store metadata, read from the first run (header and input only)."""
        path = self._scfout_of(self._items[0])
        d = read_scfout(path, "header")
        meta = _run_metadata(path, d)
        kw = meta["keywords"]
        spin = int(d["SpinP_switch"])
        soc = kw.get("scf.spinorbit.coupling", "off").lower() == "on"
        return {
            "kind": "crystal",
            "spinful": spin in (1, 3),
            "dft": {
                "code": "OpenMX",
                "version": meta["out"].get("version", "3.9"),
                "scfout_version": int(d["version"]),
                "functional": kw.get("scf.xctype", "unknown"),
                "basis": {v["element"]: v["pao"] for v in meta["species"].values()},
                "pseudopotential": {v["element"]: v["vps"] for v in meta["species"].values()},
                "spin": {0: "off", 1: "collinear (stored as block-diagonal spinor)",
                         3: "non-collinear" + (" + SOC" if soc else "")}[spin],
                "electronic_temperature_K": float(d["E_Temp"]),
            },
            "constants": "CODATA2018",
        }

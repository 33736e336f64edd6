"""QH9's SQLite databases (``qh9/stable``, ``qh9/dynamic``) → molecules, with QH9's own splits.

Schema (research/qh9.md §1.4, AIRS ``OpenDFT/QHBench/QH9``), one table ``data``:

* ``QH9Stable.db``: ``id INTEGER PRIMARY KEY, N INTEGER, Z BLOB, pos BLOB, Ham BLOB`` — Z int32 (N,), pos float64
  (N, 3) in **Å**, Ham float64 (n_ao, n_ao) C-order.
* ``QH9Dynamic_{100k,300k}.db``: ``id, geo_id, N, Z, pos, ekin, epot, etot, time, Ham, converged`` — id is an
  **8-byte int64 blob**, pos in **Bohr**, 100 consecutive frames per molecule; etot in Hartree.

Ham is the Kohn–Sham Fock matrix in Hartree in **PySCF's** def2-SVP AO order (QH9's dataset classes permute p to
(y, z, x) only when handing it to the model, i.e. to the hambench order; the database itself is PySCF order).
The overlap is not stored: it is recomputed with PySCF (def2-SVP, spherical AOs).

Splits (exact reimplementations of QH9's ``datasets.py``; indices are row positions in ``select * from data``):
stable ``qh9-stable-id`` (``RandomState(43).permutation``, 80/10/10 by ``int``) and ``qh9-stable-ood`` (N ≤ 20 /
21–22 / ≥ 23); dynamic ``qh9-dynamic-<v>-geo`` (per molecule of 100 frames, ``RandomState(last row
index).permutation(100)``, 80/10/10) and ``qh9-dynamic-<v>-mol`` (``random.seed(43); random.shuffle`` of the
molecule ids, 80/10/10 of the molecules).

QH9 is licensed CC BY-NC-SA 4.0: hambench never ships it; give the downloaded file with ``--input``.
"""

from __future__ import annotations

import dataclasses
import random
import re
import sqlite3
from pathlib import Path

import numpy as np

from hambench.basis._conventions import BOHR_ANGSTROM
from hambench.store._meta import StoreAttrs
from hambench.errors import InputError
from . import Source
from .pyscf_qm9 import molecule_structure

__all__ = [
    "QH9Source",
    "DOWNLOAD",
    "QH9_SHELLS",
    "stable_random_split",
    "stable_size_ood_split",
    "dynamic_geometry_split",
    "dynamic_mol_split",
    "split_labels",
    "NUM_MOLECULES",
]

DOWNLOAD = (
    "QH9 (CC BY-NC-SA 4.0, not bundled) — download QH9Stable.db / QH9Dynamic_100k.db / QH9Dynamic_300k.db from "
    "the QH9 Google Drive folder https://drive.google.com/drive/folders/13pPgBh3XvN2FCpowfnA8TT4VJ0OTceNM "
    "(zips: https://drive.google.com/drive/u/0/folders/1LXTC8uaOQzmb76FsuGfwSocAbK5Hshfj) or Zenodo "
    "https://zenodo.org/records/8274793 (Yu et al., NeurIPS 2023 D&B, github.com/divelab/AIRS "
    "OpenDFT/QHBench/QH9), then pass the .db file with --input"
)
#: def2-SVP shells (l per shell, PySCF order) of QH9's elements
QH9_SHELLS = {1: [0, 0, 1], 6: [0, 0, 0, 1, 1, 2], 7: [0, 0, 0, 1, 1, 2], 8: [0, 0, 0, 1, 1, 2], 9: [0, 0, 0, 1, 1, 2]}
_SYMBOLS = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}
#: molecules in QH9-dynamic (QH9's datasets.py fixes these)
NUM_MOLECULES = {"100k": 999, "300k": 2998}
FRAMES_PER_MOLECULE = 100
TRAIN, VAL, TEST = 0, 1, 2
LABELS = ("train", "val", "test")
#: rows per work item: the driver groups up to 64 items per part, so a part holds <= 512 molecules (~250 MB)
ROWS_PER_ITEM = 8


# --- splits (return a label per row: 0 train, 1 val, 2 test) ---------------------------------------------
def stable_random_split(n: int, seed: int = 43) -> np.ndarray:
    """QH9-stable-id: ``RandomState(43).permutation(n)``; first int(0.8n) train, next int(0.1n) val, rest test."""
    n_train, n_val = int(n * 0.8), int(n * 0.1)
    perm = np.random.RandomState(seed=seed).permutation(n)
    lab = np.full(n, TEST, np.int8)
    lab[perm[:n_train]] = TRAIN
    lab[perm[n_train : n_train + n_val]] = VAL
    return lab


def stable_size_ood_split(natoms) -> np.ndarray:
    """QH9-stable-ood: train N ≤ 20, val 21 ≤ N ≤ 22, test N ≥ 23 atoms."""
    natoms = np.asarray(natoms)
    return np.where(natoms <= 20, TRAIN, np.where(natoms <= 22, VAL, TEST)).astype(np.int8)


def dynamic_geometry_split(n_rows: int, frames: int = FRAMES_PER_MOLECULE) -> np.ndarray:
    """QH9-dynamic-geo: per block of ``frames`` rows ending at row ``ind``, ``RandomState(ind).permutation``;
    80 % / 10 % / 10 % of the frames of every molecule. Rows after the last full block get no label (-1)."""
    lab = np.full(n_rows, -1, np.int8)
    n_train, n_val = int(frames * 0.8), int(frames * 0.1)
    for start in range(0, n_rows - frames + 1, frames):
        p = np.random.RandomState(seed=start + frames - 1).permutation(frames)
        lab[start + p[:n_train]] = TRAIN
        lab[start + p[n_train : n_train + n_val]] = VAL
        lab[start + p[n_train + n_val :]] = TEST
    return lab


def dynamic_mol_split(n_rows: int, num_mol: int, frames: int = FRAMES_PER_MOLECULE) -> np.ndarray:
    """QH9-dynamic-mol: molecule of row r is r // frames; Python ``random.seed(43); random.shuffle`` of
    ``range(num_mol)``; first int(0.8 m) molecules train, next int(0.1 m) val, rest test (all their frames)."""
    ids = list(range(num_mol))
    rng = random.Random()
    rng.seed(43)  # same stream as random.seed(43); random.shuffle(...) without touching the global state
    rng.shuffle(ids)
    n_train, n_val = int(num_mol * 0.8), int(num_mol * 0.1)
    mol_lab = np.full(num_mol, TEST, np.int8)
    mol_lab[ids[:n_train]] = TRAIN
    mol_lab[ids[n_train : n_train + n_val]] = VAL
    mol = np.arange(n_rows) // frames
    lab = np.full(n_rows, -1, np.int8)
    ok = mol < num_mol
    lab[ok] = mol_lab[mol[ok]]
    return lab


def split_labels(kind: str, n_rows: int, version: str | None = None, natoms=None) -> dict[str, np.ndarray]:
    """All QH9 split label arrays of a database (``kind`` 'stable' or 'dynamic'), keyed by hambench split name."""
    if kind == "stable":
        out = {"qh9-stable-id": stable_random_split(n_rows)}
        if natoms is not None:
            out["qh9-stable-ood"] = stable_size_ood_split(natoms)
        return out
    num_mol = NUM_MOLECULES.get(version or "", n_rows // FRAMES_PER_MOLECULE)
    return {
        f"qh9-dynamic-{version}-geo": dynamic_geometry_split(n_rows),
        f"qh9-dynamic-{version}-mol": dynamic_mol_split(n_rows, num_mol),
    }


# --- the source ------------------------------------------------------------------------------------------
def _connect(path: Path) -> sqlite3.Connection:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        con.execute("select 1 from data limit 1").fetchall()
        return con
    except sqlite3.Error as e:
        raise InputError(path, f"not a QH9 SQLite database with a 'data' table ({e})") from None


def _columns(con) -> list[str]:
    return [r[1] for r in con.execute("pragma table_info(data)")]


STABLE_COLUMNS = ["id", "N", "Z", "pos", "Ham"]
DYNAMIC_COLUMNS = ["id", "geo_id", "N", "Z", "pos", "ekin", "epot", "etot", "time", "Ham", "converged"]


class QH9Source(Source):
    """QH9-stable / QH9-dynamic SQLite databases (Hamiltonians in Hartree, PySCF order) with QH9's splits."""

    doc = "QH9 SQLite databases (QH9Stable.db, QH9Dynamic_{100k,300k}.db; download, CC BY-NC-SA) with QH9's splits"

    @dataclasses.dataclass(frozen=True)
    class Options(Source.Options):
        limit: int | None = dataclasses.field(default=None, metadata={
            "help": "only the first N rows of the database (QH9's splits stay those of the whole file).", "min": 1})
        version: str | None = dataclasses.field(default=None, metadata={
            "help": "QH9-dynamic database version (default: from the file name).", "choices": tuple(NUM_MOLECULES),
            "flag": "--dataset-version"})
        rows_per_item: int = dataclasses.field(default=ROWS_PER_ITEM, metadata={
            "help": f"database rows per work item (default {ROWS_PER_ITEM}).", "min": 1})

    def __init__(self, input_path=None, source_name=None, **options):
        super().__init__(input_path, **options)
        self.source_name = source_name or "qh9/stable"
        if self.source_name not in ("qh9/stable", "qh9/dynamic"):
            raise InputError(None, f"QH9Source serves qh9/stable and qh9/dynamic, not {self.source_name!r}")
        self.kind = self.source_name.split("/")[1]
        if input_path is None:
            raise InputError(None, f"{self.source_name} needs --input FILE.db. {DOWNLOAD}")
        path = Path(input_path)
        if path.is_dir():
            names = ["QH9Stable.db"] if self.kind == "stable" else ["QH9Dynamic_300k.db", "QH9Dynamic_100k.db", "QH9Dynamic.db"]
            found = [path / n for n in names if (path / n).is_file()] + [path / "raw" / n for n in names if (path / "raw" / n).is_file()]
            if not found:
                raise InputError(path, f"no {' or '.join(names)} in this folder. {DOWNLOAD}")
            path = found[0]
        if not path.is_file():
            raise InputError(path, f"no such file. {DOWNLOAD}")
        self.path = path
        self.version = None
        if self.kind == "dynamic":
            v = self.opts.version
            if v is None:
                m = re.search(r"(100k|300k)", path.name)
                v = m.group(1) if m else None
            if v not in NUM_MOLECULES:
                raise InputError(path, "cannot tell the QH9-dynamic version (100k or 300k): name the file "
                                       "QH9Dynamic_100k.db / QH9Dynamic_300k.db or pass version")
            self.version = v
        con = _connect(path)
        try:
            cols = _columns(con)
            expect = STABLE_COLUMNS if self.kind == "stable" else DYNAMIC_COLUMNS
            if cols != expect:
                raise InputError(path, f"table 'data' has columns {cols}, QH9 {self.kind} has {expect}")
            # rowid order == `select * from data` order (no index is used by a full scan of a rowid table)
            rowids = np.array([r[0] for r in con.execute("select rowid from data order by rowid")], np.int64)
            natoms = (np.array([r[0] for r in con.execute("select N from data order by rowid")], np.int64)
                      if self.kind == "stable" else None)
        finally:
            con.close()
        if len(rowids) == 0:
            raise InputError(path, "the table 'data' is empty")
        self.n_rows = len(rowids)
        limit, step = self.opts.limit, int(self.opts.rows_per_item)
        if (limit is not None and int(limit) < 1) or step < 1:
            raise InputError(None, f"{self.source_name}: limit and rows_per_item must be >= 1, got {limit} and {step}")
        n_use = self.n_rows if limit is None else min(int(limit), self.n_rows)
        self._items = [
            (str(path), start, int(rowids[start]), int(rowids[min(start + step, n_use) - 1]))
            for start in range(0, n_use, step)
        ]
        self._labels = split_labels(self.kind, self.n_rows, self.version, natoms)

    def items(self) -> list:
        """(db path, first row position, first rowid, last rowid) per range of rows."""
        return list(self._items)

    def read(self, item) -> list:
        path, start, lo, hi = item
        con = _connect(Path(path))
        out = []
        try:
            cur = con.execute("select * from data where rowid between ? and ? order by rowid", (lo, hi))
            for k, row in enumerate(cur):
                out.append(self._row_structure(start + k, row, molecule_structure))
        finally:
            con.close()
        return out

    def _row_structure(self, position: int, row, molecule_structure):
        path = self.path
        if self.kind == "stable":
            qm9_id, n, zb, posb, hamb = row
            sid = f"qh9stable_{int(qm9_id):06d}"
            where = f"{path} (row {position}, id {qm9_id})"
            energy = float("nan")
        else:
            idb, geo_id, n, zb, posb, ekin, epot, etot, t, hamb, converged = row
            if isinstance(idb, (bytes, bytearray, memoryview)):
                if len(idb) != 8:
                    raise InputError(f"{path} (row {position})", f"id blob has {len(idb)} bytes, expected an 8-byte int64")
                qm9_id = int(np.frombuffer(idb, "<i8")[0])
            else:
                qm9_id = int(idb)
            sid = f"qh9dyn{self.version}_{qm9_id:06d}_{int(geo_id):03d}"
            where = f"{path} (row {position}, id {qm9_id}, geo {geo_id})"
            energy = float(etot) if etot is not None else float("nan")
        n = int(n)
        Z = self._blob(zb, "<i4", n, "Z", where)
        pos = self._blob(posb, "<f8", 3 * n, "pos", where).reshape(n, 3)
        if self.kind == "dynamic":
            pos = pos * BOHR_ANGSTROM
        bad = sorted(set(int(z) for z in Z) - set(QH9_SHELLS))
        if bad:
            raise InputError(where, f"element(s) Z={bad} outside QH9's H, C, N, O, F (no def2-SVP shells known)")
        shells = [QH9_SHELLS[int(z)] for z in Z]
        nao = sum(5 if z == 1 else 14 for z in Z)
        ham = self._blob(hamb, "<f8", nao * nao, "Ham", where).reshape(nao, nao)
        S = _overlap(Z, pos, where)
        splits = {name: LABELS[lab[position]] for name, lab in self._labels.items() if lab[position] >= 0}
        return molecule_structure(
            sid, Z, pos, ham, S, shells, energy_ha=energy, nelectron=float(Z.sum()), code="pyscf",
            sources=[(str(path), "")], splits=splits,
        )

    @staticmethod
    def _blob(b, dtype: str, count: int, name: str, where) -> np.ndarray:
        if not isinstance(b, (bytes, bytearray, memoryview)):
            raise InputError(where, f"column {name} is {type(b).__name__}, expected a blob")
        size = np.dtype(dtype).itemsize
        if len(b) != count * size:
            raise InputError(where, f"{name} blob has {len(b)} bytes, expected {count} x {size} = {count * size}")
        return np.frombuffer(b, dtype).astype(np.float64 if dtype.endswith("f8") else np.int64)

    def attrs(self) -> StoreAttrs:
        pyscf_version = "2.3.0" if self.version == "100k" else "2.2.1"
        functional = "b3lyp (VWN-RPA, PySCF >= 2.3)" if self.version == "100k" else "b3lyp (VWN5, = b3lyp5 today)"
        return StoreAttrs.from_dict({
            "kind": "molecule",
            "spinful": False,
            "dft": {
                "code": "PySCF",
                "version": pyscf_version,
                "method": "RKS",
                "functional": functional,
                "basis": "def2-svp",
                "grid_level": 3,
                "conv_tol": 1e-9,
                "target": "mf.get_fock() after convergence",
                "dataset": f"QH9-{self.kind}" + (f"-{self.version}" if self.version else ""),
                "license": "CC BY-NC-SA 4.0 (QH9)",
                "overlap": "recomputed with PySCF (def2-svp, spherical)",
            },
            "constants": "CODATA2018",
            "splits": sorted(self._labels),
        })


def _overlap(Z, pos_ang, where) -> np.ndarray:
    from pyscf import gto

    try:
        mol = gto.M(atom=[(_SYMBOLS[int(z)], tuple(p)) for z, p in zip(Z, pos_ang)], basis="def2-svp",
                    unit="Angstrom", spin=int(sum(Z)) % 2, verbose=0)
    except (RuntimeError, KeyError, ValueError) as e:
        raise InputError(where, f"PySCF cannot build the molecule ({e})") from None
    return mol.intor("int1e_ovlp")

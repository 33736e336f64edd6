"""Molecular sources run with PySCF: QM9 geometries labelled with the QH9 protocol, and existing PySCF outputs.

``pyscf/qm9`` (:class:`QM9Source`)
    QM9 equilibrium geometries (Å, from the ``qm9pack`` package's CSVs, read without importing it) labelled with
    PySCF RKS, ``xc='b3lyp5'`` (what PySCF 2.2.1's ``'b3lyp'`` meant for QH9-stable), def2-SVP spherical AOs,
    grid level 3, ``conv_tol`` 1e-9, PySCF defaults otherwise. The target is ``mf.get_fock()`` after
    convergence (Fock of the final density), as QH9 stores it (FACTS.md §5). Each molecule's raw result is
    cached as one ``.npz`` under ``raw_dir`` (written atomically); a converged cached result of the same
    protocol and geometry is never recomputed.
``pyscf/outputs`` (:class:`PySCFOutputsSource`)
    A folder of PySCF chkfiles (``mf.chkfile``) or of this module's raw ``.npz`` files. When a chkfile holds no
    Fock matrix, it is rebuilt as F = S C ε Cᵀ S from the stored MOs (exact for a complete MO set).

A molecule becomes a :class:`~hambench.store._structure.Structure` with every ordered atom pair (i, j, R = 0),
self pairs included, row-major (i, then j); blocks of the full Fock (eV) and overlap in hambench order.
"""

from __future__ import annotations

import dataclasses

import importlib.util
import json
import re
import time

from pathlib import Path

import numpy as np

from hambench.basis._conventions import HARTREE_EV, atom_permutation, symbol_to_z
from hambench.atomic import atomic_path
from hambench.store._meta import StoreAttrs
from hambench.errors import ExcludedItem, InputError
from hambench.basis._pyscf import DEFAULT_PROTOCOL, build_mol, make_rks, protocol_of, shells_of_atoms
from hambench.basis._pyscf import protocol_key as _protocol_key
from hambench.scoring._dense import orbital_offsets
from hambench.store._structure import Structure, file_sha256
from hambench.basis._layout import layout_of
from . import Source

__all__ = [
    "QM9Source",
    "PySCFOutputsSource",
    "SCFNotConverged",
    "DEFAULT_PROTOCOL",
    "qm9_data_dir",
    "load_qm9_table",
    "select_molecules",
    "shells_of_atoms",
    "run_pyscf",
    "molecule_structure",
    "raw_file_name",
    "cached_result",
    "raw_to_structure",
]

#: version of the raw .npz layout written by :func:`run_pyscf`
RAW_FORMAT = 1
QM9_COLUMNS = ["Index", "SMILES", "N_atoms", "Stoichiometry", "Elements", "XYZ_Ang"]
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_SYMBOL = re.compile(r"[A-Z][a-z]?")


class SCFNotConverged(ExcludedItem):
    """The SCF of one molecule did not converge: the driver reports it and leaves it out of the store."""


# --- QM9 geometries --------------------------------------------------------------------------------------
def qm9_data_dir() -> Path:
    """Folder of the ``qm9pack`` CSVs, found without importing ``qm9pack`` (its import needs pkg_resources)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("qm9pack", "the qm9pack package (QM9 geometries) is not installed: pip install qm9pack")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def load_qm9_table(data_dir=None):
    """The QM9 molecules of ``qm9pack`` (130,831 rows, QM9 order) as a pandas DataFrame.

    Columns: Index (QM9/GDB-9 number, 1-based), SMILES, N_atoms, Elements (list of symbols),
    XYZ_Ang (JSON list of [x, y, z] in Å), n_heavy.
    """
    import pandas as pd

    folder = Path(data_dir) if data_dir is not None else qm9_data_dir()
    files = sorted(folder.glob("qm9_part*.csv"))
    if not files:
        raise InputError(folder, "no qm9_part*.csv files (the qm9pack installation is incomplete)")
    try:
        df = pd.concat([pd.read_csv(f, usecols=QM9_COLUMNS) for f in files], ignore_index=True)
    except (ValueError, OSError) as e:
        raise InputError(folder, f"cannot read the QM9 CSVs: {e}") from None
    # Stoichiometry is "[nH,nC,nN,nO,nF]"
    n_h = df["Stoichiometry"].map(lambda s: int(s.strip("[]").split(",")[0]))
    df["n_heavy"] = df["N_atoms"] - n_h
    return df


def select_molecules(table, limit=None, ids=None, max_atoms=None, max_heavy=None, seed=None) -> list[tuple]:
    """Choose QM9 molecules; returns picklable items ``(index, smiles, symbols, xyz_ang)``.

    ``ids`` (QM9 indices, 1-based GDB-9 numbers; a list or "1,2,3") selects those, in the given order; otherwise
    the filters ``max_atoms`` and ``max_heavy`` apply, then ``limit`` keeps the first molecules in QM9 order, or
    a random subset (``default_rng(seed).choice``, sorted back into QM9 order) when ``seed`` is not None.
    """
    df = table
    if ids is not None and ids != "":
        if isinstance(ids, str):
            try:
                ids = [int(x) for x in ids.replace(" ", "").split(",") if x]
            except ValueError:
                raise InputError("--ids", f"not a comma-separated list of QM9 indices: {ids!r}") from None
        pos = {int(v): k for k, v in enumerate(df["Index"].to_numpy())}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise InputError("--ids", f"QM9 indices not in qm9pack's 130,831 molecules: {missing[:10]}")
        rows = df.iloc[[pos[i] for i in ids]]
    else:
        mask = np.ones(len(df), bool)
        if max_atoms is not None:
            mask &= df["N_atoms"].to_numpy() <= int(max_atoms)
        if max_heavy is not None:
            mask &= df["n_heavy"].to_numpy() <= int(max_heavy)
        rows = df[mask]
    if limit is not None and int(limit) < len(rows):
        if seed is not None and not (ids is not None and ids != ""):
            pick = np.sort(np.random.default_rng(int(seed)).choice(len(rows), size=int(limit), replace=False))
            rows = rows.iloc[pick]
        else:
            rows = rows.iloc[: int(limit)]
    out = []
    for r in rows.itertuples(index=False):
        symbols = tuple(_SYMBOL.findall(r.Elements))
        xyz = np.array([float(c) for c in _NUMBER.findall(r.XYZ_Ang)])  # "[[0.5,0.,1.],...]": not JSON
        if len(symbols) != int(r.N_atoms) or xyz.size != 3 * len(symbols):
            raise InputError(f"QM9 {r.Index}", "cannot parse the elements/coordinates of this qm9pack row")
        xyz = tuple(map(tuple, xyz.reshape(-1, 3).tolist()))
        out.append((int(r.Index), str(r.SMILES), symbols, xyz))
    return out


# --- PySCF -----------------------------------------------------------------------------------------------
def raw_file_name(index: int, protocol: dict) -> str:
    """Cache file name of QM9 molecule ``index`` under ``protocol``: ``dsgdb9nsd_000001_<hash>.npz``."""
    return f"dsgdb9nsd_{int(index):06d}_{_protocol_key(protocol)}.npz"


def run_pyscf(symbols, xyz_ang, protocol: dict, threads: int = 1, where=None) -> dict:
    """One RKS calculation; returns the raw result (Hartree, PySCF AO order) as a dict of arrays/scalars."""
    import pyscf
    from pyscf import lib

    mol = build_mol(symbols, xyz_ang, protocol, where)
    old_threads = lib.num_threads()
    lib.num_threads(int(threads))
    try:
        t0 = time.perf_counter()
        mf = make_rks(mol, protocol)
        e_tot = mf.kernel()
        fock = mf.get_fock()  # F[D_final], what QH9 stores
        wall = time.perf_counter() - t0
    finally:
        lib.num_threads(old_threads)
    return {
        "format": np.int64(RAW_FORMAT),
        "symbols": np.array(symbols, dtype="U3"),
        "xyz_ang": np.asarray(xyz_ang, dtype=np.float64),
        "fock": np.asarray(fock, dtype=np.float64),
        "overlap": np.asarray(mf.get_ovlp(), dtype=np.float64),
        "mo_energy": np.asarray(mf.mo_energy, dtype=np.float64),
        "mo_coeff": np.asarray(mf.mo_coeff, dtype=np.float64),
        "mo_occ": np.asarray(mf.mo_occ, dtype=np.float64),
        "e_tot": np.float64(e_tot),
        "converged": np.bool_(mf.converged),
        "cycles": np.int64(getattr(mf, "cycles", -1)),
        "nelectron": np.int64(mol.nelectron),
        "pyscf_version": np.array(pyscf.__version__),
        "wall_s": np.float64(wall),
        "threads": np.int64(threads),
        "protocol": np.array(json.dumps(protocol, sort_keys=True)),
    }


def _write_npz_atomic(path: Path, arrays: dict, compressed: bool = True) -> None:
    """Write a raw-result cache file atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)


def _load_raw(path: Path) -> dict | None:
    """A cached raw result, or None when the file is unreadable (it will be recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None



def cached_result(path: Path, symbols, xyz_ang, protocol: dict, threads: int, where, extra: dict | None = None
                  ) -> tuple[dict, bool]:
    """The raw result of one geometry: the converged cache file ``path`` when it holds the same protocol (less
    ``max_cycle``), symbols and geometry (to 1e-10 Å), else :func:`run_pyscf` written there atomically with the
    ``extra`` arrays. Returns (raw, computed)."""
    want = {k: v for k, v in protocol.items() if k != "max_cycle"}
    if path.exists():
        raw = _load_raw(path)
        if raw is not None and bool(raw["converged"]):
            got = json.loads(str(raw["protocol"]))
            got.pop("max_cycle", None)
            same_geom = raw["xyz_ang"].shape == np.shape(xyz_ang) and np.allclose(raw["xyz_ang"], xyz_ang, atol=1e-10)
            if got == want and same_geom and list(raw["symbols"]) == list(symbols):
                return raw, False
    raw = run_pyscf(symbols, xyz_ang, protocol, threads=threads, where=where)
    raw.update(extra or {})
    _write_npz_atomic(path, raw)
    return raw, True


def molecule_structure(sid: str, Z, pos_ang, fock_ha, overlap, shells, energy_ha=float("nan"),
                       nelectron=float("nan"), code: str = "pyscf", sources=(), splits=None) -> Structure:
    """A molecule :class:`Structure` from full matrices in ``code``'s AO order (Hartree).

    Edges are all ordered pairs (i, j, R = 0), self pairs included, row-major; blocks are converted to the
    hambench order and to eV (H) — the overlap is dimensionless.

    Parameters
    ----------
    Z : (N,) atomic numbers;  pos_ang : (N, 3) Å
    fock_ha, overlap : (n_ao, n_ao) in ``code`` order;  shells : per atom, l of each shell
    """
    Z = np.asarray(Z, dtype=np.int64)
    n = len(Z)
    species: dict[int, list[int]] = {}
    for z, sh in zip(Z, shells):
        if int(z) in species and species[int(z)] != list(sh):
            raise InputError(sid, f"atoms of element {int(z)} have different basis shells")
        species[int(z)] = list(sh)
    try:
        off = orbital_offsets(Z, layout_of(species)) if n else np.zeros(1, np.int64)
    except ValueError as e:  # an element without shells
        raise InputError(sid, str(e)) from None
    nao = int(off[-1])
    fock_ha = np.asarray(fock_ha, dtype=np.float64)
    if fock_ha.shape != (nao, nao) or (overlap is not None and np.shape(overlap) != (nao, nao)):
        raise InputError(sid, f"matrices have shape {fock_ha.shape}, the basis of the atoms has {nao} AOs")
    # one global permutation: new[a, b] = s_a s_b old[p_a, p_b] (same as conventions.to_hambench per block)
    perm, sign = [], []
    for sh, start in zip(shells, off[:-1]):
        p, s = atom_permutation(code, sh)
        perm.append(p + start)
        sign.append(s)
    perm = np.concatenate(perm)
    sign = np.concatenate(sign)
    ss = sign[:, None] * sign[None, :]
    H = fock_ha[np.ix_(perm, perm)] * ss * HARTREE_EV
    S = None if overlap is None else np.asarray(overlap, dtype=np.float64)[np.ix_(perm, perm)] * ss
    src, dst = np.divmod(np.arange(n * n), n)
    hb, sb = [], []
    for i, j in zip(src, dst):
        ri, rj = slice(off[i], off[i + 1]), slice(off[j], off[j + 1])
        hb.append(H[ri, rj].ravel())
        if S is not None:
            sb.append(S[ri, rj].ravel())
    return Structure(
        id=sid,
        Z=Z,
        pos=np.asarray(pos_ang, dtype=np.float64),
        cell=np.zeros((3, 3)),
        pbc=np.zeros(3, bool),
        src=src,
        dst=dst,
        shift=np.zeros((n * n, 3), np.int32),
        H=np.concatenate(hb),
        S=None if S is None else np.concatenate(sb),
        species=species,
        energy=float(energy_ha) * HARTREE_EV,
        nelectron=float(nelectron),
        sources=list(sources),
        splits=dict(splits or {}),
    )


def _nao_per_element(basis: str, symbol: str) -> int:
    """Spherical AO count of one element in ``basis`` (for cost estimates)."""
    try:
        from pyscf import gto

        nao = 0
        for shell in gto.basis.load(basis, symbol):
            l = shell[0]
            prims = shell[2:] if isinstance(shell[1], int) else shell[1:]  # kappa entry
            nao += (2 * l + 1) * (len(prims[0]) - 1)
        return nao
    except Exception:  # cost is only a hint
        return 5 if symbol in ("H", "He") else 14


# --- sources ---------------------------------------------------------------------------------------------
def _opt(text: str, default=None):
    """An Options field with its one-line CLI help."""
    return dataclasses.field(default=default, metadata={"help": text})


class QM9Source(Source):
    """QM9 molecules labelled with PySCF on this machine (QH9 protocol: RKS B3LYP5/def2-SVP, grid 3)."""

    name = "pyscf/qm9"
    doc = "QM9 molecules (qm9pack) labelled with PySCF, QH9 protocol (RKS b3lyp5/def2-SVP, grid 3); cached, resumable"

    @dataclasses.dataclass(frozen=True)
    class Options(Source.Options):
        limit: int | None = _opt("at most this many molecules")
        ids: str | None = _opt("comma-separated QM9 indices, e.g. 1,2,3")
        max_atoms: int | None = _opt("only molecules with at most this many atoms")
        max_heavy: int | None = _opt("only molecules with at most this many heavy atoms")
        sample: bool = _opt("draw --limit molecules at random (with --seed) instead of the first in QM9 order", False)
        max_cycle: int | None = _opt("maximum SCF cycles (default 50); unconverged molecules are excluded")
        threads: int | None = _opt("PySCF threads per worker (default 1)")
        xc: str | None = _opt("exchange-correlation functional (default b3lyp5)")
        basis: str | None = _opt("basis set (default def2-svp)")
        grid_level: int | None = _opt("DFT integration grid level, 0..9 (default 3)")
        conv_tol: float | None = _opt("SCF convergence threshold in Hartree (default 1e-9)")
        density_fit: bool = _opt("density fitting", False)
        raw_dir: Path | None = _opt("cache of raw DFT results, one .npz per molecule (resumable)")

    def __init__(self, input_path=None, source_name=None, **options):
        super().__init__(input_path, **options)
        self.source_name = source_name or self.name
        o = self.opts
        self.protocol = protocol_of(dataclasses.asdict(o))
        self.threads = int(o.threads or 1)
        self.raw_dir = Path(o.raw_dir) if o.raw_dir is not None else Path.cwd() / ".hambench_raw"
        if self.raw_dir.exists() and not self.raw_dir.is_dir():
            raise InputError(self.raw_dir, "--raw-dir exists and is not a folder")
        for k in ("limit", "max_atoms", "max_heavy"):
            v = getattr(o, k)
            if v is not None and int(v) < 1:
                raise InputError(f"--{k.replace('_', '-')}", f"must be a positive integer, got {v}")
        if self.protocol["grid_level"] < 0 or self.protocol["grid_level"] > 9:
            raise InputError("--grid-level", f"PySCF grid levels are 0..9, got {self.protocol['grid_level']}")
        if not self.protocol["conv_tol"] > 0:
            raise InputError("--conv-tol", f"must be positive, got {self.protocol['conv_tol']}")
        # an input file may hold the QM9 CSVs (a qm9pack data folder); default: the installed package
        data_dir = Path(input_path) if input_path is not None else None
        if data_dir is not None and not data_dir.is_dir():
            raise InputError(data_dir, "--input for pyscf/qm9 must be a folder with qm9_part*.csv (or leave it out)")
        self._items = select_molecules(
            load_qm9_table(data_dir),
            limit=o.limit,
            ids=o.ids,
            max_atoms=o.max_atoms,
            max_heavy=o.max_heavy,
            # --sample draws a random subset of --limit with --seed; otherwise the first molecules in QM9 order
            seed=o.seed if o.sample else None,
        )
        if not self._items:
            raise InputError("pyscf/qm9", "no QM9 molecule matches the selection options")
        self._nao = {}

    def items(self) -> list:
        return list(self._items)

    def _work(self, item) -> float:
        """n_ao³ of the molecule (the DFT time model's size)."""
        nao = 0
        for s in item[2]:
            if s not in self._nao:
                self._nao[s] = _nao_per_element(self.protocol["basis"], s)
            nao += self._nao[s]
        return float(nao) ** 3

    #: benchmarks/results/bench_pyscf_qm9.txt: B3LYP/def2-SVP, 1 PySCF thread, 2-core machine
    TIME_FIT = (0.00119, 2.07)

    def expected_seconds(self, item) -> float:
        """Expected DFT time of one molecule (0 when cached): t = 0.00119 s · n_ao^2.07, the benchmark's fit."""
        if self.raw_path(item).exists():
            return 0.0
        a, b = self.TIME_FIT
        return a * self._work(item) ** (b / 3)

    def raw_path(self, item) -> Path:
        return self.raw_dir / raw_file_name(item[0], self.protocol)

    def compute(self, item) -> tuple[dict, Path, bool]:
        """The raw result of one molecule, from the cache or computed; returns (raw, path, computed)."""
        index, smiles, symbols, xyz = item
        path = self.raw_path(item)
        raw, computed = cached_result(path, symbols, xyz, self.protocol, self.threads, f"QM9 {index} ({smiles})",
                                      {"qm9_index": np.int64(index), "smiles": np.array(smiles)})
        return raw, path, computed

    def read(self, item) -> list:
        index, smiles, symbols, xyz = item
        raw, path, _ = self.compute(item)
        if not bool(raw["converged"]):
            raise SCFNotConverged(
                path, f"SCF of QM9 {index} ({smiles}) did not converge in {self.protocol['max_cycle']} cycles"
            )
        return [raw_to_structure(raw, f"dsgdb9nsd_{index:06d}", path, self.protocol["basis"])]

    def attrs(self) -> StoreAttrs:
        import pyscf

        p = self.protocol
        return StoreAttrs.from_dict({
            "kind": "molecule",
            "spinful": False,
            "dft": {
                "code": "PySCF",
                "version": pyscf.__version__,
                "method": "RKS",
                "functional": p["xc"],
                "basis": p["basis"],
                "grid_level": p["grid_level"],
                "conv_tol": p["conv_tol"],
                "density_fit": p["density_fit"],
                "target": "mf.get_fock() after convergence (Fock of the final density)",
                "protocol": "QH9" if _protocol_key(p) == _protocol_key(DEFAULT_PROTOCOL) else "custom",
            },
            "geometry": "QM9 (qm9pack package, B3LYP/6-31G(2df,p) equilibrium geometries, Å)",
            "constants": "CODATA2018",
        })


def raw_to_structure(raw: dict, sid: str, path: Path, basis: str) -> Structure:
    """A :class:`Structure` from a raw result written by :func:`run_pyscf`."""
    protocol = dict(DEFAULT_PROTOCOL)
    protocol.update(json.loads(str(raw["protocol"])))
    symbols = [str(s) for s in raw["symbols"]]
    mol = build_mol(symbols, raw["xyz_ang"], protocol, where=path)
    return molecule_structure(
        sid,
        [symbol_to_z(s) for s in symbols],
        raw["xyz_ang"],
        raw["fock"],
        raw["overlap"],
        shells_of_atoms(mol),
        energy_ha=float(raw["e_tot"]),
        nelectron=float(raw["nelectron"]),
        sources=[(str(path), file_sha256(Path(path)))],
    )


class PySCFOutputsSource(Source):
    """A folder of PySCF chkfiles (or pyscf/qm9 raw .npz files) → molecules; Fock rebuilt as S C ε Cᵀ S if absent."""

    name = "pyscf/outputs"
    doc = "folder of PySCF chkfiles (RKS/RHF) or pyscf/qm9 raw .npz; Fock from the file or rebuilt as S C e C^T S"
    PATTERNS = ("*.chk", "*.h5", "*.npz")

    @dataclasses.dataclass(frozen=True)
    class Options(Source.Options):
        raw_dir: Path | None = _opt("unused here (the driver passes it to every pyscf/ source)")

    def __init__(self, input_path=None, source_name=None, **options):
        super().__init__(input_path, **options)
        if input_path is None:
            raise InputError(None, "pyscf/outputs needs --input DIR, a folder of PySCF chkfiles")
        p = Path(input_path)
        if not p.exists():
            raise InputError(p, "no such file or folder")
        files = [p] if p.is_file() else sorted({f for pat in self.PATTERNS for f in p.glob(pat) if f.is_file()})
        files = [f for f in files if not f.name.startswith(".")]
        if not files:
            raise InputError(p, "no PySCF chkfiles (*.chk, *.h5) or raw .npz files in this folder")
        self._files = [str(f) for f in files]
        self._versions: set[str] = set()

    def items(self) -> list:
        return list(self._files)

    def read(self, item) -> list:
        path = Path(item)
        if path.suffix == ".npz":
            raw = _load_raw(path)
            if raw is None or "fock" not in raw or "protocol" not in raw:
                raise InputError(path, "not a pyscf/qm9 raw result (.npz with fock, overlap, protocol)")
            if not bool(raw["converged"]):
                raise SCFNotConverged(path, "the stored SCF did not converge")
            return [raw_to_structure(raw, path.stem, path, "")]
        return [self._read_chk(path)]

    @staticmethod
    def _read_chk(path: Path) -> Structure:
        import h5py
        from pyscf import lib
        from pyscf.scf import chkfile

        try:
            mol = chkfile.load_mol(str(path))
            scf = lib.chkfile.load(str(path), "scf")
        except (OSError, KeyError, ValueError) as e:
            raise InputError(path, f"not a readable PySCF chkfile ({type(e).__name__}: {e})") from None
        if not scf or "mo_coeff" not in scf:
            raise InputError(path, "the chkfile has no 'scf' group with mo_coeff/mo_energy")
        C = np.asarray(scf["mo_coeff"], dtype=np.float64)
        eps = np.asarray(scf["mo_energy"], dtype=np.float64)
        if C.ndim != 2 or eps.ndim != 1:
            raise InputError(path, f"only restricted (RHF/RKS) results are supported; mo_coeff has shape {C.shape}")
        if mol.cart:
            raise InputError(path, "Cartesian AOs (mol.cart=True) are not supported; use spherical AOs")
        S = mol.intor("int1e_ovlp")
        fock = None
        with h5py.File(path, "r") as f:
            for key in ("scf/fock", "fock"):
                if key in f:
                    fock = np.asarray(f[key][()], dtype=np.float64)
                    break
        if fock is None:
            nao = mol.nao_nr()
            if C.shape != (nao, nao):
                raise InputError(
                    path, f"no Fock stored and only {C.shape[1]} of {nao} MOs: F = S C e C^T S needs a complete MO set"
                )
            SC = S @ C
            fock = (SC * eps[None, :]) @ SC.T
        return molecule_structure(
            path.stem,
            [symbol_to_z(mol.atom_pure_symbol(i)) for i in range(mol.natm)],
            mol.atom_coords(unit="Angstrom"),
            fock,
            S,
            shells_of_atoms(mol),
            energy_ha=float(scf.get("e_tot", float("nan"))),
            nelectron=float(mol.nelectron),
            sources=[(str(path), file_sha256(path))],
        )

    def attrs(self) -> StoreAttrs:
        import pyscf

        return StoreAttrs.from_dict({
            "kind": "molecule",
            "spinful": False,
            "dft": {"code": "PySCF", "version": f"outputs read with PySCF {pyscf.__version__}",
                    "functional": "as in the chkfiles", "basis": "as in the chkfiles"},
            "constants": "CODATA2018",
        })

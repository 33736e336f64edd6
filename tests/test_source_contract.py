"""The one source contract of ``hambench prepare`` (pipelines/__init__.py), checked on every registered source.

Like zarr's ``StoreTests``: one set of checks, run on a case per ``--source`` name (a source without a case fails
:func:`test_every_registered_source_has_a_case`). Inputs are the real runs in ../shared/realdata (read in place,
never copied), the shipped demo PySCF results, and tiny databases written here.

What each case covers: construction, ``Options`` (own frozen dataclass, help on every field, unknown and mistyped
options refused in one line), ``items()`` (deterministic, picklable), the pickled source, ``attrs()``
(``StoreAttrs``, round trip) and, where ``--input`` is required, its absence. ``read()`` + ``Structure.validate``
runs for every case except those that would run DFT here: ``pyscf/crystal`` (a periodic SCF, ~15 s and more) and
the six named DeepH sets (MoTe2 is not one of them: their ``read`` refuses it by design; deeph/folder reads it).
``pyscf/qm9`` reads the shipped demo cache (no DFT), ``pyscf/outputs`` one demo result file.
"""

from __future__ import annotations

import dataclasses
import pickle
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from hambench.store._meta import KINDS, StoreAttrs
from hambench.app.cli import _DRIVER_FIELDS, source_option_help
from hambench.errors import InputError
from hambench.pipelines import Source, get_source
from hambench.pipelines.registry import SOURCES, option_fields, source_class
from hambench.store._structure import Structure
from hambench.testing import require_realdata

DEMO = Path(__file__).resolve().parents[1] / "hambench" / "data" / "demo_qm9"
DEEPH_NAMED = [n for n in SOURCES if n.startswith("deeph/") and n != "deeph/folder"]


# --- inputs -----------------------------------------------------------------------------------------------
def _realdata(*parts: str) -> Callable:
    return lambda tmp: (require_realdata(*parts), {})


def _demo_molecules(n: int) -> list:
    from hambench.basis._conventions import symbol_to_z

    out = []
    for f in sorted(DEMO.glob("dsgdb9nsd_*.npz"))[:n]:
        r = np.load(f)
        out.append(([symbol_to_z(s) for s in r["symbols"]], r["xyz_ang"], r["fock"], float(r["e_tot"])))
    return out


def _qh9_stable(tmp: Path):
    """QH9Stable.db in QH9's schema (as tests/test_qh9.py writes it) with two demo molecules."""
    db = tmp / "QH9Stable.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE data (id INTEGER NOT NULL PRIMARY KEY, N INTEGER, Z BLOB, pos BLOB, Ham BLOB)")
    for k, (Z, xyz, F, _) in enumerate(_demo_molecules(2)):
        con.execute("INSERT INTO data VALUES (?, ?, ?, ?, ?)", (k, len(Z), np.asarray(Z, "<i4").tobytes(),
                                                               np.asarray(xyz, "<f8").tobytes(), F.tobytes()))
    con.commit()
    con.close()
    return db, {"rows_per_item": 1}


def _qh9_dynamic(tmp: Path):
    """QH9Dynamic_100k.db: two MD frames of one demo molecule (8-byte int64 ids, positions in Bohr)."""
    from hambench.basis._conventions import BOHR_ANGSTROM

    db = tmp / "QH9Dynamic_100k.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE data (id INTEGER NOT NULL, geo_id INTEGER NOT NULL, N INTEGER, Z BLOB, pos BLOB, "
                "ekin FLOAT, epot FLOAT, etot FLOAT, time FLOAT, Ham BLOB, converged INT)")
    ((Z, xyz, F, e),) = _demo_molecules(1)
    for g in range(2):
        con.execute("INSERT INTO data VALUES (?,?,?,?,?,?,?,?,?,?,?)", (
            np.int64(7).tobytes(), g, len(Z), np.asarray(Z, "<i4").tobytes(),
            (np.asarray(xyz, "<f8") / BOHR_ANGSTROM).tobytes(), 0.0, e, e, 1.0 * g, F.tobytes(), 1))
    con.commit()
    con.close()
    return db, {}


def _qm9(tmp: Path):
    """A QM9 data folder with the first three molecules of qm9pack's CSV; raw_dir: the demo cache (no DFT)."""
    from hambench.pipelines.pyscf_qm9 import qm9_data_dir

    folder = tmp / "qm9"
    folder.mkdir()
    with open(Path(qm9_data_dir()) / "qm9_part1.csv") as f, open(folder / "qm9_part1.csv", "w") as g:
        for _ in range(4):  # header + molecules 1, 2, 3 (one line each)
            g.write(f.readline())
    shutil.copytree(DEMO, tmp / "raw")
    return folder, {"limit": 2, "raw_dir": tmp / "raw"}


def _pyscf_outputs(tmp: Path):
    return next(DEMO.glob("dsgdb9nsd_000003_*.npz")), {}


def _crystal(tmp: Path):
    return None, {"system": "graphene", "count": 2, "basis": "gth-szv", "kmesh": "2x2x1", "raw_dir": tmp / "raw"}


def _conformers(tmp: Path):
    """H2 at LDA/STO-3G from an --xyz file: the geometry work and a conformer's SCF take milliseconds."""
    xyz = tmp / "h2.xyz"
    xyz.write_text("2\nH2\nH 0 0 0\nH 0 0 0.74\n")
    return None, {"xyz": xyz, "count": 2, "xc": "lda", "basis": "sto-3g", "raw_dir": tmp / "raw"}


@dataclass(frozen=True)
class Case:
    source: str
    make: Callable  # tmp folder -> (input path or None, options)
    reads: bool = True  # read() here costs no DFT
    needs_input: bool = True


CASES: dict[str, Case] = {
    "deeph/folder-legacy": Case("deeph/folder", _realdata("deeph_legacy_MoTe2")),
    "deeph/folder-new": Case("deeph/folder", _realdata("deeph_new_MoTe2")),
    **{n: Case(n, _realdata("deeph_new_MoTe2"), reads=False) for n in DEEPH_NAMED},
    "openmx/scfout": Case("openmx/scfout", _realdata("openmx_graphene_scfout")),
    "abacus/csr": Case("abacus/csr", _realdata("abacus_MoS2", "abacus_raw")),
    "siesta/hsx": Case("siesta/hsx", _realdata("siesta_Si", "siesta_raw")),
    "pyscf/qm9": Case("pyscf/qm9", _qm9, needs_input=False),
    "pyscf/outputs": Case("pyscf/outputs", _pyscf_outputs),
    "pyscf/crystal": Case("pyscf/crystal", _crystal, reads=False, needs_input=False),
    "pyscf/conformers": Case("pyscf/conformers", _conformers, needs_input=False),
    "qh9/stable": Case("qh9/stable", _qh9_stable),
    "qh9/dynamic": Case("qh9/dynamic", _qh9_dynamic),
    "synthetic/random": Case("synthetic/random", lambda tmp: (None, {"count": 3, "natoms": 4}), needs_input=False),
}
READS = [k for k, c in CASES.items() if c.reads]
NEEDS_INPUT = [k for k, c in CASES.items() if c.needs_input]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``built(case id) -> (case, input, options, source)``, each case made once per module."""
    cache: dict = {}

    def get(cid: str):
        if cid not in cache:
            case = CASES[cid]
            inp, opts = case.make(tmp_path_factory.mktemp(cid.replace("/", "_")))
            cache[cid] = (case, inp, opts, get_source(case.source, inp, **opts))
        return cache[cid]

    return get


def test_every_registered_source_has_a_case():
    assert sorted({c.source for c in CASES.values()}) == sorted(SOURCES)


def _one_line_input_error(call) -> str:
    with pytest.raises(InputError) as e:
        call()
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    return msg


def _wrong_value(f: dataclasses.Field):
    """A value of a type the field does not take (check_options reads the annotation as a string)."""
    types = {t.strip() for t in str(f.type).split("|")}
    if not types & {"str", "Path"}:
        return "not-a-number"
    if not types & {"float", "int"}:
        return 2.5
    return [1]


@pytest.mark.parametrize("cid", list(CASES))
class TestSourceContract:
    """The checks every source passes (the contract of pipelines/__init__.py)."""

    def test_options_is_its_own_frozen_dataclass(self, cid):
        cls = source_class(CASES[cid].source)
        assert "Options" in vars(cls), f"{cid} does not declare its Options"
        assert dataclasses.is_dataclass(cls.Options) and issubclass(cls.Options, Source.Options)
        assert cls.Options.__dataclass_params__.frozen
        opts = cls.Options()
        with pytest.raises(dataclasses.FrozenInstanceError):
            opts.seed = 1

    def test_every_option_has_help(self, cid):
        name = CASES[cid].source
        missing = [f.name for f in option_fields(name)
                   if f.name not in _DRIVER_FIELDS and not source_option_help(name, f).get("help")]
        assert not missing, f"{name}: options without help (field metadata or the CLI's fallback): {missing}"

    def test_unknown_option_is_one_line(self, cid, built):
        case, inp, opts, _ = built(cid)
        msg = _one_line_input_error(lambda: get_source(case.source, inp, **opts, no_such_option=1))
        assert case.source in msg and "no_such_option" in msg

    def test_mistyped_option_is_one_line(self, cid, built):
        case, inp, opts, _ = built(cid)
        fields = [f for f in option_fields(case.source) if f.name not in _DRIVER_FIELDS] or \
            [f for f in option_fields(case.source) if f.name == "seed"]
        f = fields[0]
        msg = _one_line_input_error(lambda: get_source(case.source, inp, **{**opts, f.name: _wrong_value(f)}))
        assert case.source in msg and f.name in msg

    def test_items_are_deterministic_and_picklable(self, cid, built):
        case, inp, opts, src = built(cid)
        items = src.items()
        assert items and items == get_source(case.source, inp, **opts).items()
        assert pickle.loads(pickle.dumps(items)) == items

    def test_source_pickles_for_workers(self, cid, built):
        _, _, _, src = built(cid)
        back = pickle.loads(pickle.dumps(src))
        assert back.items() == src.items() and back.opts == src.opts

    def test_attrs_is_store_attrs_and_round_trips(self, cid, built):
        _, _, _, src = built(cid)
        a = src.attrs()
        assert isinstance(a, StoreAttrs) and a.kind in KINDS
        d = a.to_dict()
        assert StoreAttrs.from_dict(d) == a and StoreAttrs.from_dict(d).to_dict() == d


@pytest.mark.parametrize("cid", READS)
def test_read_gives_valid_structures(cid, built):
    _, _, _, src = built(cid)
    out = src.read(src.items()[0])
    assert out and all(isinstance(s, Structure) for s in out)
    for s in out:
        s.validate()


@pytest.mark.parametrize("cid", NEEDS_INPUT)
def test_missing_input_is_one_line(cid, built):
    case, _, opts, _ = built(cid)
    msg = _one_line_input_error(lambda: get_source(case.source, None, **opts))
    assert "--input" in msg

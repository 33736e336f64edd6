"""pyscf/qm9 and pyscf/outputs: labels against direct PySCF calls, the raw cache, the demo data, bad input.

DFT here is kept to the two smallest QM9 molecules (H2O 24 AOs, NH3 29 AOs; ~1–3 s each on this machine).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pyscf = pytest.importorskip("pyscf")
from pyscf import dft, gto, lib  # noqa: E402

from hambench.basis._conventions import HARTREE_EV, from_hambench  # noqa: E402
from hambench.errors import ExcludedItem, InputError  # noqa: E402
from hambench.pipelines import get_source  # noqa: E402
from hambench.pipelines import pyscf_qm9 as pq  # noqa: E402
from hambench.testing import TOL  # noqa: E402

DEMO = Path(pq.__file__).resolve().parents[1] / "hambench" / "data" / "demo_qm9"
if not DEMO.is_dir():  # installed layout: hambench/data next to hambench/pipelines
    DEMO = Path(pq.__file__).resolve().parents[1] / "data" / "demo_qm9"

#: Fock agreement with an identical direct PySCF call (Ha): same algorithm, thread count may differ → ≪ 1e-8
TOL_FOCK_HA = TOL.pyscf_repeat
#: exact identities on float64 data (permutation round trips, unit factor)
TOL_EXACT = TOL.exact64


@pytest.fixture(scope="module")
def qm9_table():
    return pq.load_qm9_table()


def direct_pyscf(symbols, xyz, xc="b3lyp5", basis="def2-svp", level=3, conv_tol=1e-9):
    """The QH9 protocol written out by hand (independent of the source's code path)."""
    mol = gto.M(atom=[(s, p) for s, p in zip(symbols, xyz)], basis=basis, unit="Angstrom", verbose=0)
    mf = dft.RKS(mol)
    mf.xc, mf.grids.level, mf.conv_tol = xc, level, conv_tol
    mf.kernel()
    assert mf.converged
    return mol, mf, mf.get_fock()


def full_matrix_from_edges(s, which, mol):
    """Rebuild the n_ao x n_ao matrix in PySCF order from a Structure's edge blocks (via from_hambench)."""
    nao = mol.nao_nr()
    out = np.full((nao, nao), np.nan)
    aos = mol.aoslice_by_atom()[:, 2:4]
    shells = {int(z): sh for z, sh in s.species.items()}
    for e, (i, j) in enumerate(zip(s.src, s.dst)):
        b = s.block(e, which)
        b = from_hambench(b, "pyscf", shells[int(s.Z[i])], shells[int(s.Z[j])])
        out[aos[i, 0] : aos[i, 1], aos[j, 0] : aos[j, 1]] = b
    assert not np.isnan(out).any(), "some AO pair is covered by no edge"
    return out


# --- selection of molecules ------------------------------------------------------------------------------
def test_qm9_table_and_selection(qm9_table):
    df = qm9_table
    assert len(df) == 130831  # qm9pack ships QM9 minus the 3,054 molecules that failed its consistency check
    # heavy-atom histogram of QM9 (research/machine_facts.md §1: {1:3, 2:5, 3:9, 4:31, ...})
    counts = np.bincount(df["n_heavy"].to_numpy())
    assert list(counts[1:5]) == [3, 5, 9, 31]
    items = pq.select_molecules(df, limit=10, max_heavy=3)
    assert [it[0] for it in items] == list(range(1, 11))  # first 10 in QM9 order
    assert items[2][2] == ("O", "H", "H") and len(items[2][3]) == 3
    assert all(sum(1 for s in it[2] if s != "H") <= 3 for it in items)
    by_ids = pq.select_molecules(df, ids="3,1")
    assert [it[0] for it in by_ids] == [3, 1]
    small = pq.select_molecules(df, max_atoms=4)
    assert all(len(it[2]) <= 4 for it in small) and len(small) == int((df["N_atoms"] <= 4).sum())
    a = pq.select_molecules(df, limit=5, max_heavy=5, seed=7)
    b = pq.select_molecules(df, limit=5, max_heavy=5, seed=7)
    c = pq.select_molecules(df, limit=5, max_heavy=5, seed=8)
    assert [x[0] for x in a] == [x[0] for x in b] != [x[0] for x in c]
    assert [x[0] for x in a] == sorted(x[0] for x in a)
    with pytest.raises(InputError, match="not in qm9pack"):
        pq.select_molecules(df, ids="0,999999")
    with pytest.raises(InputError, match="comma-separated"):
        pq.select_molecules(df, ids="1,x")


# --- labels against PySCF --------------------------------------------------------------------------------
def test_labels_match_direct_pyscf_and_cache_is_reused(tmp_path, monkeypatch):
    src = get_source("pyscf/qm9", None, ids="3,2", raw_dir=tmp_path / "raw")
    assert isinstance(src, pq.QM9Source)
    calls = []
    real = pq.run_pyscf
    monkeypatch.setattr(pq, "run_pyscf", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    for item in src.items():
        (s,) = src.read(item)
        s.validate()
        mol, mf, F = direct_pyscf(item[2], item[3])
        H = full_matrix_from_edges(s, "H", mol) / HARTREE_EV
        S = full_matrix_from_edges(s, "S", mol)
        err = np.max(np.abs(H - F))
        assert err <= TOL_FOCK_HA, f"{s.id}: max |dF| = {err:.3g} Ha"
        np.testing.assert_allclose(S, mol.intor("int1e_ovlp"), rtol=0, atol=TOL_EXACT)
        assert abs(s.energy / HARTREE_EV - mf.e_tot) <= TOL_FOCK_HA
        assert s.nelectron == mol.nelectron
        # schema: all ordered pairs incl. self, row-major; molecule; p shells in (y, z, x) order
        n = s.natoms
        assert list(zip(s.src, s.dst)) == [(i, j) for i in range(n) for j in range(n)]
        assert not s.pbc.any() and not s.cell.any() and not s.shift.any()
        labels = mol.ao_labels()
        o = s.block(0, "H")  # heavy atom (O / N) on-site block, hambench order
        p_pyscf = [k for k, lab in enumerate(labels) if lab.startswith("0 ") and "2p" in lab]
        pyscf_by_name = {labels[k].split()[-1]: k for k in p_pyscf}
        # hambench's first p shell sits after the 3 s functions: (py, pz, px)
        want = [pyscf_by_name["2py"], pyscf_by_name["2pz"], pyscf_by_name["2px"]]
        np.testing.assert_allclose(o[3:6, 3:6] / HARTREE_EV, F[np.ix_(want, want)], rtol=0, atol=TOL_FOCK_HA)
        assert s.species[1] == [0, 0, 1] and s.species[int(s.Z[0])] == [0, 0, 0, 1, 1, 2]
        raw = dict(np.load(src.raw_path(item)))
        assert bool(raw["converged"]) and int(raw["cycles"]) > 0 and json.loads(str(raw["protocol"]))["xc"] == "b3lyp5"
    assert calls and len(calls) == 2
    # a second source over the same raw folder: no DFT, identical structures
    calls.clear()
    src2 = get_source("pyscf/qm9", None, ids="3,2", raw_dir=tmp_path / "raw")
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "raw").glob("*.npz")}
    for item in src2.items():
        (s2,) = src2.read(item)
        s2.validate()
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "raw").glob("*.npz")} == mtimes
    # another protocol (grid level) is another cache file: it recomputes, the first stays
    src3 = get_source("pyscf/qm9", None, ids="3", raw_dir=tmp_path / "raw", grid_level=2)
    src3.read(src3.items()[0])
    assert len(calls) == 1 and len(list((tmp_path / "raw").glob("*.npz"))) == 3


def test_unconverged_scf_is_excluded_with_a_clear_error(tmp_path):
    src = pq.QM9Source(None, ids="3", raw_dir=tmp_path, max_cycle=1)
    with pytest.raises(pq.SCFNotConverged, match=r"SCF of QM9 3 \(O\) did not converge in 1 cycles"):
        src.read(src.items()[0])
    assert issubclass(pq.SCFNotConverged, ExcludedItem) and issubclass(pq.SCFNotConverged, InputError)
    # the unconverged raw result is kept for inspection, and recomputed (not trusted) next time
    (f,) = list(tmp_path.glob("*.npz"))
    assert not bool(np.load(f)["converged"])


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"unknown element symbol 'Xq'"):
        pq.run_pyscf(("Xq", "H"), ((0, 0, 0), (0, 0, 0.74)), pq.protocol_of({}))
    with pytest.raises(InputError, match="PySCF cannot build the molecule"):  # odd electron count, spin 0
        pq.run_pyscf(("H",), ((0, 0, 0),), pq.protocol_of({}))
    with pytest.raises(InputError, match="must be a folder"):
        pq.QM9Source(tmp_path / "missing", raw_dir=tmp_path)
    with pytest.raises(InputError, match="positive"):
        pq.QM9Source(None, limit=0, raw_dir=tmp_path)
    with pytest.raises(InputError, match="no such file"):
        pq.PySCFOutputsSource(tmp_path / "nothing_here")
    with pytest.raises(InputError, match="needs --input"):
        pq.PySCFOutputsSource(None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no PySCF chkfiles"):
        pq.PySCFOutputsSource(tmp_path / "empty")
    bad = tmp_path / "junk"
    bad.mkdir()
    (bad / "x.chk").write_bytes(b"not hdf5")
    src = pq.PySCFOutputsSource(bad)
    with pytest.raises(InputError, match="x.chk: not a readable PySCF chkfile"):
        src.read(src.items()[0])
    # a corrupt cache file is recomputed rather than trusted (cost: one small DFT)
    q = pq.QM9Source(None, ids="3", raw_dir=tmp_path / "raw")
    path = q.raw_path(q.items()[0])
    path.parent.mkdir()
    path.write_bytes(b"garbage")
    (s,) = q.read(q.items()[0])
    s.validate()
    assert bool(np.load(path)["converged"])


# --- pyscf/outputs ---------------------------------------------------------------------------------------
def test_outputs_source_rebuilds_fock_from_mos(tmp_path):
    mol = gto.M(atom="O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692", basis="def2-svp", verbose=0)
    mf = dft.RKS(mol)
    mf.xc, mf.conv_tol = "b3lyp5", 1e-11
    mf.chkfile = str(tmp_path / "water.chk")
    mf.kernel()
    F = mf.get_fock()
    src = get_source("pyscf/outputs", tmp_path)
    (s,) = src.read(src.items()[0])
    s.validate()
    H = full_matrix_from_edges(s, "H", mol) / HARTREE_EV
    # S C e C^T S is the Fock the last MOs diagonalise (built from the previous density); with conv_tol 1e-11
    # it differs from F[D_final] by the last density change only: measured 1.7e-7 Ha, bound 1e-5 Ha
    err = np.max(np.abs(H - F))
    assert err < TOL.scf_last_step, err
    # it satisfies the generalized eigenproblem exactly (measured 1.3e-14 Ha; bound 1e-10 for float64 products)
    C, eps, S = mf.mo_coeff, mf.mo_energy, mol.intor("int1e_ovlp")
    assert np.max(np.abs(H @ C - S @ C * eps)) < TOL.scf_identity
    # a stored Fock (scf/fock) is taken as is
    lib.chkfile.save(mf.chkfile, "scf/fock", F)
    (s2,) = src.read(src.items()[0])
    assert np.max(np.abs(full_matrix_from_edges(s2, "H", mol) / HARTREE_EV - F)) <= TOL_EXACT
    assert abs(s2.energy / HARTREE_EV - mf.e_tot) <= TOL_EXACT
    # pyscf/qm9 raw files are accepted too (the demo data)
    shutil.copy(next(DEMO.glob("dsgdb9nsd_000003_*.npz")), tmp_path / "w.npz")
    src2 = pq.PySCFOutputsSource(tmp_path / "w.npz")
    (s3,) = src2.read(src2.items()[0])
    s3.validate()
    assert s3.natoms == 3


# --- demo data and the prepare driver --------------------------------------------------------------------
def test_demo_data_builds_a_store_without_dft(tmp_path, monkeypatch):
    from hambench.pipelines import prepare
    from hambench.store._store import open_store

    raw = tmp_path / "demo_raw"
    shutil.copytree(DEMO, raw)
    monkeypatch.setattr(pq, "run_pyscf", lambda *a, **k: pytest.fail("the demo cache should need no DFT"))
    out = tmp_path / "demo.zarr"
    prepare("pyscf/qm9", None, out, quiet=True, max_heavy=3, limit=10, raw_dir=raw)
    store = open_store(out)
    assert len(store) == 10
    assert store.attrs["kind"] == "molecule" and store.attrs["dft"]["functional"] == "b3lyp5"
    for k in range(10):
        s = store[k]
        s.validate()
        f = next(raw.glob(f"{s.id}_*.npz"))
        r = np.load(f)
        ref = pq.molecule_structure(s.id, s.Z, r["xyz_ang"], r["fock"], r["overlap"],
                                    [s.species[int(z)] for z in s.Z])
        np.testing.assert_array_equal(s.H, ref.H)
        np.testing.assert_array_equal(s.S, ref.S)
        # the demo labels are converged QH9-protocol results: Fock commutes with the density (FDS = SDF)
        F, S, C, occ = r["fock"], r["overlap"], r["mo_coeff"], r["mo_occ"]
        D = (C * occ) @ C.T
        assert np.max(np.abs(F @ D @ S - S @ D @ F)) < TOL.scf_gradient  # |FDS - SDF| ~ orbital gradient, conv_tol 1e-9
        assert abs(s.energy / HARTREE_EV - float(r["e_tot"])) <= TOL_EXACT * abs(float(r["e_tot"]))


def test_prepare_excludes_unconverged_molecule(tmp_path):
    from hambench.pipelines import prepare
    from hambench.store._store import open_store

    raw = tmp_path / "raw"
    raw.mkdir()
    for f in DEMO.glob("dsgdb9nsd_00000[12]_*.npz"):
        shutil.copy(f, raw)
    # max_cycle does not change the cache key: CH4 and NH3 come from the cache, H2O runs 1 cycle and fails
    out = tmp_path / "x.zarr"
    prepare("pyscf/qm9", None, out, quiet=True, ids="1,2,3", raw_dir=raw, max_cycle=1)
    store = open_store(out)
    assert [store[k].id for k in range(len(store))] == ["dsgdb9nsd_000001", "dsgdb9nsd_000002"]
    (exc,) = store.attrs["excluded"]
    assert "QM9 3 (O) did not converge" in exc["reason"]


def test_cli_demo_command_and_qh9_download_message(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from hambench.app.cli import main
    from hambench.store._store import open_store

    raw = tmp_path / "raw"
    shutil.copytree(DEMO, raw)
    monkeypatch.setattr(pq, "run_pyscf", lambda *a, **k: pytest.fail("the demo cache should need no DFT"))
    out = tmp_path / "demo.zarr"
    res = CliRunner().invoke(main, ["-q", "prepare", "--source", "pyscf/qm9", "--max-heavy", "3", "--limit", "4",
                                    "--raw-dir", str(raw), "-o", str(out)])
    assert res.exit_code == 0, res.output
    store = open_store(out)
    assert [store[k].id for k in range(len(store))] == [f"dsgdb9nsd_{i:06d}" for i in (1, 2, 3, 4)]
    res = CliRunner().invoke(main, ["prepare", "--source", "qh9/stable", "-o", str(tmp_path / "q.zarr")])
    assert res.exit_code == 1 and "zenodo.org/records/8274793" in res.output and "Traceback" not in res.output

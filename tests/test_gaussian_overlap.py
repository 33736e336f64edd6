"""Overlap without DFT (issue 31 item 3): exact S blocks per edge from a Gaussian basis.

References: the ``pyscf/crystal`` source's own real-space S(R) (what a crystal store holds, itself checked against
PySCF's lattice-summed S(k) in test_pyscf_crystal.py), PySCF's ``pbc_intor`` S(k) at an off-Γ k-point (an
independent lattice sum), and the S blocks of a real ``pyscf/qm9`` store, reached through ``predict
--structures`` end to end.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyscf")

from hambench.app.testing import cli, one_line_error
from hambench.basis import BasisLayout, atom_permutation, gaussian_overlap_blocks, shells_of_atoms
from hambench.errors import InputError
from hambench.store import open_store
from hambench.testing import TOL

A = 2.46  # graphene lattice constant, Å


def _graphene():
    cell = np.array([[A, 0, 0], [-A / 2, A * np.sqrt(3) / 2, 0], [0, 0, 12.0]])
    pos = np.array([[0, 0, 6.0], [0, A / np.sqrt(3), 6.05]])
    pos = pos + 0.03 * np.random.default_rng(0).standard_normal((2, 3))  # no symmetry to hide a sign
    return cell, pos


@pytest.mark.parametrize("basis", ["gth-szv", "gth-dzvp"], ids=["sp", "spd"])
def test_edge_overlaps_equal_the_crystal_source_and_pbc_lattice_sum(basis):
    from hambench.pipelines import pyscf_crystal as pc
    from hambench.pipelines._crystal_pyscf import overlap_blocks, select_pairs

    cell, pos = _graphene()
    pcell = pc.build_cell(["C", "C"], pos, cell, {"basis": basis, "pseudo": "gth-pbe", "ke_cutoff": 100})
    i, j, R = select_pairs(["C", "C"], pos, cell, [True, True, False], 13.0)
    uniq, inv = np.unique(R, axis=0, return_inverse=True)
    SR = overlap_blocks(pcell, uniq)  # (n_R, nao, nao), PySCF order
    shells = shells_of_atoms(pcell)[0]
    perm, _ = atom_permutation("pyscf", shells)
    n = len(perm)
    layout = BasisLayout.from_dict({"species": {"6": shells}, "spinful": False})
    S = gaussian_overlap_blocks([6, 6], pos, cell, i, j, R, layout, basis)
    ptr = layout.block_ptr(np.full(len(i), 6), np.full(len(i), 6))
    ref = np.concatenate([SR[k][a * n:(a + 1) * n, b * n:(b + 1) * n][np.ix_(perm, perm)].ravel()
                          for a, b, k in zip(i, j, inv.ravel())])
    assert S.shape == ref.shape == (ptr[-1],)
    assert np.abs(S - ref).max() < TOL.roundoff_long

    # S(k) = Σ_R e^{2πi k·R} S(R) against PySCF's own lattice sum at an off-Γ k-point (hambench order)
    kfrac = np.array([0.2, 0.1, 0.0])
    Sk = np.zeros((2 * n, 2 * n), complex)
    for e, (a, b) in enumerate(zip(i, j)):
        Sk[a * n:(a + 1) * n, b * n:(b + 1) * n] += (np.exp(2j * np.pi * kfrac @ R[e])
                                                    * S[ptr[e]:ptr[e + 1]].reshape(n, n))
    kcart = pcell.get_abs_kpts(kfrac[None])
    ref_k = np.asarray(pcell.pbc_intor("int1e_ovlp", hermi=1, kpts=kcart))[0]
    full = np.concatenate([perm, perm + n])
    # pbc_intor truncates its lattice sum at cell.precision (1e-8); the 13 Å pairs hold every term above it
    assert np.abs(Sk - ref_k[np.ix_(full, full)]).max() < 10 * pcell.precision


def test_a_basis_that_does_not_match_the_model_is_refused():
    cell, pos = _graphene()
    layout = BasisLayout.from_dict({"species": {"6": [0, 0, 1, 1, 2]}, "spinful": False})
    with pytest.raises(InputError, match="trained on another basis"):
        gaussian_overlap_blocks([6, 6], pos, cell, [0], [1], [[0, 0, 0]], layout, "gth-szv")
    with pytest.raises(InputError, match="no functions for C"):
        gaussian_overlap_blocks([6, 6], pos, cell, [0], [1], [[0, 0, 0]], layout, "no-such-basis")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from _train_data import demo_store

    data = demo_store(tmp_path_factory)
    run = tmp_path_factory.mktemp("ovl") / "run"
    r = cli("train", "deephe3", "--data", data, "--preset", "tiny", "--max-steps", 2, "--threads", 1, "-o", run)
    assert r.exit_code == 0, r.output
    return data, run


def test_predict_structures_carries_the_exact_overlap_of_a_pyscf_store(demo_run, tmp_path):
    """A molecule of the pyscf/qm9 store predicted from its geometry alone: S equals the store's S blocks."""
    import ase
    import ase.io

    data, run = demo_run
    s = open_store(data)[1]
    f = tmp_path / "mol.traj"  # ASE's binary trajectory keeps the float64 positions exactly
    ase.io.write(str(f), ase.Atoms(numbers=s.Z, positions=s.pos))
    preds = tmp_path / "p.zarr"
    r = cli("predict", run, "--structures", f, "-o", preds)
    assert r.exit_code == 0, r.output
    st = open_store(preds)
    assert st.attrs["overlap"]["basis"] == "def2-svp"
    p = st[0]
    key = {(a, b): e for e, (a, b) in enumerate(zip(s.src.tolist(), s.dst.tolist()))}
    assert sorted(key) == sorted(zip(p.src.tolist(), p.dst.tolist()))
    for e, (a, b) in enumerate(zip(p.src.tolist(), p.dst.tolist())):
        assert np.abs(p.block(e, "S") - s.block(key[(a, b)], "S")).max() < TOL.roundoff_long
    # and export writes a DeepH folder whose overlap.h5 holds these blocks (not empty entries)
    import h5py

    r = cli("export", preds, "--format", "deeph", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    (folder,) = [d for d in (tmp_path / "out").iterdir() if d.is_dir()]
    with h5py.File(folder / "overlap.h5") as f:
        entries = np.asarray(f["entries"])
    assert entries.size == p.S.size and np.abs(np.sort(entries) - np.sort(p.S)).max() < TOL.roundoff_long


def test_export_of_a_store_without_overlap_is_refused(demo_run, tmp_path):
    """Numerical-orbital models give no S: export refuses in one line instead of writing empty overlap.h5."""
    import ase
    import ase.io
    import torch

    data, run = demo_run
    ck_path = sorted(run.glob("*.pt"))[0]
    ck = torch.load(ck_path, weights_only=False)
    ck["dft"] = {"code": "OpenMX", "basis": "C6.0-s2p2d1"}
    torch.save(ck, tmp_path / "numerical.pt")
    s = open_store(data)[1]
    f = tmp_path / "mol.traj"
    ase.io.write(str(f), ase.Atoms(numbers=s.Z, positions=s.pos))
    preds = tmp_path / "p.zarr"
    r = cli("predict", tmp_path / "numerical.pt", "--structures", f, "-o", preds)
    assert r.exit_code == 0, r.output
    assert "numerical atomic orbitals" in open_store(preds).attrs["overlap"]["why"]
    line = one_line_error(cli("export", preds, "--format", "deeph", "-o", tmp_path / "out"))
    assert "no overlap S" in line and not (tmp_path / "out").exists()

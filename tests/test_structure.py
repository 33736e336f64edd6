"""Structure checks: partner lookup against a dict reference, missing partners, shape errors."""

from __future__ import annotations

import numpy as np
import pytest

from hambench.errors import InputError
from hambench.pipelines.synthetic import random_structure
from hambench.store import HERMITIAN_TOL


def test_partner_index_matches_dict_reference():
    s = random_structure(np.random.default_rng(1), natoms=10, cutoff=5.0)
    idx = s.edge_index()
    ref = [idx[(int(j), int(i), *(-int(x) for x in r))] for i, j, r in zip(s.src, s.dst, s.shift)]
    np.testing.assert_array_equal(s.partner_index(), ref)


def test_missing_partner_is_reported():
    s = random_structure(np.random.default_rng(2), natoms=4)
    e = int(np.flatnonzero(s.src != s.dst)[0])
    keep = np.ones(s.nedges, bool)
    keep[e] = False
    ptr = s.block_ptr()
    mask = np.repeat(keep, np.diff(ptr))
    sp = s.block_ptr(False)
    s.src, s.dst, s.shift = s.src[keep], s.dst[keep], s.shift[keep]
    s.H, s.S = s.H[mask], s.S[np.repeat(keep, np.diff(sp))]
    s.validate(check_pairs=False)
    with pytest.raises(InputError, match="has no partner"):
        s.validate()


def test_wrong_block_size_and_bad_index():
    s = random_structure(np.random.default_rng(3), natoms=3)
    s.H = s.H[:-1]
    with pytest.raises(InputError, match="orbital counts"):
        s.validate()
    s = random_structure(np.random.default_rng(3), natoms=3)
    s.dst = s.dst.copy()
    s.dst[0] = 7
    with pytest.raises(InputError, match="out of range"):
        s.validate()
    s = random_structure(np.random.default_rng(3), natoms=3)
    s.species = {}
    with pytest.raises(InputError, match="no orbital shells"):
        s.validate()


def test_repr_is_short():
    from hambench.basis._conventions import z_to_symbol

    s = random_structure(np.random.default_rng(0), 4, name="mol-1")
    text = repr(s)
    assert "\n" not in text and len(text) < 200 and str(s) == text
    zs, counts = np.unique(s.Z, return_counts=True)
    formula = "".join(f"{z_to_symbol(z)}{n if n > 1 else ''}" for z, n in zip(zs, counts))
    assert text == f"Structure(id='mol-1', {formula}, 4 atoms, {s.nedges} edges, {s.H.size} H elements, periodic)"


def test_partner_index_function_fast_and_fallback_agree():
    from hambench.store._structure import partner_index

    src, dst = np.array([0, 1, 0, 1, 0]), np.array([1, 0, 0, 1, 1])
    shift = np.array([[1, 0, 0], [-1, 0, 0], [0, 0, 0], [0, 2, 0], [0, 0, 3]])
    want = [1, 0, 2, -1, -1]
    np.testing.assert_array_equal(partner_index(src, dst, shift), want)
    big = shift * (1 << 20)  # keys would overflow int64: the dictionary path
    np.testing.assert_array_equal(partner_index(src, dst, big, natoms=2), want)
    assert partner_index([], [], np.zeros((0, 3))).shape == (0,)


# --- the compiled block check (one pass: finiteness + Hermitian pairing) against the numpy reference -----------
def _real_structures():
    from hambench.pipelines.deeph_format import read_new_folder
    from hambench.pipelines.openmx import scfout_to_structure
    from hambench.testing import realdata_path

    yield read_new_folder(realdata_path("deeph_new_MoTe2"))
    yield scfout_to_structure(realdata_path("openmx_bismuthene_soc_scfout", "openmx.scfout"), struct_id="bi")


def _numpy_worst(s, which):
    """Largest |B_e - B_partner^H| over edges, by an explicit per-edge loop (a third implementation)."""
    spin = s.spinful if which == "H" else False
    arr = s.H if which == "H" else s.S
    ptr, (ni, nj), partner = s.block_ptr(spin), s.block_shapes(spin), s.partner_index()
    worst, at = 0.0, -1
    for e in range(s.nedges):
        a = arr[ptr[e]:ptr[e + 1]].reshape(ni[e], nj[e])
        f = partner[e]
        b = arr[ptr[f]:ptr[f + 1]].reshape(ni[f], nj[f])
        d = float(np.abs(a - b.conj().T).max(initial=0.0))
        if d > worst:
            worst, at = d, e
    return worst, at


@pytest.mark.parametrize("k", [0, 1])
def test_compiled_pair_check_matches_loop_on_real_dft(k):
    """MoTe2 (DeepH-dock, real) and bismuthene SOC (OpenMX, complex): same worst asymmetry (to 0 — the same
    float operations) and edge as an explicit loop; then one element perturbed by 1e-3 is found and named."""
    from hambench import _core

    s = list(_real_structures())[k]
    for which in ("H", "S"):
        spin = s.spinful if which == "H" else False
        arr = s.H if which == "H" else s.S
        got = _core.pair_check(arr, s.block_ptr(spin), *s.block_shapes(spin), s.partner_index())
        ref = _numpy_worst(s, which)
        assert got[0] == ref[0] and got[2] == -1
        if ref[0] > 0:
            assert got[1] == ref[1]
    s.validate()
    e = int(np.flatnonzero(s.src != s.dst)[3])
    ptr = s.block_ptr()
    s.H = s.H.copy()
    s.H[ptr[e] + 1] += 1e-3
    with pytest.raises(InputError, match=r"H is not Hermitian: .* = 0\.001 > 1e-05 at \(i=%d, j=%d" % (s.src[e], s.dst[e])):
        s.validate()
    with pytest.raises(InputError, match=r"H is not Hermitian: .* = 0\.001 > 1e-05 at \(i=%d, j=%d" % (s.src[e], s.dst[e])):
        s._check_pairs_numpy(s.id, HERMITIAN_TOL)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["H", "S"])
def test_compiled_check_refuses_nonfinite_anywhere(value, which):
    s = random_structure(np.random.default_rng(5), natoms=5, spinful=(which == "H"))
    arr = (s.H if which == "H" else s.S).copy()
    arr[len(arr) - 1] = value  # the last element of the last block
    setattr(s, which, arr)
    name = "Hamiltonian" if which == "H" else "overlap"
    with pytest.raises(InputError, match=f"{name} contains NaN/Inf"):
        s.validate()
    with pytest.raises(InputError, match=f"{name} contains NaN/Inf"):
        s.validate(check_pairs=False)


def test_compiled_check_and_numpy_agree_on_random_asymmetries():
    rng = np.random.default_rng(11)
    for trial in range(20):
        s = random_structure(rng, natoms=int(rng.integers(2, 7)), spinful=bool(trial % 2))
        which = "H" if trial % 3 else "S"
        arr = (s.H if which == "H" else s.S).copy()
        arr[rng.integers(len(arr))] += 10 ** rng.uniform(-7, -2)
        setattr(s, which, arr)
        msgs = []
        for check in (lambda: s.validate(), lambda: s._check_pairs_numpy(s.id, HERMITIAN_TOL)):
            try:
                check()
                msgs.append(None)
            except InputError as e:
                msgs.append(str(e))
        assert msgs[0] == msgs[1]

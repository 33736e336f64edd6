"""Structure checks: partner lookup against a dict reference, missing partners, shape errors."""

from __future__ import annotations

import numpy as np
import pytest

from hambench.errors import InputError
from hambench.pipelines.synthetic import random_structure


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
    from hambench.conventions import z_to_symbol

    s = random_structure(np.random.default_rng(0), 4, name="mol-1")
    text = repr(s)
    assert "\n" not in text and len(text) < 200 and str(s) == text
    zs, counts = np.unique(s.Z, return_counts=True)
    formula = "".join(f"{z_to_symbol(z)}{n if n > 1 else ''}" for z, n in zip(zs, counts))
    assert text == f"Structure(id='mol-1', {formula}, 4 atoms, {s.nedges} edges, {s.H.size} H elements, periodic)"


def test_partner_index_function_fast_and_fallback_agree():
    from hambench.structure import partner_index

    src, dst = np.array([0, 1, 0, 1, 0]), np.array([1, 0, 0, 1, 1])
    shift = np.array([[1, 0, 0], [-1, 0, 0], [0, 0, 0], [0, 2, 0], [0, 0, 3]])
    want = [1, 0, 2, -1, -1]
    np.testing.assert_array_equal(partner_index(src, dst, shift), want)
    big = shift * (1 << 20)  # keys would overflow int64: the dictionary path
    np.testing.assert_array_equal(partner_index(src, dst, big, natoms=2), want)
    assert partner_index([], [], np.zeros((0, 3))).shape == (0,)

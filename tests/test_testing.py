"""The tolerance table (hambench.testing.TOL): frozen, every entry positive and documented, the dtype lookups of
before unchanged; and a scan of the test tree that keeps every atol=/rtol= a named tolerance, not a literal."""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from hambench.testing import TOL, Tolerances, tol

TESTS = Path(__file__).resolve().parent
#: keyword arguments that state a comparison tolerance (NumPy/torch atol, rtol; pytest.approx abs, rel; math.isclose
#: rel_tol, abs_tol; Structure.validate hermitian_tol; pos_atol of the tests' own helpers)
TOLERANCE_KEYWORDS = {"atol", "rtol", "abs", "rel", "rel_tol", "abs_tol", "hermitian_tol", "pos_atol"}


def literal_tolerances(source: str, filename: str = "<test>") -> list[str]:
    """``file:line keyword=value`` for every call that passes a tolerance keyword a number literal other than 0."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg not in TOLERANCE_KEYWORDS:
                continue
            value = kw.value.operand if isinstance(kw.value, ast.UnaryOp) else kw.value
            if isinstance(value, ast.Constant) and isinstance(value.value, (int, float)) and value.value != 0:
                found.append(f"{filename}:{kw.value.lineno} {kw.arg}={ast.unparse(kw.value)}")
    return found


# --- the table -------------------------------------------------------------------------------------------------
def test_table_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TOL.exact64 = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        TOL.new_entry = 1.0
    assert TOL.exact64 == 1e-12


def test_every_entry_is_positive_and_documented():
    names = [f.name for f in dataclasses.fields(Tolerances)]
    assert names == list(TOL.names()) and len(set(names)) == len(names) > 0
    for name in names:
        value = getattr(TOL, name)
        assert type(value) is float and math.isfinite(value) and value > 0, name
        assert TOL[name] == value and name in TOL, name
        why = TOL.why(name)
        assert isinstance(why, str) and len(why.split()) >= 4 and "\n" not in why, name


def test_dtype_lookups_answer_as_before():
    assert TOL[np.dtype(np.float64)] == 1e-12 and TOL[np.dtype(np.float32)] == 1e-5
    assert np.dtype(np.float64) in TOL and np.dtype(np.float32) in TOL and np.dtype(np.int64) not in TOL
    assert tol(np.float64) == tol(np.complex128) == tol("float64") == 1e-12
    assert tol(np.float32) == tol(np.complex64) == 1e-5
    with pytest.raises(KeyError):
        TOL[np.dtype(np.float16)]
    with pytest.raises(KeyError):
        TOL["no_such_tolerance"]


# --- the tests state no literal tolerance ----------------------------------------------------------------------
def test_the_scan_sees_literal_tolerances():
    planted = ("np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)\npytest.approx(x, rel=-2e-3, abs=0.0)\n"
               "np.testing.assert_allclose(a, b, atol=TOL.exact64)\nmath.isclose(a, b, rel_tol=1e-3)\n")
    assert literal_tolerances(planted, "t.py") == ["t.py:1 atol=1e-09", "t.py:2 rel=-0.002", "t.py:4 rel_tol=0.001"]


def test_no_test_states_a_literal_tolerance():
    files = sorted(TESTS.glob("*.py"))
    assert len(files) > 40
    found = [hit for p in files for hit in literal_tolerances(p.read_text(), p.name)]
    assert not found, "name these tolerances in hambench.testing.TOL:\n" + "\n".join(found)

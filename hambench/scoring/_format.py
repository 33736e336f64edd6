"""How hambench writes numbers for people: one format per table column, and energies in meV or eV.

A column of a table (or a row of ``hambench score``'s table, one metric over subsets) is written in *one* format
chosen from all its values (:func:`column_format`), so 9437 and 17640 read as ``9,437`` and ``17,640``, never as
``9437`` and ``1.764e+04``:

* counts (every value a whole number): ``139,117``;
* fixed point otherwise, with the decimals that give the largest value 4 significant digits and the smallest
  at least 2 (``678`` / ``1,131``; ``0.04966`` / ``0.08541``), thousands separated by commas; values in
  [0.9, 1) (similarities) with the decimals that show 1 − v to 2 digits (``0.999959``, not ``1.0000``);
* scientific with 3 significant digits (``5.96e-05``) when a value is below 10⁻³ or reaches 10⁶, or the values
  span more than four decades.

:func:`energy_text` and :func:`energy_scale` write energies given in meV in eV from 1000 meV on (plot titles
and colour bars: ``1.76 eV``, not ``1.76e+03 meV``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

__all__ = ["MISSING", "column_format", "format_column", "energy_text", "energy_scale"]

#: the text of a missing value
MISSING = "—"


def _finite(values: Iterable) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(v):
            out.append(float(v))
    return out


def column_format(values: Iterable, integer: bool = False) -> Callable[[object], str]:
    """The one formatter of a column holding ``values`` (None, NaN and non-numbers are ignored; they print as
    :data:`MISSING`). ``integer``: whole numbers by definition (parameter counts).

    >>> f = column_format([9437.2, 17640.0, 678.4]); [f(v) for v in (9437.2, 17640.0, 678.4, None)]
    ['9,437', '17,640', '678', '—']
    >>> f = column_format([0.08541, 0.04966]); f(0.08541), f(0.04966)
    ('0.08541', '0.04966')
    >>> f = column_format([5.96e-05, 0.2]); f(5.96e-05), f(0.2)
    ('5.96e-05', '2.00e-01')
    >>> column_format([139117, 17402], integer=True)(139117)
    '139,117'
    >>> column_format([0.999959, 0.9668])(0.999959)
    '0.999959'
    """
    vals = _finite(values)
    if integer or (vals and all(v.is_integer() and abs(v) < 1e15 for v in vals)):
        return lambda v: _or_missing(v, lambda x: f"{int(round(x)):,}")
    nonzero = [abs(v) for v in vals if v != 0]
    if not nonzero:
        return lambda v: _or_missing(v, lambda x: f"{x:.3g}")
    hi, lo = max(nonzero), min(nonzero)
    if lo < 1e-3 or hi >= 1e6 or hi / lo > 1e4:
        return lambda v: _or_missing(v, lambda x: f"{x:.2e}")
    decimals = max(3 - math.floor(math.log10(hi)), 1 - math.floor(math.log10(lo)), 0)
    if 0.9 <= min(vals) and max(vals) < 1:  # similarities close to 1: what counts is 1 − v, to 2 digits
        decimals = min(max(decimals, 1 - math.floor(math.log10(1 - max(vals)))), 9)
    return lambda v: _or_missing(v, lambda x: f"{x:,.{decimals}f}")


def _or_missing(v, fmt) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return MISSING
    return fmt(float(v))


def format_column(values: list, integer: bool = False) -> list[str]:
    """``values`` written in their column's one format (:func:`column_format`)."""
    f = column_format(values, integer)
    return [f(v) for v in values]


def energy_scale(values_mev: Iterable) -> tuple[float, str]:
    """``(factor, unit)`` to show energies given in meV: ``(1, "meV")`` below 1000 meV, else ``(1e-3, "eV")``.

    >>> energy_scale([3.2, 870.0]), energy_scale([12.0, 1760.0])
    ((1.0, 'meV'), (0.001, 'eV'))
    """
    vals = [abs(v) for v in _finite(values_mev)]
    return (1e-3, "eV") if vals and max(vals) >= 999.5 else (1.0, "meV")


def energy_text(value_mev: float, digits: int = 3) -> str:
    """An energy given in meV as text with ``digits`` significant digits, in eV from 1000 meV on.

    >>> energy_text(1763.2), energy_text(12.345), energy_text(0.000123)
    ('1.76 eV', '12.3 meV', '0.000123 meV')
    """
    if not isinstance(value_mev, (int, float)) or not math.isfinite(value_mev):
        return MISSING
    factor, unit = energy_scale([value_mev])
    v = value_mev * factor
    text = f"{v:.{digits}g}"
    if "e" in text:  # tiny values: plain decimals read better than an exponent here
        text = f"{v:.{digits - 1 - math.floor(math.log10(abs(v)))}f}"
    return f"{text} {unit}"

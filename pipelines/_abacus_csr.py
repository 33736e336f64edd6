"""The ABACUS sparse-matrix text (``data-?R-sparse_SPIN*.csr``), parsed by a Numba kernel on the raw bytes.

A header (``STEP: 0``, ``Matrix Dimension of H(R): N``, ``Matrix number of H(R): M``) then, per lattice vector R,
a line ``Rx Ry Rz nnz`` and, when nnz > 0, three lines: nnz values, nnz column indices (0-based), N + 1 row
pointers (verified on realdata/abacus_MoS2). One pass over the bytes, no Python loop over lines or tokens;
complex files (nspin 4) write each value as ``(re,im)``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from numba import njit

from hambench.errors import InputError
from ._lcao_sparse import read_bytes

__all__ = ["parse_csr", "read_csr"]

_POW10 = np.array([10.0**k for k in range(23)])
_ERRORS = {
    1: "bad 'Rx Ry Rz nnz' line",
    2: "truncated: the file ends inside a matrix",
    3: "bad value (expected a number)",
    4: "a line holds more entries than its R line's nnz",
    5: "column index out of range",
    6: "row pointers do not match the values (first must be 0, non-decreasing, last = nnz)",
    7: "unexpected text after the last matrix",
    8: "more values than the file can hold",
}


@njit(cache=True)
def _skip_blank(buf, p, n):
    while p < n and (buf[p] == 32 or buf[p] == 9 or buf[p] == 13):
        p += 1
    return p


@njit(cache=True)
def _skip_lines(buf, p, n):
    while p < n and (buf[p] == 32 or buf[p] == 9 or buf[p] == 13 or buf[p] == 10):
        p += 1
    return p


@njit(cache=True)
def _at_eol(buf, p, n):
    p = _skip_blank(buf, p, n)
    return p, (p >= n or buf[p] == 10)


@njit(cache=True)
def _sign(buf, p, n):
    """Skip blanks and an optional '+' or '-': (negative, position of the first digit)."""
    p = _skip_blank(buf, p, n)
    if p < n and (buf[p] == 45 or buf[p] == 43):
        return buf[p] == 45, p + 1
    return False, p


@njit(cache=True)
def _int(buf, p, n):
    neg, p = _sign(buf, p, n)
    start = p
    v = 0
    while p < n and 48 <= buf[p] <= 57:
        v = v * 10 + (buf[p] - 48)
        p += 1
    ok = p > start and (p >= n or buf[p] in (32, 9, 13, 10))
    return (-v if neg else v), p, ok


@njit(cache=True)
def _float(buf, p, n, pow10):
    neg, p = _sign(buf, p, n)
    m = 0
    e = 0
    nd = 0
    seen = False
    while p < n and 48 <= buf[p] <= 57:
        seen = True
        if nd < 18:
            m = m * 10 + (buf[p] - 48)
            if m:
                nd += 1
        else:
            e += 1
        p += 1
    if p < n and buf[p] == 46:
        p += 1
        while p < n and 48 <= buf[p] <= 57:
            seen = True
            if nd < 18:
                m = m * 10 + (buf[p] - 48)
                e -= 1
                if m:
                    nd += 1
            p += 1
    if not seen:
        return 0.0, p, False
    if p < n and (buf[p] == 101 or buf[p] == 69 or buf[p] == 100 or buf[p] == 68):
        p += 1
        eneg = False
        if p < n and (buf[p] == 45 or buf[p] == 43):
            eneg = buf[p] == 45
            p += 1
        start = p
        x = 0
        while p < n and 48 <= buf[p] <= 57:
            if x < 100000:
                x = x * 10 + (buf[p] - 48)
            p += 1
        if p == start:
            return 0.0, p, False
        e += -x if eneg else x
    # m * 10^e is one correctly rounded operation (= strtod) when m < 2**53 (<= 15 significant digits, as ABACUS
    # writes) and |e| <= 22; longer mantissas or larger exponents are within a few ulp
    v = float(m)
    if m == 0:
        v = 0.0
    elif 0 <= e <= 22:
        v = v * pow10[e]
    elif -22 <= e < 0:
        v = v / pow10[-e]
    elif e < -22 and e >= -330:
        v = v / pow10[22]
        e += 22
        while e < -22:
            v = v / pow10[22]
            e += 22
        v = v / pow10[-e]
    else:
        v = v * 10.0**e
    return (-v if neg else v), p, True


@njit(cache=True)
def _value(buf, p, n, pow10, cplx):
    """One matrix value: a number, or ``(re,im)`` when ``cplx``. Returns re, im, p, ok."""
    if not cplx:
        v, p, ok = _float(buf, p, n, pow10)
        return v, 0.0, p, ok
    p = _skip_blank(buf, p, n)
    if p >= n or buf[p] != 40:  # '('
        return 0.0, 0.0, p, False
    re_, p, ok = _float(buf, p + 1, n, pow10)
    if not ok or p >= n or buf[p] != 44:  # ','
        return 0.0, 0.0, p, False
    im, p, ok = _float(buf, p + 1, n, pow10)
    if not ok or p >= n or buf[p] != 41:  # ')'
        return 0.0, 0.0, p, False
    return re_, im, p + 1, True


@njit(cache=True)
def _parse_csr_kernel(buf, p, n_r, dim, cplx, pow10):
    n = buf.size
    cap = n // 4 + 16
    re_ = np.empty(cap, np.float64)
    im = np.empty(cap if cplx else 0, np.float64)
    rows = np.empty(cap, np.int32)
    cols = np.empty(cap, np.int32)
    ridx = np.empty(cap, np.int32)
    rvec = np.zeros((n_r, 3), np.int64)
    nnzs = np.zeros(n_r, np.int64)
    rp = np.empty(dim + 1, np.int64)
    total = 0
    for k in range(n_r):
        p = _skip_lines(buf, p, n)
        if p >= n:
            return 2, p, rvec, nnzs, re_, im, rows, cols, ridx, total
        for a in range(3):
            x, p, ok = _int(buf, p, n)
            if not ok:
                return 1, p, rvec, nnzs, re_, im, rows, cols, ridx, total
            rvec[k, a] = x
        nnz, p, ok = _int(buf, p, n)
        p, eol = _at_eol(buf, p, n)
        if not ok or not eol or nnz < 0:
            return 1, p, rvec, nnzs, re_, im, rows, cols, ridx, total
        nnzs[k] = nnz
        if nnz == 0:
            continue
        if 4 * nnz > n - p:  # every element needs >= 2 bytes of value and >= 2 of column index
            return 2, p, rvec, nnzs, re_, im, rows, cols, ridx, total
        if total + nnz > cap:
            return 8, p, rvec, nnzs, re_, im, rows, cols, ridx, total
        p = _skip_lines(buf, p, n)
        for t in range(nnz):
            a_re, a_im, p, ok = _value(buf, p, n, pow10, cplx)
            if not ok:
                return (2 if p >= n else 3), p, rvec, nnzs, re_, im, rows, cols, ridx, total
            re_[total + t] = a_re
            if cplx:
                im[total + t] = a_im
        p, eol = _at_eol(buf, p, n)
        if not eol:
            return 4, p, rvec, nnzs, re_, im, rows, cols, ridx, total
        p = _skip_lines(buf, p, n)
        for t in range(nnz):
            c, p, ok = _int(buf, p, n)
            if not ok:
                return (2 if p >= n else 3), p, rvec, nnzs, re_, im, rows, cols, ridx, total
            if c < 0 or c >= dim:
                return 5, p, rvec, nnzs, re_, im, rows, cols, ridx, total
            cols[total + t] = c
        p, eol = _at_eol(buf, p, n)
        if not eol:
            return 4, p, rvec, nnzs, re_, im, rows, cols, ridx, total
        p = _skip_lines(buf, p, n)
        for t in range(dim + 1):
            x, p, ok = _int(buf, p, n)
            if not ok:
                return (2 if p >= n else 6), p, rvec, nnzs, re_, im, rows, cols, ridx, total
            rp[t] = x
        p, eol = _at_eol(buf, p, n)
        if not eol or rp[0] != 0 or rp[dim] != nnz:
            return 6, p, rvec, nnzs, re_, im, rows, cols, ridx, total
        for r in range(dim):
            if rp[r + 1] < rp[r]:
                return 6, p, rvec, nnzs, re_, im, rows, cols, ridx, total
            for q in range(rp[r], rp[r + 1]):
                rows[total + q] = r
                ridx[total + q] = k
        total += nnz
    p = _skip_lines(buf, p, n)
    if p < n:
        return 7, p, rvec, nnzs, re_, im, rows, cols, ridx, total
    return 0, p, rvec, nnzs, re_, im, rows, cols, ridx, total


_HEADER_DIM = re.compile(rb"Matrix Dimension of [A-Za-z]+\(R\)\s*:\s*(\d+)")
_HEADER_NUM = re.compile(rb"Matrix number of [A-Za-z]+\(R\)\s*:\s*(\d+)")


def parse_csr(data: bytes, path="<csr>") -> dict:
    """Parse the text of one ABACUS ``data-?R-sparse_SPIN*.csr`` file.

    Returns ``dim``, ``R`` (n_R, 3), ``nnz`` (n_R,), and one entry per stored element: ``values`` (float64, or
    complex128 for ``(re,im)`` files), ``rows``, ``cols`` (0-based orbital indices), ``ridx`` (index into ``R``).
    Raises :class:`InputError` naming ``path``, the line and the problem.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    head = data[:4096]
    md, mn = _HEADER_DIM.search(head), _HEADER_NUM.search(head)
    if not md or not mn:
        raise InputError(path, "not an ABACUS sparse-matrix file (no 'Matrix Dimension of ...' / 'Matrix number "
                               "of ...' header)" if data else "empty file")
    dim, n_r = int(md.group(1)), int(mn.group(1))
    start = data.find(b"\n", mn.end())
    start = len(data) if start < 0 else start + 1
    probe = data[start:start + 65536]
    cplx = b"(" in probe
    err, pos, rvec, nnzs, re_, im, rows, cols, ridx, total = _parse_csr_kernel(buf, start, n_r, dim, cplx, _POW10)
    if err:
        line = data.count(b"\n", 0, min(pos, len(data))) + 1
        raise InputError(path, f"line {line}: {_ERRORS[err]}")
    keys = rvec[:, 0] * 1_000_003 ** 2 + rvec[:, 1] * 1_000_003 + rvec[:, 2]
    if np.unique(keys).size != n_r:
        raise InputError(path, "the same lattice vector R is listed twice")
    values = re_[:total] + 1j * im[:total] if cplx else re_[:total].copy()
    return {"dim": dim, "R": rvec, "nnz": nnzs, "values": values, "rows": rows[:total].copy(),
            "cols": cols[:total].copy(), "ridx": ridx[:total].copy(), "complex": cplx}


def read_csr(path) -> dict:
    """:func:`parse_csr` of a file; a missing or unreadable file is an :class:`InputError`."""
    return parse_csr(read_bytes(path), Path(path))


"""Numba kernels behind :mod:`hambench.basis._so3` (edge-block rotation and trace labels, shell pair by shell pair).

Each edge block is visited once, in place of its flat storage (no gather/scatter copies); inside a block
the rotation is applied shell by shell (left factor per row shell over whole rows, right factor per column
shell), so the block-diagonal structure of D is never multiplied as a dense matrix. Serial on purpose: parallelism comes from Dask over
structures (prepare, score), and serial kernels compile in half the time (12 s vs 27 s cold, measured).

Layout of the packed tables (built by ``so3``):
    ``nsh[z]`` shells of element z, ``sh_l[z, p]`` their l, ``sh_start[z, p]`` first orbital, ``norb[z]``;
    ``Dl[l]`` the (2l+1, 2l+1) Wigner matrix in the top-left corner of a (lmax+1, 2lmax+1, 2lmax+1) array.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _rotate_quadrant(src, dst, base, row_stride, r0, c0, zi, zj, nsh, sh_l, sh_start, Dl, tmp):
    """dst[quadrant] = D_i src[quadrant] D_jᵀ for one (n_i, n_j) quadrant at rows r0, cols c0.

    Left factor per row shell p over whole rows (long contiguous inner loops), then the right factor per
    column shell q; s shells (D_0 = 1) are copied.
    """
    nj = 0
    for q in range(nsh[zj]):
        nj += 2 * sh_l[zj, q] + 1
    for p in range(nsh[zi]):
        lp = sh_l[zi, p]
        dp = 2 * lp + 1
        a0 = sh_start[zi, p]
        # tmp[m, :] = sum_k D_p[m, k] H[a0 + k, :]
        for m in range(dp):
            for c in range(nj):
                tmp[m, c] = 0
            for k in range(dp):
                d = Dl[lp, m, k]
                row = base + (r0 + a0 + k) * row_stride + c0
                for c in range(nj):
                    tmp[m, c] += d * src[row + c]
        # dst[a0 + m, b0 + n] = sum_k tmp[m, b0 + k] D_q[n, k]
        for m in range(dp):
            row = base + (r0 + a0 + m) * row_stride + c0
            for q in range(nsh[zj]):
                lq = sh_l[zj, q]
                b0 = sh_start[zj, q]
                if lq == 0:
                    dst[row + b0] = tmp[m, b0]
                    continue
                dq = 2 * lq + 1
                for n in range(dq):
                    acc = tmp[m, b0] * Dl[lq, n, 0]
                    for k in range(1, dq):
                        acc += tmp[m, b0 + k] * Dl[lq, n, k]
                    dst[row + b0 + n] = acc


@njit(cache=True)
def rotate_blocks(blocks, out, ptr, Zi, Zj, nsh, sh_l, sh_start, norb, Dl):
    """out = D_i H D_jᵀ per edge (spinless (n_i, n_j) blocks)."""
    lmax = Dl.shape[0] - 1
    tmp = np.empty((2 * lmax + 1, norb.max()), dtype=out.dtype)
    for e in range(len(Zi)):
        _rotate_quadrant(blocks, out, ptr[e], norb[Zj[e]], 0, 0, Zi[e], Zj[e], nsh, sh_l, sh_start, Dl, tmp)


@njit(cache=True)
def rotate_blocks_spinful(blocks, out, ptr, Zi, Zj, nsh, sh_l, sh_start, norb, Dl, U):
    """out = (U ⊗ D_i) H (U ⊗ D_j)^† per edge, (2n_i, 2n_j) spin-outer complex blocks."""
    lmax = Dl.shape[0] - 1
    tmp = np.empty((2 * lmax + 1, norb.max()), dtype=out.dtype)
    for e in range(len(Zi)):
        zi, zj = Zi[e], Zj[e]
        ni, nj = norb[zi], norb[zj]
        base = ptr[e]
        stride = 2 * nj
        for s in range(2):
            for t in range(2):
                _rotate_quadrant(blocks, out, base, stride, s * ni, t * nj, zi, zj, nsh, sh_l, sh_start, Dl, tmp)
        # spin mixing: M' = U M U^† for each orbital pair (r, c)
        for r in range(ni):
            for c in range(nj):
                i00 = base + r * stride + c
                i01 = i00 + nj
                i10 = i00 + ni * stride
                i11 = i10 + nj
                m00, m01, m10, m11 = out[i00], out[i01], out[i10], out[i11]
                a00 = U[0, 0] * m00 + U[0, 1] * m10  # A = U M
                a01 = U[0, 0] * m01 + U[0, 1] * m11
                a10 = U[1, 0] * m00 + U[1, 1] * m10
                a11 = U[1, 0] * m01 + U[1, 1] * m11
                out[i00] = a00 * np.conj(U[0, 0]) + a01 * np.conj(U[0, 1])  # (A U^†)[s, t] = Σ_k A[s, k] U*[t, k]
                out[i01] = a00 * np.conj(U[1, 0]) + a01 * np.conj(U[1, 1])
                out[i10] = a10 * np.conj(U[0, 0]) + a11 * np.conj(U[0, 1])
                out[i11] = a10 * np.conj(U[1, 0]) + a11 * np.conj(U[1, 1])


@njit(cache=True)
def block_traces(blocks, T, ptr, T_ptr, Zi, Zj, nsh, sh_l, sh_start, norb, spinful):
    """T_b = sum |H_b|² per basic block (p-major then q); spinful: summed over the four spin quadrants."""
    for e in range(len(Zi)):
        zi, zj = Zi[e], Zj[e]
        ni, nj = norb[zi], norb[zj]
        base = ptr[e]
        stride = 2 * nj if spinful else nj
        nspin = 2 if spinful else 1
        k = T_ptr[e]
        for p in range(nsh[zi]):
            dp = 2 * sh_l[zi, p] + 1
            a0 = sh_start[zi, p]
            for q in range(nsh[zj]):
                dq = 2 * sh_l[zj, q] + 1
                b0 = sh_start[zj, q]
                acc = 0.0
                for s in range(nspin):
                    for t in range(nspin):
                        for m in range(dp):
                            row = base + (s * ni + a0 + m) * stride + t * nj + b0
                            for n in range(dq):
                                x = blocks[row + n]
                                xr = np.float64(x.real)
                                xi = np.float64(x.imag)
                                acc += xr * xr + xi * xi
                T[k] = acc
                k += 1

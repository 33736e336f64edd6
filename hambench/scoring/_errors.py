"""Element-wise errors of flat edge blocks and their reductions: MAE (complex modulus or Re/Im), the gauge-fixed
MAE, means over structures, the worst structure, and the errors per basic block (element pair × shell pair).

Crystals (meV when reported): per structure the mean |Ĥ − H| over every matrix element of every stored edge,
then the plain mean over structures (DeepH-E3's analyzer); the pooled mean over all elements alongside. Spinful
(SOC) elements count by their complex modulus |ΔH| (DeepH-E3); the Re/Im variant counts Re and Im as two
elements. Per basic block b = (element pair, shell p of i, shell q of j; spinful: the whole spinor sub-block):
per structure the mean |ΔH_b| over its edges of that element pair, then the mean over the structures that have b
(DeepH-E3's heat map). Gauge-fixed variants remove the best μS per structure, μ = ⟨ΔH, S⟩/⟨S, S⟩ (S ⊗ I₂ for
spinful blocks). Everything is in eV here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hambench.basis._conventions import z_to_symbol
from hambench.basis._layout import BasicBlock, BasisLayout

__all__ = ["abs_error", "mae", "expand_overlap", "gauge_mu", "gauge_fixed_mae", "mean_and_pooled", "worst",
           "block_index", "shell_names", "block_label", "block_error_sums", "block_mae",
           "per_structure_block_mae"]

_LETTERS = "spdfghi"


def abs_error(pred, true, reim: bool = False) -> np.ndarray:
    """|Ĥ − H| per element (complex modulus); with ``reim`` the |ΔRe| and |ΔIm| of complex elements as two
    elements each (real inputs: unchanged)."""
    d = np.asarray(pred) - np.asarray(true)
    if reim and np.iscomplexobj(d):
        return np.concatenate([np.abs(d.real).reshape(-1), np.abs(d.imag).reshape(-1)])
    return np.abs(d).reshape(-1)


def mae(pred, true, reim: bool = False) -> float:
    """Mean absolute error over all elements (see :func:`abs_error`)."""
    e = abs_error(pred, true, reim)
    return float(np.mean(e)) if e.size else float("nan")


def expand_overlap(S, Z_src, Z_dst, layout: BasisLayout) -> np.ndarray:
    """Overlap blocks in the H layout: unchanged when spinless, S ⊗ I₂ per block (spin-outer) when spinful."""
    S = np.asarray(S, dtype=np.float64).reshape(-1)
    if not layout.spinful:
        return S
    ni, nj = layout.block_sizes(Z_src, Z_dst, False)
    sptr = layout.block_ptr(Z_src, Z_dst, False)
    hptr = layout.block_ptr(Z_src, Z_dst, True)
    out = np.zeros(int(hptr[-1]))
    for a, b in {(int(x), int(y)) for x, y in zip(ni, nj)}:
        e = np.flatnonzero((ni == a) & (nj == b))
        blk = S[sptr[e][:, None] + np.arange(a * b)].reshape(-1, a, b)
        big = np.zeros((e.size, 2, a, 2, b))
        big[:, 0, :, 0, :] = blk
        big[:, 1, :, 1, :] = blk
        out[hptr[e][:, None] + np.arange(4 * a * b)] = big.reshape(e.size, -1)
    return out


def gauge_mu(pred, true, S_h) -> float:
    """The best uniform shift μ (eV) of ΔH = Ĥ − H along S: μ = Re⟨ΔH, S⟩ / ⟨S, S⟩ (S in the H layout)."""
    d = np.asarray(pred).reshape(-1) - np.asarray(true).reshape(-1)
    S_h = np.asarray(S_h, dtype=np.float64).reshape(-1)
    ss = float(np.sum(S_h * S_h))  # numpy's own pairwise sums, not BLAS: the same bits in every process
    return float(np.sum(d.real * S_h) / ss) if ss > 0 else 0.0


def gauge_fixed_mae(pred, true, S_h, reim: bool = False) -> tuple[float, float]:
    """(MAE of ΔH − μS, μ) with μ from :func:`gauge_mu`."""
    mu = gauge_mu(pred, true, S_h)
    return mae(np.asarray(pred).reshape(-1) - mu * np.asarray(S_h).reshape(-1), true, reim), mu


def mean_and_pooled(sums, counts) -> tuple[float, float]:
    """(mean over structures of sum/count, pooled Σsum/Σcount); structures with count 0 are left out."""
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    ok = counts > 0
    if not ok.any():
        return float("nan"), float("nan")
    return float(np.mean(sums[ok] / counts[ok])), float(np.sum(sums[ok]) / np.sum(counts[ok]))


def worst(values, ids) -> tuple[float, str | None]:
    """(largest value, its id); the first one on ties; NaNs ignored."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or np.all(np.isnan(v)):
        return float("nan"), None
    k = int(np.nanargmax(v))
    return float(v[k]), ids[k]


def block_index(layout: BasisLayout) -> list[tuple[int, int, BasicBlock]]:
    """Every basic block of the layout in a fixed order: element pairs (sorted Z), then p-major, q."""
    return [(zi, zj, b) for zi, zj in layout.pair_types() for b in layout.basic_blocks(zi, zj)]


def shell_names(shells: Sequence[int]) -> list[str]:
    """Names of a species' shells: the n-th shell of each l, ``[0, 0, 1]`` → ``["s1", "s2", "p1"]``."""
    seen: dict[int, int] = {}
    out = []
    for l in shells:
        seen[l] = seen.get(l, 0) + 1
        out.append(f"{_LETTERS[l]}{seen[l]}")
    return out


def block_label(layout: BasisLayout, zi: int, zj: int, b: BasicBlock) -> tuple[str, str]:
    """("C-H", "s2-p1"): element pair and shell pair (the n-th shell of that l of each element)."""
    return (f"{z_to_symbol(zi)}-{z_to_symbol(zj)}",
            f"{shell_names(layout.species[zi])[b.p]}-{shell_names(layout.species[zj])[b.q]}")


def _block_offsets(layout: BasisLayout):
    """Start of each element pair's basic blocks in :func:`block_index` order."""
    start, k = {}, 0
    for zi, zj in layout.pair_types():
        start[(zi, zj)] = k
        k += len(layout.basic_blocks(zi, zj))
    return start, k


def block_error_sums(pred, true, Z_src, Z_dst, layout: BasisLayout, owner=None, nstruct: int = 1,
                     H_ptr=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per structure and basic block: Σ|ΔH_b| over its edges, the number of elements, the number of edges.

    ``owner`` (E,) gives each edge's structure (0..nstruct-1; default all 0). Returns three (nstruct, G)
    arrays in :func:`block_index` order (sums float64, element counts and edge counts int64). Spinful: the
    complex modulus over the whole spinor sub-block (four spin parts).
    """
    Z_src = np.asarray(Z_src, dtype=np.int64).reshape(-1)
    Z_dst = np.asarray(Z_dst, dtype=np.int64).reshape(-1)
    E = Z_src.size
    owner = np.zeros(E, np.int64) if owner is None else np.asarray(owner, dtype=np.int64)
    ni, nj = layout.block_sizes(Z_src, Z_dst)
    if H_ptr is None:
        H_ptr = layout.block_ptr(Z_src, Z_dst)
    diff = np.asarray(pred).reshape(-1) - np.asarray(true).reshape(-1)
    start, G = _block_offsets(layout)
    sums = np.zeros((nstruct, G))
    nel = np.zeros((nstruct, G), np.int64)
    ned = np.zeros((nstruct, G), np.int64)
    f = 2 if layout.spinful else 1
    pair_code = Z_src * (layout.zmax + 1) + Z_dst
    for code in np.unique(pair_code):
        zi, zj = divmod(int(code), layout.zmax + 1)
        e = np.flatnonzero(pair_code == code)
        a, b = int(ni[e[0]]), int(nj[e[0]])
        X = np.abs(diff[H_ptr[e][:, None] + np.arange(a * b)])  # (Ne, a*b)
        if f == 2:
            X = X.reshape(-1, 2, a // 2, 2, b // 2).sum(axis=(1, 3))
        else:
            X = X.reshape(-1, a, b)
        si = layout.shell_offsets(zi)
        sj = layout.shell_offsets(zj)
        Xb = np.add.reduceat(np.add.reduceat(X, si, axis=1), sj, axis=2).reshape(e.size, -1)  # (Ne, nb)
        g0 = start[(zi, zj)]
        nb = Xb.shape[1]
        acc = np.zeros((nstruct, nb))
        o = owner[e]
        if o.size and np.all(o[1:] >= o[:-1]):  # edges grouped by structure: one segment sum per structure
            starts = np.flatnonzero(np.concatenate([[True], o[1:] != o[:-1]]))
            acc[o[starts]] = np.add.reduceat(Xb, starts, axis=0)
        else:
            np.add.at(acc, o, Xb)
        sums[:, g0 : g0 + nb] += acc
        cnt = np.bincount(owner[e], minlength=nstruct)
        sizes = np.array([bb.shape[0] * bb.shape[1] * f * f for bb in layout.basic_blocks(zi, zj)], np.int64)
        ned[:, g0 : g0 + nb] += cnt[:, None]
        nel[:, g0 : g0 + nb] += cnt[:, None] * sizes[None, :]
    return sums, nel, ned


def block_mae(sums, nel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From per-structure block sums (nstruct, G): (mean over the structures that have the block of their
    block MAE, pooled MAE, number of structures that have it). NaN where no structure has the block."""
    sums = np.asarray(sums, dtype=np.float64)
    nel = np.asarray(nel, dtype=np.float64)
    per, have = per_structure_block_mae(sums, nel)
    n = have.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, per.sum(axis=0) / np.maximum(n, 1), np.nan)
        pooled = np.where(n > 0, sums.sum(axis=0) / np.maximum(nel.sum(axis=0), 1), np.nan)
    return mean, pooled, n.astype(np.int64)



def per_structure_block_mae(sums, nel) -> tuple[np.ndarray, np.ndarray]:
    """(each structure's MAE of each block, 0 where it lacks the block; whether it has the block), from the
    (nstruct, G) sums and element counts of :func:`block_error_sums`."""
    have = nel > 0
    return np.where(have, sums / np.where(have, nel, 1), 0.0), have

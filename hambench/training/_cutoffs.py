"""Edge cut-offs learned from the training data, recorded in every checkpoint."""

from __future__ import annotations

import numpy as np

__all__ = ["edge_cutoffs"]


def edge_cutoffs(store, indices, max_edges: int = 1 << 21) -> dict[str, float]:
    """Longest edge (Å) per ordered element pair ``"Zi-Zj"`` over the structures ``indices`` of ``store``.

    ``predict --structures`` builds a new structure's edges with these cut-offs, so it gets the blocks a DFT
    run of the training data's settings would have had. Read in structure ranges of at most ``max_edges``.
    """
    idx = np.unique(np.asarray(indices, dtype=np.int64))
    if idx.size == 0:
        return {}
    edge_ptr = store.ptr.edge
    best: dict[tuple[int, int], float] = {}
    k = 0
    while k < idx.size:
        a = int(idx[k])
        b = a + 1
        while b < len(store) and edge_ptr[b + 1] - edge_ptr[a] <= max_edges:
            b += 1
        r = store.read_range(a, b, blocks=())
        keep = np.isin(r.index, idx)
        es = r.edge_structure
        off = r.atom_ptr[:-1][es]
        gi, gj = r.src.astype(np.int64) + off, r.dst.astype(np.int64) + off
        vec = r.pos[gj] + np.einsum("ek,ekl->el", r.shift.astype(np.float64), r.cell[es]) - r.pos[gi]  # (E, 3)
        length = np.linalg.norm(vec, axis=1)
        m = keep[es]
        zi, zj, length = r.Z[gi][m].astype(np.int64), r.Z[gj][m].astype(np.int64), length[m]
        code = zi * 1000 + zj
        for c in np.unique(code):
            key = (int(c // 1000), int(c % 1000))
            best[key] = max(best.get(key, 0.0), float(length[code == c].max()))
        k = int(np.searchsorted(idx, b))
    return {f"{a}-{b}": v for (a, b), v in sorted(best.items())}

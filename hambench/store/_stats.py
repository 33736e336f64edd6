"""Statistics of a store's structures that later steps rely on: the longest edge per element pair."""

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
    _, edge_ptr = store.structure_ptrs
    best: dict[tuple[int, int], float] = {}
    k = 0
    while k < idx.size:
        a = int(idx[k])
        b = a + 1
        while b < len(store) and edge_ptr[b + 1] - edge_ptr[a] <= max_edges:
            b += 1
        r = store.read_range(a, b, blocks=())
        m = np.isin(r.index, idx)[r.edge_structure]
        zi, zj = r.edge_Z()
        zi, zj, length = zi[m], zj[m], np.linalg.norm(r.edge_vectors(), axis=1)[m]
        code = zi * 1000 + zj
        for c in np.unique(code):
            key = (int(c // 1000), int(c % 1000))
            best[key] = max(best.get(key, 0.0), float(length[code == c].max()))
        k = int(np.searchsorted(idx, b))
    return {f"{a}-{b}": v for (a, b), v in sorted(best.items())}

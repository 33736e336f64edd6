"""Edge-chunked inference for large structures (``predict --structures`` on 10⁴ atoms, issue 31 item 2).

DeepH-E3's forward holds, per update, the tensor-product input and output of *every* edge at once
(E × (2·d_node + d_edge) and more, E ≈ 2·10⁶ for a 10⁴-atom graphene bilayer with its 9.3 Å PySCF cut-off:
tens of GB). :func:`chunked_forward` evaluates the same network layer by layer with the per-edge work in slices
of ``edge_chunk`` edges, so memory is

    the model's state  x (N × d_node) + e (E × d_edge) + the next e (E × d_edge)   [+ the output blocks]
    + one slice of the per-edge work (edge_chunk × ~10 · d_edge)

and nothing else grows with the structure.

Why in the model's layer loop and not a domain decomposition (atoms in chunks, each with a halo, the model run
on each sub-structure): (1) the receptive field of an edge output is ``num_blocks + 1`` hops, ≈ 4 × 9.3 Å = 37 Å
here, so at 10⁴ atoms (a 114 Å cell) every chunk's halo is most of the structure and the work multiplies; (2)
DeepH-E3's layer norm takes its statistics over *all* nodes / edges of the structure, which couples every atom:
a sub-structure gives other numbers, and exact statistics would need one more pass over the whole structure
per norm (six norms). Layer by layer, the statistics are exact: the norm's input is kept for the whole
structure (the "next e" above), its per-structure mean and mean square are summed slice by slice, then applied.

Scope: :class:`~hambench.models.deephe3.DeepHE3` without TraceGrad hooks; :func:`supports_chunking` says which
models this is, and the caller runs the others whole (their memory is the unchunked one).
"""

from __future__ import annotations

import time

import torch

from . import common
from .deephe3 import DeepHE3

__all__ = ["DEFAULT_EDGE_CHUNK", "supports_chunking", "chunked_forward"]

#: edges per slice: the per-slice work of a paper-size DeepH-E3 is ~0.2 GB in float32 at this size
DEFAULT_EDGE_CHUNK = 16384


def supports_chunking(model) -> bool:
    """True when :func:`chunked_forward` evaluates ``model`` exactly (a plain DeepH-E3)."""
    return isinstance(model, DeepHE3) and model.edge_hooks is None


class _Slices:
    """The edge slices and their geometry (spherical harmonics, radial basis), recomputed per slice."""

    def __init__(self, model, batch, edge_chunk: int, progress=None):
        self.model = model
        dtype = model.radial.offsets.dtype
        self.src, self.dst = batch.edge_src.long(), batch.edge_dst.long()
        self.vec = common.edge_vectors(batch).to(dtype)                             # (E, 3)
        self.length = self.vec.pow(2).sum(-1).clamp_min(torch.finfo(dtype).tiny).sqrt()
        E = int(self.src.numel())
        self.E = E
        self.ranges = [(a, min(E, a + edge_chunk)) for a in range(0, E, max(1, int(edge_chunk)))]
        self.progress = progress
        self._t0 = self._last = time.perf_counter()
        self._done = 0
        self._total = E * 2 * len(model.node_blocks)

    def geometry(self, a: int, b: int):
        sh = common.edge_sh(self.vec[a:b], self.model.cfg.lmax)                   # (n, (lmax+1)²)
        return sh, self.model.radial(self.length[a:b])                           # (n, num_basis)

    def tick(self, n: int, what: str) -> None:
        self._done += n
        now = time.perf_counter()
        if self.progress is not None and (now - self._last >= 10.0 or self._done == self._total):
            self._last = now
            self.progress(what, self._done, self._total, now - self._t0)


def _node_update(nb, x, e, sl: _Slices, onehot, batch, B):
    """NodeUpdate with the messages summed slice by slice (same maths as ``NodeUpdate.forward``)."""
    xp = nb.lin_pre(x)
    agg = None
    for a, b in sl.ranges:
        sh, radial = sl.geometry(a, b)
        msg = nb.conv(torch.cat([xp[sl.src[a:b]], xp[sl.dst[a:b]], e[a:b]], dim=-1), sh, radial)
        if agg is None:
            agg = torch.zeros(x.shape[0], msg.shape[-1], dtype=msg.dtype, device=msg.device)
        agg.index_add_(0, sl.src[a:b], msg)
        sl.tick(b - a, "node update")
    return nb.finish(x, agg, onehot, batch.atom_batch, B)


def _norm_apply(norm, pre, graph, B: int, ranges):
    """DeepH-E3's per-structure layer norm (``E3LayerNorm.forward``) on ``pre`` (E × d), in place, its sums
    taken slice by slice: mean over each structure's items and the channels, then for scalars the mean square of
    the centred values, then weight and bias."""
    deg = torch.bincount(graph, minlength=B).clamp(min=1).to(pre.dtype)
    ix, iw, ib = 0, 0, 0
    for mul, ir in norm.irreps:
        d = mul * ir.dim
        s = torch.zeros(B, mul, ir.dim, dtype=pre.dtype, device=pre.device)
        for a, b in ranges:
            s.index_add_(0, graph[a:b], pre[a:b, ix:ix + d].reshape(-1, mul, ir.dim))
        mean = s.mean(dim=1, keepdim=True) / deg[:, None, None]                   # (B, 1, 2l+1)
        scale = None
        if ir.l == 0:
            sq = torch.zeros(B, mul, ir.dim, dtype=pre.dtype, device=pre.device)
            for a, b in ranges:
                f = pre[a:b, ix:ix + d].reshape(-1, mul, ir.dim) - mean[graph[a:b]]
                sq.index_add_(0, graph[a:b], f.pow(2))
            ms = (sq / deg[:, None, None]).mean(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(pre.dtype).tiny)
            scale = ms.sqrt() + norm.eps                                              # (B, 1, 1)
        w = norm.weight[None, iw:iw + mul, None]
        bias = norm.bias[None, ib:ib + mul, None] if ir.l == 0 and ir.p == 1 else None
        for a, b in ranges:
            g = graph[a:b]
            f = pre[a:b, ix:ix + d].reshape(-1, mul, ir.dim) - mean[g]
            if scale is not None:
                f = f / scale[g]
            f = f * w
            if bias is not None:
                f = f + bias
            pre[a:b, ix:ix + d] = f.reshape(-1, d)
        if bias is not None:
            ib += mul
        ix += d
        iw += mul
    return pre


def _edge_update(eb, x, e, sl: _Slices, onehot_pair, batch, B):
    """EdgeUpdate slice by slice: the norm's input for every edge, the exact per-structure norm, the skip."""
    pre = None
    for a, b in sl.ranges:
        sh, radial = sl.geometry(a, b)
        new = eb.conv(torch.cat([x[sl.src[a:b]], x[sl.dst[a:b]], eb.lin_pre(e[a:b])], dim=-1), sh, radial)
        new = eb.lin_post(new) + eb.sc(e[a:b], onehot_pair(a, b))
        if pre is None:
            pre = torch.empty(sl.E, new.shape[-1], dtype=new.dtype, device=new.device)
        pre[a:b] = new
        sl.tick(b - a, "edge update")
    if eb.norm is not None:
        pre = _norm_apply(eb.norm, pre, batch.edge_batch, B, sl.ranges)
    for a, b in sl.ranges:
        pre[a:b] += e[a:b] if eb.skip is None else eb.skip(e[a:b])
    return pre


@torch.no_grad()
def chunked_forward(model, batch, edge_chunk: int = DEFAULT_EDGE_CHUNK, progress=None) -> torch.Tensor:
    """The flat predicted H of ``batch`` (aligned with ``batch.H_ptr``), equal to ``model(batch)["H"]`` up to
    float reassociation, with the per-edge work in slices of ``edge_chunk`` edges (module docstring).

    ``progress(what, done, total, seconds)`` is called at most every 10 s (edge-slice units over all updates).
    """
    if not supports_chunking(model):
        raise TypeError(f"{type(model).__name__} has no chunked forward (see supports_chunking)")
    model._check(batch)
    dtype = model.radial.offsets.dtype
    sl = _Slices(model, batch, edge_chunk, progress)
    sp = model._species_index[batch.Z.long()]
    ns = model.n_species
    onehot = torch.nn.functional.one_hot(sp, ns).to(dtype)

    def onehot_pair(a, b):
        return torch.nn.functional.one_hot(sp[sl.src[a:b]] * ns + sp[sl.dst[a:b]], ns ** 2).to(dtype)

    B = int(batch.natoms.shape[0])
    x = model.embed(onehot)
    e = model.edge_init(sl.length)
    for nb, eb in zip(model.node_blocks, model.edge_blocks):
        x = _node_update(nb, x, e, sl, onehot, batch, B)
        e = _edge_update(eb, x, e, sl, onehot_pair, batch, B)
    ptr = batch.H_ptr
    zs, zd = batch.Z[sl.src], batch.Z[sl.dst]
    H = None
    for a, b in sl.ranges:
        Hc = model.head(model.lin_edge(e[a:b]) * model._readout_scale, zs[a:b], zd[a:b], ptr[a:b + 1] - ptr[a])
        if H is None:
            H = torch.empty(int(ptr[-1]), dtype=Hc.dtype, device=Hc.device)
        H[int(ptr[a]):int(ptr[b])] = Hc
    del e
    if model.cfg.symmetrize:
        partner = common.partner_edges(sl.src, sl.dst, batch.shift)
        t = common.transpose_index(model.layout, zs, zd, ptr, partner)
        H = common.symmetrize_blocks(H, t)
    return H

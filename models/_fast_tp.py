"""Fast exact tensor products: the same functions as e3nn's ``o3.TensorProduct`` from the same parameters.

``set_kernel(model, "fast")`` swaps the class of every plain ``o3.TensorProduct`` and
``o3.FullyConnectedTensorProduct`` of a model for :class:`FastTensorProduct` /
:class:`FastFullyConnectedTensorProduct` (subclasses that only replace ``forward``); ``"e3nn"`` swaps them
back. Parameters, buffers and state-dict keys are untouched, so a checkpoint does not depend on the kernel.
Modules whose instructions use a mode this file does not implement (or weightless paths) keep e3nn's forward.

What e3nn computes, per instruction p = (i1, i2, o, mode) with path weight α_p (its normalisation)::

    out_o[z, w, k] += α_p Σ_{u,v} W_p[(z,) u, v, w] Σ_{i,j} C_p[i, j, k] x1[z, u, i] x2[z, v, j]   (uvw;
    uvu: w = u and W_p[u, v]; uuu: u = v = w and W_p[u])

e3nn evaluates it path by path (a dense outer product x1 ⊗ x2 per input pair, then an einsum with the dense
3j symbol): hundreds of small operations per product, each dense over mostly-zero 3j entries. Here the paths
are grouped (one contraction per input pair, one weight contraction per output irrep):

1. CG stage, per input pair (i1, i2) with every path of the pair stacked along a column axis q (the 3j
   symbols scaled by α_p, ``(d1, d2, Q)``): T[z, u, v, q] = Σ_ij C[i, j, q] x1[z, u, i] x2[z, v, j].
   When every irrep of input 2 has multiplicity 1 (spherical harmonics of the edge), x2 is first turned into
   an operator per item, B[z, i, q] = Σ_j C[i, j, q] x2[z, j], for all pairs of one i1 at once, and
   T = x1 · B is one batched matrix product: the cost no longer multiplies the channel count by d2.
2. weight stage, per output irrep: the T slices of its paths are concatenated and contracted with the
   concatenated weights in one matrix product (uvw) or one batched product (uvu, uuu).

Every step is a differentiable torch operation: backward, double backward (TraceGrad's autograd form),
float32 and float64, any device. The results equal e3nn's up to the order of floating-point sums
(tests/test_fast_kernels.py).
"""

from __future__ import annotations

import math

import torch
from e3nn import o3

__all__ = ["FastTensorProduct", "FastFullyConnectedTensorProduct", "set_kernel", "KERNELS", "supported"]

KERNELS = ("e3nn", "fast")
_MODES = ("uvw", "uvu", "uuu")


def supported(tp: o3.TensorProduct) -> bool:
    """True when every instruction of ``tp`` is one this file computes (weighted uvw, uvu or uuu)."""
    return all(ins.connection_mode in _MODES and ins.has_weight for ins in tp.instructions) and _modes_ok(tp)


_W3J: dict = {}


def _w3j(l1: int, l2: int, l3: int) -> torch.Tensor:
    key = (l1, l2, l3)
    if key not in _W3J:
        _W3J[key] = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
    return _W3J[key]


def _modes_ok(tp) -> bool:
    by_out: dict = {}
    for ins in tp.instructions:
        by_out.setdefault(ins.i_out, set()).add(ins.connection_mode)
    return all(len(m) == 1 for m in by_out.values())


class _Unit:
    """One CG contraction: input irrep ``i1`` with either all of input 2 at once (``i2 is None``: the right
    operator, input 2 of multiplicity 1) or input irrep ``i2``. Its columns are ordered by output irrep, then
    by path, so the part of each output is one piece of a split."""

    def __init__(self, i1, i2, fam, v, paths_by_out, C):
        self.i1, self.i2, self.fam, self.v = i1, i2, fam, v
        self.outs = sorted(paths_by_out)  # output irreps this unit feeds
        self.paths = {o: paths_by_out[o] for o in self.outs}  # o -> [(instruction, weight offset)]
        self.C = C


class _Plan:
    """Index tables and stacked 3j symbols of one tensor product (built once per dtype and device)."""

    def __init__(self, tp: o3.TensorProduct, dtype, device):
        ir1, ir2, iro = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
        self.split1 = [m * ir.dim for m, ir in ir1]
        self.split2 = [m * ir.dim for m, ir in ir2]
        self.mul1, self.mul2 = [m for m, _ in ir1], [m for m, _ in ir2]
        self.d1, self.d2 = [ir.dim for _, ir in ir1], [ir.dim for _, ir in ir2]
        self.out = [(m, ir.dim) for m, ir in iro]
        self.dim_out = iro.dim
        instr, off = [], 0
        for ins in tp.instructions:
            n = math.prod(ins.path_shape)
            if n > 0 and ir1[ins.i_in1].dim and ir2[ins.i_in2].dim and iro[ins.i_out].dim:
                instr.append((ins, off))
            off += n
        self.mode = {ins.i_out: ins.connection_mode for ins, _ in instr}
        right = all(m == 1 for m in self.mul2)
        keyed: dict = {}
        for ins, woff in instr:
            fam = "uu" if ins.connection_mode[:2] == "uu" else "uv"
            key = (ins.i_in1, None if (right and fam == "uv") else ins.i_in2, fam)
            keyed.setdefault(key, {}).setdefault(ins.i_out, []).append((ins, woff))
        self.units = []
        for (i1, i2, fam), by_out in keyed.items():
            l1 = ir1[i1].ir.l
            cols = []
            for o in sorted(by_out):
                for ins, _ in by_out[o]:
                    C = torch.zeros(ir2.dim if i2 is None else ir2[i2].ir.dim, 2 * l1 + 1, iro[o].ir.dim,
                                    dtype=torch.float64)
                    rows = ir2.slices()[ins.i_in2] if i2 is None else slice(None)
                    C[rows] = ins.path_weight * _w3j(l1, ir2[ins.i_in2].ir.l, iro[o].ir.l).permute(1, 0, 2)
                    cols.append(C)
            C = torch.cat(cols, dim=-1)  # (d2 rows, d1, Q)
            if i2 is not None:  # xx @ C with xx (.., d1, d2): rows (i, j)
                C = C.permute(1, 0, 2).reshape(-1, C.shape[-1])
            else:  # x2 @ R with R (d2, (i, q))
                C = C.reshape(C.shape[0], -1)
            v = 1 if (i2 is None or fam == "uu") else self.mul2[i2]
            self.units.append(_Unit(i1, i2, fam, v, by_out, C.to(device=device, dtype=dtype)))
        # per output: the weight index table (rows/cols ordered as the pieces are concatenated)
        self.widx = {}
        for o, mode in self.mode.items():
            mo = self.out[o][0]
            blocks = []
            for un in self.units:
                if o not in un.paths:
                    continue
                u = self.mul1[un.i1]
                ps = un.paths[o]
                if mode == "uvw":  # rows (u, v, p), columns w
                    idx = torch.stack([torch.stack([
                        torch.stack([off + (a * (self.mul2[ins.i_in2]) + (b if un.v > 1 else 0)) * mo + torch.arange(mo)
                                     for ins, off in ps]) for b in range(un.v)]) for a in range(u)])
                    blocks.append(idx.reshape(-1, mo))
                else:  # uvu: W_p[u, v]; uuu: W_p[u] -> (u, (v, p))
                    cols = torch.stack([torch.stack([
                        torch.tensor([off + (a * self.mul2[ins.i_in2] + b if mode == "uvu" else a) for ins, off in ps])
                        for b in range(un.v)]) for a in range(u)])
                    blocks.append(cols.reshape(u, -1))
            self.widx[o] = torch.cat(blocks, dim=0 if mode == "uvw" else 1).to(device)


def _plan(tp, dtype, device) -> _Plan:
    cache = tp.__dict__.setdefault("_fast_plans", {})
    key = (dtype, device)
    if key not in cache:
        cache[key] = _Plan(tp, dtype, device)
    return cache[key]


def _pieces(p: _Plan, x1: torch.Tensor, x2: torch.Tensor) -> dict:
    """Per output irrep, the list of CG pieces (Z, u, V, d3) of every unit feeding it, in unit order."""
    Z = x1.shape[0]
    xs1 = x1.split(p.split1, dim=-1)
    xs2 = x2.split(p.split2, dim=-1) if len(p.split2) > 1 else (x2,)
    per_out: dict = {}
    for un in p.units:
        u, d1 = p.mul1[un.i1], p.d1[un.i1]
        a = xs1[un.i1].reshape(Z, u, d1)
        if un.i2 is None:  # right operator of x2, then a batched product with the channels of x1
            B = (x2 @ un.C).reshape(Z, d1, -1)
            full = torch.bmm(a, B)  # (Z, u, Q)
        else:
            v, d2 = p.mul2[un.i2], p.d2[un.i2]
            b = xs2[un.i2].reshape(Z, v, d2)
            if un.fam == "uu":
                xx = a[:, :, :, None] * b[:, :, None, :]
                full = (xx.reshape(Z * u, d1 * d2) @ un.C).reshape(Z, u, -1)
            else:
                xx = a[:, :, None, :, None] * b[:, None, :, None, :]
                full = (xx.reshape(Z * u * v, d1 * d2) @ un.C).reshape(Z, u * v, -1)
        sizes = [len(un.paths[o]) * p.out[o][1] for o in un.outs]
        parts = full.split(sizes, dim=-1) if len(sizes) > 1 else (full,)
        for o, part in zip(un.outs, parts):
            d3 = p.out[o][1]
            # (Z, u, V * n_p, d3): rows (u, v), then paths
            per_out.setdefault(o, []).append(part.reshape(Z, u, -1, d3))
    return per_out


def _weights(p: _Plan, per_out: dict, w: torch.Tensor, shared: bool, Z: int, like: torch.Tensor) -> torch.Tensor:
    outs = []
    for o, (mo, do) in enumerate(p.out):
        if mo * do == 0:
            continue
        pieces = per_out.get(o)
        if not pieces:
            outs.append(like.new_zeros(Z, mo * do))
            continue
        idx = p.widx[o]
        W = w[idx] if shared else w[:, idx]
        if p.mode[o] == "uvw":
            A = torch.cat([q.reshape(Z, -1, do) for q in pieces], dim=1) if len(pieces) > 1 else pieces[0].reshape(Z, -1, do)
            r = torch.matmul(A.transpose(1, 2), W)  # (Z, k, w)
            outs.append(r.transpose(1, 2).reshape(Z, mo * do))
        else:
            A = torch.cat(pieces, dim=2) if len(pieces) > 1 else pieces[0]  # (Z, u, P, k)
            if shared:
                r = torch.einsum("zuak,ua->zuk", A, W)
            else:
                r = torch.matmul(W.reshape(Z * mo, 1, -1), A.reshape(Z * mo, -1, do))
            outs.append(r.reshape(Z, mo * do))
    if not outs:
        return like.new_zeros(Z, 0)
    return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]


class _FastMixin:
    """``forward`` of an e3nn TensorProduct computed by :func:`_cg_stage` and :func:`_weight_stage`."""

    def forward(self, x, y, weight=None):
        if not supported(self):
            return super().forward(x, y, weight)
        torch._assert(x.shape[-1] == self._in1_dim, "Incorrect last dimension for x")
        torch._assert(y.shape[-1] == self._in2_dim, "Incorrect last dimension for y")
        w = self._get_weights(weight)
        if self.shared_weights:
            lead = torch.broadcast_shapes(x.shape[:-1], y.shape[:-1])
        else:
            lead = torch.broadcast_shapes(x.shape[:-1], y.shape[:-1], w.shape[:-1])
        x1 = x.expand(lead + x.shape[-1:]).reshape(-1, x.shape[-1])
        x2 = y.expand(lead + y.shape[-1:]).reshape(-1, y.shape[-1])
        Z = x1.shape[0]
        if not self.shared_weights:
            w = w.expand(lead + w.shape[-1:]).reshape(Z, -1)
        p = _plan(self, x1.dtype, x1.device)
        out = _weights(p, _pieces(p, x1, x2), w, self.shared_weights, Z, x1)
        return out.reshape(lead + (p.dim_out,))


class FastTensorProduct(_FastMixin, o3.TensorProduct):
    """An ``o3.TensorProduct`` whose forward is the grouped sparse-coupling form (module docstring)."""


class FastFullyConnectedTensorProduct(_FastMixin, o3.FullyConnectedTensorProduct):
    """An ``o3.FullyConnectedTensorProduct`` whose forward is the grouped form (module docstring)."""


_TO_FAST = {o3.TensorProduct: FastTensorProduct, o3.FullyConnectedTensorProduct: FastFullyConnectedTensorProduct}
_TO_E3NN = {v: k for k, v in _TO_FAST.items()}


def set_kernel(model: torch.nn.Module, kernel: str) -> int:
    """Make every plain e3nn tensor product of ``model`` use ``kernel`` ('e3nn' or 'fast'); returns the number
    of modules switched. Only the class changes: parameters, buffers and state-dict keys stay as they are."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    table = _TO_FAST if kernel == "fast" else _TO_E3NN
    n = 0
    for m in model.modules():
        cls = table.get(type(m))
        if cls is not None:
            m.__class__ = cls
            n += 1
    return n

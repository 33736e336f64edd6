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
3j symbol): hundreds of small operations per product. Here the paths are grouped into a few large ones:

1. CG stage, per unit: input irrep i1 with input irrep i2, every path of the pair stacked along a column axis
   q (the 3j symbols scaled by α_p): T[z, q, (u, v)] = Σ_ij C[q, i, j] x1[z, u, i] x2[z, v, j] as one matrix
   product. When every irrep of input 2 has multiplicity 1 (the edge's spherical harmonics), the unit is i1
   with all of input 2: x2 becomes an operator per item, B[z, i, q] = Σ_j C[i, j, q] x2[z, j] (one matrix
   product), and T = Bᵀ · x1 one batched product — the channels no longer multiply d2. The columns are
   ordered (output irrep, component k, path), so the part of each output is a view, not a copy.
2. weight stage, per output irrep: the weights of all its paths are fetched with one gather for the whole
   product (one gradient scatter in backward), the T parts of its units concatenated, and contracted in one
   matrix product (uvw) or one multiply-and-sum (uvu, uuu).

The dense 3j blocks are kept (a matrix product over them beats gathering the non-zeros in torch on CPU);
exploiting their zeros needs a compiled kernel (not done). The gain comes from the grouping: far fewer, larger
operations, in forward and in backward.

Every step is a differentiable torch operation: backward, double backward (TraceGrad's autograd form),
float32 and float64, any device. The results equal e3nn's up to the order of floating-point sums
(tests/test_fast_kernels.py).
"""

from __future__ import annotations

import contextlib
import math

import torch
from e3nn import o3

__all__ = ["FastTensorProduct", "FastFullyConnectedTensorProduct", "set_kernel", "KERNELS", "DEFAULT_KERNEL",
           "default_kernel", "use_kernel", "building", "supported"]

KERNELS = ("e3nn", "fast")
#: the kernel models are built with when neither ``model.kernel`` nor ``--kernel`` names one
DEFAULT_KERNEL = "fast"
_default = [DEFAULT_KERNEL]


def default_kernel() -> str:
    """The kernel :func:`hambench.models.run.build_model` uses when the config names none."""
    return _default[0]


@contextlib.contextmanager
def building(kernel: str):
    """Context for building a model that will run ``kernel``: with ``fast``, e3nn skips its einsum-path
    optimisation of the code it generates for each tensor product (opt_einsum_fx shape propagation, ~60 % of
    a paper-size DeepH-E3's build time). That code then runs only if the kernel is switched back to e3nn, where
    torch.einsum still picks its contraction order; the function and the parameters are the same."""
    if kernel != "fast":
        yield
        return
    import e3nn

    old = e3nn.get_optimization_defaults()["optimize_einsums"]
    e3nn.set_optimization_defaults(optimize_einsums=False)
    try:
        yield
    finally:
        e3nn.set_optimization_defaults(optimize_einsums=old)


def use_kernel(kernel: str | None) -> None:
    """Make ``kernel`` the process's default (``--kernel`` of predict and equivariance); None: no change."""
    if kernel is not None:
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        _default[0] = kernel
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
    operator, every irrep of input 2 of multiplicity 1) or with input irrep ``i2``. It yields T of shape
    (Z, Q, R): R = the channel pairs (u, v) (u alone for the right operator and the uu family), Q its columns
    ordered (output irrep, component k, path p), so each output's part is a view (Z, d3, n_p·R)."""

    def __init__(self, i1, i2, fam, u, v, by_out, C):
        self.i1, self.i2, self.fam, self.u, self.v = i1, i2, fam, u, v
        self.outs = sorted(by_out)
        self.paths = {o: by_out[o] for o in self.outs}  # o -> [(instruction, weight offset)]
        self.C = C  # right: (dim2, d1·Q); else (Q, d1·d2)
        self.widx = {}  # o -> weight index table of this unit's rows


def _unit_C(ir1, ir2, iro, i1, i2, by_out) -> torch.Tensor:
    """Stacked α_p·3j columns (rows, d1, Q) with Q ordered (o, k, p); rows = all of input 2 or irrep i2."""
    l1 = ir1[i1].ir.l
    blocks = []
    for o in sorted(by_out):
        d3 = iro[o].ir.dim
        Cs = []
        for ins, _ in by_out[o]:
            C = torch.zeros(ir2.dim if i2 is None else ir2[i2].ir.dim, 2 * l1 + 1, d3, dtype=torch.float64)
            rows = ir2.slices()[ins.i_in2] if i2 is None else slice(None)
            C[rows] = ins.path_weight * _w3j(l1, ir2[ins.i_in2].ir.l, iro[o].ir.l).permute(1, 0, 2)
            Cs.append(C)
        blocks.append(torch.stack(Cs, dim=-1).reshape(Cs[0].shape[0], 2 * l1 + 1, -1))  # (rows, d1, (k, p))
    return torch.cat(blocks, dim=-1)


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
            C = _unit_C(ir1, ir2, iro, i1, i2, by_out)
            if i2 is None:
                C = C.reshape(C.shape[0], -1)  # x2 @ C -> (Z, d1·Q)
            else:
                C = C.permute(2, 1, 0).reshape(C.shape[-1], -1)  # (Q, d1·d2) against xx rows (i, j)
            u = self.mul1[i1]
            v = 1 if (i2 is None or fam == "uu") else self.mul2[i2]
            un = _Unit(i1, i2, fam, u, v, by_out, C.to(device=device, dtype=dtype))
            for o in un.outs:
                un.widx[o] = self._widx(un, o).to(device)
            self.units.append(un)
        self.units_of = {o: [n for n, un in enumerate(self.units) if o in un.paths] for o in self.mode}
        # one gather of the weights for the whole product (one IndexBackward, not one zero-filled
        # weight-sized gradient per piece), split into the pieces in the order _forward uses them
        order = [(n, self.units[n], o) for o in sorted(self.units_of) for n in self.units_of[o]]
        self.wkeys = [(n, o) for n, _, o in order]
        self.wshapes = [tuple(un.widx[o].shape) for _, un, o in order]
        self.wsizes = [un.widx[o].numel() for _, un, o in order]
        self.wall = torch.cat([un.widx[o].reshape(-1) for _, un, o in order]).to(device) if order else None

    def _widx(self, un: _Unit, o: int) -> torch.Tensor:
        """Flat weight positions of unit ``un``'s rows (p, u, v) for output ``o``: (rows, mo) for uvw, else
        (p, u, v) for uvu and (p, u, 1) for uuu."""
        mode, mo = self.mode[o], self.out[o][0]
        out = []
        for ins, off in un.paths[o]:
            m2 = self.mul2[ins.i_in2]
            a = torch.arange(un.u)[:, None]
            b = torch.arange(un.v)[None, :] if un.v > 1 else torch.zeros(1, 1, dtype=torch.long)
            if mode == "uvw":
                out.append((off + (a * m2 + b)[..., None] * mo + torch.arange(mo)).reshape(-1, mo))
            elif mode == "uvu":
                out.append(off + a * m2 + b)
            else:
                out.append(off + a + 0 * b)
        return torch.cat(out, dim=0) if mode == "uvw" else torch.stack(out)


def _plan(tp, dtype, device) -> _Plan:
    cache = tp.__dict__.setdefault("_fast_plans", {})
    key = (dtype, device)
    if key not in cache:
        cache[key] = _Plan(tp, dtype, device)
    return cache[key]


def _cg(p: _Plan, un: _Unit, xs1, x2, xs2) -> torch.Tensor:
    """T of unit ``un``: (Z, Q, R)."""
    Z = x2.shape[0]
    u, d1 = un.u, p.d1[un.i1]
    a = xs1[un.i1].reshape(Z, u, d1)
    if un.i2 is None:  # the right operator of x2, then a batched product with the channels of x1
        B = (x2 @ un.C).reshape(Z, d1, -1)
        if d1 == 1:
            return B.transpose(1, 2) * a.transpose(1, 2)
        return torch.bmm(B.transpose(1, 2), a.transpose(1, 2))
    v, d2 = p.mul2[un.i2], p.d2[un.i2]
    b = xs2[un.i2].reshape(Z, v, d2)
    if un.fam == "uu":
        xx = (a[:, :, :, None] * b[:, :, None, :]).reshape(Z, u, d1 * d2)
    else:
        xx = (a[:, :, None, :, None] * b[:, None, :, None, :]).reshape(Z, u * v, d1 * d2)
    return torch.matmul(un.C, xx.transpose(1, 2))


def _forward(p: _Plan, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor, shared: bool) -> torch.Tensor:
    Z = x1.shape[0]
    xs1 = x1.split(p.split1, dim=-1)
    xs2 = x2.split(p.split2, dim=-1)
    T = {}
    for n, un in enumerate(p.units):
        full = _cg(p, un, xs1, x2, xs2)
        sizes = [len(un.paths[o]) * p.out[o][1] for o in un.outs]
        parts = full.split(sizes, dim=1) if len(sizes) > 1 else (full,)
        for o, part in zip(un.outs, parts):
            T[n, o] = part.reshape(Z, p.out[o][1], -1)  # (Z, d3, (p, R)), a view
    Wp = {}
    if p.wall is not None:
        wa = w[p.wall] if shared else w[:, p.wall]
        parts = wa.split(p.wsizes, dim=-1) if len(p.wsizes) > 1 else (wa,)
        for key, shape, part in zip(p.wkeys, p.wshapes, parts):
            Wp[key] = part.reshape(shape if shared else (Z,) + shape)
    outs = []
    for o, (mo, do) in enumerate(p.out):
        if mo * do == 0:
            continue
        units = p.units_of.get(o)
        if not units:
            outs.append(x1.new_zeros(Z, mo * do))
            continue
        if p.mode[o] == "uvw":
            A = torch.cat([T[n, o] for n in units], dim=2) if len(units) > 1 else T[units[0], o]
            W = torch.cat([Wp[n, o] for n in units], dim=-2) if len(units) > 1 else Wp[units[0], o]
            r = torch.matmul(A, W)  # (Z, k, w)
        else:  # uvu, uuu: out[z, k, u] = Σ_{p, v} W[(z,) p, u, v] T[z, k, p, u, v]
            r = None
            for n in units:
                un = p.units[n]
                W = Wp[n, o].unsqueeze(-4)
                t = T[n, o].reshape(Z, do, -1, un.u, un.v) * W
                t = t.sum(dim=(2, 4))
                r = t if r is None else r + t
        outs.append(r.transpose(1, 2).reshape(Z, mo * do))
    if not outs:
        return x1.new_zeros(Z, 0)
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
        out = _forward(p, x1, x2, w, self.shared_weights)
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

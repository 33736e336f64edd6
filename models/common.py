"""Model parts every Hamiltonian model shares, written once.

* radial bases: :class:`GaussianBasis` (SchNet / DeepH-E3) and :class:`BernsteinBasis` (PhiSNet / QHNet);
* :func:`edge_sh`: e3nn real spherical harmonics of edge vectors in hambench's (y, z, x) convention
  (``r[..., [1, 2, 0]]``, FACTS.md §2), so an e3nn irrep ``l`` of a feature rotates with ``so3.wigner_D(l, R)``;
* :class:`BlockHead`: edge irreps ↔ flat H blocks (hambench order) per element pair and shell pair, by
  ``so3.cg_basis``; DeepH-E3's target grouping (one output channel per shell-pair label (l1, n1, l2, n2) shared
  by every element pair that has it, unused channels masked per pair), and its spinful (SOC) assembly
  ``(l1 ⊗ ½) ⊗ (l2 ⊗ ½) = (l1 ⊗ l2) ⊗ (0 ⊕ 1)`` with real and imaginary parts as separate real irreps;
* :func:`partner_edges` and :func:`symmetrize_blocks`: ``H_ij(R) = H_ji(−R)ᴴ`` from the batch's own partner edges;
* :func:`edge_vectors`: ``pos[dst] + R·cell − pos[src]``, differentiable, from the batch (re-exported from
  :mod:`hambench.training`, the one implementation).

Spinful assembly (DeepH-E3 ``e3TensorDecomp``, models_sota.md §5.3)
    A spinor shell pair block ``[[uu, ud], [du, dd]]`` (each ``(2l1+1, 2l2+1)`` complex) is written as
    ``Σ_a σ_a ⊗ X^a / √2`` with ``σ_0 = 1``: ``uu = (X⁰ + Xᶻ)/√2``, ``ud = (Xˣ − i Xʸ)/√2``,
    ``du = (Xˣ + i Xʸ)/√2``, ``dd = (X⁰ − Xᶻ)/√2``. Under a rotation X⁰ is an ``l1 ⊗ l2`` block and
    ``(Xʸ, Xᶻ, Xˣ)`` (e3nn's l = 1 order) a vector of them: X⁰ gives irreps L ∈ l1 ⊗ l2, the vector part gives,
    for each such L, the irreps L' ∈ L ⊗ 1; all have parity (−1)^(l1+l2) (spin is a pseudovector). Every map
    here is orthogonal (unitary when spinful), so ``to_irreps`` is the exact inverse of ``forward`` on the
    channels an element pair uses.
"""

from __future__ import annotations

import contextlib
import math
import re
from functools import lru_cache

import numpy as np
import torch
from e3nn import o3

from hambench.basis import _so3 as so3
from hambench.training import edge_vectors

__all__ = [
    "GaussianBasis",
    "BernsteinBasis",
    "edge_sh",
    "edge_vectors",
    "BlockHead",
    "target_labels",
    "spinful_cg",
    "partner_edges",
    "transpose_index",
    "symmetrize_blocks",
    "default_dtype",
    "refresh_e3nn_constants",
    "ExactConstants",
]


@contextlib.contextmanager
def default_dtype(dtype):
    """Run a block under torch default dtype ``dtype`` (restored afterwards). Build e3nn modules under the
    run's dtype: their constants (3j symbols, bases) are made in the default dtype, and a float32-built module
    cast to float64 keeps float32-rounded constants (~1e-7 equivariance error, FACTS.md §2)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@lru_cache(maxsize=512)
def _w3j64(l1: int, l2: int, l3: int) -> torch.Tensor:
    return o3.wigner_3j(l1, l2, l3, dtype=torch.float64)


def refresh_e3nn_constants(module: torch.nn.Module) -> int:
    """Refill every e3nn 3j buffer (``…_w3j_l1_l2_l3``) of ``module`` from float64 masters in the buffer's
    dtype. A module built (or checkpointed) in float32 and cast to float64 otherwise keeps float32-rounded
    3j symbols: equivariance ~2e-8 instead of ~1e-16. Returns the number of buffers refilled."""

    n = 0
    with torch.no_grad():
        for name, buf in module.named_buffers():
            m = re.search(r"_w3j_(\d+)_(\d+)_(\d+)$", name)
            if m is None:
                continue
            w = _w3j64(*map(int, m.groups()))
            if w.shape == buf.shape:
                buf.copy_(w.to(device=buf.device, dtype=buf.dtype))
                n += 1
    return n


_SCRIPT_CONST = re.compile(r"(^|\.)_tensor_constant\d+$")


def _drop_script_constants(module, state_dict, prefix, local_metadata) -> None:
    """state_dict post-hook: leave out e3nn's TorchScript constants (they appear only after a deepcopy or an
    unpickle, so checkpoints of copied and fresh models would otherwise differ in keys)."""
    for k in [k for k in state_dict if k.startswith(prefix) and _SCRIPT_CONST.search(k)]:
        del state_dict[k]


def _fill_script_constants(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                           error_msgs) -> None:
    """load_state_dict pre-hook: the module's own script constants count as present, foreign ones are dropped."""
    module._capture_new_constants()
    own = {prefix + n: b for n, b in module.named_buffers() if _SCRIPT_CONST.search(n)}
    for k in [k for k in state_dict if k.startswith(prefix) and _SCRIPT_CONST.search(k) and k not in own]:
        del state_dict[k]
    for k, b in own.items():
        state_dict[k] = b.detach().clone()


def _restore_after_load(module, incompatible_keys) -> None:
    module._restore_constants()


class ExactConstants:
    """Mixin for a model's top ``nn.Module`` that keeps its constant buffers exact in any dtype.

    e3nn bakes 3j symbols and path constants into buffers (``_w3j_*``, ``_tensor_constant*``) in the dtype the
    module was built in; a float32-built (or float32-checkpointed) module cast to float64 keeps them rounded
    (equivariance ~1e-9 instead of ~1e-15). Build the model under a float64 default, call
    :meth:`_snapshot_constants` at the end of ``__init__`` (float64 copies of every floating buffer, kept off
    the state_dict), then cast to the wanted dtype: after every ``.to()``/``.double()``/``.float()`` and every
    ``load_state_dict`` the buffers are refilled from the float64 masters (buffers are never trained).
    """

    def _snapshot_constants(self) -> None:
        masters = {}
        for name, buf in self.named_buffers():
            if buf.is_floating_point():
                masters[name] = buf.detach().to("cpu", torch.float64).clone()
        object.__setattr__(self, "_const_masters", masters)
        self.register_state_dict_post_hook(_drop_script_constants)
        self.register_load_state_dict_pre_hook(_fill_script_constants)
        self.register_load_state_dict_post_hook(_restore_after_load)

    def _restore_constants(self) -> None:
        masters = getattr(self, "_const_masters", None)
        if masters is None:
            refresh_e3nn_constants(self)
            return
        with torch.no_grad():
            for name, buf in self.named_buffers():
                m = masters.get(name)
                if m is not None and m.shape == buf.shape and buf.is_floating_point():
                    buf.copy_(m.to(device=buf.device, dtype=buf.dtype))

    def _register_exact_constants(self) -> None:
        """Without float64 masters: refill the e3nn 3j buffers (:func:`refresh_e3nn_constants`) after every
        ``load_state_dict`` (and, through ``_apply``, every cast)."""
        self.register_load_state_dict_post_hook(lambda module, incompatible: None if refresh_e3nn_constants(module) else None)

    def _capture_new_constants(self) -> None:
        # buffers that appeared after the snapshot (e3nn's TorchScript constants surface as ``_tensor_constant*``
        # buffers after a deepcopy/unpickle): keep them as masters while they are still float64
        masters = getattr(self, "_const_masters", None)
        if masters is not None:
            for name, buf in self.named_buffers():
                if name not in masters and buf.dtype == torch.float64:
                    masters[name] = buf.detach().to("cpu").clone()

    def _apply(self, fn, *args, **kwargs):
        self._capture_new_constants()
        out = super()._apply(fn, *args, **kwargs)
        self._restore_constants()
        return out



def species_index(layout) -> torch.Tensor:
    """(zmax+1,) long: the species number (0..n_elements-1, in the layout's sorted order) of each atomic number,
    −1 for elements the layout does not have. Models register it as a non-persistent buffer."""
    zmap = torch.full((layout.zmax + 1,), -1, dtype=torch.long)
    zmap[torch.tensor(list(layout.elements))] = torch.arange(len(layout.elements))
    return zmap


# --- radial bases --------------------------------------------------------------------------------------------
class GaussianBasis(torch.nn.Module):
    """``exp(−(d − μ_k)² / (2σ²))`` with ``n`` centres ``μ_k`` evenly from ``start`` to ``stop`` and ``σ`` the
    spacing of the centres (SchNet / schnetpack ``gaussian_rbf`` as DeepH-E3 uses it; no cutoff envelope).
    ``trainable`` makes centres and widths parameters (DeepH-E3: fixed)."""

    def __init__(self, start: float = 0.0, stop: float = 5.0, n: int = 50, trainable: bool = False):
        super().__init__()
        if n < 2:
            raise ValueError("a Gaussian basis needs at least 2 functions")
        offsets = torch.linspace(float(start), float(stop), int(n), dtype=torch.float64)
        widths = torch.full((int(n),), float(offsets[1] - offsets[0]), dtype=torch.float64)
        dtype = torch.get_default_dtype()
        if trainable:
            self.offsets = torch.nn.Parameter(offsets.to(dtype))
            self.widths = torch.nn.Parameter(widths.to(dtype))
        else:
            self.register_buffer("offsets", offsets.to(dtype))
            self.register_buffer("widths", widths.to(dtype))
        self.n = int(n)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        coeff = -0.5 / self.widths.pow(2)
        return torch.exp(coeff * (d.unsqueeze(-1) - self.offsets).pow(2))

    def extra_repr(self) -> str:
        return f"n={self.n}, start={float(self.offsets[0]):g}, stop={float(self.offsets[-1]):g}"


class BernsteinBasis(torch.nn.Module):
    """Exponential Bernstein polynomials (PhiSNet, QHNet as QH9 trains it, qh9.md §4.1):

    ``b_v(r) = f_c(r) · C(K−1, v) · e^{−α r (K−1−v)} · (1 − e^{−α r})^v``, v = 0..K−1, in log space;
    ``α = softplus(a)`` with ``a`` trainable (initialised so α = ``alpha``); ``f_c(r) = exp(−r²/((c−r)(c+r)))``
    for r < c, else 0.
    """

    def __init__(self, n: int = 16, cutoff: float = 15.0, alpha: float = 0.5, trainable_alpha: bool = True):
        super().__init__()
        K = int(n)
        v = np.arange(K, dtype=np.float64)
        logc = np.array([math.lgamma(K) - math.lgamma(k + 1) - math.lgamma(K - k) for k in range(K)])
        dtype = torch.get_default_dtype()
        self.register_buffer("logc", torch.tensor(logc, dtype=dtype))
        self.register_buffer("n_pow", torch.tensor(K - 1 - v, dtype=dtype))  # power of e^{-αr}
        self.register_buffer("v_pow", torch.tensor(v, dtype=dtype))  # power of (1 - e^{-αr})
        a = math.log(math.expm1(float(alpha)))  # softplus^{-1}
        if trainable_alpha:
            self.a = torch.nn.Parameter(torch.tensor(a, dtype=dtype))
        else:
            self.register_buffer("a", torch.tensor(a, dtype=dtype))
        self.cutoff = float(cutoff)
        self.n = K

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        alphar = -torch.nn.functional.softplus(self.a) * r
        inside = r < self.cutoff
        rs = torch.where(inside, r, torch.zeros_like(r))  # keep the envelope finite outside the cutoff
        fc = torch.where(inside, torch.exp(-rs.pow(2) / ((self.cutoff - rs) * (self.cutoff + rs))), torch.zeros_like(r))
        # log(1 - e^{αr·(-1)}) = log(-expm1(-αr)); at r = 0 it is -inf, and v = 0 multiplies it by 0
        log1m = torch.log(-torch.expm1(alphar))
        x = self.logc + self.n_pow * alphar + torch.where(self.v_pow > 0, self.v_pow * log1m, torch.zeros_like(log1m))
        return fc * torch.exp(x)

    def extra_repr(self) -> str:
        return f"n={self.n}, cutoff={self.cutoff:g}"


# --- angular part ---------------------------------------------------------------------------------------------
def edge_sh(vec: torch.Tensor, lmax: int, normalize: bool = True, normalization: str = "component") -> torch.Tensor:
    """e3nn spherical harmonics ``l = 0..lmax`` (irreps ``o3.Irreps.spherical_harmonics(lmax)``) of edge vectors
    given in hambench Cartesian (x, y, z): fed to e3nn as ``vec[..., [1, 2, 0]]``, so irrep l rotates with
    ``so3.wigner_D(l, R)``. A zero vector (self edge) gives Y_0 only."""
    irreps = o3.Irreps.spherical_harmonics(int(lmax))
    return o3.spherical_harmonics(irreps, vec[..., [1, 2, 0]], normalize=normalize, normalization=normalization)


# --- irreps <-> blocks ------------------------------------------------------------------------------------------
def target_labels(layout) -> dict[int, list[tuple[int, int]]]:
    """``{Z: [(l, n) of each shell]}``: n = index of the shell among the element's shells of the same l."""
    out = {}
    for z, shells in layout.species.items():
        seen: dict[int, int] = {}
        lab = []
        for l in shells:
            lab.append((int(l), seen.get(l, 0)))
            seen[l] = seen.get(l, 0) + 1
        out[int(z)] = lab
    return out


@lru_cache(maxsize=128)
def _spinful_cg_cached(l1: int, l2: int) -> tuple[np.ndarray, tuple[int, ...]]:
    d = (2 * l1 + 1) * (2 * l2 + 1)
    Q, Ls = so3.cg_basis(l1, l2)  # vec(block) = parts @ Q.T
    # irreps of one spinor shell pair: [X0: L in Ls] + [vector: L' in L ⊗ 1 for L in Ls]
    ir_ls = list(Ls) + [Lp for L in Ls for Lp in so3.cg_basis(L, 1)[1]]
    n = 4 * d
    eye = np.eye(n)
    c0, cv = eye[:, :d], eye[:, d:]  # (n, d), (n, 3d)
    X0 = c0 @ Q.T  # (n, d) row-major (2l1+1, 2l2+1) blocks
    # vector part: for each L, parts' (3(2L+1)) -> Y_L^T (2L+1, 3) via cg_basis(L, 1)
    Y = np.zeros((n, 3, d))
    start_v, start_L = 0, 0
    for L in Ls:
        QL, _ = so3.cg_basis(L, 1)
        w = 3 * (2 * L + 1)
        YT = (cv[:, start_v : start_v + w] @ QL.T).reshape(n, 2 * L + 1, 3)
        Y[:, :, start_L : start_L + 2 * L + 1] = np.swapaxes(YT, 1, 2)
        start_v += w
        start_L += 2 * L + 1
    Xv = Y @ Q.T  # (n, 3, d): components in e3nn order (y, z, x)
    Xy, Xz, Xx = Xv[:, 0], Xv[:, 1], Xv[:, 2]
    s = 1 / np.sqrt(2)
    uu = (X0 + Xz) * s
    ud = (Xx - 1j * Xy) * s
    du = (Xx + 1j * Xy) * s
    dd = (X0 - Xz) * s
    U = np.concatenate([uu, ud, du, dd], axis=1)  # (n, 4d): blockvec = c @ U
    U.setflags(write=False)
    return U, tuple(ir_ls)


def spinful_cg(l1: int, l2: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Unitary ``U`` (4d, 4d) complex, d = (2l1+1)(2l2+1), and the L of each irrep of one spinor shell pair.

    ``[vec(uu), vec(ud), vec(du), vec(dd)] = c @ U`` for the complex irreps ``c`` (concatenated in the returned
    L order: X⁰'s L ∈ l1⊗l2, then for each such L the L' ∈ L⊗1); ``c = blockvec @ U.conj().T``.
    """
    return _spinful_cg_cached(int(l1), int(l2))


def _head_targets(layout, labels) -> tuple[list[tuple[int, int, int, int]], dict]:
    """The head's targets: shell-pair labels (l1, n1, l2, n2) in first-seen order over the element pairs, and
    the index of each."""
    targets: list[tuple[int, int, int, int]] = []
    index: dict[tuple[int, int, int, int], int] = {}
    for zi, zj in layout.pair_types():
        for b in layout.basic_blocks(zi, zj):
            t = labels[zi][b.p] + labels[zj][b.q]
            if t not in index:
                index[t] = len(targets)
                targets.append(t)
    return targets, index


def _change_of_basis(l1: int, l2: int, spinful: bool) -> tuple[np.ndarray, ...]:
    """(Qᵀ,) of ``so3.cg_basis`` for a spinless shell pair, (Re U, Im U) of :func:`spinful_cg` for a spinor one."""
    if spinful:
        U, _ = spinful_cg(l1, l2)
        return np.array(U.real), np.array(U.imag)
    Q, _ = so3.cg_basis(l1, l2)
    return (np.array(Q.T),)


def _pair_plan(layout, zi: int, zj: int, slots: list[int], spinful: bool):
    """Where one element pair's basic blocks come from and go to.

    ``slots``: the first output column of each basic block's target (in ``layout.basic_blocks`` order).
    Returns ``cols`` (the gathered output columns, grouped by (l1, l2)), ``pos`` (each gathered value's place
    in the flat edge block, row-major; spinful: the four spin blocks) and the groups
    ``[(l1, l2, start, n_blocks)]`` over ``cols``.
    """
    ni, nj = int(layout.norb_table[zi]), int(layout.norb_table[zj])
    by_l: dict[tuple[int, int], list] = {}
    for b, slot in zip(layout.basic_blocks(zi, zj), slots):
        by_l.setdefault((b.lp, b.lq), []).append((b, slot))
    cols, pos, groups = [], [], []
    start = 0
    for (l1, l2), blocks in sorted(by_l.items()):
        d1, d2 = 2 * l1 + 1, 2 * l2 + 1
        w = 4 * d1 * d2 if spinful else d1 * d2
        for b, slot in blocks:
            cols.append(np.arange(slot, slot + w))
            rr = b.row + np.arange(d1)[:, None]
            cc = b.col + np.arange(d2)[None, :]
            if spinful:
                for s, s2 in ((0, 0), (0, 1), (1, 0), (1, 1)):
                    pos.append(((s * ni + rr) * (2 * nj) + s2 * nj + cc).reshape(-1))
            else:
                pos.append((rr * nj + cc).reshape(-1))
        groups.append((l1, l2, start, len(blocks)))
        start += len(blocks) * w
    cols, pos = np.concatenate(cols), np.concatenate(pos)
    assert np.array_equal(np.sort(pos), np.arange(pos.size)), "basic blocks must tile the edge block"
    return cols, pos, groups


class BlockHead(torch.nn.Module):
    """Edge irreps ↔ flat edge blocks in hambench order, per element pair and shell pair.

    Output channels ("targets", DeepH-E3 ``target_blocks_type = all``): one per shell-pair label
    (l1, n1, l2, n2) over the union of element pairs, shared by every element pair that has it (n = index
    of a shell among its element's shells of the same l). Each target holds the irreps of l1 ⊗ l2 with parity
    (−1)^(l1+l2) (spinful: the 4 (l1⊗l2)⊗(0⊕1) sets, real parts of all targets first, then imaginary parts).
    ``irreps_out`` is the (unsimplified) concatenation. For an element pair, the channels of targets it does
    not have are ignored by :meth:`forward` and reported as 0 / masked by :meth:`to_irreps`.

    ``forward(x, Z_src, Z_dst, H_ptr)`` maps (E, irreps_out.dim) features to the flat H of the edges (complex
    when spinful). Every map is orthogonal/unitary per basic block.
    """

    def __init__(self, layout):
        super().__init__()
        self.layout = layout
        self.spinful = bool(layout.spinful)
        labels = target_labels(layout)
        self.targets, index = _head_targets(layout, labels)
        # per target: its irreps (L values) and its column offset in the (real) output
        cg = spinful_cg if self.spinful else so3.cg_basis
        tgt_ls = [cg(l1, l2)[1] for (l1, _, l2, _) in self.targets]
        width = [sum(2 * L + 1 for L in ls) for ls in tgt_ls]
        offs = np.concatenate([[0], np.cumsum(width)]).astype(np.int64)
        self.target_offsets = offs  # into the real part (spinful: the imaginary part starts at offs[-1])
        irreps = [(1, (L, (-1) ** (t[0] + t[2]))) for t, ls in zip(self.targets, tgt_ls) for L in ls]
        self.irreps_out = o3.Irreps(irreps * (2 if self.spinful else 1))
        self.dim = int(self.irreps_out.dim)
        self._half = int(offs[-1])
        # change-of-basis matrices per (l1, l2): real Qᵀ (spinless) or U = A + iB (spinful), float64 masters
        # cast on first use per (dtype, device), so no dtype round trip of the module can degrade them
        self._lpairs = sorted({(t[0], t[2]) for t in self.targets})
        self._np_mats = {(l1, l2): _change_of_basis(l1, l2, self.spinful) for l1, l2 in self._lpairs}
        self._mat_cache: dict = {}
        # plans per element pair: gathered columns (grouped by (l1, l2)), group segments, block positions
        self.pairs = layout.pair_types()
        table = np.full((layout.zmax + 1, layout.zmax + 1), -1, dtype=np.int64)
        self._groups: list[list[tuple[int, int, int, int]]] = []
        for k, (zi, zj) in enumerate(self.pairs):
            table[zi, zj] = k
            slots = [offs[index[labels[zi][b.p] + labels[zj][b.q]]] for b in layout.basic_blocks(zi, zj)]
            cols, pos, groups = _pair_plan(layout, zi, zj, slots, self.spinful)
            self.register_buffer(f"_cols_{k}", torch.tensor(cols), persistent=False)
            self.register_buffer(f"_pos_{k}", torch.tensor(pos), persistent=False)
            m = np.zeros(self.dim, dtype=bool)
            m[cols] = True
            if self.spinful:
                m[cols + self._half] = True
            self.register_buffer(f"_mask_{k}", torch.tensor(m), persistent=False)
            self._groups.append(groups)
        self.register_buffer("_pair_table", torch.tensor(table), persistent=False)

    # --- helpers ---------------------------------------------------------------------------------------------
    def _mats(self, l1: int, l2: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        key = (l1, l2, like.dtype, like.device)
        m = self._mat_cache.get(key)
        if m is None:
            # built outside inference mode: a cached inference tensor would break a later training step
            with torch.inference_mode(False):
                m = tuple(torch.as_tensor(a, dtype=like.dtype, device=like.device) for a in self._np_mats[(l1, l2)])
            self._mat_cache[key] = m
        return m

    def pair_index(self, Z_src: torch.Tensor, Z_dst: torch.Tensor) -> torch.Tensor:
        """Element-pair number of each edge (index into ``self.pairs``)."""
        zmax = self._pair_table.shape[0] - 1
        if Z_src.numel() and (int(Z_src.max()) > zmax or int(Z_dst.max()) > zmax):
            raise ValueError(f"edges with elements unknown to the head (it knows Z={list(self.layout.elements)})")
        k = self._pair_table[Z_src.long(), Z_dst.long()]
        if k.numel() and int(k.min()) < 0:
            raise ValueError(f"edges with elements unknown to the head (it knows Z={list(self.layout.elements)})")
        return k

    def mask(self, Z_src: torch.Tensor, Z_dst: torch.Tensor) -> torch.Tensor:
        """(E, dim) bool: the output channels each edge's element pair uses."""
        k = self.pair_index(Z_src, Z_dst)
        masks = torch.stack([getattr(self, f"_mask_{p}") for p in range(len(self.pairs))])
        return masks[k]

    def _edges_by_pair(self, k: torch.Tensor):
        order = torch.argsort(k, stable=True)
        counts = torch.bincount(k, minlength=len(self.pairs)).tolist()
        start = 0
        for p, n in enumerate(counts):
            if n:
                yield p, order[start : start + n]
            start += n

    def _change_basis(self, p: int, re: torch.Tensor, im: torch.Tensor | None, inverse: bool = False):
        """Irreps → block values of element pair ``p`` (``inverse``: blocks → irreps, by the conjugate transpose),
        one batched matmul per (l1, l2) group: ``re``/``im`` (n, W) in plan order → (re, im); im is None when
        spinless. Spinful: (a + ib)(A + iB), inverse (a + ib)(Aᵀ − iBᵀ)."""
        n = re.shape[0]
        re_parts, im_parts = [], []
        for l1, l2, s, nb in self._groups[p]:
            d = (2 * l1 + 1) * (2 * l2 + 1)
            w = 4 * d if self.spinful else d
            a = re[:, s : s + nb * w].reshape(n, nb, w)  # (n, blocks, w)
            mats = self._mats(l1, l2, a)
            if not self.spinful:
                re_parts.append((a @ (mats[0].T if inverse else mats[0])).reshape(n, nb * w))
                continue
            b = im[:, s : s + nb * w].reshape(n, nb, w)
            A, B = mats
            if inverse:
                re_parts.append((a @ A.T + b @ B.T).reshape(n, nb * w))
                im_parts.append((b @ A.T - a @ B.T).reshape(n, nb * w))
            else:
                re_parts.append((a @ A - b @ B).reshape(n, nb * w))
                im_parts.append((a @ B + b @ A).reshape(n, nb * w))
        return torch.cat(re_parts, 1), (torch.cat(im_parts, 1) if self.spinful else None)

    # --- irreps -> blocks --------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, Z_src: torch.Tensor, Z_dst: torch.Tensor, H_ptr: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"features have {x.shape[-1]} channels, the head needs {self.dim} ({self.irreps_out})")
        k = self.pair_index(Z_src, Z_dst)
        total = int(H_ptr[-1]) if H_ptr.numel() else 0
        vals_re, vals_im, idxs = [], [], []
        for p, e in self._edges_by_pair(k):
            cols = getattr(self, f"_cols_{p}")
            xe = x[e]
            re, im = self._change_basis(p, xe[:, cols], xe[:, cols + self._half] if self.spinful else None)
            vals_re.append(re.reshape(-1))
            if self.spinful:
                vals_im.append(im.reshape(-1))
            idxs.append((H_ptr[e].unsqueeze(1) + getattr(self, f"_pos_{p}").unsqueeze(0)).reshape(-1))
        if not idxs:
            z = torch.zeros(total, dtype=x.dtype, device=x.device)
            return torch.complex(z, z) if self.spinful else z
        idx = torch.cat(idxs)
        if idx.numel() != total:
            raise ValueError(f"H_ptr describes {total} block elements, the edges' element pairs need {idx.numel()}")
        re = torch.zeros(total, dtype=x.dtype, device=x.device).index_copy(0, idx, torch.cat(vals_re))
        if not self.spinful:
            return re
        im = torch.zeros(total, dtype=x.dtype, device=x.device).index_copy(0, idx, torch.cat(vals_im))
        return torch.complex(re, im)

    # --- blocks -> irreps --------------------------------------------------------------------------------------
    def to_irreps(self, H: torch.Tensor, Z_src: torch.Tensor, Z_dst: torch.Tensor, H_ptr: torch.Tensor):
        """Inverse of :meth:`forward`: ``(x, mask)``, x (E, dim) real with zeros where ``mask`` is False."""
        k = self.pair_index(Z_src, Z_dst)
        E = int(k.numel())
        rdtype = H.real.dtype if H.is_complex() else H.dtype
        x = torch.zeros(E, self.dim, dtype=rdtype, device=H.device)
        for p, e in self._edges_by_pair(k):
            pos = getattr(self, f"_pos_{p}")
            cols = getattr(self, f"_cols_{p}")
            hv = H[H_ptr[e].unsqueeze(1) + pos.unsqueeze(0)]  # (n, W) in plan order
            hr = hv.real if hv.is_complex() else hv
            hi = hv.imag if hv.is_complex() else torch.zeros_like(hv)
            re, im = self._change_basis(p, hr, hi, inverse=True)
            rows = e.unsqueeze(1)
            x[rows, cols.unsqueeze(0)] = re.to(rdtype)
            if self.spinful:
                x[rows, (cols + self._half).unsqueeze(0)] = im.to(rdtype)
        return x, self.mask(Z_src, Z_dst)

    def extra_repr(self) -> str:
        return f"targets={len(self.targets)}, irreps_out={self.irreps_out.dim} dims, spinful={self.spinful}"


# --- symmetrisation ---------------------------------------------------------------------------------------------
def partner_edges(edge_src: torch.Tensor, edge_dst: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """For each edge (i, j, R) the index of (j, i, −R) in the same edge list, −1 where it is missing.

    Atom indices are global within the batch, so partners never cross structures."""
    E = int(edge_src.numel())
    if E == 0:
        return torch.zeros(0, dtype=torch.long, device=edge_src.device)
    R = torch.round(shift).long() if shift.is_floating_point() else shift.long()
    span = int(R.abs().max())
    K = 2 * span + 1
    N = int(torch.maximum(edge_src.max(), edge_dst.max())) + 1

    def encode(a, b, r):
        r = r + span
        return (((a.long() * N + b.long()) * K + r[:, 0]) * K + r[:, 1]) * K + r[:, 2]

    key = encode(edge_src, edge_dst, R)
    want = encode(edge_dst, edge_src, -R)
    skey, order = torch.sort(key, stable=True)
    pos = torch.searchsorted(skey, want).clamp(max=E - 1)
    found = skey[pos] == want
    return torch.where(found, order[pos], torch.full_like(pos, -1))


def transpose_index(layout, Z_src, Z_dst, H_ptr, partner, spinful: bool | None = None) -> torch.Tensor:
    """Flat index ``t`` with ``H[t]`` = the partner blocks transposed into each edge's place:
    ``H[t][ptr_e + a·n_j + b] = H[ptr_f + b·n_i + a]``, f = partner(e). Edges without a partner map to
    themselves (left unsymmetrised)."""
    sp = layout.spinful if spinful is None else spinful
    dev = H_ptr.device
    norb = torch.as_tensor(layout.norb_table * (2 if sp else 1), device=dev)
    ni, nj = norb[Z_src.long()], norb[Z_dst.long()]
    total = int(H_ptr[-1])
    out = torch.arange(total, device=dev)
    has = partner >= 0
    sizes = torch.unique(torch.stack([ni[has], nj[has]], 1), dim=0) if bool(has.any()) else []
    for a, b in (tuple(int(v) for v in s) for s in sizes):
        e = torch.nonzero(has & (ni == a) & (nj == b)).squeeze(1)
        loc = (torch.arange(b, device=dev).unsqueeze(0) * a + torch.arange(a, device=dev).unsqueeze(1)).reshape(-1)
        src = H_ptr[partner[e]].unsqueeze(1) + loc.unsqueeze(0)
        dst = H_ptr[e].unsqueeze(1) + torch.arange(a * b, device=dev).unsqueeze(0)
        out[dst.reshape(-1)] = src.reshape(-1)
    return out


def symmetrize_blocks(H: torch.Tensor, tindex: torch.Tensor) -> torch.Tensor:
    """``(H_ij(R) + H_ji(−R)ᴴ) / 2`` for every edge, with ``tindex`` from :func:`transpose_index`."""
    Ht = H[tindex]
    return 0.5 * (H + (Ht.conj() if H.is_complex() else Ht))

"""The equivariance error of a trained model: prediction on rotated inputs vs the rotated prediction.

For structures x of a store and seeded random rotations R (``so3.random_rotation``), the error of one matrix
element is |f(Rx) − D(R) f(x) D(R)^†| with D the orbital rotation of each edge's atoms (D_l ⊗ D_½ for spinful
blocks, ``so3.rotate_edge_blocks``). Rotating x rotates the positions and the cell; edges and lattice shifts
stay. Reported in meV: the max and the mean over every element of every rotated structure, with the size of
the prediction (mean |f(x)|) for scale and, for a two-stage model (HarmoSE), the size of its stage-2 correction
(mean |ΔH|), the only part that is not equivariant by construction, with the error relative to it. FACTS.md §6
("equivariance error of a model").

Strictly equivariant models (DeepH-E3, QHNet, TraceGrad variants) give ~1e-12 relative in float64 and ~1e-6
in float32; HarmoSE's stage 2 is only approximately equivariant and its error is what it is. The number is
measured in float64 by default so that it describes the architecture, not float32 rounding (``dtype`` picks).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from hambench.basis import BasisLayout, random_rotation
from hambench.errors import InputError
from hambench.store import open_store
from hambench.testing import EquivarianceTally, rotation_residual
from hambench.training import batch_from_structures, select_split, torch_dtype

from .run import load_model

__all__ = ["equivariance_error", "checkpoint_equivariance"]


def _predictor(model, s, layout, dtype, device, keep: dict | None = None):
    """``f(pos, cell)``: the model's flat H (numpy, float64 or complex128) for structure ``s`` moved to ``pos``
    and ``cell`` (edges and shifts kept). With ``keep``, the last call's stage-2 correction (``out["dH"]`` of a
    two-stage model) is left in ``keep["dH"]`` (None for a model without one)."""
    grad = bool(getattr(model, "inference_needs_grad", False))

    def numpy(t):
        a = t.detach().cpu().numpy()
        return a.astype(np.complex128 if np.iscomplexobj(a) else np.float64)

    def f(pos, cell):
        r = copy.copy(s)
        r.pos, r.cell = pos, cell
        b = batch_from_structures([r], layout).to(device, dtype)
        with torch.set_grad_enabled(grad):
            out = model(b)
        if keep is not None:
            keep["dH"] = numpy(out["dH"]) if "dH" in out else None
        return numpy(out["H"])

    return f


def _ratio(a: float, b: float):
    return a / b if b > 0 else None


def equivariance_error(model, structures, layout, n_rotations: int = 4, seed: int = 0, dtype=None,
                       device="cpu") -> dict:
    """Max / mean |f(Rx) − D f(x) D^†| (meV) of ``model`` over ``structures`` × ``n_rotations`` rotations.

    ``structures``: :class:`hambench.store.Structure` objects (targets are not used). Returns
    {max_meV, mean_meV, scale_meV (mean |f(x)|), relative_max (max / scale), dH_scale_meV, relative_mean_dH,
    relative_max_dH, n_structures, n_rotations, seed, dtype, per_structure: [{id, max_meV, mean_meV}]}.

    ``dH_scale_meV`` is the mean |ΔH| of a two-stage model's stage 2 (HarmoSE: the correction it learns on top of
    the exactly equivariant stage 1, so all of the error is stage 2's) over the same elements, and
    ``relative_*_dH`` the error over it; all three are None for a model without a stage 2, and the ratios None
    while ΔH is zero (an untrained zero-initialised head).
    """
    if n_rotations < 1:
        raise InputError("--rotations", f"needs at least 1 rotation, got {n_rotations}")
    dtype = dtype or torch.float64
    rng = np.random.default_rng(seed)
    total, scale, dscale, per = EquivarianceTally(), 0.0, 0.0, []
    has_dH = True
    model.eval()
    for s in structures:
        keep: dict = {}
        f = _predictor(model, s, layout, dtype, device, keep)
        H0 = f(s.pos, s.cell)
        if keep["dH"] is None:
            has_dH = False
        else:
            dscale += float(np.abs(keep["dH"]).sum()) * n_rotations
        mine = EquivarianceTally()
        for _ in range(n_rotations):
            R = random_rotation(rng)
            mine.add(rotation_residual(f, s.pos, s.cell, R, s.Z[s.src], s.Z[s.dst], layout.species, layout.spinful,
                                       out_x=H0))
        total.merge(mine)
        scale += float(np.abs(H0).sum()) * n_rotations
        per.append({"id": s.id, "max_meV": mine.max * 1e3, "mean_meV": mine.mean * 1e3})
    n = max(total.count, 1)
    sc, dsc = scale / n, (dscale / n if has_dH and per else None)
    return {"max_meV": total.max * 1e3, "mean_meV": total.mean * 1e3, "scale_meV": sc * 1e3,
            "relative_max": total.max / sc if sc > 0 else float("nan"),
            "dH_scale_meV": None if dsc is None else dsc * 1e3,
            "relative_mean_dH": None if dsc is None else _ratio(total.mean, dsc),
            "relative_max_dH": None if dsc is None else _ratio(total.max, dsc),
            "n_structures": len(per), "n_rotations": int(n_rotations), "seed": int(seed),
            "dtype": str(dtype).replace("torch.", ""), "per_structure": per}


def checkpoint_equivariance(checkpoint, data, split: str | None = None, n_structures: int = 4,
                            n_rotations: int = 4, seed: int = 0, dtype: str = "float64", device="cpu") -> dict:
    """:func:`equivariance_error` of a checkpoint on the first ``n_structures`` of ``data`` (or of ``split``).

    Refuses a store the checkpoint cannot take (species, shells, spin) with one line.
    """
    if n_structures < 1:
        raise InputError("--structures", f"needs at least 1 structure, got {n_structures}")
    model, ck, layout = load_model(checkpoint, device="cpu", dtype=dtype)
    store = open_store(data)
    layout.check_compatible(store.layout, data)
    idx = select_split(store, split)
    if idx.size == 0:
        raise InputError(data, f"split {split} selects no structures")
    parent = store.array("structures/parent")[:]
    orig = [int(k) for k in idx if parent[k] < 0] or [int(k) for k in idx]  # rotated copies add nothing here
    chosen = orig[:n_structures]
    model.to(device)
    res = equivariance_error(model, (store[k] for k in chosen), layout, n_rotations, seed, torch_dtype(dtype), device)
    res.update({"model": ck["model"]["name"], "checkpoint": str(Path(ck["path"]).resolve()),
                "data": str(Path(data).resolve()), "split": split})
    return res

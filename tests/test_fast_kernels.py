"""The fast tensor-product kernel (models/_fast_tp.py) against e3nn, its reference.

Checks: every supported e3nn tensor product (modes uvw, uvu, uuu; shared, internal and per-item weights; all
l1, l2, l3 up to 4 with both parities; component and norm irrep normalisation; element and path
normalisation; multiplicities above one on both inputs) gives e3nn's output and gradients to float64 round-off,
second derivatives included (TraceGrad's autograd form); every model of the zoo, tiny and paper presets, on
molecules, a crystal and a spinful (SOC) crystal, predicts the same H and the same parameter gradients with
either kernel; the switch leaves parameters and state-dict keys alone (a checkpoint is kernel-free); the
equivariance tests hold with both kernels; ``model.kernel`` and ``--kernel`` are validated.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from e3nn import o3

from hambench.basis import _so3 as so3
from hambench.basis._layout import BasisLayout
from hambench.errors import InputError
from hambench.models import _fast_tp as fast
from hambench.models import common
from hambench.models.run import resolve_config
from hambench.testing import TOL, equivariance_error, require_realdata
from hambench.training._data import batch_from_structures

F64 = torch.float64
MODELS = ("qhnet", "deephe3", "tracegrad-qhnet", "tracegrad-deephe3", "harmose", "harmose-tracegrad")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / a.abs().max().clamp_min(TOL.product_floor)) if a.numel() else 0.0


def _instructions(ir1, ir2, iro, mode):
    out = []
    for a, (m1, r1) in enumerate(ir1):
        for b, (m2, r2) in enumerate(ir2):
            for c, (mo, ro) in enumerate(iro):
                if ro not in r1 * r2:
                    continue
                if mode == "uvu" and mo != m1 or mode == "uuu" and not m1 == m2 == mo:
                    continue
                out.append((a, b, c, mode, True))
    return out


ALL_L = o3.Irreps("2x0e+1x0o+2x1o+1x1e+2x2e+1x2o+1x3o+2x3e+2x4e+1x4o")  # every l <= 4, both parities
SH = o3.Irreps.spherical_harmonics(4)
SAME = o3.Irreps("2x0e+2x1o+2x2e+2x3o+2x4e+2x1e+2x2o")


def _case(name):
    """(tensor product, its inputs) of one configuration, float64, seeded."""
    torch.manual_seed(0)
    Z = 5
    if name == "uvw-sh-shared":
        tp = o3.TensorProduct(ALL_L, SH, ALL_L, _instructions(ALL_L, SH, ALL_L, "uvw"), internal_weights=False,
                              shared_weights=True)
        return tp, [torch.randn(Z, ALL_L.dim), torch.randn(Z, SH.dim), torch.randn(tp.weight_numel)]
    if name == "uvw-per-item-norm-path":
        tp = o3.TensorProduct(ALL_L, SH, ALL_L, _instructions(ALL_L, SH, ALL_L, "uvw"), internal_weights=False,
                              shared_weights=False, irrep_normalization="norm", path_normalization="path")
        return tp, [torch.randn(Z, ALL_L.dim), torch.randn(Z, SH.dim), torch.randn(Z, tp.weight_numel)]
    if name == "uvu-sh-per-item":
        tp = o3.TensorProduct(ALL_L, SH, ALL_L, _instructions(ALL_L, SH, ALL_L, "uvu"), internal_weights=False,
                              shared_weights=False)
        return tp, [torch.randn(Z, ALL_L.dim), torch.randn(Z, SH.dim), torch.randn(Z, tp.weight_numel)]
    if name == "uvu-mul2":
        tp = o3.TensorProduct(SAME, ALL_L, SAME, _instructions(SAME, ALL_L, SAME, "uvu"), internal_weights=True)
        return tp, [torch.randn(Z, SAME.dim), torch.randn(Z, ALL_L.dim)]
    if name == "uuu-internal":
        tp = o3.TensorProduct(SAME, SAME, SAME, _instructions(SAME, SAME, SAME, "uuu"), internal_weights=True)
        return tp, [torch.randn(Z, SAME.dim), torch.randn(Z, SAME.dim)]
    if name == "uuu-per-item":
        tp = o3.TensorProduct(SAME, SAME, SAME, _instructions(SAME, SAME, SAME, "uuu"), internal_weights=False,
                              shared_weights=False)
        return tp, [torch.randn(Z, SAME.dim), torch.randn(Z, SAME.dim), torch.randn(Z, tp.weight_numel)]
    if name == "fctp-all":
        tp = o3.FullyConnectedTensorProduct(SAME, SAME, ALL_L)
        return tp, [torch.randn(Z, SAME.dim), torch.randn(Z, SAME.dim)]
    if name == "fctp-onehot":  # DeepH-E3's self connection: features ⊗ species one-hot
        tp = o3.FullyConnectedTensorProduct(ALL_L, "3x0e", ALL_L)
        return tp, [torch.randn(Z, ALL_L.dim), torch.randn(Z, 3)]
    if name == "fctp-to-scalars":  # TraceGrad's CG0(f ⊗ f)
        tp = o3.FullyConnectedTensorProduct(ALL_L, ALL_L, "6x0e")
        return tp, [torch.randn(Z, ALL_L.dim), torch.randn(Z, ALL_L.dim)]
    if name == "broadcast":
        tp = o3.FullyConnectedTensorProduct(ALL_L, SH, ALL_L)
        return tp, [torch.randn(2, 3, ALL_L.dim), torch.randn(1, 3, SH.dim)]
    raise KeyError(name)


CASES = ("uvw-sh-shared", "uvw-per-item-norm-path", "uvu-sh-per-item", "uvu-mul2", "uuu-internal", "uuu-per-item",
         "fctp-all", "fctp-onehot", "fctp-to-scalars", "broadcast")


@pytest.mark.parametrize("name", CASES)
def test_tensor_product_equals_e3nn(name):
    with common.default_dtype(F64):
        tp, args = _case(name)
    f = copy.deepcopy(tp)
    assert fast.set_kernel(f, "fast") == 1 and fast.supported(f)
    args = [a.requires_grad_(True) for a in args]
    ya, yb = tp(*args), f(*args)
    assert ya.shape == yb.shape and _rel(ya, yb) <= TOL.exact64
    probe = torch.randn_like(ya)
    ga = torch.autograd.grad((ya * probe).sum(), args + list(tp.parameters()), create_graph=True)
    gb = torch.autograd.grad((yb * probe).sum(), args + list(f.parameters()), create_graph=True)
    for a, b in zip(ga, gb):
        assert _rel(a, b) <= TOL.exact64
    # second derivatives (TraceGrad differentiates through the product while training)
    hb = torch.autograd.grad(sum((g * g).sum() for g in gb[:2]), args[:2], allow_unused=True)
    ha = torch.autograd.grad(sum((g * g).sum() for g in ga[:2]), args[:2], allow_unused=True)
    for a, b in zip(ha, hb):
        assert (a is None) == (b is None) and (a is None or _rel(a, b) <= TOL.exact64)
    # float32: the same function (constants from float64 masters)
    f32, tp32 = copy.deepcopy(f).float(), copy.deepcopy(tp).float()
    a32 = [a.detach().float() for a in args]
    assert _rel(tp32(*a32).double(), f32(*a32).double()) <= TOL.exact32


def test_switch_keeps_parameters_and_state_dict_keys():
    with common.default_dtype(F64):
        tp, args = _case("uvw-sh-shared")
        fc, _ = _case("fctp-all")
    model = torch.nn.ModuleDict({"a": tp, "b": fc, "g": o3.ElementwiseTensorProduct("2x1o", "2x1o")})
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    assert fast.set_kernel(model, "fast") == 2  # the weightless elementwise product keeps e3nn's forward
    assert isinstance(model["a"], o3.TensorProduct) and type(model["g"]) is o3.ElementwiseTensorProduct
    after = model.state_dict()
    assert list(after) == list(keys) and all(torch.equal(after[k], v) for k, v in keys.items())
    assert fast.set_kernel(model, "e3nn") == 2 and type(model["a"]) is o3.TensorProduct
    with pytest.raises(ValueError, match="kernel must be one of"):
        fast.set_kernel(model, "cuda")


# --- every model ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def molecules(demo_store):
    from hambench.store._store import open_store

    st = open_store(demo_store)
    return st.layout, [st[0], st[3]]


@pytest.fixture(scope="module")
def crystal():
    from hambench.pipelines.deeph_format import read_new_folder

    s = read_new_folder(require_realdata("deeph_new_MoTe2"))
    return BasisLayout(s.species, s.spinful), [s]


@pytest.fixture(scope="module")
def spinful():
    from hambench.pipelines.openmx import scfout_to_structure

    b = scfout_to_structure(require_realdata("openmx_bismuthene_soc_scfout", "openmx.scfout"))
    return BasisLayout(b.species, True), [b]


def _build(name, preset, layout):
    """Model ``name`` (preset) in float64 with the e3nn kernel, seeded; HarmoSE gets a fresh stage 1."""
    from hambench.models import registry

    res = resolve_config(name, preset)
    torch.manual_seed(0)
    extra = {}
    if res.spec.stage1 and getattr(res.model, "needs_stage1", True):
        extra["stage1"] = _build(res.spec.stage1[0], preset, layout)
    with common.default_dtype(F64):
        m = registry.get(name).build(res.model, layout, **extra)
    m = m.double()
    fast.set_kernel(m, "e3nn")
    return m


def _compare(name, preset, kind, request):
    from hambench.models import registry

    spec = registry.get(name)
    assert not (kind == "spinful" and not spec.spinful or kind != "molecules" and "crystal" not in spec.kinds), \
        f"{name} does not take {kind} data: no such case"
    layout, structs = request.getfixturevalue(kind)
    ref = _build(name, preset, layout)
    new = copy.deepcopy(ref)
    n = fast.set_kernel(new, "fast")
    assert n > 0
    batch = batch_from_structures(structs, layout, dtype=F64)
    for m in (ref, new):
        m.train()
    outs, grads = [], []
    for m in (ref, new):
        m.zero_grad()
        H = m(batch)["H"]
        (H.real.pow(2).sum() + (H.imag.pow(2).sum() if H.is_complex() else 0)).backward()
        outs.append(H.detach())
        grads.append({k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None})
    assert _rel(outs[0], outs[1]) <= TOL.exact64
    assert grads[0].keys() == grads[1].keys() and grads[0]
    # relative to the largest gradient: parameters whose gradient vanishes by symmetry (~1e-13 of the others)
    # hold rounding noise only, which no kernel reproduces digit for digit
    scale = max(float(g.abs().max()) for g in grads[0].values())
    worst = max(float((grads[0][k] - grads[1][k]).abs().max()) for k in grads[0]) / scale
    assert worst <= TOL.exact64, worst
    with torch.no_grad():  # inference (eval: TraceGrad's cheap path)
        ref.eval(), new.eval()
        assert _rel(ref(batch)["H"], new(batch)["H"]) <= TOL.exact64


FAST_SET = [(n, "molecules") for n in MODELS] + [("deephe3", "crystal"), ("deephe3", "spinful")]


@pytest.mark.parametrize("name,kind", FAST_SET)
def test_model_fast_equals_e3nn_tiny(name, kind, request):
    _compare(name, "tiny", kind, request)


@pytest.mark.slow
@pytest.mark.parametrize("name,kind", [(n, k) for n in MODELS[2:] if "qhnet" not in n  # QHNet: molecules only
                                       for k in ("crystal", "spinful")])
def test_model_fast_equals_e3nn_tiny_crystals(name, kind, request):
    _compare(name, "tiny", kind, request)


@pytest.mark.slow
@pytest.mark.parametrize("name,kind", [(n, "molecules") for n in MODELS] + [("deephe3", "crystal"),
                                                                           ("deephe3", "spinful")])
def test_model_fast_equals_e3nn_paper(name, kind, request):
    _compare(name, "paper", kind, request)


def test_checkpoint_state_is_kernel_free(molecules):
    layout, structs = molecules
    a = _build("qhnet", "tiny", layout)
    b = _build("qhnet", "tiny", layout)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.01)
    fast.set_kernel(b, "fast")
    sa = a.state_dict()
    assert list(b.state_dict()) == list(sa)
    b.load_state_dict(sa)  # trained with e3nn, predicting with fast
    batch = batch_from_structures(structs, layout, dtype=F64)
    a.eval(), b.eval()
    with torch.no_grad():
        assert _rel(a(batch)["H"], b(batch)["H"]) <= TOL.exact64


# --- equivariance with both kernels -----------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", fast.KERNELS)
@pytest.mark.parametrize("name,kind", [("deephe3", "crystal"), ("deephe3", "spinful"), ("qhnet", "molecules")])
def test_equivariant_with_both_kernels(name, kind, kernel, request):
    layout, structs = request.getfixturevalue(kind)
    model = _build(name, "tiny", layout).eval()
    fast.set_kernel(model, kernel)
    b = batch_from_structures(structs, layout, dtype=F64)
    R = so3.random_rotation(np.random.default_rng(7))
    Rt = torch.tensor(R, dtype=F64)
    with torch.no_grad():
        H0 = model(b)["H"]
        H1 = model(dataclasses.replace(b, pos=b.pos @ Rt.T, cell=b.cell @ Rt.T))["H"]
    zi, zj = b.Z[b.edge_src].numpy(), b.Z[b.edge_dst].numpy()
    err = equivariance_error(H0.numpy(), H1.numpy(), zi, zj, layout.species, R, layout.spinful)
    # the SOC crystal's two equivalent Bi atoms make DeepH-E3's layer norm divide rounding noise by its eps
    # (tests/test_deephe3.py): the same bound as there
    assert err / float(H0.abs().max()) <= TOL.network64


# --- the switch -------------------------------------------------------------------------------------------------
def test_config_key_and_default():
    assert resolve_config("deephe3", "tiny").kernel is None
    assert resolve_config("deephe3", "tiny", sets=["model.kernel=e3nn"]).kernel == "e3nn"
    with pytest.raises(InputError, match="model.kernel must be one of e3nn, fast"):
        resolve_config("deephe3", "tiny", sets=["model.kernel=cuda"])
    assert fast.default_kernel() == fast.DEFAULT_KERNEL == "fast"


def test_build_model_applies_the_kernel(molecules):
    from hambench.models.run import build_model

    layout, structs = molecules
    res = resolve_config("qhnet", "tiny")
    m = build_model(res.spec, res.model, layout, "float64", seed=0)
    assert any(isinstance(x, fast.FastTensorProduct) for x in m.modules())
    ref = build_model(res.spec, res.model, layout, "float64", seed=0, kernel="e3nn")
    assert not any(isinstance(x, fast._FastMixin) for x in ref.modules())
    # built for fast (e3nn's code generated without its einsum-path search), switched back: the same function
    fast.set_kernel(m, "e3nn")
    batch = batch_from_structures(structs, layout, dtype=F64)
    m.eval(), ref.eval()
    with torch.no_grad():
        assert _rel(ref(batch)["H"], m(batch)["H"]) <= TOL.exact64
    m = ref
    try:
        fast.use_kernel("e3nn")
        m = build_model(res.spec, res.model, layout, "float64", seed=0)
        assert not any(isinstance(x, fast._FastMixin) for x in m.modules())
    finally:
        fast.use_kernel(fast.DEFAULT_KERNEL)


def test_cli_kernel_flag_is_checked(tmp_path):
    from click.testing import CliRunner

    from hambench.app.cli import main

    for cmd in (["predict", str(tmp_path / "run"), "--data", str(tmp_path / "x.zarr")],
                ["equivariance", str(tmp_path / "run"), "--data", str(tmp_path / "x.zarr")],
                ["train", "qhnet", "--data", str(tmp_path / "x.zarr")]):
        r = CliRunner().invoke(main, [*cmd, "-o", str(tmp_path / "o"), "--kernel", "cuda"])
        assert r.exit_code == 2 and "--kernel" in r.output

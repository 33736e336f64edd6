"""hambench.basis._layout (the one basis-layout table) and hambench.config (strict configs)."""

from __future__ import annotations

import doctest
from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np
import pytest

from hambench import config as cfgmod
from hambench.basis import _layout as laymod
from hambench.config import from_dict, merge, parse_set, resolve, to_dict
from hambench.errors import InputError
from hambench.basis._layout import BasisLayout
from hambench.testing import TOL

DEF2SVP = {1: [0, 0, 1], 6: [0, 0, 0, 1, 1, 2], 8: [0, 0, 0, 1, 1, 2]}


def test_doctests():
    for mod in (laymod, cfgmod):
        res = doctest.testmod(mod)
        assert res.failed == 0 and res.attempted > 0


def test_orbital_counts_hand_computed():
    lay = BasisLayout(DEF2SVP)
    # def2-SVP: H 1s1s1p = 5 AOs; C/O 3s2p1d = 3 + 6 + 5 = 14 (FACTS.md §2)
    assert lay.norb([1, 6, 8]).tolist() == [5, 14, 14]
    assert BasisLayout(DEF2SVP, spinful=True).norb([1, 6]).tolist() == [10, 28]
    assert BasisLayout(DEF2SVP, spinful=True).norb([1, 6], spinful=False).tolist() == [5, 14]
    ni, nj = lay.block_sizes([1, 6, 8], [6, 6, 1])
    assert ni.tolist() == [5, 14, 14] and nj.tolist() == [14, 14, 5]
    assert lay.block_ptr([1, 6, 8], [6, 6, 1]).tolist() == [0, 70, 70 + 196, 70 + 196 + 70]
    assert lay.shell_offsets(6).tolist() == [0, 1, 2, 3, 6, 9]


def test_basic_blocks_order_and_trace_ptr():
    lay = BasisLayout(DEF2SVP)
    bb = lay.basic_blocks(1, 6)
    assert len(bb) == 3 * 6
    assert [(b.p, b.q) for b in bb[:7]] == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 0)]
    last = bb[-1]  # H p shell (offset 2) x C d shell (offset 9)
    assert (last.lp, last.lq, last.row, last.col, last.shape) == (1, 2, 2, 9, (3, 5))
    assert lay.n_basic([1, 6], [6, 6]).tolist() == [18, 36]
    assert lay.trace_ptr([1, 6], [6, 6]).tolist() == [0, 18, 54]
    assert lay.max_basic == 36


def test_layout_matches_store_trace_labels():
    """The store's T labels (computed by so3.edge_traces) agree with the layout's basic blocks."""
    from hambench.basis._so3 import edge_traces

    lay = BasisLayout(DEF2SVP)
    rng = np.random.default_rng(0)
    zs, zd = np.array([1, 6, 8, 6]), np.array([6, 6, 1, 8])
    ptr = lay.block_ptr(zs, zd)
    H = rng.standard_normal(int(ptr[-1]))
    T, T_ptr = edge_traces(H, zs, zd, DEF2SVP)
    assert T_ptr.tolist() == lay.trace_ptr(zs, zd).tolist()
    ni, nj = lay.block_sizes(zs, zd)
    for e in range(len(zs)):
        blk = H[ptr[e]:ptr[e + 1]].reshape(ni[e], nj[e])
        want = [np.sum(blk[b.row:b.row + b.shape[0], b.col:b.col + b.shape[1]] ** 2) for b in lay.basic_blocks(zs[e], zd[e])]
        np.testing.assert_allclose(T[T_ptr[e]:T_ptr[e + 1]], want, rtol=TOL.exact64)


def test_unknown_element_and_compatibility():
    lay = BasisLayout(DEF2SVP)
    with pytest.raises(ValueError, match=r"\[7\]"):
        lay.norb([1, 7])
    with pytest.raises(ValueError, match="no shells"):
        lay.block_ptr([300], [1])
    lay.check_compatible(BasisLayout({1: [0, 0, 1]}), "x.zarr")  # a subset of elements is fine
    with pytest.raises(InputError, match="Z=\\[7\\] unknown"):
        lay.check_compatible(BasisLayout({7: [0, 0, 0, 1, 1, 2]}), "x.zarr")
    with pytest.raises(InputError, match="shells"):
        lay.check_compatible(BasisLayout({1: [0, 1]}), "x.zarr")
    with pytest.raises(InputError, match="spinful"):
        lay.check_compatible(BasisLayout({1: [0, 0, 1]}, spinful=True), "x.zarr")
    rt = BasisLayout.from_dict(lay.to_dict())
    assert rt == lay and hash(rt) == hash(lay)


@dataclass
class _Opt:
    name: Literal["adam", "adamw"] = "adam"
    lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class _Cfg:
    layers: int = 3
    irreps: str = "64x0e"
    clip: Optional[float] = None
    gates: bool = True
    opt: _Opt = field(default_factory=_Opt)
    sizes: list[int] = field(default_factory=lambda: [1, 2])


def test_from_dict_defaults_types_and_unknown_keys():
    c = from_dict(_Cfg, {"layers": 2, "opt": {"lr": "5e-4", "betas": [0.99, 0.999]}, "clip": 5}, "a.yaml")
    assert c.layers == 2 and c.opt.lr == 5e-4 and c.opt.betas == (0.99, 0.999) and c.clip == 5.0
    assert to_dict(c)["opt"] == {"name": "adam", "lr": 5e-4, "betas": [0.99, 0.999]}
    bad = [
        ({"layer": 2}, "unknown key 'layer'"),
        ({"opt": {"lrr": 1}}, "unknown key 'opt.lrr'"),
        ({"layers": 2.5}, "'layers' must be an integer"),
        ({"layers": True}, "'layers' must be an integer"),
        ({"gates": "yes"}, "'gates' must be true or false"),
        ({"opt": {"name": "sgd"}}, "not one of"),
        ({"opt": {"betas": [0.9]}}, "must have 2 items"),
        ({"opt": 3}, "must be a mapping"),
        ({"sizes": [1, "a"]}, r"'sizes\[1\]' must be an integer"),
        ({"clip": "x"}, "'clip'"),
    ]
    for data, msg in bad:
        with pytest.raises(InputError, match=msg) as e:
            from_dict(_Cfg, data, "a.yaml")
        assert str(e.value).startswith("a.yaml")


def test_merge_parse_set_resolve(tmp_path):
    assert merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}, "d": 1}
    assert parse_set(["model.lmax=5", "train.lr=2e-3", "x=[1, 2]", "name=adamw", "flag=true"]) == {
        "model": {"lmax": 5}, "train": {"lr": 2e-3}, "x": [1, 2], "name": "adamw", "flag": True}
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_set(["model.lmax"])
    f = tmp_path / "m.yaml"
    f.write_text("model: {layers: 3}\ntrain: {lr: 2e-3}\npresets:\n  tiny: {model: {layers: 1}}\n  paper: {}\n")
    user = tmp_path / "u.yaml"
    user.write_text("train: {lr: 1.0e-3}\n")
    assert resolve(f) == {"model": {"layers": 3}, "train": {"lr": "2e-3"}}
    assert resolve(f, "tiny", user, ["model.irreps=8x0e"]) == {
        "model": {"layers": 1, "irreps": "8x0e"}, "train": {"lr": 1e-3}}
    with pytest.raises(InputError, match="unknown preset 'huge' \\(known: paper, tiny\\)"):
        resolve(f, "huge")
    (tmp_path / "bad.yaml").write_text("model: [1, 2\n")
    with pytest.raises(InputError, match="not valid YAML"):
        resolve(tmp_path / "bad.yaml")
    with pytest.raises(InputError, match="not found"):
        resolve(tmp_path / "none.yaml")


def test_inherits_merges_parent_and_presets(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "model: {layers: 3, width: 8}\ntrain: {lr: 1.0e-3, steps: 10}\n"
        "presets:\n  paper: {}\n  tiny: {model: {layers: 1}, train: {lr: 1.0e-2}}\n")
    (tmp_path / "variant.yaml").write_text(
        "inherits: base.yaml\nmodel: {extra: {mode: grad}}\npresets:\n  tiny: {model: {extra: {mode: trace}}}\n")
    assert resolve(tmp_path / "variant.yaml") == {
        "model": {"layers": 3, "width": 8, "extra": {"mode": "grad"}}, "train": {"lr": 1e-3, "steps": 10}}
    assert resolve(tmp_path / "variant.yaml", "tiny") == {
        "model": {"layers": 1, "width": 8, "extra": {"mode": "trace"}}, "train": {"lr": 1e-2, "steps": 10}}
    assert resolve(tmp_path / "variant.yaml", "paper")["train"]["lr"] == 1e-3
    (tmp_path / "loop.yaml").write_text("inherits: loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("inherits: loop.yaml\n")
    with pytest.raises(InputError, match="loops back"):
        resolve(tmp_path / "loop.yaml")
    (tmp_path / "bad.yaml").write_text("inherits: [1]\n")
    with pytest.raises(InputError, match="must name a YAML file"):
        resolve(tmp_path / "bad.yaml")

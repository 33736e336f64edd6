"""Can a model represent every block of a store? The irreps its features reach against the irreps the blocks need.

A basic block between shells l1 and l2 decomposes into irreps L = |l1 − l2| … l1 + l2 of parity (−1)^(l1+l2)
(spinful: each L ⊗ (0 ⊕ 1) as well; :func:`models.common.spinful_cg`). An equivariant model can only write a part
L whose irrep its last features hold: d⊗d (L ≤ 4) needs features of degree 4. What each model reaches:

* ``qhnet``: the expansion contracts bottleneck features of degree 0 … ``sh_lmax`` with the parity labels
  dropped, so every part with L ≤ ``sh_lmax``, of either parity;
* ``deephe3``: the edge features after the last update. An update's tensor product (node, node, edge features ⊗
  spherical harmonics ≤ ``lmax``) writes an output irrep when some reachable input irrep times some harmonic
  contains it (the selection rule, whatever the weights); its self-connection and skip carry the irreps the
  block's input already reached. The readout is linear (no new irreps);
* ``tracegrad-*``: their backbone's (f + v keeps f's irreps);
* ``harmose*``: every part (stage 2's head is a plain MLP writing the whole irreps layout: not equivariant);
* any other module: its own ``reachable_irreps()`` if it has one, else it is not checked.

:func:`unreachable_parts` lists the block types a built model cannot fill completely; ``hambench train`` refuses
such a model unless ``--allow-partial`` (then the checkpoint, the predictions and the score name the parts).
"""

from __future__ import annotations

from e3nn import o3

from hambench.basis import _so3 as so3

from . import common

__all__ = ["required_parts", "reachable_irreps", "unreachable_parts"]

SHELL = "spdfghik"


def _name(l1: int, l2: int) -> str:
    return f"{SHELL[l1] if l1 < len(SHELL) else l1}⊗{SHELL[l2] if l2 < len(SHELL) else l2}"


def required_parts(layout) -> dict[tuple[int, int], set[tuple[int, int]]]:
    """``{(l1, l2): {(L, parity)}}`` (l1 ≤ l2) over the shell pairs of every element pair of ``layout``."""
    out: dict[tuple[int, int], set[tuple[int, int]]] = {}
    for zi, zj in layout.pair_types():
        for a in set(layout.species[zi]):
            for b in set(layout.species[zj]):
                l1, l2 = min(a, b), max(a, b)  # l2⊗l1 needs what l1⊗l2 needs
                if (l1, l2) in out:
                    continue
                Ls = common.spinful_cg(l1, l2)[1] if layout.spinful else so3.cg_basis(l1, l2)[1]
                out[(int(l1), int(l2))] = {(int(L), (-1) ** (l1 + l2)) for L in Ls}
    return out


def _tp_reach(in1: set, sh: set, out_irreps) -> set:
    """The irreps of ``out_irreps`` that some (a ∈ in1) ⊗ (b ∈ sh) contains."""
    prods = {(ir.l, ir.p) for a in in1 for b in sh for ir in o3.Irrep(*a) * o3.Irrep(*b)}
    return {(ir.l, ir.p) for _, ir in o3.Irreps(out_irreps) if (ir.l, ir.p) in prods}


def _irrep_set(irreps) -> set:
    return {(ir.l, ir.p) for _, ir in o3.Irreps(irreps)}


def _deephe3_reach(net) -> set:
    sh = _irrep_set(net.irreps_sh)
    node = edge = _irrep_set(net.cfg.irreps_embed)
    for nb, eb in zip(net.node_blocks, net.edge_blocks):
        out = _irrep_set(nb.irreps_out)
        node = _tp_reach(node | edge, sh, nb.irreps_out) | (node & out)
        out = _irrep_set(eb.irreps_out)
        edge = _tp_reach(node | edge, sh, eb.irreps_out) | (edge & out)
    return edge


def reachable_irreps(model) -> set[tuple[int, int]] | None:
    """``{(L, parity)}`` of the block parts ``model`` can write (both parities listed when it ignores them), or
    None when it can write any part (a non-equivariant head) or is a model without a rule here (a module of the
    caller's own, e.g. a test's toy: its ``reachable_irreps()`` is used when it has one, else it is not checked)."""
    net = getattr(model, "backbone", model)  # TraceGrad wraps its backbone
    own = getattr(net, "reachable_irreps", None)
    if callable(own):
        return own()
    kind = type(net).__name__
    if kind == "QHNet":
        return {(L, p) for L in range(net.cfg.sh_lmax + 1) for p in (1, -1)}
    if kind == "DeepHE3":
        return _deephe3_reach(net)
    return None  # HarmoSE (an MLP head), or a model this module has no rule for


def unreachable_parts(model, layout) -> list[str]:
    """One line per block type of ``layout`` that ``model`` cannot fill, e.g. ``d⊗d needs L ≤ 4 (missing 3e,
    4e), the model's features reach 2``; empty when it can fill every block."""
    reach = reachable_irreps(model)
    if reach is None:
        return []
    top = max((L for L, _ in reach), default=-1)
    lines = []
    for (l1, l2), need in sorted(required_parts(layout).items()):
        missing = sorted(need - reach)
        if missing:
            names = ", ".join(f"{L}{'e' if p == 1 else 'o'}" for L, p in missing)
            lines.append(f"{_name(l1, l2)} needs L ≤ {max(L for L, _ in need)} (missing {names}), the model's "
                         f"features reach {top}")
    return lines

"""Inference at scale (issue 31 item 2): the edge-chunked DeepH-E3 forward equals the whole one.

The reference is the model's own ``forward`` on the same batch (float64): the chunked evaluation only regroups
sums (messages added slice by slice, the layer norm's per-structure statistics summed slice by slice), so the two
agree to reassociation level, for slices that cut through structures and a batch of two structures (the norm's
statistics stay per structure).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hambench.basis import BasisLayout, neighbor_list
from hambench.store import StoreRange, Structure
from hambench.testing import TOL
from hambench.training import collate
from hambench.models import registry
from hambench.models._chunked import chunked_forward, supports_chunking
from hambench.models.run import build_model, resolve_config

A = 2.46
LAYOUT = BasisLayout.from_dict({"species": {"6": [0, 1], "1": [0]}, "spinful": False})


def _sheet(n: int, seed: int, hydrogen: bool = False) -> Structure:
    """An n × n graphene supercell, atoms jiggled (0.05 Å), optionally one C made H; edges within 3 Å."""
    a1, a2 = np.array([A, 0, 0]), np.array([-A / 2, A * np.sqrt(3) / 2, 0])
    pos = np.array([i * a1 + j * a2 + b for i in range(n) for j in range(n)
                    for b in (np.zeros(3), np.array([0, A / np.sqrt(3), 0]))]) + [0, 0, 5.0]
    pos += 0.05 * np.random.default_rng(seed).standard_normal(pos.shape)
    cell = np.array([n * a1, n * a2, [0, 0, 10.0]])
    Z = np.full(len(pos), 6)
    if hydrogen:
        Z[0] = 1
    pbc = np.array([True, True, False])
    src, dst, shift = neighbor_list(pos, 3.0, cell, pbc)
    return Structure(id=f"g{n}-{seed}", Z=Z, pos=pos, cell=cell, pbc=pbc, src=src, dst=dst, shift=shift,
                     H=np.zeros(0), S=None, species={int(z): LAYOUT.species[int(z)] for z in set(Z)}, spinful=False)


def _batch(structs):
    r = StoreRange.from_structures(structs, LAYOUT, overlap=False)
    r.H_ptr = LAYOUT.block_ptr(*r.edge_Z())
    return collate(r, LAYOUT, dtype=torch.float64)


@pytest.mark.parametrize("symmetrize", [False, True], ids=["plain", "symmetrized"])
def test_chunked_forward_equals_the_whole_forward(symmetrize):
    spec = registry.get("deephe3")
    res = resolve_config("deephe3", "tiny", overrides={"model": {"symmetrize": symmetrize}})
    model = build_model(spec, res.model, LAYOUT, "float64", seed=3).eval()
    assert supports_chunking(model)
    batch = _batch([_sheet(10, 0, hydrogen=True), _sheet(7, 1)])   # 200 + 98 atoms, 2 structures
    E = int(batch.edge_src.numel())
    with torch.no_grad():
        whole = model(batch)["H"]
    for chunk in (E, 997, 64):                                    # one slice, slices across the structures
        part = chunked_forward(model, batch, edge_chunk=chunk)
        scale = float(whole.abs().max())
        assert part.shape == whole.shape
        assert float((part - whole).abs().max()) < TOL.reassociation * scale


def test_models_without_a_chunked_forward_say_so():
    spec = registry.get("tracegrad-deephe3")
    res = resolve_config("tracegrad-deephe3", "tiny")
    model = build_model(spec, res.model, LAYOUT, "float64", seed=0)
    assert not supports_chunking(model)
    with pytest.raises(TypeError, match="no chunked forward"):
        chunked_forward(model, _batch([_sheet(3, 0)]))

"""A tiny non-equivariant model for testing the training engine's mechanics (not a model of the zoo).

Each edge's block is a learned table per ordered element pair, scaled by a small MLP of the edge length.
Registered as ``toy`` in the model registry by :func:`register_toy` (tests only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ToyConfig:
    hidden: int = 8
    nan_at_call: int = -1  # forward call number from which the output is NaN (tests of divergence)


class Toy(torch.nn.Module):
    def __init__(self, cfg: ToyConfig, layout):
        super().__init__()
        self.cfg = cfg
        zs = layout.elements
        zmax = max(zs)
        pair = torch.full((zmax + 1, zmax + 1), -1, dtype=torch.long)
        k = 0
        for a in zs:
            for b in zs:
                pair[a, b] = k
                k += 1
        self.register_buffer("pair", pair, persistent=False)
        n = int(max(layout.norb(z, layout.spinful) for z in zs))
        self.table = torch.nn.Parameter(0.1 * torch.randn(k, n * n))
        self.mlp = torch.nn.Sequential(torch.nn.Linear(1, cfg.hidden), torch.nn.SiLU(), torch.nn.Linear(cfg.hidden, 1))
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        zs, zd = batch.Z[batch.edge_src], batch.Z[batch.edge_dst]
        p = self.pair[zs, zd]
        d = batch.edge_vec.norm(dim=1, keepdim=True)
        scale = 1.0 + self.mlp(d)[:, 0]
        sizes = batch.H_ptr[1:] - batch.H_ptr[:-1]
        n = int(batch.H_ptr[-1])
        e_of = torch.repeat_interleave(torch.arange(len(sizes)), sizes, output_size=n)
        within = torch.arange(n) - batch.H_ptr[:-1][e_of]
        H = self.table[p[e_of], within] * scale[e_of]
        if 0 <= self.cfg.nan_at_call <= self.calls:
            H = H * float("nan")
        return {"H": H}


def build(cfg, layout):
    return Toy(cfg, layout)


def register_toy(tmp_dir):
    """Register ``toy`` with a config file in ``tmp_dir`` (presets paper, tiny)."""
    from pathlib import Path

    from hambench.models import registry

    f = Path(tmp_dir) / "toy.yaml"
    f.write_text(
        "model: {hidden: 8}\n"
        "train: {optimizer: adam, lr: 0.01, scheduler: constant, batch_size: 2, max_epochs: 3, log_every: 1}\n"
        "presets:\n  paper: {}\n  tiny: {train: {max_epochs: 2}}\n"
    )
    spec = registry.ModelSpec(name="toy", config_cls=ToyConfig, build=build, config_file=f,
                              kinds=("molecule", "crystal"), spinful=False, description="engine test model")
    registry._REGISTRY.pop("toy", None)
    return registry.register(spec)

"""Distributed data parallel under ``torchrun``: who this process is, the process group, the wrapped model and
the sums every rank must agree on (gloo on CPU, NCCL on GPU).

The caller shards the loaders (``rank``/``world_size`` of :func:`dist_info`); the engine normalises the loss by
the *global* element/structure count through :meth:`Comm.allreduce`, so the gradients equal one process's on
the union batch, and only rank 0 writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

__all__ = ["dist_info", "Comm"]


def dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment (0, 1, 0 without it)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


@dataclass(frozen=True)
class Comm:
    """This process in the run: ``rank`` of ``world`` processes, reducing on ``device`` (CPU for gloo)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @classmethod
    def start(cls, device: torch.device) -> "Comm":
        """The process group of a torchrun launch (joined once), or a single process without one."""
        rank, world, local_rank = dist_info()
        if world > 1:
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            rank, world = dist.get_rank(), dist.get_world_size()
        return cls(rank, world, local_rank, device if device.type == "cuda" else torch.device("cpu"))

    @property
    def main(self) -> bool:
        """True on the process that writes (rank 0)."""
        return self.rank == 0

    def wrap(self, model: torch.nn.Module, find_unused: bool) -> torch.nn.Module:
        """``model`` itself on one process, its ``DistributedDataParallel`` wrapper on several."""
        if self.world == 1:
            return model
        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                       find_unused_parameters=find_unused)

    def allreduce(self, values: list[float]) -> list[float]:
        """Element-wise sums of ``values`` over every rank (float64); ``values`` itself on one process."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

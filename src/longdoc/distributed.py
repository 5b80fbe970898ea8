"""Data-parallel training under ``torchrun`` without a second code path.

Outside torchrun (no ``WORLD_SIZE`` in the environment) everything here is a no-op, so the training
loop is the same script on a laptop, on one GPU, and on several (torchrun or Kubeflow Trainer).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn


class LossModule(nn.Module):
    """DDP synchronises gradients of ``forward``; the loss is what a variant trains on."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch, target):
        return self.model.loss(batch, target)


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        import torch.distributed as dist

        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(dist.get_rank(), local_rank, world)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.local_rank] if torch.cuda.is_available() else None
        return DistributedDataParallel(LossModule(model), device_ids=ids, find_unused_parameters=True)

    def shard(self, items: list) -> list:
        """This rank's share; every rank gets the same count so collective calls stay in step."""
        usable = len(items) // self.world_size * self.world_size
        return items[self.rank : usable : self.world_size]

    def no_sync(self, model: nn.Module, skip: bool):
        return model.no_sync() if skip and self.world_size > 1 else nullcontext()

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

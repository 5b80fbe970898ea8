"""Data-parallel training under ``torchrun`` without a second code path.

Outside torchrun (no ``WORLD_SIZE`` in the environment) everything here is a no-op, so the training
loop is the same script on a laptop, on one GPU, and on several (torchrun or Kubeflow Trainer).
``train.nproc_per_node`` > 1 makes a training stage start itself again under torchrun on this machine
(:func:`relaunch`), so the CLI, DVC and the kfp component get several processes through one function.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from longdoc.errors import LongdocError

if TYPE_CHECKING:
    from longdoc.config.params import Params


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

    def from_main(self, value: int) -> int:
        """Rank 0's ``value`` on every rank: a decision only rank 0 can make (early stopping, which needs the
        validation that only rank 0 runs) must be taken by all ranks, or the others wait forever in the next
        gradient all-reduce."""
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        device = torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
        flag = torch.tensor([value], dtype=torch.long, device=device)
        dist.broadcast(flag, src=0)
        return int(flag.item())

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order, on every rank."""
        if self.world_size == 1:
            return [value]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def no_sync(self, model: nn.Module, skip: bool):
        return model.no_sync() if skip and self.world_size > 1 else nullcontext()

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()


def inside_torchrun() -> bool:
    """torchrun (and Kubeflow Trainer, which runs torchrun) sets ``WORLD_SIZE`` for every process it starts."""
    return "WORLD_SIZE" in os.environ


def needs_launch(nproc_per_node: int) -> bool:
    """Start again under torchrun: several processes asked for, and not already one of them."""
    return nproc_per_node > 1 and not inside_torchrun()


PROFILE_ENV = "LONGDOC_PROFILE"  # longdoc.cli.app's --profile: already in the params handed to the children


def relaunch(params: Params, nproc_per_node: int, command: list[str]) -> None:
    """Run ``longdoc COMMAND`` with these exact params under ``torchrun --standalone`` (one machine).

    The params (profile and ``--set`` values included) go to the children as one file, so they train on
    what this process validated, whoever called it (CLI, DVC or a kfp component).
    """
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory(prefix="longdoc-torchrun-") as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
        run_torchrun(nproc_per_node, [*command, "--params", str(path)])


def torchrun_command(nproc_per_node: int, command: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc_per_node),
            "--module", "longdoc", *command]


def run_torchrun(nproc_per_node: int, command: list[str]) -> None:
    """Run ``longdoc COMMAND`` in ``nproc_per_node`` processes; a failed rank becomes a LongdocError that names
    torchrun's exit code and the ranks' own error lines (their output is streamed through as it comes)."""
    env = {k: v for k, v in os.environ.items() if k != PROFILE_ENV}
    # torchrun would pin every process to 1 thread; share this machine's cores instead
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc_per_node)))
    code, tail = _stream(torchrun_command(nproc_per_node, command), env)
    if code:
        errors = dict.fromkeys(line.removeprefix("error: ") for line in tail.splitlines() if line.startswith("error: "))
        why = f": {'; '.join(errors)}" if errors else " (see the ranks' output above)"
        raise LongdocError(f"training under torchrun with {nproc_per_node} processes failed with exit code "
                           f"{code}{why}")


def _stream(cmd: list[str], env: dict[str, str], keep: int = 20_000) -> tuple[int, str]:
    """Run ``cmd``, passing its stderr through as it comes (progress bars included); its exit code and the
    last ``keep`` characters of its stderr."""
    import codecs
    import subprocess

    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""
    for chunk in iter(lambda: proc.stderr.read1(65536), b""):
        text = decode.decode(chunk)
        sys.stderr.write(text)
        sys.stderr.flush()
        tail = (tail + text)[-keep:]
    return proc.wait(), tail

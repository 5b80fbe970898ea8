"""Mixed precision in one place: bf16 autocast on CUDA, full precision on CPU (training and inference), unless
serving asks for bf16 on a CPU whose matrix units make it pay (AMX: checked at packaging, not assumed)."""

from __future__ import annotations

from contextlib import nullcontext

import torch


def autocast(device: torch.device | str, cpu_bf16: bool = False):
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", dtype=torch.bfloat16) if cpu_bf16 else nullcontext()

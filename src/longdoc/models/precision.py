"""Mixed precision in one place: bf16 autocast on CUDA, full precision on CPU (training and inference)."""

from __future__ import annotations

from contextlib import nullcontext

import torch


def autocast(device: torch.device | str):
    return torch.autocast("cuda", dtype=torch.bfloat16) if torch.device(device).type == "cuda" else nullcontext()

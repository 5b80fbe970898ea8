"""Achieved FLOP/s of the encoder on longdoc's inference path against the machine's dense matmul FLOP/s."""

from __future__ import annotations

import torch

from bench.common import timed


def matmul_peak(n: int = 2048, repeats: int = 5, dtype=torch.float32) -> dict:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    t = timed(lambda: torch.mm(a, b), repeats=repeats, warmup=2)
    return {"n": n, "dtype": str(dtype), **t, "flops_per_s": 2 * n**3 / t["median_s"]}


def encoder_flops(config, rows: int, width: int) -> float:
    """Executed FLOPs of a BERT encoder on a [rows, width] batch (padding included)."""
    d, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = 2 * rows * width * (4 * d * d + 2 * d * f) + 2 * 2 * rows * width * width * d
    return layers * per_layer


def encoder_efficiency(encoder, batches, repeats: int) -> dict:
    """FLOP/s of the encoder over prepared batches, under inference_mode."""
    flops = sum(encoder_flops(encoder.backbone.config, b.input_ids.shape[0], b.input_ids.shape[1]) for b in batches)

    @torch.inference_mode()
    def run():
        for b in batches:
            encoder(b.input_ids, b.attention_mask)

    t = timed(run, repeats=repeats)
    return {**t, "flops": flops, "flops_per_s": flops / t["median_s"]}

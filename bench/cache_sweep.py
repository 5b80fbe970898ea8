"""A sweep over the six learned aggregators with the encoder frozen: cached chunk vectors vs not.

Uncached, every aggregator runs the frozen encoder over every chunk in every epoch; cached, the
encoder runs once and each aggregator trains its head on the stored vectors. Both are the real
training loop (``longdoc train``), timed end to end.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

AGGREGATORS = ("mean_pool", "max_pool", "cat", "rnn", "attention", "hierarchical")


def run(texts_frame: pd.DataFrame, work: Path, tiny: bool) -> dict:
    from longdoc.config.params import parse_params
    from longdoc.data.chunking import chunk_corpus
    from longdoc.data.splits import assign_splits
    from longdoc.models.encoder import load_tokenizer
    from longdoc.training.loop import train

    base = {"chunking": {"chunk_tokens": 126, "overlap": 16, "sentence_slack": 32},
            "train": {"variants": list(AGGREGATORS), "epochs": 1, "batch_size": 8, "max_chunks": 8,
                      "device": "cpu", "checkpoint_every": 10_000, "cache_dir": str(work / "cache")}}
    params = parse_params(base)
    corpus = assign_splits(texts_frame, params.data)
    chunk_corpus(corpus, load_tokenizer(params.encoder.name_or_path), params.chunking, work / "chunks")
    aggregators = AGGREGATORS[:2] if tiny else AGGREGATORS
    timings = {}
    for mode, extra in (("uncached", {"freeze_layers": 6}), ("cached", {"freeze_encoder": True})):
        cfg = parse_params({**base, "train": {**base["train"], **extra}})
        started = time.perf_counter()
        per = {}
        for name in aggregators:
            t = time.perf_counter()
            summary = train(work / "chunks", cfg, name, work / mode / name, resume=False)
            per[name] = {"seconds": round(time.perf_counter() - t, 2), "val_macro_f1": summary["best_val_macro_f1"]}
        timings[mode] = {"total_seconds": round(time.perf_counter() - started, 2), "per_aggregator": per}
    return {"documents": len(corpus), "aggregators": list(aggregators), **timings,
            "speedup": timings["uncached"]["total_seconds"] / timings["cached"]["total_seconds"]}

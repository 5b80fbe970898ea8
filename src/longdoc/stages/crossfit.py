"""The cross-fitting stages: plan the fold tasks, run one (one fold of one candidate family), collect them.

A cross-fitted run (``evaluate.folds``, decided at validation: :mod:`longdoc.data.folds`) trains every
candidate k more times, each time without one fold, and predicts that fold. The work is cut into one
task per fold and family, so a cluster runs them side by side (the pipeline's ParallelFor) and this
machine one after the other (``longdoc crossfit``):

- ``baseline``: TF-IDF + logistic regression on the fold's training documents;
- ``transformers``: the fold's own stage-1 encoder (fine-tuned without the fold: a shared encoder
  would have learned every label), then every variant of ``train.variants`` from it, each on its own
  cached vectors (the cache is keyed by the encoder's weights, so a fold's encoder never reads
  another's vectors).

Each task keeps only what the decision needs (evaluations, training summaries, the record of which
documents each model learned from) and drops the weights. :func:`collect` checks that record against
what each fold predicted (a leak stops the run), and scores every candidate over all its out-of-fold
predictions (:mod:`longdoc.evaluation.crossfit`). A held-out run has one no-op task, so the pipeline and
dvc.yaml keep one shape.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from longdoc.config.params import Params
from longdoc.data.folds import HELD_OUT, fold_count, fold_splits, leaks
from longdoc.errors import LongdocError
from longdoc.stages.data import read_validated

FAMILIES = ("baseline", "transformers")
FOLD_FILE = "fold.json"
SUMMARY_FILE = "summary.json"


def plan(corpus_dir: Path) -> list[dict]:
    """One item per fold and family; a single no-op item when the corpus is not cross-fitted."""
    k = fold_count(read_validated(corpus_dir))
    if k == 0:
        return [{"fold": HELD_OUT, "family": "none"}]
    return [{"fold": fold, "family": family} for fold in range(k) for family in FAMILIES]


def oof_folder(oof_dir: Path | None) -> Path:
    """The crossfit stage's output, which a cross-fitted corpus's evaluations need."""
    if oof_dir is None:
        raise LongdocError("the corpus was validated for cross-fitting (evaluate.folds): models are evaluated out "
                           "of fold, so pass the crossfit stage's output (--oof)")
    return oof_dir


def evaluate_candidate(params: Params, model, corpus: pd.DataFrame, out_dir: Path, oof_dir: Path | None) -> dict:
    """A registered candidate's evaluation: on the test split in a held-out run; in a cross-fitted one, its own
    calibration and speed with its out-of-fold figures from ``oof_dir`` (the one place that chooses, for the
    variants and the baseline alike)."""
    from longdoc.evaluation.crossfit import evaluate_refit
    from longdoc.evaluation.evaluate import evaluate

    if not fold_count(corpus):
        return evaluate(model, model.card.variant, corpus, params, out_dir)
    return evaluate_refit(model, corpus, params, oof_folder(oof_dir) / model.card.variant, out_dir)


def fold_params(params: Params) -> Params:
    """A fold's models are evaluated on all of the fold's documents (every document is predicted once) and
    train in a scratch folder (their weights are dropped)."""
    out = params.model_copy(deep=True)
    out.evaluate.docs_per_label = None
    out.pipeline.work_dir = None
    return out


def run_fold(params: Params, item: dict, corpus_dir: Path, chunk_dir: Path, out_dir: Path) -> dict:
    """Train the item's family without its fold, predict the fold; ``fold.json`` records what each model learned
    from and which documents it predicted."""
    fold, family = int(item["fold"]), str(item["family"])
    out_dir.mkdir(parents=True, exist_ok=True)
    if fold == HELD_OUT:
        record = {"fold": fold, "family": family, "skipped": "not cross-fitted: the held-out test split decides"}
        (out_dir / FOLD_FILE).write_text(json.dumps(record))
        return record
    if family not in FAMILIES:
        raise LongdocError(f"unknown candidate family {family!r}: one of {', '.join(FAMILIES)}")
    corpus = fold_splits(read_validated(corpus_dir), fold)
    predicted = set(corpus.loc[corpus["split"] == "test", "id"].astype(str))
    cfg = fold_params(params)
    print(f"fold {fold + 1}/{fold_count(corpus)}: {family} trained on {len(corpus) - len(predicted)} documents, "
          f"predicting {len(predicted)}", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"fold{fold}-") as tmp:
        if family == "baseline":
            learned = _baseline_fold(cfg, corpus, Path(tmp), out_dir)
        else:
            learned = _transformers_fold(cfg, corpus, chunk_dir, Path(tmp), out_dir)
    record = {"fold": fold, "family": family, "predicted": sorted(predicted),
              "learned": {name: sorted(ids) if ids is not None else None for name, ids in learned.items()}}
    (out_dir / FOLD_FILE).write_text(json.dumps(record))
    return record


def _baseline_fold(params: Params, corpus: pd.DataFrame, scratch: Path, out_dir: Path) -> dict:
    from longdoc.evaluation.evaluate import evaluate
    from longdoc.models.baseline import BASELINE_NAME
    from longdoc.training.labelled import learned_from

    model = fit_baseline(params, corpus, scratch)
    evaluate(model, BASELINE_NAME, corpus, params, out_dir / BASELINE_NAME / "evaluation", served=False)
    return {BASELINE_NAME: learned_from(scratch)}


def fit_baseline(params: Params, corpus: pd.DataFrame, model_dir: Path):
    """TF-IDF + logistic regression on the train split, saved with the record of what it learned from (its
    training documents, and the validation documents its temperature is fitted on)."""
    from longdoc.models.baseline import BaselinePredictor
    from longdoc.training.labelled import write_record

    train = corpus[corpus["split"] == "train"]
    model = BaselinePredictor.fit(train["text"].tolist(), train["label"].tolist(), params.data.seed,
                                  params.baseline.max_features)
    model.save(model_dir / "model")
    write_record(model_dir, train["id"], corpus.loc[corpus["split"] == "val", "id"], None)
    return model


def _transformers_fold(params: Params, corpus: pd.DataFrame, chunk_dir: Path, scratch: Path, out_dir: Path) -> dict:
    from longdoc.evaluation.evaluate import evaluate, load_for_evaluation
    from longdoc.stages.training import train, train_encoder
    from longdoc.training.labelled import learned_from

    chunks = fold_chunks(corpus, chunk_dir, scratch / "chunks")
    encoder_dir = scratch / "encoder"
    train_encoder(params, chunks, encoder_dir)
    learned = {}
    for variant in params.train.variants:
        train_dir = scratch / variant
        train(params, variant, chunks, train_dir, encoder_dir)
        model = load_for_evaluation(train_dir / "model", params)
        evaluate(model, variant, corpus, params, out_dir / variant / "evaluation", served=False)
        shutil.copyfile(train_dir / "train_summary.json", out_dir / variant / "train_summary.json")
        learned[variant] = learned_from(train_dir)
        shutil.rmtree(train_dir)  # a fold's weights are not kept: only its predictions decide
    _drop_vectors(encoder_dir)
    return learned


def _drop_vectors(encoder_dir: Path) -> None:
    """The fold encoder's chunk vectors: no other model will ever read them (its weights are this fold's alone),
    so they leave the shared cache with the fold instead of piling up run after run."""
    summary = json.loads((encoder_dir / "train_summary.json").read_text())
    cache = (summary.get("embedding_cache") or {}).get("path")
    if cache:
        shutil.rmtree(cache, ignore_errors=True)


def fold_chunks(corpus: pd.DataFrame, chunk_dir: Path, out: Path) -> Path:
    """The run's chunks with the fold's splits (chunking does not depend on labels or splits, so it is done once),
    under the fold corpus's own data version, so no checkpoint of another fold is ever resumed."""
    from longdoc.data.versioning import corpus_version

    out.mkdir(parents=True)
    documents = pd.read_parquet(chunk_dir / "documents.parquet")
    documents["split"] = documents["id"].map(corpus.set_index("id")["split"])
    documents.to_parquet(out / "documents.parquet", index=False)
    shutil.copyfile(chunk_dir / "chunks.parquet", out / "chunks.parquet")
    stats = json.loads((chunk_dir / "chunk_stats.json").read_text())
    (out / "chunk_stats.json").write_text(json.dumps({**stats, "data_version": corpus_version(corpus)}))
    return out


def collect(params: Params, corpus_dir: Path, fold_dirs: list[Path], out_dir: Path) -> dict:
    """Check every fold (each fold and family once, no leak) and score each candidate out of fold, into
    ``out_dir/<candidate>``; ``summary.json`` says how many folds and documents the decision rests on."""
    from longdoc.evaluation.crossfit import combine

    corpus = read_validated(corpus_dir)
    k = fold_count(corpus)
    out_dir.mkdir(parents=True, exist_ok=True)
    if k == 0:
        summary = {"folds": 0, "documents": 0}
        (out_dir / SUMMARY_FILE).write_text(json.dumps(summary))
        return summary
    records = {(r["fold"], r["family"]): (r, d) for d in fold_dirs
               if "skipped" not in (r := json.loads((d / FOLD_FILE).read_text()))}
    missing = [f"fold {f} {fam}" for f in range(k) for fam in FAMILIES if (f, fam) not in records]
    if missing:
        raise LongdocError(f"cross-fitting is incomplete: no result for {', '.join(missing)}")
    audit = _audit(records)
    evaluations: dict[str, dict[int, Path]] = {}
    for (fold, _), (record, folder) in sorted(records.items()):
        for candidate in record["learned"]:
            evaluations.setdefault(candidate, {})[fold] = folder / candidate / "evaluation"
    predicted = set().union(*(set(r["predicted"]) for r, _ in records.values()))
    unpredicted = set(corpus["id"].astype(str)) - predicted
    if unpredicted:
        raise LongdocError(f"{len(unpredicted)} documents were predicted by no fold (e.g. {min(unpredicted)!r})")
    labels = sorted(corpus["label"].unique())
    for candidate, folds in sorted(evaluations.items()):
        combine(candidate, folds, labels, params.data.seed, out_dir / candidate)
    summary = {"folds": k, "documents": len(predicted), "candidates": sorted(evaluations), "audit": audit}
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def _audit(records: dict) -> list[dict]:
    """What every fold's models learned from against what they predicted; a leak stops the run."""
    audit, problems = [], []
    for (fold, family), (record, _) in sorted(records.items()):
        predicted = set(record["predicted"])
        learned = {name: set(ids) if ids is not None else None for name, ids in record["learned"].items()}
        problems += [f"fold {fold}: {why}" for why in leaks(predicted, learned)]
        audit += [{"fold": fold, "family": family, "candidate": name, "predicted": len(predicted),
                   "learned_from": len(ids or ()), "overlap": len((ids or set()) & predicted)}
                  for name, ids in sorted(learned.items())]
    if problems:
        raise LongdocError("cross-fitting leaked: " + "; ".join(problems))
    return audit


def run_all(params: Params, corpus_dir: Path, chunk_dir: Path, out_dir: Path) -> dict:
    """Every fold task on this machine, one after the other, then :func:`collect` (``longdoc crossfit``, dvc.yaml)."""
    fold_dirs = []
    for item in plan(corpus_dir):
        folder = out_dir / "folds" / f"{item['fold']}-{item['family']}"
        run_fold(params, item, corpus_dir, chunk_dir, folder)
        fold_dirs.append(folder)
    return collect(params, corpus_dir, fold_dirs, out_dir)

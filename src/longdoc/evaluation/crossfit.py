"""Out-of-fold evaluation: one candidate's fold predictions put together and scored as one evaluation.

Each fold's model predicted only its own fold, so the rows put together hold every document once,
each predicted by a model that never saw its label (:mod:`longdoc.data.folds`). They are scored by
the same code as a held-out test split (:func:`longdoc.evaluation.evaluate.view_metrics`) and written
in the same layout (``metrics.json``, ``predictions.parquet``, the pictures), so the gate, the
comparison and the registry read a cross-fitted candidate like any other; ``folds.json`` beside them
keeps each fold's figures and is what marks the evaluation as cross-fitted.

The model that is registered and served is the refit on all the data; :func:`evaluate_refit` gives
it its own calibration and speed and the out-of-fold figures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from longdoc.config.params import Params
from longdoc.errors import LongdocError
from longdoc.evaluation.evaluate import (
    CALIBRATION_FILE,
    PREDICTIONS_FILE,
    TextClassifier,
    calibrate,
    confusion_pngs,
    speed,
    training_labels,
    view_metrics,
)
from longdoc.evaluation.plots import sweep_png
from longdoc.evaluation.views import SWEEP, SWEEP_POSITIONS
from longdoc.monitoring.reference import write_reference

FOLDS_FILE = "folds.json"
METRICS_FILE = "metrics.json"
# per-fold figures that cannot be recomputed from prediction rows: averaged over folds, weighted by documents
FOLD_AVERAGED = ("normal_ece_uncalibrated", *(f"sweep_accuracy_{view}" for view in SWEEP))
# the training cost of a fold, summed over folds: a cross-fitted decision costs k trainings more than the refit
COST_KEYS = ("encoder_tokens", "train_seconds", "stage1_encoder_tokens", "stage1_train_seconds")


def combine(candidate: str, fold_evaluations: dict[int, Path], labels: list[str], seed: int, out_dir: Path) -> dict:
    """Score ``candidate``'s out-of-fold predictions (``fold_evaluations``: fold -> its evaluation folder) as
    one evaluation in ``out_dir``; returns its metrics."""
    frames, per_fold = [], []
    for fold, folder in sorted(fold_evaluations.items()):
        frames.append(pd.read_parquet(folder / PREDICTIONS_FILE).assign(fold=fold))
        metrics = json.loads((folder / METRICS_FILE).read_text())
        cost = _fold_cost(folder.parent)
        per_fold.append({"fold": fold, **{k: metrics[k] for k in ("test_docs", "normal_accuracy", "normal_macro_f1",
                                                                      *FOLD_AVERAGED) if k in metrics}, **cost})
    predictions = pd.concat(frames, ignore_index=True)
    normal = predictions[predictions["view"] == "normal"]
    if normal["id"].duplicated().any():
        raise LongdocError(f"{candidate}: a document was predicted by more than one fold "
                           f"({normal.loc[normal['id'].duplicated(), 'id'].iloc[0]!r})")
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = view_metrics(predictions, labels, seed)
    weights = np.array([f["test_docs"] for f in per_fold], dtype=float)
    for key in FOLD_AVERAGED:
        if all(key in f for f in per_fold):
            metrics[key] = float(np.average([f[key] for f in per_fold], weights=weights))
    metrics["folds"] = float(len(per_fold))
    for key in COST_KEYS:
        metrics[f"folds_{key}"] = float(sum(f.get(key, 0.0) for f in per_fold))
    k = len(per_fold)
    confusion_pngs(predictions, labels, candidate, f"documents, out of {k} folds", out_dir)
    if all(f"sweep_accuracy_{view}" in metrics for view in SWEEP):
        sweep_png({candidate: [metrics[f"sweep_accuracy_{v}"] for v in SWEEP]}, SWEEP_POSITIONS,
                  f"{candidate}: first paragraph moved (out of {k} folds)", out_dir / "position_sweep.png")
    predictions.to_parquet(out_dir / PREDICTIONS_FILE, index=False)
    (out_dir / FOLDS_FILE).write_text(json.dumps(per_fold, indent=2))
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


def _fold_cost(candidate_dir: Path) -> dict[str, float]:
    """What training this fold's model cost (its own and its fold's stage 1), from its training summary."""
    path = candidate_dir / "train_summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    return {k: float(summary[k]) for k in COST_KEYS if isinstance(summary.get(k), int | float)}


def is_cross_fitted(eval_dir: Path) -> bool:
    return (eval_dir / FOLDS_FILE).is_file()


def evaluate_refit(model: TextClassifier, corpus: pd.DataFrame, params: Params, oof_dir: Path,
                   out_dir: Path) -> dict:
    """The refit's evaluation folder: its own temperature (on the validation split) and speed, with the
    candidate's out-of-fold figures and pictures (``oof_dir``), since the refit itself has no unseen documents."""
    if not is_cross_fitted(oof_dir):
        raise LongdocError(f"no out-of-fold evaluation in {oof_dir}: run the crossfit stage first")
    out_dir.mkdir(parents=True, exist_ok=True)
    with model.vector_cache(params.cache_root):
        temperature = calibrate(model, corpus, params, out_dir)
    for path in oof_dir.iterdir():
        if path.is_file() and path.name != CALIBRATION_FILE:
            shutil.copyfile(path, out_dir / path.name)
    with model.vector_cache(params.cache_root):  # every document trained the refit: an in-sample reference
        reference = corpus[corpus["split"].isin(["val", "test"])]
        write_reference(model, reference["text"].tolist(), training_labels(corpus), True, out_dir,
                        params.evaluate.batch_size)
    metrics = json.loads((oof_dir / METRICS_FILE).read_text())
    metrics["temperature"] = temperature
    metrics.update(speed(model, corpus["text"].tolist(), params))
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics

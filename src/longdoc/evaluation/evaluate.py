"""Test-split evaluation: accuracy, F1, calibration, robustness views and speed, for any classifier.

Transformer variants are evaluated through :class:`longdoc.models.inference.Predictor` on raw text, the
same path the MLflow model and the service use, so the figures describe the model that is served;
the TF-IDF baseline goes through the same function, so the comparison is like for like.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from longdoc.config.params import Params
from longdoc.data.splits import sample_per_label
from longdoc.errors import LongdocError
from longdoc.evaluation.metrics import (
    bootstrap_interval,
    calibration_error,
    classification_metrics,
    confusion,
    expected_calibration_error,
    paired_difference,
)
from longdoc.evaluation.plots import confusion_png, sweep_png
from longdoc.evaluation.views import SWEEP, SWEEP_POSITIONS, UNIT_KINDS, VIEWS, units
from longdoc.models.calibration import fit_temperature, with_temperature
from longdoc.monitoring.reference import write_reference

CALIBRATION_FILE = "calibration.json"
PREDICTIONS_FILE = "predictions.parquet"


SPEED_DOCS = 20  # documents timed for docs/s, every chunk vector computed (no embedding cache)


class TextClassifier(Protocol):
    labels: list[str]
    temperature: float

    def predict_proba(self, texts: list[str], batch_size: int = 8) -> tuple[np.ndarray, list[int]]: ...

    def vector_cache(self, root: Path | None): ...

    def observe(self, texts: list[str], batch_size: int = 8) -> tuple[np.ndarray, list]: ...


def peak_memory_mb() -> float:
    """Peak resident memory of this process (each pipeline step is its own process)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _run_view(model: TextClassifier, texts: list[str], batch_size: int) -> tuple[np.ndarray, list[int], float]:
    started = time.perf_counter()
    probs, n_chunks = model.predict_proba(texts, batch_size)
    return probs, n_chunks, time.perf_counter() - started


def speed(model: TextClassifier, texts: list[str], params: Params) -> dict[str, float]:
    """Documents per second on the first ``SPEED_DOCS`` texts with every chunk vector computed, and peak memory."""
    texts = texts[:SPEED_DOCS]
    with model.vector_cache(None):
        _, _, seconds = _run_view(model, texts, params.evaluate.batch_size)
    return {"docs_per_second": len(texts) / seconds, "eval_peak_rss_mb": peak_memory_mb()}


def calibrate(model: TextClassifier, corpus: pd.DataFrame, params: Params, out_dir: Path) -> float:
    """Fit the model's temperature on the validation split and keep it in ``calibration.json``.

    The temperature travels with the registered model (an artifact of the MLflow model), so the
    probabilities the service returns are the calibrated ones the table reports.
    """
    val = validation_docs(corpus, model.labels, params)
    model.temperature = 1.0
    temperature = 1.0
    if len(val) >= 2:
        probs, _ = model.predict_proba(val["text"].tolist(), params.evaluate.batch_size)
        index = {label: i for i, label in enumerate(model.labels)}
        temperature = fit_temperature(probs, np.array([index[y] for y in val["label"]]))
    model.temperature = temperature
    (out_dir / CALIBRATION_FILE).write_text(json.dumps({"temperature": temperature, "val_docs": len(val)}))
    return temperature


def _interval_metrics(prefix: str, y: np.ndarray, pred: np.ndarray, n_labels: int, seed: int) -> dict[str, float]:
    out = {}
    for kind in ("accuracy", "macro_f1"):
        out[f"{prefix}_{kind}_lo"], out[f"{prefix}_{kind}_hi"] = bootstrap_interval(kind, y, pred, n_labels, seed=seed)
    return out


def _gap_metrics(view: str, y: np.ndarray, normal: np.ndarray, other: np.ndarray, multi: np.ndarray,
                 n_labels: int, seed: int) -> dict[str, float]:
    """Robustness gap on the documents the view really changed (more than one unit), with its interval."""
    out = {}
    for kind in ("accuracy", "macro_f1"):
        point, low, high = paired_difference(kind, y[multi], normal[multi], other[multi], n_labels, seed=seed)
        out.update({f"{view}_gap_{kind}": point, f"{view}_gap_{kind}_lo": low, f"{view}_gap_{kind}_hi": high})
    return out


def view_metrics(rows: pd.DataFrame, labels: list[str], seed: int) -> dict[str, float]:
    """Scores of every view, the normal view's intervals and the robustness gaps, from prediction rows (one per
    document and view, as ``predictions.parquet`` holds them).

    From rows rather than from a model, so a held-out evaluation and the out-of-fold predictions of a
    cross-fitted one (:mod:`longdoc.evaluation.crossfit`) are scored by the same code. Documents keep the
    order of the normal view's rows: the bootstrap resamples by position.
    """
    index = {label: i for i, label in enumerate(labels)}
    normal = rows[rows["view"] == "normal"].set_index("id")
    y = np.array([index[t] for t in normal["label"]])
    multi = (normal["units"] > 1).to_numpy()
    kinds = Counter(normal["unit"])
    metrics: dict[str, float] = {"test_docs": float(len(normal)), "single_unit_docs": float((~multi).sum()),
                                 "robustness_docs": float(multi.sum()),
                                 **{f"unit_docs_{k}": float(kinds.get(k, 0)) for k in UNIT_KINDS}}
    predicted: dict[str, np.ndarray] = {}
    for view in VIEWS:
        part = rows[rows["view"] == view].set_index("id").loc[normal.index]
        predicted[view] = np.array([index[p] for p in part["predicted"]])
        metrics.update({f"{view}_{k}": v for k, v in classification_metrics(
            normal["label"].tolist(), part["predicted"].tolist(), labels).items()})
        metrics[f"{view}_ece"] = calibration_error(part["confidence"].to_numpy(), predicted[view] == y)
    metrics.update(_interval_metrics("normal", y, predicted["normal"], len(labels), seed))
    metrics["mean_chunks_per_doc"] = float(normal["n_chunks"].mean())
    for view in ("inverted", "shuffled"):
        metrics.update(_gap_metrics(view, y, predicted["normal"], predicted[view], multi, len(labels), seed))
    return metrics


def confusion_pngs(rows: pd.DataFrame, labels: list[str], name: str, documents: str, out_dir: Path) -> None:
    """The normal and inverted views' confusion matrices, from prediction rows."""
    for view in ("normal", "inverted"):
        part = rows[rows["view"] == view]
        confusion_png(confusion(part["label"].tolist(), part["predicted"].tolist(), labels), labels,
                      f"{name}: {view} {documents}", out_dir / f"confusion_{view}.png")


def evaluate(model: TextClassifier, name: str, corpus: pd.DataFrame, params: Params, out_dir: Path,
             served: bool = True) -> dict:
    """Write ``metrics.json``, ``predictions.parquet``, confusion matrices and the position-sweep plot.

    The model is first calibrated on the validation split; metrics come with bootstrap intervals and
    the robustness gaps with paired intervals over the documents a view really reorders. Chunk vectors
    come from the embedding cache (models that share a stage-1 encoder share them); the speed figure
    is timed separately with every vector computed, and the reference profile a served model is watched against
    (:mod:`longdoc.monitoring.reference`) written, unless ``served`` is off (a cross-fitting fold's model is never
    served: its refit is timed and profiled instead).
    """
    with model.vector_cache(params.cache_root):
        metrics = _evaluate(model, name, corpus, params, out_dir, reference=served)
    if served:
        test = sample_per_label(corpus[corpus["split"] == "test"], params.evaluate.docs_per_label, params.data.seed)
        metrics.update(speed(model, test["text"].tolist(), params))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


def _evaluate(model: TextClassifier, name: str, corpus: pd.DataFrame, params: Params, out_dir: Path,
              reference: bool) -> dict:
    cfg = params.evaluate
    seed = params.data.seed
    test = sample_per_label(corpus[corpus["split"] == "test"], cfg.docs_per_label, seed)
    if test.empty:
        raise LongdocError("the test split is empty: nothing to evaluate")
    unknown = sorted(set(test["label"]) - set(model.labels))
    if unknown:
        raise LongdocError(f"test split has label(s) {unknown} that the model was not trained on")
    out_dir.mkdir(parents=True, exist_ok=True)
    temperature = calibrate(model, corpus, params, out_dir)
    index = {label: i for i, label in enumerate(model.labels)}
    y_true = test["label"].tolist()
    y = np.array([index[t] for t in y_true])
    doc_units = [units(t) for t in test["text"]]
    metrics: dict[str, float] = {"temperature": temperature}
    rows = []
    for view, make in VIEWS.items():
        probs, n_chunks, _ = _run_view(model, [make(t, seed) for t in test["text"]], cfg.batch_size)
        if view == "normal":
            metrics["normal_ece_uncalibrated"] = expected_calibration_error(with_temperature(probs, 1 / temperature), y)
        y_pred = [model.labels[i] for i in probs.argmax(1)]
        rows += [{"id": i, "view": view, "label": t, "predicted": p, "n_chunks": n, "confidence": float(c),
                  "unit": u.kind, "units": len(u.parts)}
                 for i, t, p, n, c, u in zip(test["id"], y_true, y_pred, n_chunks, probs.max(1), doc_units,
                                             strict=True)]
    predictions = pd.DataFrame(rows)
    metrics.update(view_metrics(predictions, model.labels, seed))
    confusion_pngs(predictions, model.labels, name, "test documents", out_dir)

    sweep_docs = sample_per_label(test, cfg.sweep_docs_per_label, seed)
    sweep_true = sweep_docs["label"].tolist()
    for view, make in SWEEP.items():
        probs, _, _ = _run_view(model, [make(t, seed) for t in sweep_docs["text"]], cfg.batch_size)
        metrics[f"sweep_accuracy_{view}"] = float(np.mean([model.labels[i] == y
                                                           for i, y in zip(probs.argmax(1), sweep_true, strict=True)]))
    sweep_png({name: [metrics[f"sweep_accuracy_{v}"] for v in SWEEP]}, SWEEP_POSITIONS,
              f"{name}: first paragraph moved ({len(sweep_docs)} documents)", out_dir / "position_sweep.png")
    predictions.to_parquet(out_dir / PREDICTIONS_FILE, index=False)
    if reference:
        write_reference(model, [*validation_docs(corpus, model.labels, params)["text"], *test["text"]],
                        training_labels(corpus), False, out_dir, cfg.batch_size)
    return metrics


def validation_docs(corpus: pd.DataFrame, labels: list[str], params: Params) -> pd.DataFrame:
    """The validation documents the temperature is fitted on (and the reference profile starts with)."""
    val = sample_per_label(corpus[corpus["split"] == "val"], params.train.val_docs_per_label, params.data.seed)
    return val[val["label"].isin(labels)]


def training_labels(corpus: pd.DataFrame) -> list[str]:
    """The labels of the training split: the mix a served stream's predicted labels are compared with."""
    return corpus.loc[corpus["split"] == "train", "label"].tolist()


def load_for_evaluation(model_dir: Path, params: Params):
    """The trained model's predictor, on the GPU when there is one (bf16, as serving on a GPU would be); it was
    always the CPU, which took minutes per view at the GPU profile's 16 windows of 510 tokens (seen on an H200)."""
    import torch

    from longdoc.models.inference import load_predictor

    device = "cuda" if params.train.device != "cpu" and torch.cuda.is_available() else "cpu"
    return load_predictor(model_dir, device)

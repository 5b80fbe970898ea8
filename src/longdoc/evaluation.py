"""Test-split evaluation: accuracy, F1, calibration, robustness views and speed, for any classifier.

Transformer variants are evaluated through :class:`longdoc.inference.Predictor` on raw text, the
same path the MLflow model and the service use, so the figures describe the model that is served;
the TF-IDF baseline goes through the same function, so the comparison is like for like.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from longdoc.config import Params
from longdoc.data.splits import sample_per_label
from longdoc.errors import LongdocError
from longdoc.metrics import classification_metrics, confusion, expected_calibration_error
from longdoc.plots import confusion_png, sweep_png
from longdoc.views import SWEEP, SWEEP_POSITIONS, VIEWS


class TextClassifier(Protocol):
    labels: list[str]

    def predict_proba(self, texts: list[str], batch_size: int = 8) -> tuple[np.ndarray, list[int]]: ...


def peak_memory_mb() -> float:
    """Peak resident memory of this process (each pipeline step is its own process)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _run_view(model: TextClassifier, texts: list[str], batch_size: int) -> tuple[np.ndarray, list[int], float]:
    started = time.perf_counter()
    probs, n_chunks = model.predict_proba(texts, batch_size)
    return probs, n_chunks, time.perf_counter() - started


def evaluate(model: TextClassifier, name: str, corpus: pd.DataFrame, params: Params, out_dir: Path) -> dict:
    """Write ``metrics.json``, ``predictions.parquet``, confusion matrices and the position-sweep plot."""
    cfg = params.evaluate
    test = sample_per_label(corpus[corpus["split"] == "test"], cfg.docs_per_label, params.data.seed)
    if test.empty:
        raise LongdocError("the test split is empty: nothing to evaluate")
    unknown = sorted(set(test["label"]) - set(model.labels))
    if unknown:
        raise LongdocError(f"test split has label(s) {unknown} that the model was not trained on")
    out_dir.mkdir(parents=True, exist_ok=True)
    index = {label: i for i, label in enumerate(model.labels)}
    y_true = test["label"].tolist()
    metrics: dict[str, float] = {"test_docs": float(len(test))}
    rows = []
    for view, make in VIEWS.items():
        probs, n_chunks, seconds = _run_view(model, [make(t, params.data.seed) for t in test["text"]], cfg.batch_size)
        y_pred = [model.labels[i] for i in probs.argmax(1)]
        metrics.update({f"{view}_{k}": v for k, v in classification_metrics(y_true, y_pred, model.labels).items()})
        metrics[f"{view}_ece"] = expected_calibration_error(probs, np.array([index[y] for y in y_true]))
        if view == "normal":
            metrics["docs_per_second"] = len(test) / seconds
            metrics["mean_chunks_per_doc"] = float(np.mean(n_chunks))
        if view in ("normal", "inverted"):
            confusion_png(confusion(y_true, y_pred, model.labels), model.labels, f"{name}: {view} test documents",
                          out_dir / f"confusion_{view}.png")
        rows += [{"id": i, "view": view, "label": t, "predicted": p, "n_chunks": n, "confidence": float(c)}
                 for i, t, p, n, c in zip(test["id"], y_true, y_pred, n_chunks, probs.max(1), strict=True)]
    for view in ("inverted", "shuffled"):
        for key in ("accuracy", "macro_f1"):
            metrics[f"{view}_gap_{key}"] = metrics[f"normal_{key}"] - metrics[f"{view}_{key}"]

    sweep_docs = sample_per_label(test, cfg.sweep_docs_per_label, params.data.seed)
    sweep_true = sweep_docs["label"].tolist()
    for view, make in SWEEP.items():
        probs, _, _ = _run_view(model, [make(t, params.data.seed) for t in sweep_docs["text"]], cfg.batch_size)
        metrics[f"sweep_accuracy_{view}"] = float(np.mean([model.labels[i] == y
                                                           for i, y in zip(probs.argmax(1), sweep_true, strict=True)]))
    sweep_png({name: [metrics[f"sweep_accuracy_{v}"] for v in SWEEP]}, SWEEP_POSITIONS,
              f"{name}: first paragraph moved ({len(sweep_docs)} documents)", out_dir / "position_sweep.png")
    metrics["eval_peak_rss_mb"] = peak_memory_mb()
    pd.DataFrame(rows).to_parquet(out_dir / "predictions.parquet", index=False)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


def evaluate_model(model_dir: Path, corpus: pd.DataFrame, params: Params, out_dir: Path) -> dict:
    from longdoc.inference import Predictor

    predictor = Predictor.load(model_dir)
    return evaluate(predictor, predictor.card.variant, corpus, params, out_dir)

"""Test-split evaluation of a trained model, on the normal and the inverted documents.

Predictions go through :class:`longdoc.inference.Predictor` on raw text, the same path the MLflow
model and the service use, so the figures describe the model that is served.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from longdoc.config import Params
from longdoc.data.splits import sample_per_label
from longdoc.errors import LongdocError
from longdoc.inference import Predictor
from longdoc.metrics import classification_metrics, confusion
from longdoc.plots import confusion_png
from longdoc.views import VIEWS


def evaluate(model_dir: Path, corpus: pd.DataFrame, params: Params, out_dir: Path) -> dict[str, float]:
    """Write ``metrics.json``, ``predictions.parquet`` and one confusion matrix PNG per view."""
    test = sample_per_label(corpus[corpus["split"] == "test"], params.evaluate.docs_per_label, params.data.seed)
    if test.empty:
        raise LongdocError("the test split is empty: nothing to evaluate")
    predictor = Predictor.load(model_dir)
    unknown = sorted(set(test["label"]) - set(predictor.labels))
    if unknown:
        raise LongdocError(f"test split has label(s) {unknown} that the model was not trained on")
    out_dir.mkdir(parents=True, exist_ok=True)
    y_true = test["label"].tolist()
    metrics: dict[str, float] = {}
    rows = []
    for view, make in VIEWS.items():
        texts = [make(t, params.data.seed) for t in test["text"]]
        started = time.perf_counter()
        probs, n_chunks = predictor.predict_proba(texts, params.evaluate.batch_size)
        seconds = time.perf_counter() - started
        y_pred = [predictor.labels[i] for i in probs.argmax(1)]
        metrics.update({f"{view}_{k}": v for k, v in classification_metrics(y_true, y_pred, predictor.labels).items()})
        metrics[f"{view}_docs_per_second"] = len(texts) / seconds
        confusion_png(confusion(y_true, y_pred, predictor.labels), predictor.labels,
                      f"{predictor.card.variant}: {view} test documents", out_dir / f"confusion_{view}.png")
        rows += [{"id": i, "view": view, "label": t, "predicted": p, "n_chunks": n}
                 for i, t, p, n in zip(test["id"], y_true, y_pred, n_chunks, strict=True)]
    for key in ("accuracy", "macro_f1"):
        metrics[f"inverted_gap_{key}"] = metrics[f"normal_{key}"] - metrics[f"inverted_{key}"]
    metrics["test_docs"] = float(len(test))
    pd.DataFrame(rows).to_parquet(out_dir / "predictions.parquet", index=False)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics

"""Classification metrics, shared by validation during training and the final evaluation."""

from __future__ import annotations

import numpy as np


def classification_metrics(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    scores = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "micro_f1": float(f1_score(y_true, y_pred, labels=labels, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    }
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    scores.update({f"f1_{label}": float(v) for label, v in zip(labels, per_class, strict=True)})
    return scores


def confusion(y_true: list[str], y_pred: list[str], labels: list[str]) -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=labels)

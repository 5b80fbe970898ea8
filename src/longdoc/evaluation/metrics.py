"""Classification metrics, shared by validation during training and the final evaluation."""

from __future__ import annotations

import numpy as np

ECE_BINS = 15


def classification_metrics(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    scores = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "micro_f1": float(f1_score(y_true, y_pred, labels=labels, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    }
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for label, p, r, f in zip(labels, precision, recall, f1, strict=True):
        scores.update({f"precision_{label}": float(p), f"recall_{label}": float(r), f"f1_{label}": float(f)})
    return scores


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> float:
    """Weighted gap between confidence and accuracy over equal-width confidence bins."""
    return calibration_error(probs.max(1), probs.argmax(1) == y_true, bins)


def calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE from each document's top probability and whether its top label was right (what prediction rows keep)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def confusion(y_true: list[str], y_pred: list[str], labels: list[str]) -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=labels)


# --- uncertainty -------------------------------------------------------------------------------
# A test split of 150 documents resolves macro-F1 to about 0.007 a document: every decision and
# README sentence that rests on a difference uses these intervals, not point values.

BOOTSTRAP_ROUNDS = 1000
LEVEL = 0.95


def macro_f1_indices(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> float:
    """Macro-F1 over label indices (all labels, zero for a label never predicted nor present)."""
    tp = np.bincount(y_true[y_true == y_pred], minlength=n_labels).astype(float)
    pred = np.bincount(y_pred, minlength=n_labels).astype(float)
    true = np.bincount(y_true, minlength=n_labels).astype(float)
    denom = pred + true
    f1 = np.divide(2 * tp, denom, out=np.zeros(n_labels), where=denom > 0)
    present = true > 0
    return float(f1[present].mean()) if present.any() else 0.0


def _score(kind: str, y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> float:
    if kind == "accuracy":
        return float((y_true == y_pred).mean()) if len(y_true) else 0.0
    return macro_f1_indices(y_true, y_pred, n_labels)


def _resamples(n: int, rounds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(rounds, n))


def bootstrap_interval(kind: str, y_true: np.ndarray, y_pred: np.ndarray, n_labels: int,
                       rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of accuracy or macro-F1 over documents."""
    if len(y_true) == 0:
        return float("nan"), float("nan")
    scores = [_score(kind, y_true[i], y_pred[i], n_labels) for i in _resamples(len(y_true), rounds, seed)]
    return _percentiles(scores)


def paired_difference(kind: str, y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, n_labels: int,
                      rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> tuple[float, float, float]:
    """score(a) - score(b) on the same documents, with a paired-bootstrap interval.

    Both predictions are resampled with the same documents each round, so what the two have in
    common (the easy and the hard documents) cancels and the interval measures only the difference.
    """
    if len(y_true) == 0:
        return float("nan"), float("nan"), float("nan")
    point = _score(kind, y_true, pred_a, n_labels) - _score(kind, y_true, pred_b, n_labels)
    diffs = [_score(kind, y_true[i], pred_a[i], n_labels) - _score(kind, y_true[i], pred_b[i], n_labels)
             for i in _resamples(len(y_true), rounds, seed)]
    return (point, *_percentiles(diffs))


def _percentiles(values: list[float]) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)

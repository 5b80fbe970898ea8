"""The champion's accuracy on served traffic, from the labels clients send back to /feedback.

A Wilson interval, not the normal approximation: feedback often comes in tens, and accuracy sits near 1, where the
normal interval overshoots it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd


@dataclass
class ServedAccuracy:
    documents: int
    correct: int
    accuracy: float
    low: float
    high: float
    confidence: float

    def as_dict(self) -> dict:
        return asdict(self)


def served_accuracy(records: pd.DataFrame, feedback: pd.DataFrame, confidence: float = 0.95) -> ServedAccuracy | None:
    """Labels sent back for served documents (matched by document id; the latest of each), scored against what
    the service answered them; None when no feedback matches a served document."""
    from scipy.stats import binomtest

    if records.empty or feedback.empty:
        return None
    answered = records.drop_duplicates("document_id", keep="last").set_index("document_id")["label"]
    truth = feedback.drop_duplicates("document_id", keep="last").set_index("document_id")["true_label"]
    joined = pd.concat([answered.rename("predicted"), truth], axis=1, join="inner")
    if joined.empty:
        return None
    n, k = len(joined), int((joined["predicted"] == joined["true_label"]).sum())
    interval = binomtest(k, n).proportion_ci(confidence, method="wilson")
    return ServedAccuracy(n, k, k / n, float(interval.low), float(interval.high), confidence)

"""One document's answer, the same from every predictor (a transformer variant or the TF-IDF baseline), and what
the model saw of it on the way (for monitoring).

A module of its own so both predictors import it and neither imports the other back.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class Prediction:
    label: str
    probabilities: dict[str, float]
    n_chunks: int


def predictions_of(probs: np.ndarray, n_chunks: list[int], labels: list[str]) -> list[Prediction]:
    """Each row of probabilities as an answer: the most probable label, every label's probability."""
    return [Prediction(labels[int(p.argmax())], dict(zip(labels, map(float, p), strict=True)), n)
            for p, n in zip(probs, n_chunks, strict=True)]


@dataclass
class Observation:
    """What the model saw of one document, measured in the pass that classified it (so watching costs no second
    pass): its length, how it was cut, which segment weighed most, and the document's vector in the model's own
    space (the mean of its chunk vectors; the baseline's TF-IDF row)."""

    chars: int
    tokens: int
    chunks: int
    top_chunk: int
    vector: np.ndarray

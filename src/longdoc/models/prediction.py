"""One document's answer, the same from every predictor (a transformer variant or the TF-IDF baseline).

A module of its own so both predictors import it and neither imports the other back.
"""

from dataclasses import dataclass


@dataclass
class Prediction:
    label: str
    probabilities: dict[str, float]
    n_chunks: int

"""Temperature scaling (Guo et al. 2017): the one number that turns a model's scores into probabilities.

With the models because a predictor applies its temperature to every answer (the TF-IDF baseline
through ``with_temperature``); the evaluation fits it on the validation split.
"""

from __future__ import annotations

import numpy as np


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities re-scaled as softmax(log p / T); T = 1 leaves them as they are.

    Applied to calibrated probabilities with 1/T it recovers the uncalibrated ones exactly, which is
    how the evaluation reports ECE before and after without a second inference pass.
    """
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017): the T in [0.05, 20] that minimises validation NLL."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        scaled = with_temperature(probs, float(np.exp(log_t)))
        return float(-np.log(np.clip(scaled[np.arange(len(y_true)), y_true], 1e-12, 1.0)).mean())

    if len(y_true) == 0:
        return 1.0
    found = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x))

"""The numbers decisions rest on: macro-F1, bootstrap intervals, paired differences, temperature scaling."""

import numpy as np
from sklearn.metrics import f1_score

from longdoc.metrics import bootstrap_interval, fit_temperature, macro_f1_indices, paired_difference, with_temperature


def _predictions(n: int, accuracy: float, seed: int, labels: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, labels, n)
    return y, np.where(rng.random(n) < accuracy, y, rng.integers(0, labels, n))


def test_macro_f1_matches_scikit_learn():
    for seed in range(5):
        y, p = _predictions(120, 0.7, seed)
        assert abs(macro_f1_indices(y, p, 5) - f1_score(y, p, average="macro")) < 1e-12


def test_bootstrap_interval_contains_the_point_and_narrows_with_more_documents():
    y, p = _predictions(150, 0.9, 1)
    low, high = bootstrap_interval("accuracy", y, p, 5)
    assert low < float((y == p).mean()) < high
    y4, p4 = _predictions(1500, 0.9, 1)
    low4, high4 = bootstrap_interval("accuracy", y4, p4, 5)
    assert (high4 - low4) < 0.5 * (high - low)  # ten times the documents: about a third of the width


def test_paired_difference_is_zero_for_equal_models_and_separates_clear_gains():
    y, p = _predictions(150, 0.8, 2)
    assert paired_difference("macro_f1", y, p, p, 5) == (0.0, 0.0, 0.0)
    better = np.where(np.arange(150) < 140, y, p)  # right on 140 of 150
    point, low, high = paired_difference("macro_f1", y, better, p, 5)
    assert 0 < low < point < high
    one_more = p.copy()
    one_more[np.flatnonzero(p != y)[0]] = y[np.flatnonzero(p != y)[0]]  # one document better
    assert paired_difference("accuracy", y, one_more, p, 5)[1] <= 0  # one document is not evidence


def test_temperature_scaling_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, size=(4000, 4))
    true_t = 2.5
    calibrated = with_temperature(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), true_t)
    y = np.array([rng.choice(4, p=row) for row in calibrated])
    raw = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert abs(fit_temperature(raw, y) - true_t) < 0.25
    back = with_temperature(with_temperature(raw, true_t), 1 / true_t)  # what the evaluation uses for "raw" ECE
    assert np.allclose(back, raw, atol=1e-6)

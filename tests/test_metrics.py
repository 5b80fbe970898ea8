"""The numbers decisions rest on: macro-F1, bootstrap intervals, paired differences, temperature scaling."""

import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import f1_score

from longdoc.evaluation.metrics import (
    _resamples,
    bootstrap_interval,
    classification_metrics,
    confusion,
    expected_calibration_error,
    macro_f1_indices,
    paired_difference,
)
from longdoc.models.calibration import fit_temperature, with_temperature


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


# --- properties ---------------------------------------------------------------------------------
# Each test below states what must hold for any input; hypothesis varies the inputs where they can vary.

PROPERTY = settings(max_examples=60, deadline=None)
NAMES = ["alpha", "beta", "gamma", "delta", "eps"]


@st.composite
def named_predictions(draw: st.DrawFn, outside: bool = True) -> tuple[list[str], list[str], list[str]]:
    """Labels in any order (some never seen), and documents whose labels may also fall outside the list."""
    labels = draw(st.permutations(NAMES))[: draw(st.integers(1, len(NAMES)))]
    pool = st.sampled_from(labels + ["outsider"] if outside else labels)
    n = draw(st.integers(1, 40))
    return labels, draw(st.lists(pool, min_size=n, max_size=n)), draw(st.lists(pool, min_size=n, max_size=n))


@given(named_predictions())
@PROPERTY
def test_classification_metrics_are_the_per_label_counts_over_the_given_labels(
        case: tuple[list[str], list[str], list[str]]) -> None:
    """Every logged score must follow from the counts over the label list the caller gave, in that order.

    Precision, recall and F1 are 0 (not 1, not an error) for a label never predicted or never present,
    macro-F1 averages over every listed label, micro-F1 pools the listed labels, accuracy counts all documents.
    Those zeros are deliberate, so no warning may fire (training scores the validation split every epoch).
    """
    labels, y_true, y_pred = case
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = classification_metrics(y_true, y_pred, labels)
    expected_keys = {"accuracy", "micro_f1", "macro_f1"} | {f"{k}_{lab}" for lab in labels
                                                          for k in ("precision", "recall", "f1")}
    assert set(scores) == expected_keys
    assert all(isinstance(v, float) for v in scores.values())
    pairs = list(zip(y_true, y_pred, strict=True))
    assert scores["accuracy"] == pytest.approx(np.mean([t == p for t, p in pairs]))
    f1s = []
    for lab in labels:
        tp = sum(t == p == lab for t, p in pairs)
        predicted, true = y_pred.count(lab), y_true.count(lab)
        assert scores[f"precision_{lab}"] == pytest.approx(tp / predicted if predicted else 0.0)
        assert scores[f"recall_{lab}"] == pytest.approx(tp / true if true else 0.0)
        f1s.append(2 * tp / (predicted + true) if predicted + true else 0.0)
        assert scores[f"f1_{lab}"] == pytest.approx(f1s[-1])
    assert scores["macro_f1"] == pytest.approx(np.mean(f1s))
    tp = sum(t == p and t in labels for t, p in pairs)
    pooled = sum(p in labels for p in y_pred) + sum(t in labels for t in y_true)
    assert scores["micro_f1"] == pytest.approx(2 * tp / pooled if pooled else 0.0)


def test_a_label_nobody_predicts_scores_zero_precision_not_one() -> None:
    """A class the model never predicts must count against it: zero precision and F1, never a free 1."""
    scores = classification_metrics(["a", "a", "b"], ["a", "a", "a"], ["a", "b", "c"])
    assert scores["precision_b"] == scores["f1_b"] == scores["recall_b"] == 0.0
    assert scores["precision_c"] == scores["f1_c"] == 0.0  # listed, never present nor predicted
    assert scores["macro_f1"] == pytest.approx((0.8 + 0 + 0) / 3)
    assert scores["micro_f1"] == pytest.approx(scores["accuracy"]) == pytest.approx(2 / 3)


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")  # scikit-learn's, even with labels=
@given(named_predictions(outside=False))
@PROPERTY
def test_confusion_counts_each_document_in_its_true_row_and_predicted_column(
        case: tuple[list[str], list[str], list[str]]) -> None:
    """Rows and columns follow the given label order (the plot's axis labels), one count per document.

    Documents stay within the label list, as evaluation guarantees (it refuses unknown test labels).
    """
    labels, y_true, y_pred = case
    matrix = confusion(y_true, y_pred, labels)
    assert matrix.shape == (len(labels), len(labels))
    for i, t in enumerate(labels):
        for j, p in enumerate(labels):
            assert matrix[i, j] == sum(a == t and b == p for a, b in zip(y_true, y_pred, strict=True))
    assert matrix.sum() == len(y_true)


# --- calibration error ------------------------------------------------------------------------

@st.composite
def probabilities(draw: st.DrawFn, min_rows: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rows of class probabilities (zeros allowed) and a true class per row."""
    n = draw(st.integers(min_rows, 30))
    k = draw(st.integers(2, 6))
    weights = draw(hnp.arrays(float, (n, k), elements=st.floats(0, 1)).filter(lambda w: (w.sum(1) > 1e-3).all()))
    y = draw(hnp.arrays(np.int64, n, elements=st.integers(0, k - 1)))
    return weights / weights.sum(1, keepdims=True), y


@given(probabilities(), st.integers(1, 30))
@PROPERTY
def test_ece_lies_between_the_overall_gap_and_the_per_document_gap(case: tuple[np.ndarray, np.ndarray],
                                                                 bins: int) -> None:
    """Binning can only hide miscalibration, never invent it: |acc - conf| <= ECE <= mean |correct - conf|.

    With a single bin ECE is exactly the overall gap between accuracy and mean confidence.
    """
    probs, y = case
    correct = (probs.argmax(1) == y).astype(float)
    confidence = probs.max(1)
    overall = abs(correct.mean() - confidence.mean())
    ece = expected_calibration_error(probs, y, bins)
    assert overall - 1e-9 <= ece <= np.abs(correct - confidence).mean() + 1e-9
    assert expected_calibration_error(probs, y, 1) == pytest.approx(overall, abs=1e-12)


@pytest.mark.parametrize("bins", [1, 2, 4, 15])
@pytest.mark.parametrize("confidence", [0.5, 0.75, 1.0])
@pytest.mark.parametrize("right", [True, False])
def test_ece_of_one_document_is_its_own_gap_even_on_a_bin_edge(bins: int, confidence: float, right: bool) -> None:
    """A document whose confidence sits exactly on a bin edge (0.5, 0.75, 1.0) is counted once, not zero or twice."""
    probs = np.array([[confidence, 1 - confidence]])
    ece = expected_calibration_error(probs, np.array([0 if right else 1]), bins)
    assert ece == pytest.approx(abs(float(right) - confidence))


def test_ece_is_zero_for_certain_right_answers_and_one_for_certain_wrong_ones() -> None:
    """The two extremes of calibration, with the default bins."""
    probs = np.eye(3)[[0, 1, 2, 1]]
    assert expected_calibration_error(probs, np.array([0, 1, 2, 1])) == 0.0
    assert expected_calibration_error(probs, np.array([1, 2, 0, 0])) == pytest.approx(1.0)


def test_ece_weighs_each_bin_by_its_share_of_documents() -> None:
    """Two confidence groups in separate bins: their gaps add up weighted, they do not cancel into one average."""
    probs = np.array([[0.95, 0.05]] * 2 + [[0.65, 0.35]] * 6)
    y = np.array([0, 0, 1, 1, 1, 1, 1, 1])  # confident group right (gap 0.05), hesitant group wrong (gap 0.65)
    per_bin = 0.25 * 0.05 + 0.75 * 0.65
    assert expected_calibration_error(probs, y, 4) == pytest.approx(per_bin)  # 0.65 and 0.95 in separate bins
    assert expected_calibration_error(probs, y) == pytest.approx(per_bin)
    assert expected_calibration_error(probs, y, 1) == pytest.approx(abs(0.25 - (0.25 * 0.95 + 0.75 * 0.65)))


# --- macro-F1 over indices, bootstrap, paired differences -------------------------------------

@st.composite
def index_predictions(draw: st.DrawFn, min_size: int = 1) -> tuple[np.ndarray, np.ndarray, int]:
    """Label indices where the highest labels may be absent from the truth, the predictions, or both."""
    n_labels = draw(st.integers(1, 7))
    n = draw(st.integers(min_size, 40))
    idx = st.integers(0, n_labels - 1)
    y = draw(hnp.arrays(np.int64, n, elements=idx))
    p = draw(hnp.arrays(np.int64, n, elements=idx))
    return y, p, n_labels


@given(index_predictions())
@example((np.array([0, 1, 1]), np.array([0, 1, 2]), 4))  # label 2 only predicted, label 3 nowhere
@example((np.array([2, 0]), np.array([0, 0]), 3))  # label 2 present once, never predicted
@PROPERTY
def test_macro_f1_indices_averages_over_the_labels_present_in_the_truth(case: tuple[np.ndarray, np.ndarray, int],
                                                                      ) -> None:
    """The bootstrap's macro-F1: scikit-learn's macro-F1 over the labels the documents really have.

    A label that is only predicted (or nowhere) must not join the average, a label present once must,
    and no numpy warning may fire (it would repeat a thousand times per bootstrap).
    """
    y, p, n_labels = case
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = macro_f1_indices(y, p, n_labels)
    assert got == pytest.approx(f1_score(y, p, labels=np.unique(y), average="macro", zero_division=0), abs=1e-12)


def test_macro_f1_and_accuracy_of_no_documents_are_zero_not_nan() -> None:
    """An empty resample must not turn the score into NaN (or into a perfect 1)."""
    empty = np.array([], dtype=np.int64)
    assert macro_f1_indices(empty, empty, 3) == 0.0


def test_intervals_of_no_documents_are_nan() -> None:
    """No documents, no interval: NaN makes any comparison against a threshold false."""
    empty = np.array([], dtype=np.int64)
    for kind in ("accuracy", "macro_f1"):
        assert all(np.isnan(v) for v in bootstrap_interval(kind, empty, empty, 3))
        assert all(np.isnan(v) for v in paired_difference(kind, empty, empty, empty, 3))


@pytest.mark.parametrize("kind", ["accuracy", "macro_f1"])
@pytest.mark.parametrize("right", [True, False])
def test_one_document_gives_a_degenerate_interval_at_its_score(kind: str, right: bool) -> None:
    """Every resample of one document is that document: the interval collapses onto its score."""
    y, wrong = np.array([1]), np.array([0])
    pred = y if right else wrong
    score = 1.0 if right else 0.0
    assert bootstrap_interval(kind, y, pred, 2) == (score, score)
    assert paired_difference(kind, y, pred, wrong, 2) == (score, score, score)


@given(index_predictions(min_size=2), st.sampled_from(["accuracy", "macro_f1"]), st.randoms(use_true_random=False))
@settings(max_examples=40, deadline=None)
def test_paired_difference_against_a_perfect_model_is_the_own_interval_shifted(
        case: tuple[np.ndarray, np.ndarray, int], kind: str, rnd: object) -> None:
    """With the default seed both functions draw the same resamples, so the two reports agree.

    A perfect model scores 1 on every resample (accuracy and macro-F1 alike), so score(a) - score(perfect)
    is a's own score and interval moved down by one; swapping the models mirrors the difference.
    """
    y, a, n_labels = case
    b = np.array([rnd.randrange(n_labels) for _ in y])
    rounds = 200
    own = np.mean(a == y) if kind == "accuracy" else macro_f1_indices(y, a, n_labels)
    low, high = bootstrap_interval(kind, y, a, n_labels, rounds=rounds)
    assert low <= high
    assert paired_difference(kind, y, a, y, n_labels, rounds=rounds) == pytest.approx((own - 1, low - 1, high - 1))
    assert paired_difference(kind, y, y, a, n_labels, rounds=rounds) == pytest.approx((1 - own, 1 - high, 1 - low))
    forward = paired_difference(kind, y, a, b, n_labels, rounds=rounds)
    backward = paired_difference(kind, y, b, a, n_labels, rounds=rounds)
    assert forward == pytest.approx((-backward[0], -backward[2], -backward[1]))
    other = np.mean(b == y) if kind == "accuracy" else macro_f1_indices(y, b, n_labels)
    assert forward[0] == pytest.approx(own - other)


def test_intervals_are_reproducible_and_depend_on_the_seed() -> None:
    """A decision logged today must be recomputable tomorrow: same inputs and seed, same numbers."""
    y, p = _predictions(150, 0.7, 4)
    q = np.where(np.arange(150) % 3 == 0, y, p)
    for kind in ("accuracy", "macro_f1"):
        assert bootstrap_interval(kind, y, p, 5) == bootstrap_interval(kind, y, p, 5)
        assert paired_difference(kind, y, q, p, 5) == paired_difference(kind, y, q, p, 5)
        assert bootstrap_interval(kind, y, p, 5) != bootstrap_interval(kind, y, p, 5, seed=1)


def test_the_interval_leaves_two_and_a_half_percent_of_the_bootstrap_on_each_side() -> None:
    """A 95% percentile interval: of 1000 resampled macro-F1 scores, exactly 25 fall below it and 25 above."""
    y, p = _predictions(300, 0.6, 5, labels=6)
    scores = np.array([macro_f1_indices(y[i], p[i], 6) for i in _resamples(len(y), 1000, 0)])
    assert len(np.unique(scores)) == len(scores)  # no ties, so the counts are exact
    low, high = bootstrap_interval("macro_f1", y, p, 6)
    assert (scores < low).sum() == 25
    assert (scores > high).sum() == 25


def test_bootstrap_resamples_draw_every_document() -> None:
    """Resampling with replacement over all n documents: each index 0..n-1 is drawn, nothing outside."""
    draws = _resamples(5, 400, 0)
    assert draws.shape == (400, 5)
    assert set(np.unique(draws)) == {0, 1, 2, 3, 4}


# --- temperature scaling ----------------------------------------------------------------------

@given(probabilities(), st.floats(1e-3, 50))
@example((np.array([[1.0, 0.0, 0.0], [0.34, 0.33, 0.33]]), np.array([0, 0])), 1e-3)
@PROPERTY
def test_temperature_keeps_rows_probabilities_and_the_predicted_class(case: tuple[np.ndarray, np.ndarray],
                                                                      temperature: float) -> None:
    """Any temperature, however sharp, gives finite rows summing to one with the same top class."""
    probs, _ = case
    scaled = with_temperature(probs, temperature)
    assert np.isfinite(scaled).all()
    assert np.allclose(scaled.sum(1), 1.0)
    top = probs.argmax(1)
    assert np.allclose(scaled[np.arange(len(probs)), top], scaled.max(1))


@given(probabilities(), st.floats(0.05, 20))
@example((np.array([[1.0, 0.0]]), np.array([1])), 2.0)
@PROPERTY
def test_temperature_in_the_fitted_range_never_rules_a_class_out(case: tuple[np.ndarray, np.ndarray],
                                                                 temperature: float) -> None:
    """Even a class the model gave probability 0 keeps some mass, so the log-loss stays finite."""
    probs, _ = case
    assert (with_temperature(probs, temperature) > 0).all()
    assert np.allclose(with_temperature(probs, 1.0), np.clip(probs, 1e-12, 1) / np.clip(probs, 1e-12, 1).sum(1,
                                                                                                           keepdims=True))


def test_fit_temperature_without_documents_leaves_the_model_as_it_is() -> None:
    """Nothing to fit on: T = 1, the identity."""
    assert fit_temperature(np.zeros((0, 3)), np.array([], dtype=np.int64)) == 1.0


@given(probabilities())
@settings(max_examples=30, deadline=None)
def test_fitted_temperature_stays_in_its_range(case: tuple[np.ndarray, np.ndarray]) -> None:
    """Whatever the validation set, T is within [0.05, 20] (no division blow-up, no flattening to uniform)."""
    probs, y = case
    assert 0.05 * (1 - 1e-9) <= fit_temperature(probs, y) <= 20.0 * (1 + 1e-9)


def test_fit_temperature_sharpens_a_right_model_and_softens_a_wrong_one_to_the_bounds() -> None:
    """Even one validation document is fitted: always right pushes T to the 0.05 floor, always wrong to the 20 cap."""
    probs = np.array([[0.7, 0.2, 0.1]])
    assert fit_temperature(probs, np.array([0])) == pytest.approx(0.05, rel=1e-3)
    assert fit_temperature(probs, np.array([2])) == pytest.approx(20.0, rel=1e-3)
    many = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]] * 20)
    assert fit_temperature(many, np.array([0, 1] * 20)) == pytest.approx(0.05, rel=1e-3)
    assert fit_temperature(many, np.array([2, 2] * 20)) == pytest.approx(20.0, rel=1e-3)


def test_temperature_scaling_recovers_a_sharpening_temperature() -> None:
    """An under-confident model (labels drawn from sharper probabilities) is fitted with T < 1."""
    rng = np.random.default_rng(8)
    logits = rng.normal(0, 1.5, size=(3000, 3))
    raw = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    sharp = with_temperature(raw, 0.5)
    y = np.array([rng.choice(3, p=row) for row in sharp])
    assert abs(fit_temperature(raw, y) - 0.5) < 0.08

"""Drift or noise: one two-sample test per feature, a permutation test on the embedding sketch, the label mix
against the training mix, and one family-wise threshold over them all.

scipy's tests (Kolmogorov-Smirnov, chi-square), not Evidently: scipy is already here through scikit-learn, its
tests return p-values whose meaning does not depend on a library's defaults, and Evidently 0.7.23 requires 26
packages (among them plotly<6, nltk, statsmodels, litestar, dynaconf and iterative-telemetry) for what is here
a few scipy calls. The maximum mean discrepancy on the sketch has no scipy function; it is a few lines of numpy
below, with a permutation p-value.

Every test asks "could the served documents and the reference come from one distribution?". A window is called
drifted when any p-value falls under ``alpha / number of tests`` (Bonferroni), so a window of undrifted traffic
raises an alarm with probability at most ``alpha`` whatever the number of features. Large windows see small
shifts: the statistic beside each p-value says how big the shift is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from longdoc.monitoring.profile import NUMERIC

MAX_SKETCH_DOCS = 1000  # per side in the permutation test (its kernel matrix is (2 x this)^2)


@dataclass
class Check:
    feature: str
    test: str
    statistic: float  # the size of the shift: KS distance, total variation, MMD^2
    p_value: float
    threshold: float = 0.0
    drifted: bool = False
    note: str = ""


@dataclass
class DriftResult:
    alpha: float
    reference_docs: int
    served_docs: int
    checks: list[Check] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return any(c.drifted for c in self.checks)

    @property
    def drifted_features(self) -> list[str]:
        return [c.feature for c in self.checks if c.drifted]

    def as_dict(self) -> dict:
        return {"alpha": self.alpha, "reference_docs": self.reference_docs, "served_docs": self.served_docs,
                "drifted": self.drifted, "checks": [asdict(c) for c in self.checks]}


def numeric_check(feature: str, reference: np.ndarray, served: np.ndarray) -> Check:
    from scipy.stats import ks_2samp

    if np.ptp(np.concatenate([reference, served])) == 0:
        return Check(feature, "constant", 0.0, 1.0, note="the same value everywhere")
    result = ks_2samp(reference, served)
    note = f"median {np.median(reference):.4g} -> {np.median(served):.4g}"
    return Check(feature, "Kolmogorov-Smirnov", float(result.statistic), float(result.pvalue), note=note)


def label_mix_check(served: pd.Series, training_mix: dict[str, float]) -> Check:
    """The predicted labels' counts against what the training mix expects of this many documents."""
    from scipy.stats import chisquare

    labels = sorted(training_mix)
    total = sum(training_mix.values())
    expected_share = np.array([training_mix[k] / total for k in labels])
    counts = served.value_counts().reindex(labels, fill_value=0).to_numpy().astype(float)
    share = counts / max(counts.sum(), 1.0)
    tv = 0.5 * float(np.abs(share - expected_share).sum())
    p = float(chisquare(counts, expected_share * counts.sum()).pvalue)
    top = labels[int(np.argmax(share - expected_share))]
    return Check("label mix", "chi-square vs training mix", tv, p, note=f"most over-represented: {top} "
                 f"({share[labels.index(top)]:.0%} served, {expected_share[labels.index(top)]:.0%} trained)")


def _subsample(x: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= limit else x[rng.choice(len(x), limit, replace=False)]


def mmd_check(reference: np.ndarray, served: np.ndarray, permutations: int, seed: int) -> Check:
    """Maximum mean discrepancy (Gaussian kernel, median-distance bandwidth) with a permutation p-value.

    Under the null the two samples are exchangeable, so shuffling which rows are "reference" gives the
    statistic's null distribution without assuming its shape; p = (1 + #null >= observed) / (1 + permutations).
    """
    rng = np.random.default_rng(seed)
    x = _subsample(reference, MAX_SKETCH_DOCS, rng)
    y = _subsample(served, MAX_SKETCH_DOCS, rng)
    z = np.vstack([x, y]).astype(np.float64)
    squared = np.maximum((z**2).sum(1)[:, None] + (z**2).sum(1)[None, :] - 2 * z @ z.T, 0.0)
    positive = squared[np.triu_indices(len(z), 1)]
    positive = positive[positive > 0]
    if positive.size == 0:
        return Check("embedding sketch", "constant", 0.0, 1.0, note="every sketch is the same")
    kernel = np.exp(-squared / np.median(positive))
    n, m = len(x), len(y)
    signs = np.empty((len(z), permutations + 1))
    signs[:, 0] = np.r_[np.full(n, 1 / n), np.full(m, -1 / m)]
    for b in range(1, permutations + 1):
        signs[:, b] = rng.permutation(signs[:, 0])
    stats = np.einsum("ib,ib->b", signs, kernel @ signs)  # s^T K s: the (biased) MMD^2 of each labelling
    p = (1 + int((stats[1:] >= stats[0]).sum())) / (1 + permutations)
    return Check("embedding sketch", f"MMD, {permutations} permutations", float(stats[0]), float(p),
                 note=f"{n} reference vs {m} served sketches")


def compare(reference: pd.DataFrame, served: pd.DataFrame, training_mix: dict[str, float], alpha: float,
            permutations: int = 500, seed: int = 0, skip: tuple[str, ...] = ()) -> DriftResult:
    """Every check, each against ``alpha / number of tests`` (``skip``: features not to test, with the reason
    said elsewhere, e.g. confidence when the reference documents trained the model)."""
    checks = [numeric_check(f, reference[f].to_numpy(float), served[f].to_numpy(float))
              for f in NUMERIC if f not in skip]
    checks.append(label_mix_check(served["label"], training_mix))
    if "embedding sketch" not in skip:
        checks.append(mmd_check(np.stack(reference["sketch"].to_list()), np.stack(served["sketch"].to_list()),
                                permutations, seed))
    threshold = alpha / len(checks)
    for check in checks:
        check.threshold = threshold
        check.drifted = check.p_value < threshold
    return DriftResult(alpha, len(reference), len(served), checks)

"""Folds for cross-fitted evaluation: which documents each fold's models predict, and which they learn from.

A corpus of a few hundred documents leaves a test split of a few dozen, which cannot tell a real
gain from noise. Cross-fitting predicts every document once, by models trained on the other folds,
and the decision rests on all of them. Folds are dealt within each label, in the order of the hash
of each id (:func:`longdoc.data.splits.id_point`, salted apart from the split's), so every fold holds
its share of every label, on every machine alike. Unlike a split, a fold is not a lasting property of
a document: adding one re-deals its label, which is harmless, since folds serve one run's decision
and a champion of other data is always re-scored (:mod:`longdoc.registry.promotion`).

In a cross-fitted run the validated corpus carries a ``fold`` column and no test split: the
documents that were held out train the refit (the model that is registered and served), and the
validation split stays for checkpoint selection and calibration. Every fold keeps that shape: its
own documents become its test split, the others train (and validate) as they would in the refit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from longdoc.data.splits import id_point

HELD_OUT = -1  # the fold column's value in a run without cross-fitting


def assign_folds(frame: pd.DataFrame, k: int, seed: int) -> pd.Series:
    """Fold 0..k-1 of every row, dealt in turn over each label's documents in the order of their id's hash,
    so each fold holds a label's documents within one of its k-th share."""
    folds = pd.Series(HELD_OUT, index=frame.index, dtype=int)
    points = frame["id"].astype(str).map(lambda i: id_point(i, seed, "fold"))
    for _, idx in frame.groupby("label", sort=True).groups.items():
        ranked = points[idx].sort_values(kind="stable").index
        folds[ranked] = np.arange(len(ranked)) % k
    return folds


def refit_splits(frame: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """The corpus of a cross-fitted run: a ``fold`` column, and the test split merged into train."""
    out = frame.copy()
    out["fold"] = assign_folds(out, k, seed)
    out["split"] = out["split"].where(out["split"] != "test", "train")
    return out


def fold_splits(frame: pd.DataFrame, fold: int) -> pd.DataFrame:
    """The corpus as fold ``fold``'s models see it: its documents are the test split, the rest as in the refit."""
    if "fold" not in frame.columns:
        raise ValueError("the corpus has no fold column: it was validated without cross-fitting")
    out = frame.copy()
    inside = out["fold"] == fold
    out["split"] = out["split"].where(~inside, "test")
    return out


def fold_count(frame: pd.DataFrame) -> int:
    """How many folds the validated corpus was dealt into (0: held out, no cross-fitting)."""
    if "fold" not in frame.columns:
        return 0
    return int(frame["fold"].max()) + 1 if (frame["fold"] >= 0).any() else 0


def leaks(predicted: set[str], learned: dict[str, set[str] | None]) -> list[str]:
    """Why a fold's predictions cannot be trusted: a model (``learned``: candidate -> the ids whose labels it
    or its encoder learned from) that learned from a document it predicts, or that left no record of what
    it learned from. An empty record counts as none: it would pass any audit."""
    problems = []
    for candidate, ids in sorted(learned.items()):
        if not ids:
            problems.append(f"{candidate}: no record of the documents it learned from")
            continue
        seen = ids & predicted
        if seen:
            problems.append(f"{candidate}: learned the labels of {len(seen)} of the {len(predicted)} documents it "
                            f"predicts (e.g. {min(seen)!r})")
    return problems

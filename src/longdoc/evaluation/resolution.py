"""What a comparison on n documents can resolve, and when a run should cross-fit instead of holding out.

Two classifiers compared on the same n documents differ only where they disagree: with a share q of
documents on which exactly one of them is right, the paired difference has a standard error of about
sqrt(q / n), so a 95% interval resolves nothing smaller than 1.96 * sqrt(q / n). Before training, q is
unknown; ``PLANNING_DISAGREEMENT`` is the planning value (0.15: on the corpora tried here the best
transformer and the TF-IDF baseline disagreed on 4% to 20% of documents). With it 25 test documents
resolve about 0.15, 150 about 0.06, the whole of 180 about 0.06.

After training the decision's own interval says it exactly: a difference smaller than its half-width
cannot be told from zero at that size (:func:`observed_resolution`).
"""

from __future__ import annotations

import math

PLANNING_DISAGREEMENT = 0.15
Z95 = 1.96
AUTO_FOLDS = 5


def planned_resolution(documents: int, disagreement: float = PLANNING_DISAGREEMENT) -> float:
    """The smallest paired difference a 95% interval over ``documents`` is expected to tell from zero."""
    if documents <= 0:
        return math.inf
    return Z95 * math.sqrt(disagreement / documents)


def observed_resolution(low: float, high: float) -> float:
    """Half the width of a paired interval: differences smaller than this are noise at this size."""
    return (high - low) / 2


def resolve_folds(folds: int | str, held_out_documents: int, wanted: float) -> tuple[int, str]:
    """How many folds a run uses, and why: the configured number, or with ``auto`` cross-fitting
    (``AUTO_FOLDS``) when the held-out test documents cannot resolve ``wanted``.

    The gate promotes when the interval's lower bound clears ``min_gain``, so a candidate truly better by
    ``min_gain + wanted`` gets through only when the interval's half-width is under ``wanted``: the margin
    above ``min_gain``, not ``min_gain`` itself, is what the documents must resolve.
    """
    if folds != "auto":
        k = int(folds)
        return k, (f"evaluate.folds={k}" if k else "evaluate.folds=0: the held-out test split decides")
    planned = planned_resolution(held_out_documents)
    if planned > wanted:
        return AUTO_FOLDS, (f"auto: {held_out_documents} held-out test documents resolve about {planned:.3f}, more "
                            f"than wanted_resolution {wanted:.3f}: {AUTO_FOLDS} folds, every document predicted once")
    return 0, (f"auto: {held_out_documents} held-out test documents resolve about {planned:.3f}, within "
               f"wanted_resolution {wanted:.3f}: the held-out test split decides")

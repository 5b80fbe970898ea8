"""Stable, stratified train/val/test splits: a document's split is a function of its id.

Shuffling each label with a seed (the usual recipe) re-deals the whole label when one document is
added, so documents tested on under one data version are trained on under the next, and a champion
and a candidate are never scored on the same test set. Here every id is hashed (with ``data.seed``)
to a point in [0, 1), and the point decides the split: adding or removing documents moves no other
document. Labels too small for the hash to give every split its share (fewer than
``SMALL_LABEL_DOCS``) are split by the rank of that hash instead, so each gets at least one test
(and val) document; there an addition can move a document next to a boundary, which is why the
threshold is small. A user's ``split`` column is kept row by row; only rows without one are assigned.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from longdoc.config.params import DataParams

SMALL_LABEL_DOCS = 40


def id_point(doc_id: str, seed: int, purpose: str = "split") -> float:
    """Where a document falls in [0, 1): the same on every machine, for every corpus it is in.

    ``purpose`` salts the hash: a slice chosen by the split's own hash would be all test documents.
    """
    salt = "" if purpose == "split" else f"{purpose}:"
    digest = hashlib.sha256(f"{salt}{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _split_of(point: float, params: DataParams) -> str:
    if point < params.test_fraction:
        return "test"
    if point < params.test_fraction + params.val_fraction:
        return "val"
    return "train"


def _ranked_splits(points: np.ndarray, params: DataParams) -> list[str]:
    """Exact shares for a small label: the lowest points are test, the next val."""
    n = len(points)
    n_test = max(1, round(n * params.test_fraction)) if n >= 2 else 0
    n_val = max(1, round(n * params.val_fraction)) if params.val_fraction > 0 and n >= 3 else 0
    out = ["train"] * n
    for rank, i in enumerate(np.argsort(points, kind="stable")):
        out[i] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out


def assign_splits(frame: pd.DataFrame, params: DataParams) -> pd.DataFrame:
    """Return a copy ordered by id with a ``split`` column; given splits are kept, missing ones assigned."""
    frame = frame.sort_values("id", kind="stable").reset_index(drop=True)
    given = frame["split"] if "split" in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    split = given.astype(object).where(given.notna(), None)
    points = np.array([id_point(str(i), params.seed) for i in frame["id"]])
    for _, idx in frame.groupby("label", sort=True).groups.items():
        idx = np.array([i for i in sorted(idx) if split[i] is None])
        if len(idx) == 0:
            continue
        if len(idx) < SMALL_LABEL_DOCS:
            split[idx] = _ranked_splits(points[idx], params)
        else:
            split[idx] = [_split_of(points[i], params) for i in idx]
    frame["split"] = split.astype(object)
    return frame


def sample_per_label(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most ``n`` documents per label (a small, still stratified slice), chosen by the hash of their id.

    Adding documents to a corpus keeps a document in the sample unless a new one outranks it, so
    two evaluations of one task on two data versions share most of their documents.
    """
    if n is None:
        return frame
    points = frame["id"].astype(str).map(lambda i: id_point(i, seed, "sample"))
    parts = [g.loc[points[g.index].sort_values(kind="stable").index[:n]] for _, g in frame.groupby("label", sort=True)]
    return pd.concat(parts).sort_values("id", kind="stable").reset_index(drop=True) if parts else frame.iloc[:0]


def slice_and_split(frame: pd.DataFrame, params: DataParams) -> pd.DataFrame:
    """The corpus a run validates: ``data.sample_per_label`` applied, then the splits assigned."""
    return assign_splits(sample_per_label(frame, params.sample_per_label, params.seed), params)

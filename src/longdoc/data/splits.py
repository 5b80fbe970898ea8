"""Deterministic, stratified train/val/test splits.

Derived from the corpus and the seed rather than stored, so a corpus imported from elsewhere gets
the same split on every machine. A corpus that brings its own ``split`` column keeps it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from longdoc.config import DataParams


def assign_splits(frame: pd.DataFrame, params: DataParams) -> pd.DataFrame:
    """Return a copy with a ``split`` column; rows are ordered by id so the result is stable."""
    frame = frame.sort_values("id", kind="stable").reset_index(drop=True)
    if "split" in frame.columns and frame["split"].notna().all():
        return frame
    rng = np.random.default_rng(params.seed)
    split = pd.Series("train", index=frame.index, dtype=object)
    for _, idx in frame.groupby("label", sort=True).groups.items():
        idx = np.array(sorted(idx))
        rng.shuffle(idx)
        n_test = max(1, round(len(idx) * params.test_fraction))
        n_val = round(len(idx) * params.val_fraction)
        if params.val_fraction > 0:
            n_val = max(1, n_val)
        split[idx[:n_test]] = "test"
        split[idx[n_test : n_test + n_val]] = "val"
    frame["split"] = split
    return frame


def sample_per_label(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """Keep at most ``n`` documents per label (a small, still stratified slice for tests and demos)."""
    if n is None:
        return frame
    parts = [g.sample(n=min(n, len(g)), random_state=seed) for _, g in frame.groupby("label", sort=True)]
    return pd.concat(parts).sort_values("id", kind="stable").reset_index(drop=True)

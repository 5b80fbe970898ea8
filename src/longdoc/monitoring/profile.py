"""One row per document: the features a drift check compares, computed the same way for the reference and for
served traffic.

The embedding sketch is the document's vector (mean chunk vector; the baseline's TF-IDF row), scaled to unit
length and multiplied by a fixed Gaussian random matrix to ``SKETCH_DIM`` numbers. A random projection keeps
distances between documents roughly (Johnson-Lindenstrauss) and needs no fitting, so the Bento and the reference
reduce vectors identically from the seed alone, whatever the vector's width.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Protocol

import numpy as np
import pandas as pd

from longdoc.models.prediction import Observation

SKETCH_DIM = 16
SKETCH_SEED = 24  # fixed for good: a new seed would make every stored reference incomparable with new records
NUMERIC = ("chars", "tokens", "chunks", "top_chunk", "confidence")  # one two-sample test each
COLUMNS = ("document_id", *NUMERIC, "label", "sketch")


class Observer(Protocol):
    labels: list[str]

    def observe(self, texts: list[str], batch_size: int = 8) -> tuple[np.ndarray, list[Observation]]: ...


def document_id(text: str) -> str:
    """What /classify answers and /feedback takes back: a digest of the text, never the text."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


@lru_cache(maxsize=4)
def projection(width: int) -> np.ndarray:
    return (np.random.default_rng(SKETCH_SEED).standard_normal((width, SKETCH_DIM)) / np.sqrt(SKETCH_DIM)
            ).astype(np.float32)


def sketch(vector) -> list[float]:
    """``SKETCH_DIM`` numbers from a dense or one-row sparse vector."""
    if hasattr(vector, "indices"):  # a TF-IDF row: a few hundred of its 10^5 columns set
        width, columns, values = vector.shape[1], vector.indices, np.asarray(vector.data, dtype=np.float32)
    else:
        dense = np.asarray(vector, dtype=np.float32).ravel()
        width, columns = len(dense), np.flatnonzero(dense)
        values = dense[columns]
    norm = float(np.linalg.norm(values))
    if norm == 0.0:
        return [0.0] * SKETCH_DIM
    return [round(float(v), 6) for v in (values / norm) @ projection(width)[columns]]


def rows(texts: list[str], probs: np.ndarray, seen: list[Observation], labels: list[str]) -> list[dict]:
    """The profile rows of classified documents (``probs`` calibrated, as served)."""
    return [{"document_id": document_id(t), "chars": o.chars, "tokens": o.tokens, "chunks": o.chunks,
             "top_chunk": o.top_chunk, "confidence": round(float(p.max()), 6), "label": labels[int(p.argmax())],
             "sketch": sketch(o.vector)}
            for t, p, o in zip(texts, probs, seen, strict=True)]


def profile_frame(model: Observer, texts: list[str], batch_size: int = 8) -> pd.DataFrame:
    """The profile of ``texts`` under ``model`` (the reference is this on the documents it was evaluated on)."""
    probs, seen = model.observe(texts, batch_size)
    return pd.DataFrame(rows(texts, probs, seen, model.labels), columns=list(COLUMNS))

"""Cutting a tokenized document into encoder-sized windows.

One function, :func:`chunk_document`, serves training (through the chunk table written by
:func:`chunk_corpus`) and inference (the MLflow model and the service call it on raw text), so the
windows a model was trained on are the windows it sees in production.

Windows hold ``chunk_tokens`` content tokens ([CLS]/[SEP] are added by the model), consecutive
windows share exactly ``overlap`` tokens, and a window end moves back by at most ``sentence_slack``
tokens to the nearest sentence end so that a sentence is rarely cut in two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from longdoc.config.params import ChunkingParams

if TYPE_CHECKING:
    import pandas as pd

SENTENCE_END = frozenset(".!?")


@dataclass(frozen=True)
class Window:
    start: int  # token index, inclusive
    end: int  # token index, exclusive


@dataclass
class ChunkedDocument:
    input_ids: list[int]
    offsets: list[tuple[int, int]]  # character span of each token in the text
    windows: list[Window]

    def char_span(self, window: Window) -> tuple[int, int]:
        return self.offsets[window.start][0], self.offsets[window.end - 1][1]


def sentence_ends(text: str, offsets: list[tuple[int, int]]) -> np.ndarray:
    """Token positions after which a sentence (or paragraph) ends."""
    ends = np.zeros(len(offsets), dtype=bool)
    for i, (s, e) in enumerate(offsets):
        if e <= s:
            continue
        nxt = text[e : e + 1]
        if text[e - 1] in SENTENCE_END and (nxt == "" or nxt.isspace()) or text[e : e + 2] == "\n\n":
            ends[i] = True
    return ends


def plan_windows(n_tokens: int, ends: np.ndarray, params: ChunkingParams) -> list[Window]:
    """Greedy left-to-right windows; the only freedom is moving an end back to a sentence end."""
    size, overlap, slack = params.chunk_tokens, params.overlap, params.sentence_slack
    if n_tokens == 0:
        return [Window(0, 0)]
    windows, start = [], 0
    while True:
        end = start + size
        if end >= n_tokens:
            windows.append(Window(start, n_tokens))
            return windows
        lowest = max(end - slack, start + overlap + 1)
        candidates = np.flatnonzero(ends[lowest - 1 : end]) if lowest <= end else np.array([], dtype=int)
        if candidates.size:
            end = lowest + int(candidates[-1])
        windows.append(Window(start, end))
        start = end - overlap


def chunk_document(text: str, tokenizer, params: ChunkingParams) -> ChunkedDocument:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                    verbose=False)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    windows = plan_windows(len(enc["input_ids"]), sentence_ends(text, offsets), params)
    return ChunkedDocument(list(enc["input_ids"]), offsets, windows)


def chunk_corpus(corpus: pd.DataFrame, tokenizer, params: ChunkingParams, out_dir: Path) -> dict[str, int]:
    """Write ``documents.parquet`` (token ids per document) and ``chunks.parquet`` (one row a window)."""
    import pandas as pd  # here, not at the top: the model modules import Window, and need no pandas
    from tqdm.auto import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    docs, chunks = [], []
    for row in tqdm(corpus.itertuples(index=False), total=len(corpus), desc="chunking", unit="doc"):
        chunked = chunk_document(row.text, tokenizer, params)
        docs.append({"id": row.id, "label": row.label, "split": row.split,
                     "input_ids": np.asarray(chunked.input_ids, dtype=np.int32)})
        for index, window in enumerate(chunked.windows):
            char_start, char_end = chunked.char_span(window) if window.end > window.start else (0, 0)
            chunks.append({"id": row.id, "chunk": index, "start": window.start, "end": window.end,
                           "char_start": char_start, "char_end": char_end})
    pd.DataFrame(docs).to_parquet(out_dir / "documents.parquet", index=False)
    table = pd.DataFrame(chunks)
    table.to_parquet(out_dir / "chunks.parquet", index=False)
    per_doc = table.groupby("id").size()
    return {"documents": len(docs), "chunks": len(table), "max_chunks_per_doc": int(per_doc.max()),
            "mean_chunks_per_doc": round(float(per_doc.mean()), 2)}

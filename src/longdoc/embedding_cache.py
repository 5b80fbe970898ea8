"""Chunk vectors computed once, reused by every learned aggregator.

With the encoder frozen, the learned aggregators (pooling, Cat, RNN, ATT, hierarchical) differ only
in a small head over the chunk vectors. Encoding every chunk once and training each head on the
stored vectors makes a sweep over aggregators cost one encoder pass instead of one per aggregator
and epoch. Vectors are stored as parquet under a key that hashes the chunk tables (so the data
version), the encoder and the chunk settings: a change to any of them is a cache miss, never a stale
hit.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from longdoc.models.base import ChunkedClassifier
from longdoc.models.batching import SegmentBatch, SpecialTokens, collate

FORMAT = "longdoc-embeddings-1"
ENCODE_BATCH = 64  # chunks per encoder call


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_key(chunk_dir: Path, encoder: str, pooling: str, max_chunks: int) -> str:
    parts = [FORMAT, _file_digest(chunk_dir / "documents.parquet"), _file_digest(chunk_dir / "chunks.parquet"),
             encoder, pooling, str(max_chunks)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


@dataclass
class EmbeddingCache:
    vectors: dict[str, torch.Tensor]  # document id -> [chunks, dim], chunks in document order
    meta: dict

    def batch(self, doc_ids: list[str]) -> SegmentBatch:
        """A SegmentBatch that carries vectors instead of token ids."""
        parts = [self.vectors[i] for i in doc_ids]
        doc_index = torch.cat([torch.full((len(p),), d, dtype=torch.long) for d, p in enumerate(parts)])
        position = torch.cat([torch.arange(len(p)) for p in parts])
        empty = torch.zeros((len(doc_index), 0), dtype=torch.long)
        return SegmentBatch(empty, empty, doc_index, position, len(parts), vectors=torch.cat(parts))


@torch.inference_mode()
def encode_all(model: ChunkedClassifier, docs, special: SpecialTokens, device: torch.device) -> pa.Table:
    """Encode every chunk the model reads, batched by length to keep padding small."""
    rows = [(d.id, position, seg) for d in docs for position, seg in enumerate(model.segments(d.input_ids, d.windows))]
    rows.sort(key=lambda r: len(r[2]))
    model.eval()
    ids, positions, vectors = [], [], []
    for start in tqdm(range(0, len(rows), ENCODE_BATCH), desc="embedding cache", unit="batch"):
        part = rows[start : start + ENCODE_BATCH]
        batch = collate([[seg] for _, _, seg in part], special).to(device)
        z = model.encoder(batch.input_ids, batch.attention_mask).float().cpu().numpy()
        ids += [r[0] for r in part]
        positions += [r[1] for r in part]
        vectors += list(z)
    dim = len(vectors[0])
    flat = pa.array(np.concatenate(vectors).astype(np.float32))
    return pa.table({"id": ids, "chunk": positions, "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})


def load_or_build(model: ChunkedClassifier, docs, special: SpecialTokens, device: torch.device, chunk_dir: Path,
                  cache_dir: Path, encoder: str, pooling: str) -> EmbeddingCache:
    key = cache_key(chunk_dir, encoder, pooling, model.settings.max_chunks)
    path = cache_dir / f"{key}.parquet"
    meta_path = cache_dir / f"{key}.json"
    hit = path.is_file() and meta_path.is_file()
    if not hit:
        started = time.perf_counter()
        table = encode_all(model, docs, special, device)
        cache_dir.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
        meta_path.write_text(json.dumps({"key": key, "encoder": encoder, "pooling": pooling, "chunks": table.num_rows,
                                         "encode_seconds": round(time.perf_counter() - started, 2)}))
    frame = pd.read_parquet(path).sort_values(["id", "chunk"])
    vectors = {doc_id: torch.from_numpy(np.stack(g["vector"].to_numpy())) for doc_id, g in frame.groupby("id")}
    meta = {**json.loads(meta_path.read_text()), "hit": hit, "path": str(path)}
    return EmbeddingCache(vectors, meta)

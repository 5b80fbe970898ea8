"""Chunk vectors computed once per encoder, reused by every model that shares that encoder.

Two-stage training (ToBERT): the encoder is fine-tuned once (stage 1), then every aggregator trains
on that encoder's chunk vectors and every one of them is evaluated on the same vectors. The store is
content-addressed: a vector is filed under the hash of the encoder's weights (the folder) and the
hash of the segment's token ids (the key). A changed encoder, chunking or corpus can only miss, never
hit a stale vector, and nothing has to be invalidated by hand. Any process may add vectors (one new
shard file per flush, written atomically), so a volume shared by pipeline pods works like a local
folder.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

FORMAT = "longdoc-vectors-2"
ENCODE_BATCH = 64  # segments per encoder call when filling the store


def encoder_fingerprint(encoder) -> str:
    """Hash of the encoder's weights and pooling: the name of its folder in the store."""
    digest = hashlib.sha256(f"{FORMAT}\n{encoder.pooling}\n".encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def segment_key(ids: torch.Tensor | list[int]) -> str:
    return hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=16).hexdigest()


class VectorStore:
    """The chunk vectors of one encoder: read from every shard at start, new ones written on ``flush``."""

    def __init__(self, root: Path, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.dir = Path(root) / fingerprint
        self.vectors: dict[str, np.ndarray] = {}
        self.new: dict[str, np.ndarray] = {}
        self.hits = self.misses = 0
        for shard in sorted(self.dir.glob("*.parquet")):
            table = pq.read_table(shard)
            matrix = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
            self.vectors.update(zip(table.column("key").to_pylist(), matrix, strict=True))

    @classmethod
    def for_encoder(cls, root: Path, encoder) -> VectorStore:
        return cls(root, encoder_fingerprint(encoder))

    def encode(self, encoder, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``encoder``'s vectors for a padded batch: stored ones looked up, only the others computed."""
        keys = [segment_key(ids[mask.bool()].tolist()) for ids, mask in zip(input_ids, attention_mask, strict=True)]
        missing = [i for i, k in enumerate(keys) if k not in self.vectors and k not in self.new]
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        if missing:
            rows = torch.tensor(missing, device=input_ids.device)
            computed = encoder.compute(input_ids[rows], attention_mask[rows]).float().cpu().numpy()
            for i, vector in zip(missing, computed, strict=True):
                self.new[keys[i]] = vector
        out = np.stack([self.new[k] if k in self.new else self.vectors[k] for k in keys])
        return torch.from_numpy(out).to(input_ids.device)

    def flush(self) -> None:
        """Write the vectors added since the last flush as one new shard."""
        if not self.new:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        keys = list(self.new)
        flat = pa.array(np.stack([self.new[k] for k in keys]).astype(np.float32).ravel())
        table = pa.table({"key": keys, "vector": pa.FixedSizeListArray.from_arrays(flat, len(self.new[keys[0]]))})
        shard = self.dir / f"{time.time_ns()}-{os.getpid()}.parquet"
        pq.write_table(table, shard.with_suffix(".tmp"))
        shard.with_suffix(".tmp").replace(shard)
        self.vectors.update(self.new)
        self.new = {}

    @property
    def meta(self) -> dict:
        return {"fingerprint": self.fingerprint, "path": str(self.dir), "vectors": len(self.vectors) + len(self.new),
                "hits": self.hits, "misses": self.misses}


def attach(encoder, root: Path) -> VectorStore:
    """Serve ``encoder``'s frozen forward passes from (and into) the store under ``root``."""
    encoder.store = VectorStore.for_encoder(root, encoder)
    return encoder.store


@torch.inference_mode()
def fill(encoder, segments: list[list[int]], special, device: torch.device) -> dict:
    """Encode every segment not yet stored (batched by length, to keep padding small), then flush."""
    from longdoc.models.batching import collate

    started, store = time.perf_counter(), encoder.store
    before = store.misses
    ordered = sorted({tuple(s) for s in segments}, key=len)
    for start in tqdm(range(0, len(ordered), ENCODE_BATCH), desc="embedding cache", unit="batch"):
        batch = collate([[list(s)] for s in ordered[start : start + ENCODE_BATCH]], special).to(device)
        encoder(batch.input_ids, batch.attention_mask)
    store.flush()
    return {**store.meta, "segments": len(ordered), "encoded": store.misses - before,
            "seconds": round(time.perf_counter() - started, 2)}

"""Hierarchical transformer: a small transformer encoder over the chunk vectors, then mean pooling."""

from __future__ import annotations

import torch
from torch import nn

from longdoc.models.base import VariantSettings, VectorAggregator
from longdoc.models.batching import SegmentBatch
from longdoc.models.encoder import ChunkEncoder
from longdoc.models.segments import to_padded

LAYERS = 2
HEADS = 4


class Hierarchical(VectorAggregator):
    name = "hierarchical"

    def __init__(self, encoder: ChunkEncoder, settings: VariantSettings) -> None:
        super().__init__(encoder, settings)
        d = encoder.hidden_size
        self.chunk_position = nn.Embedding(settings.max_chunks, d)
        layer = nn.TransformerEncoderLayer(d, HEADS, dim_feedforward=2 * d, dropout=settings.dropout,
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Linear(d, settings.n_labels)

    def head(self, z: torch.Tensor, batch: SegmentBatch) -> torch.Tensor:
        padded, mask = to_padded(z, batch.doc_index, batch.position, batch.n_docs)
        x = padded.float() + self.chunk_position.weight[: padded.size(1)]
        x = self.transformer(x, src_key_padding_mask=~mask)
        pooled = (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        return self.classifier(self.dropout(pooled))

"""Learned aggregation, simplest form: mean or max of the chunk vectors, then a linear head."""

from __future__ import annotations

import torch
from torch import nn

from longdoc.models.base import VariantSettings, VectorAggregator
from longdoc.models.batching import SegmentBatch
from longdoc.models.encoder import ChunkEncoder
from longdoc.models.segments import segment_max, segment_mean


class MeanPool(VectorAggregator):
    name = "mean_pool"
    pool = staticmethod(segment_mean)

    def __init__(self, encoder: ChunkEncoder, settings: VariantSettings) -> None:
        super().__init__(encoder, settings)
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Linear(encoder.hidden_size, settings.n_labels)

    def head(self, z: torch.Tensor, batch: SegmentBatch) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(z, batch.doc_index, batch.n_docs)))


class MaxPool(MeanPool):
    name = "max_pool"
    pool = staticmethod(segment_max)

"""Cat: p = C(z1 ⊕ z2 ⊕ ... ⊕ zm), the chunk vectors concatenated in order (zeros past the end)."""

from __future__ import annotations

import torch
from torch import nn

from longdoc.models.base import VariantSettings, VectorAggregator
from longdoc.models.batching import SegmentBatch
from longdoc.models.encoder import ChunkEncoder
from longdoc.models.segments import to_padded


class Cat(VectorAggregator):
    name = "cat"

    def __init__(self, encoder: ChunkEncoder, settings: VariantSettings) -> None:
        super().__init__(encoder, settings)
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Linear(settings.max_chunks * encoder.hidden_size, settings.n_labels)

    def head(self, z: torch.Tensor, batch: SegmentBatch) -> torch.Tensor:
        padded, _ = to_padded(z, batch.doc_index, batch.position, batch.n_docs, self.settings.max_chunks)
        return self.classifier(self.dropout(padded.flatten(1)))

"""The interface every variant implements."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from longdoc.chunking import Window
from longdoc.models.batching import SegmentBatch
from longdoc.models.encoder import ChunkEncoder


@dataclass(frozen=True)
class VariantSettings:
    """What a variant needs to know besides the encoder: saved with the model, used again at serving."""

    n_labels: int
    chunk_tokens: int
    dropout: float = 0.1


class DocumentClassifier(nn.Module):
    """Segments of a document in, logits out.

    ``segments`` decides which token spans of a document the model reads (the first window for head
    truncation, every window for chunk aggregation); ``forward`` turns a :class:`SegmentBatch` of
    those spans into one row of logits per document.
    """

    name: str = ""

    def __init__(self, encoder: ChunkEncoder, settings: VariantSettings) -> None:
        super().__init__()
        self.encoder = encoder
        self.settings = settings

    @abstractmethod
    def segments(self, input_ids: list[int], windows: list[Window]) -> list[list[int]]:
        """The token spans of one document this variant reads."""

    @abstractmethod
    def forward(self, batch: SegmentBatch) -> torch.Tensor:
        """Logits, shape [batch.n_docs, n_labels]."""

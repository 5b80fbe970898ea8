"""Truncation: classify one window of the document and ignore the rest.

The usual baseline. ``head`` reads the first ``chunk_tokens`` tokens (for BBC News: the title and the
lead), ``tail`` the last, ``head_tail`` the first quarter of the budget from the start and the rest
from the end (128 + 382 at 510 tokens, the common recipe).
"""

from __future__ import annotations

import torch
from torch import nn

from longdoc.data.chunking import Window
from longdoc.models.base import DocumentClassifier, VariantSettings
from longdoc.models.batching import SegmentBatch
from longdoc.models.encoder import ChunkEncoder


class HeadTruncation(DocumentClassifier):
    name = "head"

    def __init__(self, encoder: ChunkEncoder, settings: VariantSettings) -> None:
        super().__init__(encoder, settings)
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Linear(encoder.hidden_size, settings.n_labels)

    def segment_spans(self, n_tokens: int, windows: list[Window]) -> list[list[Window]]:
        return [[Window(0, min(n_tokens, self.settings.chunk_tokens))]]

    def forward(self, batch: SegmentBatch) -> torch.Tensor:
        pooled = self.encoder(batch.input_ids, batch.attention_mask)
        return self.classifier(self.dropout(pooled))


class TailTruncation(HeadTruncation):
    name = "tail"

    def segment_spans(self, n_tokens: int, windows: list[Window]) -> list[list[Window]]:
        return [[Window(max(0, n_tokens - self.settings.chunk_tokens), n_tokens)]]


class HeadTailTruncation(HeadTruncation):
    name = "head_tail"
    head_share = 128 / 510

    def segment_spans(self, n_tokens: int, windows: list[Window]) -> list[list[Window]]:
        budget = self.settings.chunk_tokens
        if n_tokens <= budget:
            return [[Window(0, n_tokens)]]
        head = round(budget * self.head_share)
        return [[Window(0, head), Window(n_tokens - (budget - head), n_tokens)]]

"""RNN: a biLSTM over the chunk vectors; p = C(z1 ⊕ h2 ⊕ hm).

h2 rather than h1 because the forward half of h1 has seen nothing yet (the paper found h1 worse).
A one-chunk document uses h1 in place of h2.
"""

from __future__ import annotations

import torch
from torch import nn

from longdoc.models.base import VariantSettings, VectorAggregator
from longdoc.models.batching import SegmentBatch
from longdoc.models.encoder import ChunkEncoder
from longdoc.models.segments import gather_at, lengths, to_padded


class ChunkLSTM(nn.Module):
    """biLSTM over padded chunk sequences, respecting each document's length."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)

    def forward(self, padded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(padded.float(), lengths(mask).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=padded.size(1))
        return h


def sequence_summary(padded: torch.Tensor, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """z1 ⊕ h2 ⊕ hm."""
    n = lengths(mask)
    second = gather_at(h, (n > 1).long())
    last = gather_at(h, n - 1)
    return torch.cat([padded[:, 0].float(), second, last], dim=-1)


class RNN(VectorAggregator):
    name = "rnn"

    def __init__(self, encoder: ChunkEncoder, settings: VariantSettings) -> None:
        super().__init__(encoder, settings)
        self.lstm = ChunkLSTM(encoder.hidden_size, settings.hidden)
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Linear(encoder.hidden_size + 4 * settings.hidden, settings.n_labels)

    def head(self, z: torch.Tensor, batch: SegmentBatch) -> torch.Tensor:
        padded, mask = to_padded(z, batch.doc_index, batch.position, batch.n_docs)
        return self.classifier(self.dropout(sequence_summary(padded, self.lstm(padded, mask), mask)))

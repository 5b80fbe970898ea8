"""ATT: attention over chunks, from "Adapting Pretrained Language Models for Long Document Classification".

    h = biLSTM(z1..zm);  u_i = tanh(Ws h_i + bs);  α = softmax_i(u_i · us);  a = Σ α_i h_i
    M = argmax α;  p = C(z1 ⊕ h2 ⊕ hm ⊕ a ⊕ α ⊕ LM(x_M))

α (padded to ``max_chunks``) says which chunks decided; :meth:`chunk_weights` returns it for the
service. With ``grad_chunks: first_and_attended`` the encoder is trained only through the first and
the most-attended chunk of each document, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from longdoc.models.base import VariantSettings, VectorAggregator
from longdoc.models.batching import SegmentBatch
from longdoc.models.encoder import ChunkEncoder
from longdoc.models.rnn import ChunkLSTM, sequence_summary
from longdoc.models.segments import gather_at, to_padded


class Attention(VectorAggregator):
    name = "attention"

    def __init__(self, encoder: ChunkEncoder, settings: VariantSettings) -> None:
        super().__init__(encoder, settings)
        h = 2 * settings.hidden
        self.lstm = ChunkLSTM(encoder.hidden_size, settings.hidden)
        self.project = nn.Linear(h, h)
        self.context = nn.Parameter(torch.randn(h) / h**0.5)
        self.dropout = nn.Dropout(settings.dropout)
        features = 2 * encoder.hidden_size + 3 * h + settings.max_chunks  # z1, zM; h2, hm, a; α
        self.classifier = nn.Linear(features, settings.n_labels)

    def attend(self, z: torch.Tensor, batch: SegmentBatch):
        padded, mask = to_padded(z, batch.doc_index, batch.position, batch.n_docs, self.settings.max_chunks)
        h = self.lstm(padded, mask)
        scores = torch.tanh(self.project(h)) @ self.context
        alpha = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        return padded, mask, h, alpha

    def grad_rows(self, z: torch.Tensor, batch: SegmentBatch) -> torch.Tensor:
        """First chunk, plus the most-attended one with ``grad_chunks: first_and_attended``."""
        first = super().grad_rows(z, batch)
        if self.settings.grad_chunks != "first_and_attended":
            return first
        with torch.no_grad():
            *_, alpha = self.attend(z, batch)
        return first | (batch.position == alpha.argmax(-1)[batch.doc_index])

    def head(self, z: torch.Tensor, batch: SegmentBatch) -> torch.Tensor:
        padded, mask, h, alpha = self.attend(z, batch)
        summary = (alpha.unsqueeze(-1) * h).sum(1)
        most_attended = gather_at(padded, alpha.argmax(-1)).float()
        features = torch.cat([sequence_summary(padded, h, mask), summary, alpha, most_attended], dim=-1)
        return self.classifier(self.dropout(features))

    def chunk_weights(self, batch: SegmentBatch, z: torch.Tensor | None = None) -> list[list[float]]:
        z = self.encoder(batch.input_ids, batch.attention_mask) if z is None else z
        _, mask, _, alpha = self.attend(z, batch)
        return [a[m].tolist() for a, m in zip(alpha, mask, strict=True)]

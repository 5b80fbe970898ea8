"""Chunk aggregation over chunk predictions.

One classifier is fine-tuned on chunks (each chunk carries its document's label); a document's
prediction combines its chunks' outputs: mean or max of logits, majority vote, confidence-weighted
vote, or a small stacked model trained on the chunk probabilities (the "hybrid" model of practice).
"""

from __future__ import annotations

import torch
from torch import nn

from longdoc.models.base import ChunkedClassifier, VariantSettings, support_weights
from longdoc.models.batching import SegmentBatch
from longdoc.models.encoder import ChunkEncoder
from longdoc.models.segments import segment_max, segment_mean, to_padded

EPS = 1e-6
MEAN_SCALE = 10.0


class ChunkPrediction(ChunkedClassifier):
    """Base: per-chunk logits, a chunk-level loss, and ``aggregate`` to combine them."""

    name = "chunk_mean"

    def __init__(self, encoder: ChunkEncoder, settings: VariantSettings) -> None:
        super().__init__(encoder, settings)
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Linear(encoder.hidden_size, settings.n_labels)

    def chunk_logits(self, batch: SegmentBatch) -> torch.Tensor:
        return self.classifier(self.dropout(self.encode(batch))).float()

    def aggregate(self, logits: torch.Tensor, batch: SegmentBatch) -> torch.Tensor:
        return segment_mean(logits, batch.doc_index, batch.n_docs)

    def forward(self, batch: SegmentBatch) -> torch.Tensor:
        return self.aggregate(self.chunk_logits(batch), batch)

    def loss(self, batch: SegmentBatch, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.chunk_logits(batch), target[batch.doc_index])

    def chunk_weights(self, batch: SegmentBatch, z: torch.Tensor | None = None) -> list[list[float]]:
        """Each chunk's confidence in the document's predicted class, normalised per document."""
        logits = self.chunk_logits(batch) if z is None else self.classifier(z).float()
        return support_weights(logits.softmax(-1), self.aggregate(logits, batch).argmax(-1), batch)


class ChunkMax(ChunkPrediction):
    name = "chunk_max"

    def aggregate(self, logits: torch.Tensor, batch: SegmentBatch) -> torch.Tensor:
        return segment_max(logits, batch.doc_index, batch.n_docs)


class ChunkVote(ChunkPrediction):
    """Majority vote; ties go to the class with the larger summed probability.

    Returns log vote shares (plus a tie-breaking term far below one vote), so softmax of the output
    is the share of chunks voting for each class.
    """

    name = "chunk_vote"

    def votes(self, logits: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(logits.argmax(-1), logits.size(-1)).to(logits.dtype)

    def aggregate(self, logits: torch.Tensor, batch: SegmentBatch) -> torch.Tensor:
        probs = logits.softmax(-1)
        share = segment_mean(self.votes(logits) * self.vote_weight(probs), batch.doc_index, batch.n_docs)
        share = share / share.sum(-1, keepdim=True).clamp(min=EPS)
        tie_break = segment_mean(probs, batch.doc_index, batch.n_docs) * 1e-4
        return torch.log(share + tie_break + EPS)

    def vote_weight(self, probs: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(probs[:, :1])


class ChunkWeightedVote(ChunkVote):
    """Each chunk votes with the weight of its top probability."""

    name = "chunk_weighted_vote"

    def vote_weight(self, probs: torch.Tensor) -> torch.Tensor:
        return probs.max(-1, keepdim=True).values


class ChunkStacked(ChunkPrediction):
    """The hybrid model: a linear classifier on statistics of the chunk probabilities.

    Features: mean, max, min and standard deviation of the chunk probabilities, the first and the
    last chunk's probabilities, and log(number of chunks). The stacker is trained jointly on detached
    chunk probabilities, so it learns to combine the chunk classifier without changing it.
    """

    name = "chunk_stacked"

    def __init__(self, encoder: ChunkEncoder, settings: VariantSettings) -> None:
        super().__init__(encoder, settings)
        n = settings.n_labels
        self.stacker = nn.Linear(6 * n + 1, n)
        # Start as the mean-probability combiner (logits = MEAN_SCALE x mean probability), so training can only
        # move it from a working rule: from a random start a linear layer on features in [0, 1] learns slowly
        # and stays underconfident on a short budget.
        with torch.no_grad():
            self.stacker.weight.zero_()
            self.stacker.bias.zero_()
            self.stacker.weight[:, :n] = torch.eye(n) * MEAN_SCALE

    def features(self, probs: torch.Tensor, batch: SegmentBatch) -> torch.Tensor:
        padded, mask = to_padded(probs, batch.doc_index, batch.position, batch.n_docs)
        count = mask.sum(1, keepdim=True).to(probs.dtype)
        mean = segment_mean(probs, batch.doc_index, batch.n_docs)
        high = segment_max(probs, batch.doc_index, batch.n_docs)
        low = -segment_max(-probs, batch.doc_index, batch.n_docs)
        std = (segment_mean(probs**2, batch.doc_index, batch.n_docs) - mean**2).clamp(min=0).sqrt()
        last = padded[torch.arange(batch.n_docs, device=probs.device), count.long().squeeze(1) - 1]
        return torch.cat([mean, high, low, std, padded[:, 0], last, count.log()], dim=-1)

    def aggregate(self, logits: torch.Tensor, batch: SegmentBatch) -> torch.Tensor:
        return self.stacker(self.features(logits.softmax(-1).detach(), batch))

    def loss(self, batch: SegmentBatch, target: torch.Tensor) -> torch.Tensor:
        logits = self.chunk_logits(batch)
        chunk_loss = nn.functional.cross_entropy(logits, target[batch.doc_index])
        return chunk_loss + nn.functional.cross_entropy(self.aggregate(logits, batch), target)

"""The interface every variant implements, and the shared machinery of the chunked ones."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from longdoc.data.chunking import Window
from longdoc.models.batching import SegmentBatch
from longdoc.models.encoder import ChunkEncoder
from longdoc.models.segments import select_windows


@dataclass(frozen=True)
class VariantSettings:
    """What a variant needs besides the encoder: saved with the model, used again at serving."""

    n_labels: int
    chunk_tokens: int
    dropout: float = 0.1
    max_chunks: int = 16
    grad_chunks: str = "all"  # "all" | "first" | "first_and_attended": which chunks train the encoder
    max_tokens: int = 4096  # input length of the whole-document variants (Longformer, Reformer)
    attention_window: int = 512  # Longformer sliding window
    hidden: int = 128  # size of the learned aggregators' hidden layers (per LSTM direction)
    reformer: dict | None = None  # the Reformer's architecture (config.params.ReformerParams); None: defaults


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

    @classmethod
    def pretrained_encoder(cls, name_or_path: str, pooling: str, settings: VariantSettings) -> ChunkEncoder:
        """The encoder to fine-tune; variants that change its architecture override this."""
        return ChunkEncoder.pretrained(name_or_path, pooling)

    @classmethod
    def encoder_from(cls, encoder: ChunkEncoder, settings: VariantSettings) -> ChunkEncoder:
        """A copy of a fine-tuned encoder (stage 1 of two-stage training) to start from."""
        import copy

        copied = copy.deepcopy(encoder)
        copied.store, copied.tokens_forward, copied.tokens_backward = None, 0, 0
        return copied

    @abstractmethod
    def segment_spans(self, n_tokens: int, windows: list[Window]) -> list[list[Window]]:
        """What this variant reads of a document: segments, each made of one or more token spans."""

    def segments(self, input_ids: list[int], windows: list[Window]) -> list[list[int]]:
        """The token ids of each segment (what goes through the encoder)."""
        return [[t for w in spans for t in input_ids[w.start : w.end]]
                for spans in self.segment_spans(len(input_ids), windows)]

    @abstractmethod
    def forward(self, batch: SegmentBatch) -> torch.Tensor:
        """Logits, shape [batch.n_docs, n_labels]."""

    def loss(self, batch: SegmentBatch, target: torch.Tensor) -> torch.Tensor:
        """Training loss; chunk-level classifiers override it to supervise every chunk."""
        return nn.functional.cross_entropy(self(batch).float(), target)

    def chunk_weights(self, batch: SegmentBatch, z: torch.Tensor | None = None) -> list[list[float]] | None:
        """How much each segment decided the prediction, per document; None if the variant cannot say.

        ``z``: the batch's chunk vectors when the caller has them already (the pass that classified it), so the
        weights cost no second encoder call.
        """
        return None


class ChunkedClassifier(DocumentClassifier):
    """Reads every window (at most ``max_chunks``, evenly spread) and encodes them in one call."""

    def segment_spans(self, n_tokens: int, windows: list[Window]) -> list[list[Window]]:
        return [[w] for w in select_windows(windows, self.settings.max_chunks)]

    def encode(self, batch: SegmentBatch) -> torch.Tensor:
        """Chunk vectors [segments, dim]; in training, gradients flow only through the chunks
        ``grad_rows`` picks unless ``grad_chunks`` is "all".

        Gradient stopping (the ATT paper's trick): all chunks are encoded once without autograd, then
        the kept ones again with it, so a 20-chunk document trains in the activation memory of two.
        """
        if self.settings.grad_chunks == "all" or not self.training or not torch.is_grad_enabled():
            return self.encoder(batch.input_ids, batch.attention_mask)
        with torch.no_grad():
            z = self.encoder(batch.input_ids, batch.attention_mask)
        rows = self.grad_rows(z, batch).nonzero(as_tuple=True)[0]
        return z.index_put((rows,), self.encoder(batch.input_ids[rows], batch.attention_mask[rows]))

    def grad_rows(self, z: torch.Tensor, batch: SegmentBatch) -> torch.Tensor:
        """Boolean mask of the segments that train the encoder: each document's first chunk."""
        return batch.position == 0


class VectorAggregator(ChunkedClassifier):
    """Learned aggregators: a trainable head over the chunk vectors.

    With the encoder frozen (stage 2 of two-stage training) only ``head`` trains, on chunk vectors
    the encoder serves from :mod:`longdoc.models.embedding_cache` instead of recomputing them.
    """

    def forward(self, batch: SegmentBatch) -> torch.Tensor:
        return self.head(self.encode(batch), batch)

    @abstractmethod
    def head(self, z: torch.Tensor, batch: SegmentBatch) -> torch.Tensor:
        """Logits [n_docs, n_labels] from chunk vectors z [segments, dim]."""

    def chunk_weights(self, batch: SegmentBatch, z: torch.Tensor | None = None) -> list[list[float]]:
        """Each chunk's support for the document's predicted class when the head reads that chunk alone, normalised
        per document (what /explain shows for an aggregator without attention)."""
        z = self.encode(batch) if z is None else z
        predicted = self.head(z, batch).argmax(-1)
        alone = SegmentBatch(batch.input_ids, batch.attention_mask, torch.arange(len(z), device=z.device),
                             torch.zeros_like(batch.position), len(z))
        return support_weights(self.head(z, alone).float().softmax(-1), predicted, batch)


def support_weights(probs: torch.Tensor, predicted: torch.Tensor, batch: SegmentBatch) -> list[list[float]]:
    """Per document, each segment's probability of the document's predicted class, normalised to sum to one.

    ``probs``: [segments, n_labels], each segment read alone; ``predicted``: [n_docs].
    """
    from longdoc.models.segments import to_padded

    support = probs.gather(1, predicted[batch.doc_index].unsqueeze(1)).squeeze(1)
    padded, mask = to_padded(support, batch.doc_index, batch.position, batch.n_docs)
    weights = padded / padded.sum(1, keepdim=True).clamp(min=1e-9)
    return [w[m].tolist() for w, m in zip(weights, mask, strict=True)]

"""Per-document operations on the flat segment axis of a :class:`SegmentBatch`.

The encoder sees all segments of a batch at once; these helpers regroup its outputs by document,
either pooled (mean, max) or as a padded [docs, max_segments, dim] sequence for sequence models.
"""

from __future__ import annotations

import torch

from longdoc.data.chunking import Window


def select_windows(windows: list[Window], max_chunks: int) -> list[Window]:
    """At most ``max_chunks`` windows, evenly spread, first and last kept, order kept.

    Bounds memory for very long documents while still letting the model see the end of the text.
    """
    if len(windows) <= max_chunks:
        return windows
    if max_chunks == 1:
        return windows[:1]
    step = (len(windows) - 1) / (max_chunks - 1)
    return [windows[round(i * step)] for i in range(max_chunks)]


def segment_mean(x: torch.Tensor, doc_index: torch.Tensor, n_docs: int) -> torch.Tensor:
    total = x.new_zeros((n_docs, *x.shape[1:])).index_add_(0, doc_index, x)
    count = torch.bincount(doc_index, minlength=n_docs).clamp(min=1).to(x.dtype)
    return total / count.view(-1, *([1] * (x.dim() - 1)))


def segment_max(x: torch.Tensor, doc_index: torch.Tensor, n_docs: int) -> torch.Tensor:
    index = doc_index.view(-1, *([1] * (x.dim() - 1))).expand_as(x)
    out = x.new_full((n_docs, *x.shape[1:]), torch.finfo(x.dtype).min)
    return out.scatter_reduce(0, index, x, reduce="amax", include_self=True)


def to_padded(x: torch.Tensor, doc_index: torch.Tensor, position: torch.Tensor, n_docs: int,
              length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """[segments, dim] -> ([docs, length, dim], mask [docs, length]) with segments in document order."""
    length = length or int(position.max().item()) + 1
    padded = x.new_zeros((n_docs, length, *x.shape[1:]))
    padded = padded.index_put((doc_index, position), x)
    mask = torch.zeros((n_docs, length), dtype=torch.bool, device=x.device)
    mask[doc_index, position] = True
    return padded, mask


def lengths(mask: torch.Tensor) -> torch.Tensor:
    return mask.sum(1)


def gather_at(padded: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """padded[d, index[d]] for every document d."""
    return padded[torch.arange(padded.size(0), device=padded.device), index]

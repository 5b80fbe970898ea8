"""Packing the segments of many documents into one encoder call.

Each document contributes one or more segments (token id lists without special tokens). All segments
of a batch go through the encoder together; ``doc_index`` says which document each belongs to, so
aggregating variants can regroup them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SegmentBatch:
    input_ids: torch.Tensor  # [segments, tokens]
    attention_mask: torch.Tensor  # [segments, tokens]
    doc_index: torch.Tensor  # [segments]: which document each segment belongs to
    position: torch.Tensor  # [segments]: the segment's place in its document, from 0
    n_docs: int

    def to(self, device: torch.device | str) -> SegmentBatch:
        return SegmentBatch(self.input_ids.to(device, non_blocking=True),
                            self.attention_mask.to(device, non_blocking=True),
                            self.doc_index.to(device, non_blocking=True),
                            self.position.to(device, non_blocking=True), self.n_docs)

    def pin_memory(self) -> SegmentBatch:
        return SegmentBatch(self.input_ids.pin_memory(), self.attention_mask.pin_memory(),
                            self.doc_index.pin_memory(), self.position.pin_memory(), self.n_docs)


@dataclass(frozen=True)
class SpecialTokens:
    cls: int
    sep: int
    pad: int

    @classmethod
    def of(cls, tokenizer) -> SpecialTokens:
        return cls(tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)


def collate(segments_per_doc: list[list[list[int]]], special: SpecialTokens) -> SegmentBatch:
    """Wrap each segment in [CLS] ... [SEP] and pad to the longest segment of the batch."""
    flat = [(doc, pos, seg) for doc, segs in enumerate(segments_per_doc) for pos, seg in enumerate(segs)]
    width = max(len(seg) for _, _, seg in flat) + 2
    ids = torch.full((len(flat), width), special.pad, dtype=torch.long)
    mask = torch.zeros((len(flat), width), dtype=torch.long)
    for row, (_, _, seg) in enumerate(flat):
        n = len(seg) + 2
        ids[row, :n] = torch.tensor([special.cls, *seg, special.sep], dtype=torch.long)
        mask[row, :n] = 1
    doc_index = torch.tensor([doc for doc, _, _ in flat], dtype=torch.long)
    position = torch.tensor([pos for _, pos, _ in flat], dtype=torch.long)
    return SegmentBatch(ids, mask, doc_index, position, len(segments_per_doc))

"""Longformer made from the same pretrained encoder, or any Hugging Face Longformer checkpoint.

Conversion (how longformer-base-4096 was made from roberta-base): copy the encoder's weights, tile
its 512 learned positions up to ``max_tokens``, use sliding-window attention of ``attention_window``
tokens with global attention on [CLS], and start the global query/key/value projections as copies
of the local ones. transformers' Longformer counts positions from ``pad_token_id + 1`` (RoBERTa
style) where BERT counts from 0, so the tiled table is shifted accordingly. Without the extra
masked-LM pretraining the authors did, fine-tuning alone adapts the model to the long windows.
"""

from __future__ import annotations

import torch
from torch import nn

from longdoc.data.chunking import Window
from longdoc.errors import LongdocError
from longdoc.models.base import DocumentClassifier, VariantSettings
from longdoc.models.batching import SegmentBatch
from longdoc.models.encoder import ChunkEncoder, resolve_encoder


def tile_positions(table: torch.Tensor, new_length: int, first: int, new_first: int) -> torch.Tensor:
    """Repeat the learned positions: row ``new_first + k`` of the result holds position ``k mod n``.

    ``first`` is the row of position 0 in ``table`` (0 for BERT, pad + 1 for RoBERTa), ``n`` the
    number of positions it has; the rows before ``new_first`` are never used for real tokens.
    """
    source = table[first:]
    out = table.new_zeros((new_length, table.size(1)))
    k = torch.arange(new_length - new_first, device=table.device)
    out[new_first:] = source[k % source.size(0)]
    out[:new_first] = source[0]
    return out


def longformer_from_encoder(bert: nn.Module, max_tokens: int, attention_window: int):
    """A LongformerModel with ``bert``'s weights (BERT-style encoders: BERT, MiniLM, RoBERTa)."""
    from transformers import LongformerConfig, LongformerModel

    c = bert.config
    pad = int(c.pad_token_id or 0)
    config = LongformerConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
        hidden_act=c.hidden_act, hidden_dropout_prob=c.hidden_dropout_prob,
        attention_probs_dropout_prob=c.attention_probs_dropout_prob, type_vocab_size=c.type_vocab_size,
        layer_norm_eps=c.layer_norm_eps, initializer_range=c.initializer_range, pad_token_id=pad,
        max_position_embeddings=max_tokens + pad + 1, attention_window=[attention_window] * c.num_hidden_layers,
    )
    model = LongformerModel(config)  # with the pooler, as AutoModel.from_config rebuilds it at load time
    state = dict(bert.state_dict())
    state.pop("embeddings.position_ids", None)
    first = pad + 1 if c.model_type in ("roberta", "xlm-roberta", "camembert") else 0
    state["embeddings.position_embeddings.weight"] = tile_positions(
        state["embeddings.position_embeddings.weight"], config.max_position_embeddings, first, pad + 1)
    for i in range(c.num_hidden_layers):
        prefix = f"encoder.layer.{i}.attention.self."
        for part in ("query", "key", "value"):
            for kind in ("weight", "bias"):
                state[f"{prefix}{part}_global.{kind}"] = state[f"{prefix}{part}.{kind}"].clone()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith("position_ids")]:
        raise LongdocError(f"cannot convert {c.model_type} to Longformer: missing {missing}, unexpected {unexpected}")
    return model


class Longformer(DocumentClassifier):
    """The whole document (up to ``max_tokens``) in one sequence; global attention on [CLS]."""

    name = "longformer"

    def __init__(self, encoder: ChunkEncoder, settings: VariantSettings) -> None:
        super().__init__(encoder, settings)
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Linear(encoder.hidden_size, settings.n_labels)

    @classmethod
    def pretrained_encoder(cls, name_or_path: str, pooling: str, settings: VariantSettings) -> ChunkEncoder:
        from transformers import AutoModel

        return cls._long(AutoModel.from_pretrained(resolve_encoder(name_or_path)), pooling, settings)

    @classmethod
    def encoder_from(cls, encoder: ChunkEncoder, settings: VariantSettings) -> ChunkEncoder:
        """The stage-1 fine-tuned chunk encoder, converted: long-input training continues from a task-adapted
        encoder instead of the raw one."""
        return cls._long(encoder.backbone, encoder.pooling, settings)

    @staticmethod
    def _long(backbone, pooling: str, settings: VariantSettings) -> ChunkEncoder:
        if settings.attention_window <= 0 or settings.attention_window % 2:
            raise LongdocError(f"attention_window must be a positive even number, got {settings.attention_window}")
        if backbone.config.model_type != "longformer":
            backbone = longformer_from_encoder(backbone, settings.max_tokens, settings.attention_window)
        return ChunkEncoder(backbone, pooling)

    def segment_spans(self, n_tokens: int, windows: list[Window]) -> list[list[Window]]:
        return [[Window(0, min(n_tokens, self.settings.max_tokens - 2))]]

    def forward(self, batch: SegmentBatch) -> torch.Tensor:
        global_mask = torch.zeros_like(batch.attention_mask)
        global_mask[:, 0] = 1
        pooled = self.encoder(batch.input_ids, batch.attention_mask, global_attention_mask=global_mask)
        return self.classifier(self.dropout(pooled))

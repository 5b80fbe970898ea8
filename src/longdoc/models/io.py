"""A trained classifier on disk: weights in safetensors, everything else needed to rebuild it in JSON.

Layout of a model folder::

    model.safetensors   all weights (encoder + head)
    longdoc.json        variant, labels, chunking and encoder settings
    encoder/            the encoder's Hugging Face config (architecture only)
    tokenizer/          the tokenizer files

The folder is what the MLflow model carries as its artifact, so serving needs no hub access and no
copy of the pretrained encoder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from longdoc.config.params import ChunkingParams
from longdoc.errors import LongdocError
from longdoc.models import variant_class
from longdoc.models.base import DocumentClassifier, VariantSettings
from longdoc.models.encoder import ChunkEncoder

META_FILE = "longdoc.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class ModelCard:
    variant: str
    labels: list[str]
    chunking: ChunkingParams
    pooling: str
    encoder: str
    settings: VariantSettings

    def to_json(self) -> str:
        return json.dumps({"variant": self.variant, "labels": self.labels, "chunking": self.chunking.model_dump(),
                           "pooling": self.pooling, "encoder": self.encoder,
                           "settings": asdict(self.settings)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        raw = json.loads(text)
        return cls(raw["variant"], raw["labels"], ChunkingParams(**raw["chunking"]), raw["pooling"],
                   raw["encoder"], VariantSettings(**raw["settings"]))


def build_classifier(card: ModelCard, encoder: ChunkEncoder) -> DocumentClassifier:
    if card.chunking.chunk_tokens + 2 > encoder.max_positions:
        raise LongdocError(f"chunk_tokens {card.chunking.chunk_tokens} + 2 special tokens exceeds the "
                           f"encoder's {encoder.max_positions} positions")
    return variant_class(card.variant)(encoder, card.settings)


def save_classifier(model: DocumentClassifier, tokenizer, card: ModelCard, out_dir: Path) -> None:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    # Every tensor copied into storage of its own: on CUDA, cuDNN packs an LSTM's weights into one flat
    # buffer, and safetensors refuses views that do not cover their storage (found on an H200: the
    # attention and rnn variants could not be saved after training on a GPU).
    state = {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    model.encoder.backbone.config.save_pretrained(out_dir / "encoder")
    tokenizer.save_pretrained(out_dir / "tokenizer")
    (out_dir / META_FILE).write_text(card.to_json())


def load_classifier(model_dir: str | Path) -> tuple[DocumentClassifier, object, ModelCard]:
    from safetensors.torch import load_model
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / META_FILE).is_file():
        raise LongdocError(f"{model_dir} is not a longdoc model folder (no {META_FILE})")
    card = ModelCard.from_json((model_dir / META_FILE).read_text())
    encoder = ChunkEncoder.from_config_dir(model_dir / "encoder", card.pooling)
    model = build_classifier(card, encoder)
    load_model(model, str(model_dir / WEIGHTS_FILE))
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir / "tokenizer")
    return model, tokenizer, card

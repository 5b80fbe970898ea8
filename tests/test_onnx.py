"""The ONNX Runtime path on the real pretrained encoder: export, fusion, the check against torch, and each way
it must refuse (a corrupted graph, a Longformer, a candidate that labels too many documents differently)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from longdoc.errors import LongdocError
from longdoc.models import VARIANTS
from longdoc.models.inference import Predictor
from longdoc.models.onnx.export import operator_counts
from longdoc.registry.serving_runtime import Candidate, build_candidates, choose_runtime, pick
from tests.test_variants import build

CHUNKED = sorted(set(VARIANTS) - {"longformer", "reformer"})  # every variant whose encoder reads chunks


@pytest.fixture(scope="module")
def texts(small_corpus) -> list[str]:
    return pd.read_json(small_corpus, lines=True)["text"].head(10).tolist()


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, texts, tokenizer) -> dict[str, Candidate]:
    """Every candidate graph of the pretrained encoder, built once by the packaging code."""
    model, card = build("chunk_mean")
    predictor = Predictor(model, tokenizer, card)
    return {c.precision: c for c in build_candidates(predictor, texts, tmp_path_factory.mktemp("onnx"))}


def test_the_fused_graph_has_bert_attention_gelu_and_layer_norm_kernels(graphs):
    """Without eager attention at export, the optimiser finds no attention to fuse and the speed is lost."""
    assert not any(c.error for c in graphs.values()), graphs
    ops = operator_counts(graphs["fp32"].path)
    assert (ops.get("Attention"), ops.get("BiasGelu"), ops.get("SkipLayerNormalization"),
            ops.get("EmbedLayerNormalization")) == (6, 6, 12, 1)
    assert "MatMulInteger" in operator_counts(graphs["int8-dynamic"].path)
    assert "QuantizeLinear" in operator_counts(graphs["int8-static"].path)


@pytest.mark.parametrize("name", CHUNKED)
def test_each_chunked_variant_reads_the_same_vectors_from_the_onnx_encoder(name, graphs, texts, tokenizer):
    import torch

    torch.manual_seed(0)  # the head's initial weights: a voting head turns small vector changes into big ones
    model, card = build(name)
    model.eval()
    predictor = Predictor(model, tokenizer, card)
    expected, chunks = predictor.predict_proba(texts)
    with predictor.onnx_encoder(graphs["fp32"].path):
        assert predictor.runtime == "onnx"
        served, served_chunks = predictor.predict_proba(texts)
        explained = predictor.explain(texts[0])
    assert predictor.runtime == "torch"  # the torch encoder is back after the block
    assert served_chunks == chunks and np.abs(served - expected).max() < 1e-4
    assert explained["label"] == card.labels[int(expected[0].argmax())]
    with predictor.onnx_encoder(graphs["int8-dynamic"].path):
        quantised, _ = predictor.predict_proba(texts)
    # int8 is close, and not the fp32 graph by mistake; a voting head's share moves by whole votes (1/6 here)
    assert 0 < np.abs(quantised - expected).max() < (0.2 if "vote" in name else 0.05)


def test_the_check_serves_the_fastest_runtime_that_agrees_and_says_what_it_measured(texts, tokenizer, tmp_path):
    model, card = build("chunk_mean")
    choice = choose_runtime(Predictor(model.eval(), tokenizer, card), texts, tmp_path, max_disagreement=1.0,
                            bf16=True, beat_torch=True)
    names = [c.name for c in choice.candidates]
    assert names == ["onnx fp32", "onnx int8-dynamic", "onnx int8-static", "torch bf16"]
    fastest = max(choice.candidates, key=lambda c: c.docs_per_s)
    assert choice.checked_docs == len(texts)
    if fastest.docs_per_s > choice.torch_docs_per_s:
        assert (choice.runtime, choice.precision) == (fastest.engine, fastest.precision)
        assert f"of {len(texts)} check documents differently from torch fp32" in choice.reason
    else:
        assert (choice.runtime, choice.precision) == ("torch", "fp32") and "not faster than torch fp32" in choice.reason
    fp32 = choice.candidates[0]
    assert fp32.differing == 0 and fp32.max_prob_diff < 1e-4 and choice.torch_docs_per_s > 0
    bf16 = choice.candidates[-1]
    assert bf16.error is None and 0 < bf16.max_prob_diff < 0.1  # bf16 ran: close to fp32, not fp32 itself


def test_a_candidate_over_the_disagreement_limit_gives_way_to_the_next():
    fast = Candidate("onnx", "int8-dynamic", "d.onnx", disagreement=0.02, differing=4, docs_per_s=30.0)
    slower = Candidate("torch", "bf16", disagreement=0.005, differing=1, docs_per_s=20.0)
    exact = Candidate("onnx", "fp32", "f.onnx", disagreement=0.0, differing=0, docs_per_s=12.0)
    broken = Candidate("onnx", "int8-static", error="quantisation failed: no")
    assert pick([fast, slower, exact], 0.01, 10.0) is slower  # the fastest within the limit, not the fastest
    assert pick([fast, slower, exact], 0.05, 10.0) is fast
    assert pick([fast, broken, exact], 0.01, 10.0) is exact
    assert pick([fast, broken, exact], 0.01, 12.0) is None  # not faster than torch fp32: torch fp32
    assert pick([fast, broken, exact], 0.01) is exact  # runtime onnx: torch fp32 is no contender
    assert pick([fast, broken], 0.01) is None  # nothing within the limit: torch fp32
    assert pick([Candidate("onnx", "fp32", "f", disagreement=0.01, differing=2, docs_per_s=2.0)], 0.01)


def test_runtime_onnx_serves_an_agreeing_graph_even_when_torch_is_faster(graphs, texts, tokenizer, tmp_path):
    """What a team that asked for ONNX gets: the exact graph, with its speed beside torch's in the reason."""
    model, card = build("chunk_mean")
    choice = choose_runtime(Predictor(model.eval(), tokenizer, card), texts, tmp_path, 0.0, graphs=("fp32",))
    assert (choice.runtime, choice.precision, [c.name for c in choice.candidates]) == ("onnx", "fp32", ["onnx fp32"])
    assert "against torch fp32's" in choice.reason


@pytest.mark.parametrize("content", [b"not an onnx graph", "truncated"])
def test_a_corrupted_onnx_file_falls_back_to_torch_with_the_reason(content, graphs, texts, tokenizer, tmp_path):
    model, card = build("chunk_mean")
    path = tmp_path / "encoder.onnx"
    whole = Path(graphs["fp32"].path).read_bytes()
    path.write_bytes(whole[: len(whole) // 2] if content == "truncated" else content)
    choice = choose_runtime(Predictor(model, tokenizer, card), texts, tmp_path / "work", 0.01, supplied=path)
    assert (choice.runtime, choice.precision) == ("torch", "fp32")
    assert choice.reason.startswith(f"fell back to torch fp32: onnx supplied: ONNX Runtime cannot load {path}")


def test_without_validation_documents_nothing_is_checked_and_torch_serves(tokenizer, tmp_path):
    model, card = build("chunk_mean")
    choice = choose_runtime(Predictor(model, tokenizer, card), [], tmp_path, 0.01, bf16=True)
    assert (choice.runtime, choice.precision, choice.candidates) == ("torch", "fp32", [])
    assert choice.reason.startswith("no validation or test documents to check a faster runtime on")


def test_a_longformer_stays_in_torch_and_says_why(texts, tokenizer, tmp_path):
    model, card = build("longformer")
    choice = choose_runtime(Predictor(model, tokenizer, card), texts, tmp_path, 0.01)
    assert (choice.runtime, choice.candidates) == ("torch", [])
    assert "a longformer encoder has no fused ONNX Runtime graph" in choice.reason


def test_the_onnx_encoder_refuses_what_it_cannot_compute(graphs):
    import torch

    from longdoc.models.onnx.runtime import OnnxEncoder

    encoder = OnnxEncoder(graphs["fp32"].path)
    ids = torch.tensor([[101, 2023, 102]])
    assert encoder(ids, torch.ones_like(ids)).shape == (1, 384)
    with pytest.raises(LongdocError, match="takes no \\['global_attention_mask'\\]"):
        encoder(ids, torch.ones_like(ids), global_attention_mask=torch.zeros_like(ids))

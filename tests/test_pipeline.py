"""The whole workflow for real: a kfp local run on a small slice, the SQLite MLflow registry it leaves,
and a `bentoml serve` process answering /classify from the Bento it built."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

from longdoc.config import load_params
from tests.conftest import BIN, ROOT, SMALL, cli, set_args

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory, small_corpus) -> dict:
    tmp = tmp_path_factory.mktemp("run")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlruns.db'}", "BENTOML_HOME": str(tmp / "bentoml")}
    overrides = {**SMALL, "data.corpus": str(small_corpus), "pipeline.pipeline_root": str(tmp / "kfp")}
    done = cli("run", *set_args(overrides), env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"tmp": tmp, "env": env, "stdout": done.stdout, "overrides": overrides}


def variant_dirs(run) -> dict[str, Path]:
    """The kfp local output folder of each ParallelFor iteration, by the variant it trained."""
    root = Path(run["overrides"]["pipeline.pipeline_root"])
    found = {}
    for iteration in root.glob("*/for-loop-1-iteration-*"):
        summary = json.loads(next(iteration.glob("train/*/train_summary.json")).read_text())
        found[summary["variant"]] = iteration
    return found


@pytest.fixture(scope="module")
def client(run):
    import mlflow

    mlflow.set_tracking_uri(run["env"]["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(run["env"]["MLFLOW_TRACKING_URI"])
    return mlflow.MlflowClient()


def test_summary_names_every_result(run):
    out = run["stdout"]
    for fragment in ("data version", "validation", "passed", "head", "attention", "tfidf_logreg", "inverted",
                     "champion", "longdoc serve --bento longdoc:"):
        assert fragment in out, fragment


def test_every_variant_is_registered_and_the_best_is_champion(run, client):
    versions = client.search_model_versions("name='longdoc'")
    assert sorted(v.tags["variant"] for v in versions) == ["attention", "head"]
    champion = client.get_model_version_by_alias("longdoc", "champion")
    best = max(versions, key=lambda v: (float(v.tags["normal_macro_f1"]), -int(v.version)))
    assert str(champion.version) == str(best.version)
    data_dvc = yaml.safe_load((ROOT / "data.dvc").read_text())["outs"][0]["md5"]
    for version in versions:
        tags = version.tags
        assert tags["data_version"] == data_dvc
        assert len(tags["git_commit"]) >= 40 and len(tags["params_hash"]) == 16
        assert tags["pipeline_run_id"] not in ("", "local") and tags["gate"].startswith(("passed", "refused"))
        metrics = client.get_run(version.run_id).data.metrics
        assert {"normal_macro_f1", "inverted_macro_f1", "inverted_gap_macro_f1"} <= set(metrics)
        artifacts = {a.path for a in client.list_artifacts(version.run_id, "evaluation")}
        assert {"evaluation/confusion_normal.png", "evaluation/confusion_inverted.png"} <= artifacts


def test_comparison_table_and_plots_are_logged(run, client):
    import mlflow

    experiment = mlflow.get_experiment_by_name("longdoc")
    runs = client.search_runs([experiment.experiment_id], "tags.kind = 'comparison'")
    assert len(runs) == 1
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"comparison.md", "comparison.csv", "robustness.png", "position_sweep.png"} <= artifacts
    table = Path(client.download_artifacts(runs[0].info.run_id, "comparison.csv"))
    frame = pd.read_csv(table)
    assert set(frame["variant"]) == {"head", "attention", "tfidf_logreg"}
    baseline = frame.set_index("variant").loc["tfidf_logreg"]
    assert baseline["inverted gap (acc)"] == 0 and baseline["shuffled gap (acc)"] == 0  # bag of words


def test_champion_predicts_raw_text_as_evaluated(run, client, small_corpus):
    """models:/longdoc@champion gives, on raw test texts, exactly the predictions the evaluation made."""
    import mlflow

    model = mlflow.pyfunc.load_model("models:/longdoc@champion")
    variant = client.get_model_version_by_alias("longdoc", "champion").tags["variant"]
    evaluated = pd.read_parquet(next(variant_dirs(run)[variant].rglob("predictions.parquet")))
    normal = evaluated[evaluated["view"] == "normal"].set_index("id")
    corpus = pd.read_json(small_corpus, lines=True).set_index("id").loc[normal.index]
    out = model.predict(pd.DataFrame({"text": corpus["text"].tolist()}))
    assert out["label"].tolist() == normal["predicted"].tolist()
    probs = out.filter(like="prob_")
    assert list(probs.columns) == [f"prob_{x}" for x in sorted(corpus["label"].unique())]
    assert ((probs.sum(axis=1) - 1).abs() < 1e-5).all()


def test_equal_model_is_not_promoted(run, client):
    """Registering the same evaluation again does not beat the champion: the reason is on the version."""
    from longdoc.stages import register

    os.environ.update(run["env"])
    champion = client.get_model_version_by_alias("longdoc", "champion")
    iteration = variant_dirs(run)[champion.tags["variant"]]
    params = load_params(ROOT / "params.yaml", run["overrides"])
    validated = next(Path(run["overrides"]["pipeline.pipeline_root"]).glob("*/validate/corpus"))
    reg = register(params, next(iteration.glob("train/model")), next(iteration.glob("evaluate/evaluation")),
                   validated, "test-data", "test-commit")
    assert (reg.version, reg.promoted) == ("3", False)
    assert str(client.get_model_version_by_alias("longdoc", "champion").version) == str(champion.version)
    tags = client.get_model_version("longdoc", "3").tags
    assert f"does not beat champion v{champion.version}" in tags["gate"] and tags["status"] == "challenger"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(run):
    port = _free_port()
    env = {**os.environ, **run["env"], "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(BIN / "bentoml"), "serve", "longdoc:latest", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            time.sleep(0.5)
        else:
            pytest.fail("bentoml serve did not become ready")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_service_classifies(service, small_corpus):
    text = pd.read_json(small_corpus, lines=True)["text"].iloc[0]
    reply = requests.post(f"{service}/classify", json={"text": text}, timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["label"] in body["probabilities"]
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-5
    assert body["version"] in ("1", "2") and body["n_chunks"] >= 1


@pytest.mark.parametrize("payload", [b"", b"{}", b'{"text": ""}', b'{"text": "  \\n "}', b'{"text": 3}',
                                     b'{"text": '])
def test_service_refuses_bad_input_with_4xx(service, payload):
    reply = requests.post(f"{service}/classify", data=payload, headers={"content-type": "application/json"},
                          timeout=30)
    assert 400 <= reply.status_code < 500, (payload, reply.status_code, reply.text)


def test_failing_validation_stops_the_run_before_training(tmp_path, small_corpus):
    rows = pd.read_json(small_corpus, lines=True)
    rows.loc[3, "text"] = rows.loc[7, "text"]  # a duplicate text
    bad = tmp_path / "bad.jsonl"
    rows.to_json(bad, orient="records", lines=True)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}", "BENTOML_HOME": str(tmp_path / "b")}
    done = cli("run", *set_args({**SMALL, "data.corpus": str(bad), "pipeline.pipeline_root": str(tmp_path / "k")}),
               env=env)
    assert done.returncode != 0
    assert "expect_column_values_to_be_unique" in done.stdout + done.stderr
    assert not list((tmp_path / "k").rglob("chunks.parquet"))  # chunk/train never ran
    reports = list((tmp_path / "k").rglob("validation.md"))
    assert reports and "FAILED" in reports[0].read_text()

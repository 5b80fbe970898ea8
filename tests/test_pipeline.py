"""The whole workflow for real: a kfp local run on a small slice, the SQLite MLflow registry it leaves,
and a `bentoml serve` process answering /classify from the Bento it built."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import requests

from longdoc.config.params import load_params
from tests.conftest import BIN, ROOT, SMALL, cli, set_args, stop_group, wait_ready

pytestmark = pytest.mark.slow

LIMITS = {"max_chars": 20_000, "max_batch_docs": 8, "max_body_bytes": 300_000}  # packed into the Bento by the run
MAX_CHARS = LIMITS["max_chars"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, small_corpus) -> dict:
    tmp = tmp_path_factory.mktemp("run")
    # a wide terminal: the summary table and messages are checked as text, and rich wraps at 80 columns
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlruns.db'}", "BENTOML_HOME": str(tmp / "bentoml"),
           "COLUMNS": "250"}
    overrides = {**SMALL, "data.corpus": str(small_corpus), "pipeline.pipeline_root": str(tmp / "kfp"),
                 **{f"serving.{k}": v for k, v in LIMITS.items()}}
    done = cli("run", *set_args(overrides), env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"tmp": tmp, "env": env, "stdout": done.stdout, "overrides": overrides}


def variant_dirs(run) -> dict[str, Path]:
    """The kfp local output folder of each ParallelFor iteration, by the variant it trained."""
    root = Path(run["overrides"]["pipeline.pipeline_root"])
    found = {}
    for iteration in root.glob("*/for-loop-2-iteration-*"):
        summary = json.loads(next(iteration.glob("train/*/train_summary.json")).read_text())
        found[summary["variant"]] = iteration
    return found


@pytest.fixture(scope="module")
def client(run):
    import mlflow

    mlflow.set_tracking_uri(run["env"]["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(run["env"]["MLFLOW_TRACKING_URI"])
    return mlflow.MlflowClient()


NAME = "longdoc-business-entertainment-politics-sports-tech"  # the demo's task, named by its labels


def test_each_variant_carries_the_stage_1_cost_it_was_built_on(run, client):
    """Stage 2 trains heads on cached vectors: no encoder token of its own, the stage-1 fine-tune and the
    encoding of the vectors it reads beside it, in MLflow and in the run's summary."""
    experiment = client.get_experiment_by_name("longdoc").experiment_id
    metrics = {r.data.tags["variant"]: r.data.metrics for r in client.search_runs([experiment], "tags.kind = 'model'")}
    root = Path(run["overrides"]["pipeline.pipeline_root"])
    encoder = json.loads(next(root.rglob("train-encoder/encoder/train_summary.json")).read_text())
    encoding = encoder["embedding_cache"]["seconds"]
    assert encoding > 0
    for variant in SMALL["train.variants"]:
        assert metrics[variant]["train_encoder_tokens"] == 0
        assert metrics[variant]["train_stage1_encoder_tokens"] == encoder["encoder_tokens"] > 0
        assert metrics[variant]["train_stage1_train_seconds"] == round(encoder["train_seconds"] + encoding, 1)
    assert "training cost" in run["stdout"] and "+ stage 1" in run["stdout"]


def validated_dir(run) -> Path:
    return next(Path(run["overrides"]["pipeline.pipeline_root"]).glob("*/validate/corpus"))


def test_summary_says_what_the_gate_chose_and_why(run):
    out = run["stdout"]
    for fragment in ("data version", "hash of the validated corpus", "head", "attention", "tfidf_logreg",
                     "macro-F1 [95% CI]", "ECE raw -> calibrated", f"models:/{NAME}@champion",
                     "baseline wins", "longdoc serve --bento longdoc:", "held out: 10 test documents",
                     "resolves"):
        assert fragment in out, fragment


def test_with_a_tiny_budget_the_baseline_is_champion_and_every_candidate_is_registered(run, client):
    """Four training steps cannot beat TF-IDF: the gate must say so instead of promoting a transformer."""
    from longdoc.data.versioning import corpus_version
    from longdoc.stages import read_validated

    versions = client.search_model_versions(f"name='{NAME}'")
    assert sorted(v.tags["variant"] for v in versions) == ["attention", "head", "tfidf_logreg"]
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert (champion.tags["variant"], champion.tags["kind"]) == ("tfidf_logreg", "baseline")
    assert champion.tags["gate"] == "passed: no champion yet"
    data_version = corpus_version(read_validated(validated_dir(run)))
    for version in versions:
        tags = version.tags
        assert tags["data_version"] == data_version and tags["dvc_md5"] == "untracked"  # a corpus outside data/
        assert len(tags["git_commit"]) >= 40 and len(tags["params_hash"]) == 16
        assert tags["pipeline_run_id"] not in ("", "local") and tags["gate"].startswith(("passed", "refused"))
        assert float(tags["normal_macro_f1_lo"]) <= float(tags["normal_macro_f1"]) <= float(tags["normal_macro_f1_hi"])
        metrics = client.get_run(version.run_id).data.metrics
        assert {"normal_macro_f1", "inverted_macro_f1", "inverted_gap_macro_f1", "normal_ece_uncalibrated",
                "temperature"} <= set(metrics)
        artifacts = {a.path for a in client.list_artifacts(version.run_id, "evaluation")}
        assert {"evaluation/confusion_normal.png", "evaluation/predictions.parquet",
                "evaluation/calibration.json"} <= artifacts
        if tags["kind"] == "model":  # four steps: refused, as undertrained or as no better than the baseline
            assert tags["gate"].startswith("refused: ") and tags["status"] == "challenger"


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
    assert baseline["gate"] == "passed: no champion yet"


def test_champion_predicts_raw_text_as_evaluated(run, client, small_corpus):
    """models:/<task>@champion gives, on raw test texts, exactly the predictions the evaluation logged."""
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    champion = client.get_model_version_by_alias(NAME, "champion")
    evaluated = pd.read_parquet(client.download_artifacts(champion.run_id, "evaluation/predictions.parquet",
                                                          str(run["tmp"])))
    normal = evaluated[evaluated["view"] == "normal"].set_index("id")
    corpus = pd.read_json(small_corpus, lines=True).set_index("id").loc[normal.index]
    out = model.predict(pd.DataFrame({"text": corpus["text"].tolist()}))
    assert out["label"].tolist() == normal["predicted"].tolist()
    probs = out.filter(like="prob_")
    assert list(probs.columns) == [f"prob_{x}" for x in sorted(corpus["label"].unique())]
    assert ((probs.sum(axis=1) - 1).abs() < 1e-5).all()
    assert ((probs.max(axis=1) - normal["confidence"].to_numpy()).abs() < 1e-5).all()  # calibrated, as evaluated


def test_an_equal_model_is_not_promoted(run, client, monkeypatch):
    """The same baseline registered again does not beat the champion: the interval says so on the version."""
    from longdoc.stages import baseline, gate

    for key, value in run["env"].items():  # for this test only: later tests must not inherit the run's stores
        monkeypatch.setenv(key, value)
    champion = client.get_model_version_by_alias(NAME, "champion")
    params = load_params(ROOT / "params.yaml", run["overrides"])
    reg = baseline(params, validated_dir(run), run["tmp"] / "again", "test-commit")
    decision = gate(params, NAME, [reg.version], validated_dir(run))
    assert not decision.promoted
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == str(champion.version)
    tags = client.get_model_version(NAME, reg.version).tags
    assert tags["gate"].startswith(f"refused: does not beat champion v{champion.version} by min_gain 0.0: "
                                   "difference +0.0000") and tags["status"] == "challenger"
    # gating the champion itself changes nothing, and it is not turned into a challenger
    again = cli("models", "gate", NAME, str(champion.version), *set_args(run["overrides"]), env=run["env"])
    assert again.returncode == 0 and "is already champion: nothing changed" in again.stdout, again.stdout + again.stderr
    assert client.get_model_version(NAME, champion.version).tags["status"] == "champion"


def test_gate_refuses_a_model_of_the_old_data_after_an_edit_without_dvc_add(run, client, small_corpus, tmp_path):
    head = next(v for v in client.search_model_versions(f"name='{NAME}'") if v.tags["variant"] == "head")
    edited = pd.read_json(small_corpus, lines=True)
    edited.loc[0, "text"] = edited.loc[0, "text"] + "\n\nA paragraph added by hand."
    path = tmp_path / "edited.jsonl"
    edited.to_json(path, orient="records", lines=True)
    done = cli("models", "gate", NAME, str(head.version), *set_args({**run["overrides"], "data.corpus": str(path)}),
               env={**run["env"], "COLUMNS": "250"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"trained on data {head.tags['data_version']}, current data is" in done.stdout
    assert "Traceback" not in done.stderr



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(bento: str, env: dict, log_path: Path):
    """`bentoml serve BENTO` on a free loopback port; yields its URL and stops it afterwards."""
    port = _free_port()
    # no LONGDOC_* overrides: the service must read its limits from the Bento, as a container would
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("LONGDOC_")}, **env,
                "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    log = log_path.open("w")  # a file, not a pipe: an unread pipe fills and blocks the server
    proc = subprocess.Popen([str(BIN / "bentoml"), "serve", bento, "--host", "127.0.0.1", "--port", str(port)],
                            env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log_path, seconds=90)
        yield url
    finally:
        stop_group(proc)
        log.close()


def _bento_tag(stdout: str) -> str:
    return next(w for w in stdout.split() if w.startswith("longdoc:"))


@pytest.fixture(scope="module")
def service(run):
    """The Bento the run built: the task's champion, here the TF-IDF baseline."""
    yield from _serve(_bento_tag(run["stdout"].split("Bento", 1)[1]), run["env"], run["tmp"] / "serve.log")


def _version(client, variant: str):
    return next(v for v in client.search_model_versions(f"name='{NAME}'") if v.tags["variant"] == variant)


@pytest.fixture(scope="module")
def attention_package(run, client) -> dict:
    """A transformer version packaged on request (`longdoc package --version`) with serving.runtime onnx and its
    exact graph: four training steps leave near-ties that int8 (checked in tests/test_onnx.py) may turn."""
    overrides = {**run["overrides"], "serving.runtime": "onnx", "serving.onnx_graphs": ["fp32"],
                 "serving.max_disagreement": 0}
    done = cli("package", "--model", NAME, "--version", str(_version(client, "attention").version),
               *set_args(overrides), "--out", str(run["tmp"] / "bento-attention.json"), env=run["env"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {"stdout": done.stdout, **json.loads((run["tmp"] / "bento-attention.json").read_text())}


@pytest.fixture(scope="module")
def attention_service(run, attention_package):
    """The attention version's Bento, for chunk-level explanations and the ONNX runtime; it records into its own
    folder (set at serve time, as a deployment would), apart from the champion's."""
    env = {**run["env"], "LONGDOC_MONITOR_LOG_PATH": str(run["tmp"] / "monitoring-attention")}
    yield from _serve(attention_package["bento_tag"], env, run["tmp"] / "serve-attention.log")


def test_an_onnx_bento_answers_the_labels_the_evaluation_predicted(run, client, attention_package,
                                                                  attention_service, small_corpus):
    """Packaged with serving.runtime onnx and served by plain `bentoml serve`: the encoder runs in ONNX Runtime
    (the graph the check chose), and /classify gives every test document the evaluation's label."""
    runtime = requests.get(f"{attention_service}/metadata", timeout=10).json()["runtime"]
    assert runtime["runtime"] == attention_package["runtime"]["runtime"] == "onnx", attention_package["stdout"]
    assert (runtime["precision"], runtime["disagreement"]) == ("fp32", "0.0000")
    assert "serving runtimes checked on" in attention_package["stdout"]
    version = _version(client, "attention")
    assert version.tags["serving_runtime"] == f"onnx {runtime['precision']}"
    evaluated = pd.read_parquet(client.download_artifacts(version.run_id, "evaluation/predictions.parquet",
                                                          str(run["tmp"])))
    normal = evaluated[evaluated["view"] == "normal"].set_index("id")
    texts = pd.read_json(small_corpus, lines=True).set_index("id").loc[normal.index, "text"].tolist()
    with ThreadPoolExecutor(4) as pool:  # concurrent, so the runner batches them as it would under load
        replies = list(pool.map(lambda t: requests.post(f"{attention_service}/classify", json={"text": t},
                                                        timeout=120), texts))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies if r.status_code != 200]
    assert [r.json()["label"] for r in replies] == normal["predicted"].tolist()


def test_packaging_where_the_corpus_is_not_serves_torch_and_says_why(run, client, tmp_path):
    version = _version(client, "head")
    overrides = {**run["overrides"], "data.corpus": str(tmp_path / "gone.jsonl")}
    done = cli("package", "--model", NAME, "--version", str(version.version), *set_args(overrides),
               "--out", str(tmp_path / "bento.json"), env=run["env"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "runtime: torch fp32: no documents to check a faster runtime on" in " ".join(done.stdout.split())
    assert client.get_model_version(NAME, version.version).tags["serving_runtime"] == "torch fp32"


def test_a_corrupted_onnx_file_is_packaged_as_torch_with_the_reason(run, client, tmp_path):
    broken = tmp_path / "encoder.onnx"
    broken.write_bytes(b"\x08\x07" + b"half a graph" * 100)
    version = _version(client, "head")
    done = cli("package", "--model", NAME, "--version", str(version.version), "--onnx", str(broken),
               *set_args(run["overrides"]), "--out", str(tmp_path / "bento.json"), env=run["env"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    said = " ".join(done.stdout.split())
    assert f"runtime: torch fp32: fell back to torch fp32: onnx supplied: ONNX Runtime cannot load {broken}" in said
    assert client.get_model_version(NAME, version.version).tags["serving_runtime"] == "torch fp32"
    assert json.loads((tmp_path / "bento.json").read_text())["runtime"]["runtime"] == "torch"


def test_service_classifies(service, client, small_corpus):
    text = pd.read_json(small_corpus, lines=True)["text"].iloc[0]
    reply = requests.post(f"{service}/classify", json={"text": text}, timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["version"] == str(client.get_model_version_by_alias(NAME, "champion").version)
    assert body["label"] in body["probabilities"]
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-5
    assert body["n_chunks"] >= 1


@pytest.mark.parametrize("payload", [b"", b"{}", b'{"text": ""}', b'{"text": "  \\n "}', b'{"text": 3}',
                                     b'{"text": ', b'{"text": "caf\xff"}', b'{"text": null}', b'["text"]',
                                     b'{"text": "' + b"long " * (MAX_CHARS // 5 + 1) + b'"}'])
def test_service_refuses_bad_input_with_4xx(service, payload):
    reply = requests.post(f"{service}/classify", data=payload, headers={"content-type": "application/json"},
                          timeout=30)
    assert 400 <= reply.status_code < 500, (payload, reply.status_code, reply.text)


def test_a_batch_over_the_document_limit_is_refused_with_the_limit(service):
    reply = requests.post(f"{service}/classify_batch", json={"texts": ["A fine text."] * 9}, timeout=30)
    assert reply.status_code == 400 and "at most 8 items" in reply.text, reply.text


def test_a_document_over_the_character_limit_is_refused_with_the_limit(service):
    reply = requests.post(f"{service}/classify", json={"text": "x" * (MAX_CHARS + 1)}, timeout=30)
    assert reply.status_code == 400 and f"at most {MAX_CHARS} characters" in reply.text, reply.text


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_byte_limit_is_refused_with_413(service, chunked):
    body = json.dumps({"texts": ["word " * 3_999] * 8}).encode() + b" " * 200_000  # valid JSON, > 300,000 bytes
    data = (body[i : i + 65_536] for i in range(0, len(body), 65_536)) if chunked else body
    reply = requests.post(f"{service}/classify_batch", data=data, headers={"content-type": "application/json"},
                          timeout=30)
    assert reply.status_code == 413 and "limit of 300000 bytes" in reply.text, reply.text
    assert requests.post(f"{service}/classify", json={"text": "A fine text."}, timeout=30).status_code == 200


def test_failing_validation_stops_the_run_before_training(tmp_path, small_corpus):
    rows = pd.read_json(small_corpus, lines=True)
    rows.loc[3, "text"] = rows.loc[7, "text"]  # a duplicate text
    bad = tmp_path / "bad.jsonl"
    rows.to_json(bad, orient="records", lines=True)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}", "BENTOML_HOME": str(tmp_path / "b")}
    done = cli("run", *set_args({**SMALL, "data.corpus": str(bad), "pipeline.pipeline_root": str(tmp_path / "k"),
                                 "data.on_invalid": "fail"}), env=env)
    assert done.returncode == 2
    assert "expect_column_values_to_be_unique" in done.stderr and "| expectation |" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not list((tmp_path / "k").rglob("chunks.parquet"))  # chunk/train never ran
    report = tmp_path / "k" / "preflight-validation" / "validation.md"
    assert "FAILED" in report.read_text()


def test_service_classifies_a_batch(service, small_corpus):
    texts = pd.read_json(small_corpus, lines=True)["text"].iloc[:3].tolist()
    reply = requests.post(f"{service}/classify_batch", json={"texts": texts}, timeout=120)
    assert reply.status_code == 200, reply.text
    single = [requests.post(f"{service}/classify", json={"text": t}, timeout=60).json()["label"] for t in texts]
    assert [r["label"] for r in reply.json()] == single


def test_batch_with_one_bad_document_is_refused(service):
    reply = requests.post(f"{service}/classify_batch", json={"texts": ["A fine text.", "   "]}, timeout=30)
    assert reply.status_code == 400


def test_baseline_explains_that_it_has_no_chunk_weights(service, small_corpus):
    text = pd.read_json(small_corpus, lines=True)["text"].iloc[0]
    body = requests.post(f"{service}/explain", json={"text": text}, timeout=60).json()
    assert body["variant"] == "tfidf_logreg" and "no chunk weights" in body["note"]
    assert body["chunks"] == [{"index": 0, "char_spans": [[0, len(text)]], "weight": 1.0,
                               "probabilities": body["probabilities"]}]


def test_explain_gives_weighted_chunks_with_offsets(attention_service, small_corpus):
    text = pd.read_json(small_corpus, lines=True)["text"].iloc[0]
    body = requests.post(f"{attention_service}/explain", json={"text": text}, timeout=60).json()
    assert body["variant"] == "attention" and body["weights_from"] == "attention"
    chunks = body["chunks"]
    assert chunks and abs(sum(c["weight"] for c in chunks) - 1) < 1e-4
    for c in chunks:
        for start, end in c["char_spans"]:
            assert 0 <= start < end <= len(text)
        assert abs(sum(c["probabilities"].values()) - 1) < 1e-4
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    assert body["label"] in body["probabilities"]


def test_metadata_health_and_page(service, client):
    meta = requests.get(f"{service}/metadata", timeout=10).json()
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert (meta["version"], meta["variant"]) == (str(champion.version), champion.tags["variant"])
    assert meta["labels"] == sorted(meta["labels"]) and meta["limits"] == {**LIMITS, "max_latency_ms": 120_000}
    assert meta["data_version"] == champion.tags["data_version"] and meta["task"] == champion.tags["task"]
    assert meta["labels"] == json.loads(champion.tags["labels"]) and meta["variant"] == "tfidf_logreg"
    assert meta["evaluation"] == {"method": "held-out", "folds": 0, "documents": 10}  # the champion's test split
    assert meta["runtime"]["runtime"] == "sklearn" and not meta["quantized"]
    for path in ("/livez", "/readyz"):
        assert requests.get(f"{service}{path}", timeout=10).status_code == 200
    page = requests.get(f"{service}/ui", timeout=10)
    assert page.status_code == 200 and "<textarea" in page.text


def test_bounded_load_has_no_5xx_and_drops_nothing(service, small_corpus):
    from bench.load import run_load

    texts = pd.read_json(small_corpus, lines=True)["text"].tolist()
    report = run_load(service, texts, n_requests=48, concurrency=8)
    assert report["ok"] == 48 and report["server_errors"] == report["dropped"] == 0
    assert report["p99_ms"] >= report["p50_ms"] > 0


def _held_out(demo_corpus: Path, small_corpus: Path) -> pd.DataFrame:
    """The demo's articles the run never saw (it read a 60-article slice)."""
    from longdoc.data.corpus import read_corpus

    demo, seen = read_corpus(demo_corpus), read_corpus(small_corpus)
    return demo[~demo["id"].isin(seen["id"])].reset_index(drop=True)


def _send(url: str, texts: list[str]) -> list[dict]:
    answers = []
    for start in range(0, len(texts), LIMITS["max_batch_docs"]):
        reply = requests.post(f"{url}/classify_batch", json={"texts": texts[start:start + LIMITS["max_batch_docs"]]},
                              timeout=120)
        assert reply.status_code == 200, reply.text
        answers += reply.json()
    return answers


@pytest.fixture(scope="module")
def streams(run, service, demo_corpus, small_corpus) -> dict:
    """Three streams to the served champion, with the service's clock read between them: 60 held-out articles
    (12 a label, as the reference was drawn), 40 sports articles, 40 held-out articles cut to their last tenth.
    Every held-out article's true label is then sent to /feedback by the document_id /classify_batch answered."""
    from datetime import datetime

    from longdoc.data.splits import sample_per_label

    pool = _held_out(demo_corpus, small_corpus)
    held = sample_per_label(pool, 12, 1)
    rest = pool[~pool["id"].isin(held["id"])]
    topic = rest[rest["label"] == "sports"].head(40)
    tails = sample_per_label(rest[~rest["id"].isin(topic["id"])], 8, 2)["text"]
    marks = [datetime.now().isoformat()]
    answers = _send(service, held["text"].tolist())
    marks.append(datetime.now().isoformat())
    _send(service, topic["text"].tolist())
    marks.append(datetime.now().isoformat())
    _send(service, [t[len(t) - len(t) // 10:].strip() for t in tails])
    marks.append(datetime.now().isoformat())
    unseen = sample_per_label(rest[~rest["id"].isin(topic["id"])], 40, 4)  # 200 more, for 20 held-out streams
    _send(service, unseen["text"].tolist())
    marks.append(datetime.now().isoformat())
    for answer, label in zip(answers, held["label"], strict=True):
        reply = requests.post(f"{service}/feedback", json={"document_id": answer["document_id"], "label": label},
                              timeout=30)
        assert reply.status_code == 200 and reply.json()["recorded"], reply.text
    return {"marks": marks, "held": held, "pool": pool, "unseen": unseen,
            "sent": set(held["id"]) | set(topic["id"]) | set(unseen["id"])}


def _monitor(run, streams, window: int, *extra: str) -> subprocess.CompletedProcess:
    marks = streams["marks"]
    return cli("monitor", "--model", NAME, "--records", str(run["tmp"] / "bentoml" / "monitoring"),
               "--since", marks[window], "--until", marks[window + 1], "--out", str(run["tmp"] / f"monitor-{window}"),
               *set_args(run["overrides"]), *extra, env=run["env"])


@pytest.fixture(scope="module")
def verdicts(run, streams) -> list[subprocess.CompletedProcess]:
    return [_monitor(run, streams, window) for window in range(3)]


def test_monitor_flags_one_topic_and_last_tenths_and_not_held_out_articles(verdicts):
    held, topic, tails = ([" ".join(v.stdout.split()), v.returncode] for v in verdicts)
    assert held[1] == 0 and "no drift" in held[0], held[0][-3000:] + verdicts[0].stderr[-2000:]
    assert topic[1] == 1 and "DRIFT in label mix" in topic[0], topic[0][-3000:]
    assert tails[1] == 1 and re.search(r"DRIFT in chars, tokens", tails[0]), tails[0][-3000:]
    assert "60 served documents against" in held[0] and "40 served documents against" in topic[0]


def test_twenty_held_out_streams_from_the_service_raise_at_most_two_false_alarms(run, client, streams):
    """The thresholds' false-alarm rate on what the service recorded: 20 streams of 60 drawn from 200 unseen
    articles, each judged against the champion's registered reference as `longdoc monitor` judges a window."""
    from datetime import datetime

    from longdoc.config.params import MonitorParams
    from longdoc.data.splits import sample_per_label
    from longdoc.monitoring.drift import compare
    from longdoc.monitoring.profile import document_id
    from longdoc.monitoring.records import DOCUMENTS, read_stream
    from longdoc.monitoring.reference import read_reference

    champion = client.get_model_version_by_alias(NAME, "champion")
    for name in ("reference_profile.parquet", "reference_profile.json"):
        folder = Path(client.download_artifacts(champion.run_id, f"evaluation/{name}", str(run["tmp"] / "ref"))).parent
    reference, meta = read_reference(folder)
    marks = streams["marks"]
    served = read_stream(run["tmp"] / "bentoml" / "monitoring", DOCUMENTS, datetime.fromisoformat(marks[3]),
                         datetime.fromisoformat(marks[4]), version=str(champion.version))
    unseen = streams["unseen"].assign(document_id=streams["unseen"]["text"].map(document_id))
    assert len(served) == 200 and set(served["document_id"]) == set(unseen["document_id"])
    settings = MonitorParams()
    alarms = []
    for seed in range(20):
        drawn = sample_per_label(unseen, 12, 100 + seed)["document_id"]
        result = compare(reference, served[served["document_id"].isin(drawn)], meta.training_mix, settings.alpha,
                         settings.permutations, seed)
        alarms.append(result.drifted_features)
    assert sum(bool(a) for a in alarms) <= 2, alarms


def test_feedback_gives_the_served_accuracy_of_the_labelled_documents_with_its_interval(run, client, streams,
                                                                                         verdicts):
    """The 60 held-out articles' labels, sent back by document id, score exactly what the champion's MLflow model
    answers them offline. (That the interval covers the model's accuracy 95 times in 100 is measured in
    tests/test_monitoring.py; one interval misses by design one time in twenty, as an earlier version of this test,
    comparing with 250 other articles, showed: 0.908 against an upper bound of 0.907.)"""
    import mlflow

    served = client.get_run(re.search(r"MLflow run\s+(\w+)", verdicts[0].stdout).group(1)).data.metrics
    held = streams["held"]
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    offline = float((model.predict(held[["text"]])["label"].to_numpy() == held["label"].to_numpy()).mean())
    assert served["feedback_docs"] == 60 and served["served_accuracy"] == pytest.approx(offline)
    assert served["served_accuracy_lo"] < offline < served["served_accuracy_hi"]
    said = " ".join(verdicts[0].stdout.split())
    assert re.search(r"served accuracy from feedback: 0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\] \(95% Wilson", said)


def test_the_drift_report_is_logged_under_the_champion_as_a_picture(run, client, verdicts):
    import matplotlib.image

    champion = client.get_model_version_by_alias(NAME, "champion")
    last = re.search(r"MLflow run\s+(\w+)", verdicts[2].stdout).group(1)
    assert (champion.tags["last_monitor_run"], champion.tags["drift"]) == (last, "true")
    report = client.get_run(last)
    assert report.data.tags["model_version"] == str(champion.version) and report.data.tags["kind"] == "monitor"
    png = client.download_artifacts(last, "monitoring/drift_report.png", str(run["tmp"]))
    assert matplotlib.image.imread(png).shape[:2] == (750, 1700)


def test_a_transformer_bento_records_chunks_and_the_chunk_that_weighed_most(run, client, attention_service,
                                                                           small_corpus):
    from datetime import datetime

    from longdoc.monitoring.records import DOCUMENTS, read_stream

    texts = pd.read_json(small_corpus, lines=True)["text"].head(6).tolist()
    since = datetime.now()
    answers = _send(attention_service, texts)
    mine = read_stream(run["tmp"] / "monitoring-attention", DOCUMENTS, since=since)
    assert mine["document_id"].tolist() == [a["document_id"] for a in answers]
    assert set(mine["version"]) == {str(_version(client, "attention").version)}
    assert (mine["chunks"] >= 1).all() and (mine["top_chunk"] < mine["chunks"].clip(upper=4)).all()
    assert (mine["chunks"] > 1).any() and mine["sketch"].map(len).eq(16).all() and "text" not in mine


def test_quantization_serving_and_runtime_benchmarks_measure_the_runs_models(run, small_corpus):
    """The benchmarks that need a registry and a Bento, on the ones this run made (figures are not asserted)."""
    import sys

    out = run["tmp"] / "bench"
    env = {**os.environ, **run["env"], "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-m", "bench.run", "--tiny", "--only", "quantization", "serving",
                           "runtimes", "--corpus", str(small_corpus), "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    quantized = json.loads((out / "quantization.json").read_text())
    assert "status" not in quantized and quantized["test_docs"] >= 5
    assert quantized["champion"].startswith(NAME) and "(tfidf_logreg)" not in quantized["champion"]
    for name in ("fp32", "int8"):
        assert quantized[name]["docs_per_s"] > 0 and "macro_f1" in quantized[name]
    serving = json.loads((out / "serving.json").read_text())
    assert serving["bento"].startswith("longdoc:")
    assert set(serving["monitoring_overhead"]) == {"single_p50_ms", "load_p50_ms"}
    for name in ("recording", "not_recording"):
        load = serving[name]["load"]
        assert load["ok"] == load["requests"] == 16 and load["server_errors"] == load["dropped"] == 0
        assert serving[name]["latency_2000_tokens_ms"]["n"] == 3
    runtimes = json.loads((out / "runtimes.json").read_text())
    assert set(runtimes["in_process"]) == {"torch fp32", "torch int8", "onnx fp32", "onnx int8", "torch bf16"}
    for name, row in runtimes["in_process"].items():
        assert row["docs_per_s"] > 0 and 0 <= row["macro_f1"] <= 1, name
    for name in ("torch fp32", "torch int8", "onnx int8", "torch bf16"):  # tiny: four Bentos, two concurrencies
        for level in ("1", "8"):
            load = runtimes["served"][name]["load"][level]
            assert load["ok"] == load["requests"] and load["server_errors"] == load["dropped"] == 0, (name, level)
    # what each Bento served with is what its packaging decided (an undertrained model may fall back to torch)
    for name, decided in runtimes["served"]["packaging"].items():
        said = runtimes["served"][name]["metadata_runtime"]
        assert (said["runtime"], said["precision"]) == (decided["runtime"], decided["precision"]), name
    assert (out / "runtimes.png").stat().st_size > 10_000


def test_fuzzed_requests_never_get_a_5xx(service):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                               | st.dictionaries(st.text(), inner, max_size=3), max_leaves=6)
    bodies = (st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode())
              | st.dictionaries(st.sampled_from(["text", "texts", "x"]), json_values, max_size=2).map(
                  lambda v: json.dumps(v).encode()))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies, route=st.sampled_from(["/classify", "/explain", "/classify_batch"]))
    def check(body, route):
        reply = requests.post(f"{service}{route}", data=body, headers={"content-type": "application/json"},
                              timeout=60)
        assert reply.status_code < 500, (route, body, reply.status_code, reply.text[:300])

    check()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_web_page_in_headless_chromium(attention_service, small_corpus):
    """Paste a document, classify, see the label and shaded chunks; the screenshot is kept."""
    if not CHROMIUM.exists():
        assert not os.environ.get("CI"), "CI must have Debian's chromium (make test installs it)"
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    text = pd.read_json(small_corpus, lines=True)["text"].iloc[1]
    shot = ROOT / "test-artifacts" / "ui.png"
    shot.parent.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.goto(f"{attention_service}/ui")
        page.fill("#text", text)
        page.click("#go")
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        label = page.inner_text("#label")
        marks = page.locator("#doc mark").count()
        page.screenshot(path=str(shot), full_page=True)
        page.fill("#text", "   ")
        page.click("#go")
        page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=30_000)
        refusal = page.inner_text("#error")
        browser.close()
    expected = requests.post(f"{attention_service}/classify", json={"text": text}, timeout=60).json()["label"]
    assert label == expected and marks >= 1
    assert refusal.startswith("Refused (400)")
    assert shot.stat().st_size > 10_000


@pytest.fixture(scope="module")
def second_task(run, client, demo_corpus, tmp_path_factory) -> dict:
    """A user's own corpus after the demo, on the same registry and Bento store: the demo articles
    relabelled into two classes, every text joined into one line (a transcript), and 2 of 40 documents
    broken (a control character, a text below data.min_chars). Imported with `longdoc data import`, then run."""
    from longdoc.data.corpus import read_corpus, write_jsonl
    from longdoc.data.splits import sample_per_label

    tmp = tmp_path_factory.mktemp("second")
    frame = sample_per_label(read_corpus(demo_corpus), 8, 13)
    frame["label"] = frame["label"].map(lambda x: "hard_news" if x in ("business", "politics") else "soft_news")
    frame["text"] = frame["text"].map(lambda t: " ".join(t.split()))
    broken = {"control": frame["id"].iloc[5], "short": frame["id"].iloc[30]}
    frame.loc[frame["id"] == broken["control"], "text"] += " a bell \x07 rang"
    frame.loc[frame["id"] == broken["short"], "text"] = "Too short."
    source = tmp / "theirs.jsonl"
    write_jsonl(frame, source)
    corpus = tmp / "data" / "corpus.jsonl"
    overrides = {**SMALL, "data.corpus": str(corpus), "data.sample_per_label": None, "train.variants": ["head"],
                 "pipeline.pipeline_root": str(tmp / "kfp"), "evaluate.folds": "auto"}  # 6 test documents: cross-fits
    imported = cli("data", "import", str(source), "--out", str(corpus), "--no-dvc", *set_args(overrides),
                   env={**run["env"], "COLUMNS": "200"})
    assert imported.returncode == 0, imported.stdout + imported.stderr
    before = client.get_model_version_by_alias(NAME, "champion")
    done = cli("run", *set_args(overrides), env=run["env"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"tmp": tmp, "stdout": done.stdout, "import": imported.stdout, "broken": broken, "before": before,
            "overrides": overrides, "name": "longdoc-hard-news-soft-news"}


def test_import_says_what_it_would_quarantine(second_task):
    for doc_id in second_task["broken"].values():
        assert doc_id in second_task["import"]


def test_a_new_label_set_gets_its_own_champion_and_leaves_the_first_task_alone(second_task, client):
    import mlflow

    name = second_task["name"]
    champion = client.get_model_version_by_alias(name, "champion")
    assert json.loads(champion.tags["labels"]) == ["hard_news", "soft_news"]
    first = client.get_model_version_by_alias(NAME, "champion")
    assert (first.version, first.tags["data_version"]) == (second_task["before"].version,
                                                           second_task["before"].tags["data_version"])
    old = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(pd.DataFrame({"text": ["Shares rose."]}))
    assert old["label"].iloc[0] in json.loads(first.tags["labels"])  # still loadable, still the news topics
    assert f"models:/{name}@champion" in second_task["stdout"]


def test_quarantine_lets_the_run_finish_on_the_good_documents(second_task):
    root = second_task["overrides"]["pipeline.pipeline_root"]
    validated = next(Path(root).glob("*/validate/corpus"))
    assert len(pd.read_parquet(validated / "corpus.parquet")) == 38
    quarantined = [json.loads(line) for line in (validated / "quarantine.jsonl").read_text().splitlines()]
    reasons = {q["id"]: " ".join(q["reasons"]) for q in quarantined}
    assert set(reasons) == set(second_task["broken"].values())
    assert "control character" in reasons[second_task["broken"]["control"]]
    assert "too short" in reasons[second_task["broken"]["short"]]
    assert "2 document(s) quarantined" in second_task["stdout"]


def test_single_line_documents_are_really_inverted(second_task, client):
    """One-line transcripts fall back to sentences: the gap is measured, and on what unit."""
    from longdoc.evaluation.views import inverted, units

    name = second_task["name"]
    head = next(v for v in client.search_model_versions(f"name='{name}'") if v.tags["variant"] == "head")
    metrics = client.get_run(head.run_id).data.metrics
    assert metrics["unit_docs_sentence"] == metrics["test_docs"] == metrics["robustness_docs"] > 0
    assert metrics["single_unit_docs"] == 0 and metrics["inverted_gap_macro_f1"] == metrics["inverted_gap_macro_f1"]
    predictions = pd.read_parquet(client.download_artifacts(head.run_id, "evaluation/predictions.parquet",
                                                            str(second_task["tmp"])))
    assert set(predictions["unit"]) == {"sentence"}
    text = pd.read_parquet(next(Path(second_task["overrides"]["pipeline.pipeline_root"]).glob(
        "*/validate/corpus/corpus.parquet")))["text"].iloc[0]
    assert "\n" not in text and units(text).kind == "sentence" and inverted(text) != text


def test_a_small_corpus_is_decided_out_of_fold_on_every_kept_document(second_task, client):
    """auto cross-fits the 38 kept documents (6 held out would resolve about 0.3): every candidate's figures are
    over all of them, each predicted by one of 5 fold models, and each fold is a nested run of the candidate's."""
    name = second_task["name"]
    kept = pd.read_parquet(next(Path(second_task["overrides"]["pipeline.pipeline_root"]).glob(
        "*/validate/corpus/corpus.parquet")))
    versions = client.search_model_versions(f"name='{name}'")
    assert {v.tags["variant"] for v in versions} == {"head", "tfidf_logreg"}
    for version in versions:
        assert (version.tags["evaluation"], version.tags["folds"], version.tags["decision_docs"]) == \
            ("cross-fitted", "5", "38")
        predictions = pd.read_parquet(client.download_artifacts(version.run_id, "evaluation/predictions.parquet",
                                                                str(second_task["tmp"])))
        normal = predictions[predictions["view"] == "normal"]
        assert sorted(normal["id"]) == sorted(kept["id"]) and set(normal["fold"]) == {0, 1, 2, 3, 4}
        run = client.get_run(version.run_id)
        folds = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{version.run_id}'")
        assert sorted(r.info.run_id for r in folds) == sorted(run.data.tags["fold_runs"].split(","))
        assert sorted(r.data.tags["fold"] for r in folds) == ["0", "1", "2", "3", "4"]
        assert sum(r.data.metrics["test_docs"] for r in folds) == 38
    out = second_task["stdout"]
    assert "cross-fitted: all 38 documents" in out and "+ 5 folds" in out
    assert re.search(r"resolves\s+macro-F1 differences beyond ±0\.\d{3} on these documents", out)


@pytest.fixture(scope="module")
def second_service(run, second_task):
    """The second task's Bento, recording onto a full disk: every file it would write is /dev/full."""
    full = second_task["tmp"] / "monitoring-full"
    for stream in ("longdoc_documents", "longdoc_feedback"):
        for kind in ("data", "schema"):
            (full / stream / kind).mkdir(parents=True)
            for worker in range(4):
                (full / stream / kind / f"{kind}.{worker}.log").symlink_to("/dev/full")
    yield from _serve(_bento_tag(second_task["stdout"].split("Bento", 1)[1]),
                      {**run["env"], "LONGDOC_MONITOR_LOG_PATH": str(full)}, second_task["tmp"] / "serve.log")


def test_the_new_bento_serves_the_new_labels(second_service, second_task):
    meta = requests.get(f"{second_service}/metadata", timeout=10).json()
    assert meta["labels"] == ["hard_news", "soft_news"] and meta["task"] == "hard-news-soft-news"
    assert meta["evaluation"] == {"method": "cross-fitted", "folds": 5, "documents": 38}
    reply = requests.post(f"{second_service}/classify", json={"text": "Shares in the bank fell as profits slid."},
                          timeout=60)
    assert reply.status_code == 200 and reply.json()["label"] in ("hard_news", "soft_news")


def test_a_full_disk_fails_no_request(second_service, second_task):
    """Every record this Bento writes lands on /dev/full: requests and feedback are answered all the same."""
    texts = ["Shares in the bank fell as profits slid.", "The film won three awards at the festival."]
    assert len(_send(second_service, texts * 4)) == 8
    reply = requests.post(f"{second_service}/feedback", json={"text": texts[0], "label": "hard_news"}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert "No space left on device" in (second_task["tmp"] / "serve.log").read_text()
    assert requests.post(f"{second_service}/feedback", json={"text": texts[0], "label": "sport"},
                         timeout=30).status_code == 400


def test_monitor_retrain_starts_a_run_that_links_the_report(run, client, streams):
    """Last in the module: the retraining run adds versions to the task (the gate decides, as always)."""
    done = _monitor(run, streams, 1, "--retrain", "--set", "train.variants=[head]")  # its --sets go to the run
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    report = re.search(r"MLflow run\s+(\w+)", done.stdout).group(1)
    started = client.search_runs([client.get_experiment_by_name("longdoc").experiment_id],
                                 f"tags.triggered_by = '{report}'")
    assert {r.data.tags["kind"] for r in started} >= {"model", "baseline", "comparison"}, done.stdout[-3000:]
    assert {r.data.tags.get("variant") for r in started if r.data.tags["kind"] == "model"} == {"head"}
    assert client.get_run(report).data.tags["retrain"] == "local longdoc run exited 0"
    assert {v.tags.get("triggered_by") for v in client.search_model_versions(f"name='{NAME}'")} >= {report}

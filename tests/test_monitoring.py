"""Monitoring without a server: the drift tests on real documents and a real TF-IDF model, the recorder against
broken sinks, the records reader, the served accuracy's interval. tests/test_pipeline.py does the same through a
real `bentoml serve`."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from longdoc.config.params import MONITOR_TESTS, DataParams, MonitorParams
from longdoc.data.corpus import read_corpus
from longdoc.data.splits import assign_splits, sample_per_label
from longdoc.models.baseline import BaselinePredictor
from longdoc.monitoring.collect import Recorder
from longdoc.monitoring.drift import compare, mmd_check
from longdoc.monitoring.feedback import served_accuracy
from longdoc.monitoring.profile import SKETCH_DIM, document_id, profile_frame, sketch
from longdoc.monitoring.records import DOCUMENTS, FEEDBACK, read_stream
from longdoc.monitoring.report import report_html, report_png

ALPHA = MonitorParams().alpha
STREAM = 60


def last_tenth(text: str) -> str:
    return text[len(text) - len(text) // 10 :].strip()


@pytest.fixture(scope="module")
def watched(demo_corpus) -> dict:
    """A TF-IDF model trained on 30 articles a label, its reference (100 validation and test articles, as the
    evaluation writes it) and the profiles of 400 articles it never saw."""
    corpus = assign_splits(read_corpus(demo_corpus), DataParams())
    train = sample_per_label(corpus[corpus["split"] == "train"], 30, 13)
    model = BaselinePredictor.fit(train["text"].tolist(), train["label"].tolist())
    reference_docs = sample_per_label(corpus[corpus["split"].isin(["val", "test"])], 20, 13)
    unseen = corpus[~corpus["id"].isin(train["id"]) & ~corpus["id"].isin(reference_docs["id"])]
    pool = sample_per_label(unseen, 80, 5)
    return {"model": model, "reference": profile_frame(model, reference_docs["text"].tolist()),
            "mix": train["label"].value_counts().to_dict(), "pool": pool,
            "pool_profile": profile_frame(model, pool["text"].tolist())}


def judge(watched, served: pd.DataFrame):
    return compare(watched["reference"], served, watched["mix"], ALPHA, MonitorParams().permutations, seed=0)


def test_twenty_held_out_streams_raise_at_most_two_false_alarms(watched):
    """The thresholds' false-alarm rate, measured: 20 streams of unseen articles drawn like the reference."""
    pool, profile = watched["pool"], watched["pool_profile"]
    alarms = []
    for seed in range(20):
        stream = pool["id"].isin(sample_per_label(pool, STREAM // 5, 100 + seed)["id"]).to_numpy()
        result = judge(watched, profile[stream])
        assert len(result.checks) == MONITOR_TESTS  # params' permutation rule counts these tests
        assert {c.threshold for c in result.checks} == {ALPHA / MONITOR_TESTS}  # Bonferroni: alpha for them all
        alarms.append(result.drifted_features)
    print("false alarms:", [a for a in alarms if a])
    assert sum(bool(a) for a in alarms) <= 2, alarms


def test_a_stream_of_one_topic_and_a_stream_of_last_tenths_are_flagged(watched):
    pool = watched["pool"]
    topic = pool[pool["label"] == "sports"].head(STREAM)
    assert len(topic) == STREAM
    one_topic = judge(watched, profile_frame(watched["model"], topic["text"].tolist()))
    assert one_topic.drifted and "label mix" in one_topic.drifted_features, one_topic.as_dict()
    tails = sample_per_label(pool, STREAM // 5, 7)["text"].map(last_tenth).tolist()
    cut = judge(watched, profile_frame(watched["model"], tails))
    assert cut.drifted and {"chars", "tokens"} <= set(cut.drifted_features), cut.as_dict()


def test_the_label_mix_is_judged_against_the_training_mix_not_an_even_one():
    from longdoc.monitoring.drift import label_mix_check

    trained = {"common": 80, "rare": 20}
    as_trained = label_mix_check(pd.Series(["common"] * 78 + ["rare"] * 22), trained)
    even = label_mix_check(pd.Series(["common"] * 50 + ["rare"] * 50), trained)
    assert as_trained.p_value > 0.5 and as_trained.statistic == pytest.approx(0.02)
    assert even.p_value < 1e-9 and even.statistic == pytest.approx(0.3)
    assert "rare (50% served, 20% trained)" in even.note


def test_mmd_tells_a_shifted_sample_from_the_same_one_and_its_p_value_has_a_floor():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(80, SKETCH_DIM))
    same = mmd_check(reference, rng.normal(size=(60, SKETCH_DIM)), 999, seed=1)
    moved = mmd_check(reference, rng.normal(0.6, 1.0, size=(60, SKETCH_DIM)), 999, seed=1)
    assert same.p_value > 0.05 and moved.p_value == pytest.approx(1 / 1000)


def test_too_few_permutations_for_the_threshold_are_refused():
    with pytest.raises(ValueError, match=r"permutations \(500\) must be at least 1400"):
        MonitorParams(permutations=500, alpha=0.01)


def test_the_sketch_reduces_sparse_and_dense_vectors_alike():
    from scipy.sparse import csr_matrix

    dense = np.zeros(300, dtype=np.float32)
    dense[[3, 70, 299]] = [0.5, -1.0, 2.0]
    assert sketch(csr_matrix(dense)) == sketch(dense)
    assert len(sketch(dense)) == SKETCH_DIM and sketch(dense * 7) == pytest.approx(sketch(dense), abs=1e-5)
    assert sketch(np.zeros(5)) == [0.0] * SKETCH_DIM


@pytest.fixture(autouse=True)
def one_monitor_per_test():
    """BentoML keeps one monitor per stream name per process, all writing through one logger (a served process
    writes one stream: the runner documents, the front door feedback); each test here is a fresh process's first."""
    from bentoml._internal.monitoring import api

    api._MONITOR_INSTANCES.clear()
    yield
    api._MONITOR_INSTANCES.clear()


def test_records_are_written_through_bentoml_and_read_back_by_window(tmp_path):
    recorder = Recorder(DOCUMENTS, str(tmp_path), 1.0)
    recorder.write([{"model": "m", "version": "3", "document_id": "a" * 20, "chars": 10, "label": "x",
                     "sketch": [0.5] * SKETCH_DIM}])
    middle = datetime.now()
    recorder.write([{"model": "m", "version": "3", "document_id": "b" * 20, "chars": 20, "label": "y",
                     "sketch": [0.1] * SKETCH_DIM}, {"model": "m", "version": "4", "document_id": "c" * 20,
                                                       "chars": 30, "label": "y", "sketch": [0.0] * SKETCH_DIM}])
    data = next((tmp_path / DOCUMENTS / "data").glob("data.*.log"))
    with data.open("a") as f:
        f.write('{"cut by a full disk": \n')
    assert recorder.status()["written"] == 3
    everything = read_stream(tmp_path, DOCUMENTS, version="3")
    assert everything["chars"].tolist() == [10, 20] and everything["sketch"].iloc[0] == [0.5] * SKETCH_DIM
    assert read_stream(tmp_path, DOCUMENTS, since=middle)["chars"].tolist() == [20, 30]
    assert read_stream(tmp_path, DOCUMENTS, until=middle, model="m")["chars"].tolist() == [10]
    assert read_stream(tmp_path, DOCUMENTS, since=middle + timedelta(hours=1)).empty


def test_a_missing_records_folder_is_named():
    from longdoc.errors import LongdocError

    with pytest.raises(LongdocError, match="no monitoring records at /nowhere/at/all"):
        read_stream(Path("/nowhere/at/all"), DOCUMENTS)


def test_an_unwritable_sink_drops_records_and_says_why(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    recorder = Recorder(DOCUMENTS, str(blocker / "monitoring"), 1.0)
    recorder.write([{"document_id": "a" * 20, "chars": 1}])  # must not raise
    status = recorder.status()
    assert not status["enabled"] and "cannot write records" in status["error"] and status["written"] == 0
    assert recorder.sampled(5) == [False] * 5


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a disk that is always full)")
def test_a_full_disk_never_raises_from_a_record(tmp_path, capfd):
    for kind in ("data", "schema"):
        folder = tmp_path / FEEDBACK / kind
        folder.mkdir(parents=True)
        for worker in range(4):
            os.symlink("/dev/full", folder / f"{kind}.{worker}.log")
    recorder = Recorder(FEEDBACK, str(tmp_path), 1.0)
    for _ in range(3):
        recorder.write([{"document_id": "a" * 20, "true_label": "x"}])  # must not raise
    assert "No space left on device" in capfd.readouterr().err  # the write did fail, and was only reported


def test_the_served_accuracy_interval_covers_the_models_accuracy_at_least_95_times_in_100(watched):
    """200 windows of 60 labelled documents drawn from the 400 unseen ones: the share of Wilson intervals that hold
    the model's accuracy on all 400 (drawing without replacement from a finite pool only widens the margin)."""
    profile = watched["pool_profile"]
    truth = pd.DataFrame({"document_id": profile["document_id"], "true_label": watched["pool"]["label"].to_numpy()})
    accuracy = float((profile["label"].to_numpy() == truth["true_label"].to_numpy()).mean())
    rng = np.random.default_rng(0)
    covered = []
    for _ in range(200):
        window = rng.choice(len(profile), 60, replace=False)
        served = served_accuracy(profile.iloc[window], truth.iloc[window])
        covered.append(served.low <= accuracy <= served.high)
    print(f"accuracy {accuracy:.3f}; covered {np.mean(covered):.3f}")
    assert 0.5 < accuracy < 1 and np.mean(covered) >= 0.95


def test_served_accuracy_scores_the_latest_label_of_each_served_document():
    records = pd.DataFrame({"document_id": ["a", "b", "c", "d", "a"], "label": ["x", "y", "x", "y", "x"]})
    feedback = pd.DataFrame({"document_id": ["a", "b", "c", "b", "z"], "true_label": ["x", "x", "x", "y", "y"]})
    accuracy = served_accuracy(records, feedback)
    assert (accuracy.documents, accuracy.correct) == (3, 3)  # b's label corrected, z never served, d not labelled
    from scipy.stats import binomtest

    interval = binomtest(3, 3).proportion_ci(0.95, method="wilson")
    assert (accuracy.low, accuracy.high) == pytest.approx((interval.low, interval.high))
    assert served_accuracy(records, feedback.iloc[4:]) is None


def test_the_report_is_a_picture_and_a_page(watched, tmp_path):
    import matplotlib.image

    served = profile_frame(watched["model"], watched["pool"]["text"].map(last_tenth).head(40).tolist())
    result = judge(watched, served)
    png = report_png(watched["reference"], served, watched["mix"], result, "tfidf", tmp_path / "r.png")
    assert matplotlib.image.imread(png).shape[:2] == (750, 1700)
    page = report_html(result, served_accuracy(served, pd.DataFrame({"document_id": served["document_id"],
                                                                       "true_label": served["label"]})),
                       "tfidf", png, tmp_path / "r.html").read_text()
    assert "tfidf: drift" in page and "data:image/png;base64," in page and "40/40 documents" in page
    assert json.dumps(result.as_dict())  # what the report's JSON holds


def test_document_ids_are_digests_not_text():
    assert document_id("Hello") == document_id("Hello") != document_id("Hello.")
    assert len(document_id("x" * 10_000)) == 20


def test_an_in_sample_reference_is_not_asked_about_confidence_or_the_sketch(watched):
    """A cross-fitted corpus's refit trained on its reference documents: it is surer of them than of any new one."""
    from longdoc.monitoring.reference import IN_SAMPLE_SKIPS

    served = watched["pool_profile"].head(40)
    result = compare(watched["reference"], served, watched["mix"], ALPHA, 2000, seed=0, skip=IN_SAMPLE_SKIPS)
    assert [c.feature for c in result.checks] == ["chars", "tokens", "chunks", "top_chunk", "label mix"]

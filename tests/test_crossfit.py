"""Cross-fitted evaluation: folds dealt within labels, no model predicting a document whose label it learned,
and the power to decide where a held-out test split cannot.

Real parts: the packaged BBC slice, the real encoder trained for a few steps, real TF-IDF models, a SQLite
MLflow registry and the real gate. The end-to-end cross-fitted ``longdoc run`` (a user's corpus of one-line
documents with bad rows, then served) is in test_pipeline.py (``second_task``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from longdoc.config.params import Params, load_params
from longdoc.data.folds import assign_folds, fold_count, fold_splits, leaks, refit_splits
from longdoc.data.splits import assign_splits
from longdoc.errors import LongdocError
from longdoc.evaluation.resolution import observed_resolution, planned_resolution, resolve_folds
from tests.conftest import ROOT, SMALL


def small_params(corpus: Path, tmp: Path, **overrides) -> Params:
    """params.yaml with the suite's small settings (conftest.SMALL) and ``overrides`` (dotted keys)."""
    return load_params(ROOT / "params.yaml", {
        **SMALL, "data.corpus": str(corpus), "registry.tracking_uri": f"sqlite:///{tmp / 'mlruns.db'}",
        "train.cache_dir": str(tmp / "cache"), **overrides})


@pytest.fixture(scope="module")
def frame(small_corpus) -> pd.DataFrame:
    from longdoc.config.params import DataParams
    from longdoc.data.corpus import read_corpus

    return assign_splits(read_corpus(small_corpus), DataParams())


def test_folds_deal_every_label_evenly_and_predict_each_document_once(frame):
    folds = assign_folds(frame, 5, 13)
    counts = pd.crosstab(frame["label"], folds)
    assert list(counts.columns) == [0, 1, 2, 3, 4]
    assert (counts.max(axis=1) - counts.min(axis=1)).max() <= 1  # 12 a label: 3, 3, 2, 2, 2
    refit = refit_splits(frame, 5, 13)
    assert "test" not in set(refit["split"]) and (refit["split"] == "val").sum() == (frame["split"] == "val").sum()
    predicted = []
    for fold in range(5):
        view = fold_splits(refit, fold)
        tested = set(view.loc[view["split"] == "test", "id"])
        assert tested == set(refit.loc[refit["fold"] == fold, "id"])
        assert set(view.loc[view["split"] == "train", "label"]) == set(frame["label"])  # every label trains
        predicted += sorted(tested)
    assert sorted(predicted) == sorted(frame["id"])


def test_each_label_is_dealt_in_the_order_of_its_salted_id_hash_whatever_the_row_order(frame):
    from longdoc.data.splits import id_point

    folds = assign_folds(frame, 3, 13)
    assert folds.dtype == int
    for _, group in frame.groupby("label"):
        order = sorted(group["id"], key=lambda i: id_point(i, 13, "fold"))
        assert [folds[group.index[group["id"] == i][0]] for i in order] == [n % 3 for n in range(len(order))]
    shuffled = frame.sample(frac=1, random_state=1)
    assert assign_folds(shuffled, 3, 13).loc[frame.index].tolist() == folds.tolist()
    assert assign_folds(frame, 3, 14).tolist() != folds.tolist()  # the seed deals anew
    refit = refit_splits(frame, 3, 13)
    assert refit["fold"].tolist() == folds.tolist()
    assert (refit.loc[frame["split"] == "test", "split"] == "train").all()
    kept = frame["split"] != "test"
    assert refit.loc[kept, "split"].tolist() == frame.loc[kept, "split"].tolist()
    with pytest.raises(ValueError, match="the corpus has no fold column: it was validated without cross-fitting"):
        fold_splits(frame, 0)


def test_the_fold_count_is_read_from_the_fold_column():
    assert fold_count(pd.DataFrame({"id": ["a"]})) == 0
    assert fold_count(pd.DataFrame({"fold": [-1, -1]})) == 0
    assert fold_count(pd.DataFrame({"fold": [0, 4, 2]})) == 5


def test_auto_cross_fits_only_where_the_test_split_cannot_resolve_the_gain():
    assert planned_resolution(25) == pytest.approx(0.152, abs=0.001)  # the "about fifteen points"
    assert planned_resolution(150) < 0.08 < planned_resolution(80)  # auto cross-fits below about 90
    k, why = resolve_folds("auto", 25, 0.08)
    assert k == 5 and "25 held-out test documents resolve about 0.152" in why
    assert resolve_folds("auto", 150, 0.08)[0] == 0  # the demo's 150 decide held out
    assert resolve_folds("auto", 150, 0.05)[0] == 5  # ... unless a finer resolution is wanted
    assert resolve_folds(3, 1000, 0.08) == (3, "evaluate.folds=3")
    assert resolve_folds(0, 5, 0.08) == (0, "evaluate.folds=0: the held-out test split decides")
    assert resolve_folds("auto", 25, planned_resolution(25))[0] == 0  # exactly resolved is resolved
    assert planned_resolution(0) == float("inf") and planned_resolution(1) == pytest.approx(0.759, abs=0.001)
    assert observed_resolution(-0.1, 0.3) == pytest.approx(0.2)


@pytest.mark.parametrize("folds", [1, -2, "three", True])
def test_a_fold_count_that_cannot_cross_fit_is_refused_before_any_compute(folds):
    from longdoc.config.params import EvaluateParams

    with pytest.raises(ValueError, match="must be auto, 0"):
        EvaluateParams(folds=folds)


def test_validation_records_the_decision_and_a_label_too_small_to_fold_is_refused(small_corpus, tmp_path):
    from longdoc.data.corpus import write_jsonl
    from longdoc.stages.data import read_validated, validate

    summary = validate(small_params(small_corpus, tmp_path, **{"evaluate.folds": "auto"}), small_corpus,
                       tmp_path / "v")
    assert (summary["folds"], summary["held_out_test_docs"]) == (5, 10)
    assert "auto: 10 held-out" in summary["folds_reason"]
    assert sorted(read_validated(tmp_path / "v")["fold"].unique()) == [0, 1, 2, 3, 4]
    from longdoc.data.corpus import read_corpus

    corpus = read_corpus(small_corpus)
    alone = corpus.iloc[:1].assign(id="lonely", label="weather", text=corpus["text"].iloc[0] + " Rain later.")
    lonely = pd.concat([corpus, alone])
    write_jsonl(lonely, tmp_path / "lonely.jsonl")
    with pytest.raises(LongdocError, match="a label has 1 document"):
        validate(small_params(tmp_path / "lonely.jsonl", tmp_path, **{"evaluate.folds": 3}), tmp_path / "lonely.jsonl",
                 tmp_path / "v2")


# --- the out-of-fold evaluation: folds put together and scored as one ---


def _fold_evaluation(folder: Path, ids: list[str], labels: list[str], predicted: list[str], sweep: float,
                     cost: dict | None) -> Path:
    """What a fold task leaves for one candidate: its predictions of the fold, its metrics, and (a transformer's)
    its training cost."""
    from longdoc.evaluation.views import SWEEP, VIEWS

    evaluation = folder / "evaluation"
    evaluation.mkdir(parents=True)
    rows = [{"id": i, "view": view, "label": t, "predicted": p if view == "normal" else t, "n_chunks": 2,
             "confidence": 0.8, "unit": "paragraph", "units": 3}
            for view in VIEWS for i, t, p in zip(ids, labels, predicted, strict=True)]
    pd.DataFrame(rows).to_parquet(evaluation / "predictions.parquet", index=False)
    right = sum(t == p for t, p in zip(labels, predicted, strict=True)) / len(ids)
    metrics = {"test_docs": len(ids), "normal_accuracy": right, "normal_macro_f1": right,
               "normal_ece_uncalibrated": sweep, **{f"sweep_accuracy_{v}": sweep for v in SWEEP}}
    (evaluation / "metrics.json").write_text(json.dumps(metrics))
    if cost is not None:
        (folder / "train_summary.json").write_text(json.dumps({**cost, "variant": "head"}))
    return evaluation


def _two_folds(tmp: Path) -> dict[int, Path]:
    """30 documents in two folds of 20 and 10; fold 0 gets 4 wrong, fold 1 gets 1 wrong."""
    ids = [f"d{i:02d}" for i in range(30)]
    truth = ["x" if i % 2 else "y" for i in range(30)]
    guess = [("y" if t == "x" else "x") if i in (1, 4, 7, 10, 25) else t for i, t in enumerate(truth)]
    return {0: _fold_evaluation(tmp / "f0", ids[:20], truth[:20], guess[:20], 1.0,
                                {"train_seconds": 5.0, "encoder_tokens": 1000, "stage1_train_seconds": 10.0}),
            1: _fold_evaluation(tmp / "f1", ids[20:], truth[20:], guess[20:], 0.4,
                                {"train_seconds": 7.0, "stage1_train_seconds": 10.0})}


def test_out_of_fold_scores_cover_every_document_once_with_fold_weighted_averages(tmp_path):
    from longdoc.evaluation.crossfit import combine
    from longdoc.evaluation.evaluate import view_metrics

    out = tmp_path / "oof" / "head"  # its parent does not exist yet
    combine("head", _two_folds(tmp_path), ["x", "y"], 13, out)
    metrics = combine("head", _two_folds(tmp_path / "again"), ["x", "y"], 13, out)  # a retried collect overwrites
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["test_docs"] == 30 and metrics["folds"] == 2
    assert metrics["normal_accuracy"] == 25 / 30 and metrics["inverted_accuracy"] == 1.0
    assert metrics["inverted_gap_accuracy"] == pytest.approx(-5 / 30)  # normal minus inverted, paired
    rows = pd.read_parquet(out / "predictions.parquet")
    same = view_metrics(rows, ["x", "y"], 13)  # scored as a test split is, the same bootstrap
    bounds = ("normal_macro_f1_lo", "normal_macro_f1_hi", "inverted_gap_macro_f1_lo", "inverted_gap_macro_f1_hi")
    assert [metrics[k] for k in bounds] == [same[k] for k in bounds]
    assert [same[k] for k in bounds] != [view_metrics(rows, ["x", "y"], 14)[k] for k in bounds]  # the seed counts
    # averaged over folds, 2:1 by their documents
    assert metrics["sweep_accuracy_first_at_000"] == pytest.approx(0.8) == metrics["normal_ece_uncalibrated"]
    assert (metrics["folds_train_seconds"], metrics["folds_encoder_tokens"]) == (12.0, 1000.0)
    assert metrics["folds_stage1_train_seconds"] == 20.0 and metrics["folds_stage1_encoder_tokens"] == 0.0
    assert sorted(rows.loc[rows["view"] == "normal", "id"]) == [f"d{i:02d}" for i in range(30)]
    assert rows.groupby("id")["fold"].first().value_counts().to_dict() == {0: 20, 1: 10}
    per_fold = json.loads((out / "folds.json").read_text())
    assert [(f["fold"], f["test_docs"], f["normal_accuracy"], f["normal_macro_f1"], f["train_seconds"])
            for f in per_fold] == [(0, 20, 0.8, 0.8, 5.0), (1, 10, 0.9, 0.9, 7.0)]
    assert {p.name for p in out.glob("*.png")} == {"confusion_normal.png", "confusion_inverted.png",
                                                   "position_sweep.png"}


def test_a_baseline_fold_has_no_training_cost(tmp_path):
    from longdoc.evaluation.crossfit import combine

    folds = {0: _fold_evaluation(tmp_path / "f0", ["a", "b"], ["x", "y"], ["x", "y"], 1.0, None),
             1: _fold_evaluation(tmp_path / "f1", ["c"], ["y"], ["y"], 1.0, None)}
    metrics = combine("tfidf_logreg", folds, ["x", "y"], 13, tmp_path / "oof")
    assert all(metrics[f"folds_{k}"] == 0.0 for k in ("train_seconds", "encoder_tokens", "stage1_train_seconds"))
    assert json.loads((tmp_path / "oof" / "folds.json").read_text())[0] == {
        "fold": 0, "test_docs": 2, "normal_accuracy": 1.0, "normal_macro_f1": 1.0, "normal_ece_uncalibrated": 1.0,
        **{k: 1.0 for k in json.loads((folds[0] / "metrics.json").read_text()) if k.startswith("sweep_")}}


def test_the_refit_gets_its_own_temperature_and_speed_and_the_out_of_fold_figures(small_corpus, tmp_path):
    from longdoc.data.corpus import read_corpus
    from longdoc.evaluation.crossfit import combine, evaluate_refit, is_cross_fitted
    from longdoc.models.baseline import BaselinePredictor

    params = small_params(small_corpus, tmp_path)
    corpus = refit_splits(assign_splits(read_corpus(small_corpus), params.data), 5, 13)
    train = corpus[corpus["split"] == "train"]
    model = BaselinePredictor.fit(train["text"].tolist(), train["label"].tolist())
    oof = tmp_path / "oof"
    with pytest.raises(LongdocError, match="no out-of-fold evaluation in"):
        evaluate_refit(model, corpus, params, oof, tmp_path / "nothing")
    combine("tfidf_logreg", _two_folds(tmp_path), ["x", "y"], 13, oof)
    assert is_cross_fitted(oof) and not is_cross_fitted(tmp_path)
    out = tmp_path / "refit"
    metrics = evaluate_refit(model, corpus, params, oof, out)
    calibration = json.loads((out / "calibration.json").read_text())
    assert calibration["val_docs"] == (corpus["split"] == "val").sum() > 0
    assert metrics["temperature"] == calibration["temperature"] != 1.0 and metrics["docs_per_second"] > 0
    assert json.loads((out / "metrics.json").read_text()) == metrics
    oof_metrics = json.loads((oof / "metrics.json").read_text())
    assert {k: metrics[k] for k in oof_metrics if k != "temperature"} == oof_metrics
    for name in ("predictions.parquet", "folds.json", "confusion_normal.png", "position_sweep.png"):
        assert (out / name).read_bytes() == (oof / name).read_bytes()


def test_a_document_predicted_by_two_folds_is_refused(tmp_path):
    from longdoc.evaluation.crossfit import combine

    folds = {0: _fold_evaluation(tmp_path / "f0", ["a", "b"], ["x", "y"], ["x", "y"], 1.0, None),
             1: _fold_evaluation(tmp_path / "f1", ["b"], ["y"], ["y"], 1.0, None)}
    with pytest.raises(LongdocError, match="head: a document was predicted by more than one fold \\('b'\\)"):
        combine("head", folds, ["x", "y"], 13, tmp_path / "oof")


# --- no leak: what every fold's models learned from, against what they predicted ---


@pytest.fixture(scope="module")
def crossfit(small_corpus, tmp_path_factory) -> dict:
    """Two folds of the shipped two-stage path (each fold's own stage-1 encoder, a head on its vectors) and
    the baseline, on 60 documents."""
    from longdoc.stages.crossfit import run_all
    from longdoc.stages.data import chunk, validate

    tmp = tmp_path_factory.mktemp("crossfit")
    params = small_params(small_corpus, tmp, **{"evaluate.folds": 2, "train.variants": ["head"]})
    validate(params, small_corpus, tmp / "v")
    chunk(params, tmp / "v", tmp / "c")
    summary = run_all(params, tmp / "v", tmp / "c", tmp / "oof")
    left = sorted(p.parent.name for p in (tmp / "cache").glob("*/*.parquet"))  # chunk vectors of fold encoders
    return {"tmp": tmp, "params": params, "summary": summary, "vectors_left": left}


@pytest.mark.slow
def test_no_fold_predicts_a_document_its_encoder_head_or_baseline_learned_from(crossfit):
    summary = crossfit["summary"]
    assert summary["folds"] == 2 and summary["documents"] == 60
    assert summary["candidates"] == ["head", "tfidf_logreg"]
    assert crossfit["vectors_left"] == []  # each fold's encoder is its own: its vectors leave with the fold
    audit = pd.DataFrame(summary["audit"])
    assert len(audit) == 4 and (audit["overlap"] == 0).all()
    assert (audit["learned_from"] >= 20).all() and audit.groupby("candidate")["predicted"].sum().eq(60).all()
    head = pd.read_parquet(crossfit["tmp"] / "oof" / "head" / "predictions.parquet")
    normal = head[head["view"] == "normal"]
    assert normal["id"].is_unique and len(normal) == 60 and set(normal["fold"]) == {0, 1}
    for fold in (0, 1):
        learned = set(json.loads((crossfit["tmp"] / "oof" / "folds" / f"{fold}-transformers" / "fold.json")
                                 .read_text())["learned"]["head"])
        assert not learned & set(normal.loc[normal["fold"] == fold, "id"])


@pytest.mark.slow
def test_a_stage_1_encoder_shared_across_folds_is_caught_as_a_leak(crossfit):
    """The head of fold 0 built by hand on an encoder fine-tuned on every document: its record carries the
    encoder's, and the audit stops the run."""
    from longdoc.stages.crossfit import collect, fold_chunks
    from longdoc.stages.data import read_validated
    from longdoc.stages.training import train, train_encoder
    from longdoc.training.labelled import learned_from

    tmp, params = crossfit["tmp"], crossfit["params"]
    shared = tmp / "shared-encoder"
    train_encoder(params, tmp / "c", shared)  # the refit's splits: every document but the validation ones trains
    fold0 = fold_splits(read_validated(tmp / "v"), 0)
    train(params, "head", fold_chunks(fold0, tmp / "c", tmp / "fold0-chunks"), tmp / "fold0-head", shared)
    learned = learned_from(tmp / "fold0-head")
    predicted = set(fold0.loc[fold0["split"] == "test", "id"])
    assert learned is not None and learned & predicted
    [problem] = leaks(predicted, {"head": learned})
    assert problem.startswith("head: learned the labels of")
    leaky = tmp / "leaky"
    shutil.copytree(tmp / "oof" / "folds" / "0-transformers", leaky)
    record = json.loads((leaky / "fold.json").read_text())
    record["learned"]["head"] = sorted(learned)
    (leaky / "fold.json").write_text(json.dumps(record))
    others = [d for d in (tmp / "oof" / "folds").iterdir() if d.name != "0-transformers"]
    with pytest.raises(LongdocError, match="cross-fitting leaked: fold 0: head: learned the labels of"):
        collect(params, tmp / "v", [leaky, *others], tmp / "oof-again")


def test_a_model_without_a_record_of_what_it_learned_is_not_trusted():
    assert leaks({"a"}, {"head": None}) == ["head: no record of the documents it learned from"]
    assert leaks({"a"}, {"head": set()}) == ["head: no record of the documents it learned from"]
    assert leaks({"a"}, {"head": {"b"}}) == []
    assert leaks({"a", "c", "d"}, {"attention": None, "head": {"b", "d", "c"}}) == [
        "attention: no record of the documents it learned from",
        "head: learned the labels of 2 of the 3 documents it predicts (e.g. 'c')"]


# --- power: the same two candidates, decided held out and cross-fitted ---


def _decide(params: Params, corpus: Path, tmp: Path, handicap: int) -> object:
    """Register the TF-IDF baseline with a ``handicap``-word vocabulary as champion, then the shipped one as a
    candidate through the gate; returns the gate's decision and the paired difference it rested on."""
    from longdoc.evaluation.crossfit import combine
    from longdoc.models.baseline import BASELINE_NAME
    from longdoc.registry.promotion import difference
    from longdoc.registry.tracking import use_tracking
    from longdoc.stages.crossfit import run_fold
    from longdoc.stages.data import read_validated, validate
    from longdoc.stages.registry import baseline, gate

    validate(params, corpus, tmp / "v")
    frame = read_validated(tmp / "v")
    k = fold_count(frame)
    versions = []
    for name, max_features in (("handicapped", handicap), ("shipped", None)):
        settings = params.model_copy(deep=True)
        settings.baseline.max_features = max_features
        oof = tmp / name / "oof"
        folders = {}
        for fold in range(k):  # the baseline family of every fold (the transformers have their own test above)
            run_fold(settings, {"fold": fold, "family": "baseline"}, tmp / "v", tmp / "c", tmp / name / f"fold{fold}")
            folders[fold] = tmp / name / f"fold{fold}" / BASELINE_NAME / "evaluation"
        if k:
            combine(BASELINE_NAME, folders, sorted(frame["label"].unique()), params.data.seed, oof / BASELINE_NAME)
        registration = baseline(settings, tmp / "v", tmp / name / "baseline", "test", "local", oof)
        decision = gate(settings, registration.model_name, [registration.version], tmp / "v")
        versions.append(registration)
    client = use_tracking(params.registry.tracking_uri).MlflowClient()
    old, new = (client.get_model_version(r.model_name, r.version) for r in versions)
    return decision, difference(client, versions[0].model_name, new, old)


@pytest.mark.slow
@pytest.mark.parametrize("handicap", [80])
def test_cross_fitting_resolves_a_gain_the_held_out_split_cannot(small_corpus, tmp_path, handicap):
    """A baseline that keeps only its 80 most frequent words is truly worse than the shipped one (about 0.3
    macro-F1 on all 60 documents). On the 10 held-out test documents the gate cannot tell them apart and
    keeps the champion; cross-fitted, on all 60, it promotes. The resolvable difference (half the interval)
    agrees with both: larger than the gain on 10 documents, smaller on 60."""
    # one store, a registered model per way of deciding (mlflow keeps the first tracking URI of a process)
    held = _decide(small_params(small_corpus, tmp_path, **{"evaluate.folds": 0, "registry.model_name": "held"}),
                   small_corpus, tmp_path / "h", handicap)
    fitted = _decide(small_params(small_corpus, tmp_path, **{"evaluate.folds": 5, "registry.model_name": "fitted"}),
                     small_corpus, tmp_path / "x", handicap)
    (held_decision, held_diff), (fitted_decision, fitted_diff) = held, fitted
    assert held_diff.documents == 10 and not held_diff.out_of_fold
    assert fitted_diff.documents == 60 and fitted_diff.out_of_fold
    assert not held_decision.promoted and "does not beat champion" in held_decision.reason
    assert held_diff.low <= 0 < held_diff.point < observed_resolution(held_diff.low, held_diff.high)
    assert fitted_decision.promoted and "beats champion" in fitted_decision.reason
    assert 0 < observed_resolution(fitted_diff.low, fitted_diff.high) < fitted_diff.point
    # what the size alone promised before training says the same
    assert planned_resolution(60) < fitted_diff.point and planned_resolution(10) > held_diff.point

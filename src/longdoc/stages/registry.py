"""The registry stages: register a candidate (and the TF-IDF baseline), gate the run's candidates,
package the champion.
"""

from __future__ import annotations

import json
from pathlib import Path

from longdoc.config.params import Params
from longdoc.stages.data import read_validated


def _corpus_summary(corpus_dir: Path) -> dict:
    """What the validate stage recorded about the corpus it kept (data version, DVC md5, quarantine)."""
    return json.loads((corpus_dir / "summary.json").read_text())


def _lineage(corpus_dir: Path, git_commit: str, pipeline_run_id: str):
    from longdoc.registry.register import Lineage

    summary = _corpus_summary(corpus_dir)
    source = summary.get("data_source") or {}
    return Lineage(summary["data_version"], summary["corpus_sha256"], git_commit, pipeline_run_id,
                   summary["dvc_md5"], int(summary["quarantined"]), source.get("reference", ""))


def tracking_server(params: Params, doing: str):
    """A failing tracking server ends the step with one error naming it (see tracking.server_errors).

    Shared by the stages that talk to MLflow (registry and compare)."""
    from longdoc.registry.tracking import resolve_tracking_uri, server_errors

    return server_errors(resolve_tracking_uri(params.registry.tracking_uri), doing)


def register(params: Params, train_dir: Path, eval_dir: Path, corpus_dir: Path, git_commit: str,
             pipeline_run_id: str = "local"):
    """Register a trained variant as a candidate of its task (the gate runs later, once per run)."""
    from longdoc.registry.register import register as run_register

    summary = json.loads((train_dir / "train_summary.json").read_text())
    with tracking_server(params, f"registering {summary['variant']}"):
        return run_register(params, train_dir / "model", eval_dir, summary["variant"], summary["labels"],
                            _lineage(corpus_dir, git_commit, pipeline_run_id), train_dir=train_dir)


def baseline(params: Params, corpus_dir: Path, out_dir: Path, git_commit: str, pipeline_run_id: str = "local",
             oof_dir: Path | None = None):
    """Fit, calibrate and evaluate the TF-IDF baseline and register it as a candidate like any variant (evaluated
    out of fold from ``oof_dir`` when the corpus is cross-fitted, like every variant)."""
    from longdoc.models.baseline import BASELINE_NAME
    from longdoc.registry.register import register as run_register
    from longdoc.stages.crossfit import evaluate_candidate, fit_baseline

    corpus = read_validated(corpus_dir)
    model = fit_baseline(params, corpus, out_dir)
    evaluate_candidate(params, model, corpus, out_dir / "evaluation", oof_dir)  # calibrated like every variant
    labels = model.labels
    with tracking_server(params, f"registering {BASELINE_NAME}"):
        return run_register(params, out_dir / "model", out_dir / "evaluation", BASELINE_NAME, labels,
                            _lineage(corpus_dir, git_commit, pipeline_run_id), kind="baseline")


def gate(params: Params, model_name: str, versions: list[str], corpus_dir: Path):
    """One decision for the run's candidates of one task: at most one becomes champion."""
    from longdoc.registry.promotion import decide
    from longdoc.registry.tracking import use_tracking

    client = use_tracking(params.registry.tracking_uri).MlflowClient()
    current = _corpus_summary(corpus_dir)["data_version"]
    with tracking_server(params, f"gating {model_name}"):
        return decide(client, model_name, versions, params.registry.champion_alias, current,
                      params.registry.gate, read_validated(corpus_dir))


def package(params: Params, model_name: str, version: str | None = None, corpus_dir: Path | None = None,
            onnx: Path | None = None):
    """Package the champion (or a version); unless ``serving.runtime`` is torch, each faster runtime is checked
    on the documents of ``corpus_dir`` (:func:`check_texts`; default: the configured corpus, validated here)."""
    from longdoc.registry.packaging import package as run_package

    with tracking_server(params, f"packaging {model_name}"):
        return run_package(params, model_name, version, lambda: check_texts(params, corpus_dir), onnx)


def check_texts(params: Params, corpus_dir: Path | None) -> list[str]:
    """The documents a faster runtime is checked on: validation, test, then training documents, CHECK_DOCS in all.

    The check compares two ways of running one model, not the model with the truth, so documents the model was
    evaluated on serve as well as unseen ones; more of them make a disagreement limit mean more.
    """
    import tempfile

    from longdoc.registry.serving_runtime import CHECK_DOCS

    if corpus_dir is None:
        from longdoc.stages.data import validate

        with tempfile.TemporaryDirectory(prefix="longdoc-check-") as tmp:
            validate(params, params.data.corpus, Path(tmp))
            return check_texts(params, Path(tmp))
    frame = read_validated(corpus_dir)
    # training documents last: a small or cross-fitted corpus (whose test split trains the refit) would
    # otherwise leave a handful to check on
    order = frame["split"].map({"val": 0, "test": 1}).fillna(2)
    return frame.assign(order=order).sort_values(["order", "id"])["text"].head(CHECK_DOCS).tolist()


def champion_without_bento(params: Params, model_name: str) -> str | None:
    """Why a run must package the champion it did not promote (see packaging.champion_without_bento)."""
    from longdoc.registry.packaging import champion_without_bento as missing

    with tracking_server(params, f"looking for the Bento of {model_name}'s champion"):
        return missing(params, model_name)

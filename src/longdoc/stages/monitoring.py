"""The monitor stage: a window of what the service recorded against the served version's reference, the report
logged to MLflow under that version, and the verdict a scheduler acts on."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from longdoc.config.params import Params
from longdoc.errors import LongdocError
from longdoc.stages.registry import tracking_server

REPORT_PNG = "drift_report.png"
REPORT_HTML = "drift_report.html"
REPORT_JSON = "drift_report.json"


@dataclass
class MonitorOutcome:
    model_name: str
    version: str
    served_docs: int
    result: object | None  # monitoring.drift.DriftResult; None when the window was too small to judge
    accuracy: object | None  # monitoring.feedback.ServedAccuracy
    run_id: str = ""
    out_dir: Path | None = None
    reason: str = ""

    @property
    def drifted(self) -> bool:
        return bool(self.result is not None and self.result.drifted)


def _task_model(client, params: Params, model_name: str | None) -> str:
    """The named registered model, or the only one with a champion."""
    if model_name:
        return model_name
    prefix = f"{params.registry.model_name}-"
    with_champion = [m.name for m in client.search_registered_models() if m.name.startswith(prefix)
                     and params.registry.champion_alias in (m.aliases or {})]
    if len(with_champion) != 1:
        found = ", ".join(with_champion) or "none"
        raise LongdocError(f"name the registered model to watch with --model (tasks with a champion: {found})")
    return with_champion[0]


def _version(client, name: str, version: str | None, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, alias)
    except MlflowException:
        raise LongdocError(f"no version {version or '@' + alias} of registered model {name!r}") from None


def _reference(client, run_id: str, version: str, into: Path):
    from mlflow.exceptions import MlflowException

    from longdoc.monitoring.reference import META_FILE, PROFILE_FILE, read_reference

    try:
        found = {Path(client.download_artifacts(run_id, f"evaluation/{name}", str(into))).parent
                 for name in (PROFILE_FILE, META_FILE)}
    except (MlflowException, OSError):
        raise LongdocError(f"version {version} has no reference profile (registered before monitoring existed): "
                           "register it again with `longdoc run`") from None
    return read_reference(found.pop())


def monitor(params: Params, out_dir: Path, model_name: str | None = None, version: str | None = None,
            records: Path | None = None, feedback: Path | None = None, since: datetime | None = None,
            until: datetime | None = None) -> MonitorOutcome:
    """Judge the window [since, until) of the records of one version (default: the champion) and log the report."""
    from longdoc.monitoring.collect import default_log_path
    from longdoc.monitoring.drift import compare
    from longdoc.monitoring.feedback import served_accuracy
    from longdoc.monitoring.records import DOCUMENTS, FEEDBACK, read_stream
    from longdoc.monitoring.reference import IN_SAMPLE_SKIPS
    from longdoc.registry.tracking import use_tracking

    cfg = params.monitor
    root = records or Path(cfg.log_path or default_log_path())
    mlflow = use_tracking(params.registry.tracking_uri)
    client = mlflow.MlflowClient()
    with tracking_server(params, "reading the served model's reference"):
        name = _task_model(client, params, model_name)
        mv = _version(client, name, version, params.registry.champion_alias)
        with tempfile.TemporaryDirectory() as scratch:
            reference, meta = _reference(client, mv.run_id, str(mv.version), Path(scratch))
    served = read_stream(root, DOCUMENTS, since, until, model=name, version=str(mv.version))
    outcome = MonitorOutcome(name, str(mv.version), len(served), None, None)
    if len(served) < cfg.min_docs:
        outcome.reason = (f"{len(served)} recorded document(s) of {name} v{mv.version} in the window, fewer than "
                          f"monitor.min_docs ({cfg.min_docs}): not judged")
        return outcome
    labelled_at = feedback or (root if root.is_dir() else None)  # a records file has no feedback beside it
    if labelled_at is not None:
        outcome.accuracy = served_accuracy(served, read_stream(labelled_at, FEEDBACK))
    outcome.result = compare(reference, served, meta.training_mix, cfg.alpha, cfg.permutations, params.data.seed,
                             skip=IN_SAMPLE_SKIPS if meta.in_sample else ())
    outcome.out_dir = out_dir
    _write_report(outcome, reference, served, meta, out_dir)
    with tracking_server(params, "logging the drift report"):
        outcome.run_id = _log(mlflow, client, params, outcome, served, out_dir)
    return outcome


def _write_report(outcome: MonitorOutcome, reference, served, meta, out_dir: Path) -> None:
    from longdoc.monitoring.report import report_html, report_png

    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"{outcome.model_name} v{outcome.version}"
    png = report_png(reference, served, meta.training_mix, outcome.result, title, out_dir / REPORT_PNG)
    report_html(outcome.result, outcome.accuracy, title, png, out_dir / REPORT_HTML)
    window = {"first": str(served["timestamp"].min()), "last": str(served["timestamp"].max())}
    accuracy = outcome.accuracy.as_dict() if outcome.accuracy is not None else None
    skipped = "confidence and embedding sketch not tested: the reference documents trained the model" \
        if meta.in_sample else ""
    (out_dir / REPORT_JSON).write_text(json.dumps({"model": outcome.model_name, "version": outcome.version,
                                                   "window": window, **outcome.result.as_dict(),
                                                   "served_accuracy": accuracy, "not_tested": skipped}, indent=2))


def _log(mlflow, client, params: Params, outcome: MonitorOutcome, served, out_dir: Path) -> str:
    """A 'monitor' run with the report, its p-values and the served accuracy; the version's tags point at it."""
    experiment = mlflow.get_experiment_by_name(params.registry.experiment)
    experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment(params.registry.experiment)
    result = outcome.result
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"monitor {outcome.model_name} v{outcome.version}"
                          ) as run:
        mlflow.set_tags({"kind": "monitor", "model_name": outcome.model_name, "model_version": outcome.version,
                         "drift": str(result.drifted).lower(), "drifted_features": ",".join(result.drifted_features),
                         "window_first": str(served["timestamp"].min()),
                         "window_last": str(served["timestamp"].max())})
        metrics = {"served_docs": float(outcome.served_docs), "reference_docs": float(result.reference_docs)}
        for check in result.checks:
            key = check.feature.replace(" ", "_")
            metrics.update({f"p_{key}": check.p_value, f"stat_{key}": check.statistic})
        if outcome.accuracy is not None:
            a = outcome.accuracy
            metrics.update({"served_accuracy": a.accuracy, "served_accuracy_lo": a.low, "served_accuracy_hi": a.high,
                            "feedback_docs": float(a.documents)})
        mlflow.log_metrics(metrics)
        for name in (REPORT_PNG, REPORT_HTML, REPORT_JSON):
            mlflow.log_artifact(str(out_dir / name), artifact_path="monitoring")
    for key, value in {"last_monitor_run": run.info.run_id, "drift": str(result.drifted).lower(),
                       "drift_checked": datetime.now(UTC).isoformat(timespec="seconds")}.items():
        client.set_model_version_tag(outcome.model_name, outcome.version, key, value)
    return run.info.run_id


def link_retrain(params: Params, report_run_id: str, how: str) -> None:
    """Say on the report's run what it started (the new runs carry ``triggered_by`` back to it)."""
    from longdoc.registry.tracking import use_tracking

    client = use_tracking(params.registry.tracking_uri).MlflowClient()
    with tracking_server(params, "linking the retraining run"):
        client.set_tag(report_run_id, "retrain", how)


def retrain(params: Params, params_file: Path, overrides: list[str], report_run_id: str, host: str | None = None,
            cwd: Path | None = None) -> str:
    """Train again as any run would: `longdoc run` here, or `longdoc pipeline submit` to Kubeflow with ``host``.

    A command of its own, not a call, so the retraining is exactly what a person would start (its own process,
    its own output, the gate deciding as always); ``registry.triggered_by`` tags every version it registers with
    the report's run, and the report's run says what it started and how that ended.
    """
    action = ["pipeline", "submit", "--host", host] if host else ["run"]
    command = [sys.executable, "-m", "longdoc", *action, "--params", str(params_file),
               *[f"--set={s}" for s in overrides], f"--set=registry.triggered_by={report_run_id}"]
    what = "kubeflow submission" if host else "local longdoc run"
    link_retrain(params, report_run_id, f"{what} started")
    done = subprocess.run(command, cwd=cwd, check=False)
    link_retrain(params, report_run_id, f"{what} exited {done.returncode}")
    if done.returncode:
        raise LongdocError(f"the retraining ({what}) failed with exit {done.returncode}; the report is run "
                           f"{report_run_id}")
    return what

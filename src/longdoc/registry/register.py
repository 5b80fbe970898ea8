"""Registering a trained model in MLflow with its evaluation and lineage, under its task.

A *task* is a label set (plus an optional name, ``registry.task``). Each task is its own registered
model, ``<registry.model_name>-<task>``: MLflow aliases, version numbers and the audit trail are all
per registered model, so ``models:/longdoc-<task>@champion`` means one thing, a champion is only
ever compared with candidates of its own labels, and importing a corpus with other labels starts a
new line of versions instead of fighting (or silently replacing) the old champion. One model with
task tags would need an alias per task and a filter on every search to get the same guarantees.

Every registered version carries as tags: its key metrics with their intervals, the data version
(a hash of the validated corpus, :func:`longdoc.data.versioning.corpus_version`) with DVC's md5
beside it, the git commit, a hash of the params and the pipeline run id. Whether it becomes
champion is decided afterwards, once per run, by :mod:`longdoc.registry.promotion`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd

from longdoc.config.params import Params
from longdoc.errors import LongdocError
from longdoc.evaluation.crossfit import FOLDS_FILE, is_cross_fitted
from longdoc.monitoring.reference import META_FILE, PROFILE_FILE
from longdoc.redaction import redact
from longdoc.registry.tracking import artifact_root, resolve_tracking_uri, use_tracking

RUNTIME_REQUIREMENTS = ("torch", "transformers", "tokenizers", "safetensors", "pandas", "numpy", "mlflow",
                        "scikit-learn", "joblib")
TAGGED_METRICS = ("normal_accuracy", "normal_accuracy_lo", "normal_accuracy_hi", "normal_macro_f1",
                  "normal_macro_f1_lo", "normal_macro_f1_hi", "inverted_macro_f1", "inverted_gap_macro_f1",
                  "inverted_gap_macro_f1_lo", "inverted_gap_macro_f1_hi", "shuffled_gap_macro_f1",
                  "normal_ece", "normal_ece_uncalibrated", "temperature", "docs_per_second", "test_docs")
MAX_TASK_CHARS = 48


@dataclass
class Lineage:
    data_version: str
    corpus_sha256: str
    git_commit: str
    pipeline_run_id: str = "local"
    dvc_md5: str = "untracked"
    quarantined: int = 0
    data_source: str = ""  # the commit-pinned dvc:// reference the corpus was pulled from; "" for a path


@dataclass
class Registration:
    model_name: str
    version: str
    run_id: str
    variant: str
    model_uri: str


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def task_name(params: Params, labels: list[str]) -> str:
    """``registry.task`` if set, else the sorted labels (hashed when they make a long name)."""
    if params.registry.task:
        return _slug(params.registry.task)
    joined = _slug("-".join(sorted(labels)))
    if len(joined) <= MAX_TASK_CHARS:
        return joined
    digest = hashlib.sha256(json.dumps(sorted(labels)).encode()).hexdigest()[:8]
    return f"{joined[:MAX_TASK_CHARS - 9].rstrip('-')}-{digest}"


def registered_name(params: Params, labels: list[str]) -> str:
    return f"{params.registry.model_name}-{task_name(params, labels)}"


def ensure_task_model(client, name: str, task: str, labels: list[str]) -> None:
    """Create the task's registered model, or check that an existing one has the same labels."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, tags={"task": task, "labels": json.dumps(sorted(labels))},
                                       description=f"longdoc task {task!r}: labels {', '.join(sorted(labels))}")
        return
    recorded = json.loads(model.tags.get("labels", "null") or "null")
    if recorded is not None and sorted(recorded) != sorted(labels):
        raise LongdocError(f"registered model {name!r} is for labels {recorded}, this corpus has {sorted(labels)}: "
                           "set registry.task to a new name (or leave it empty to name the task by its labels)")


def params_hash(params: Params) -> str:
    return hashlib.sha256(json.dumps(params.model_dump(), sort_keys=True).encode()).hexdigest()[:16]


def _flat(prefix: str, value) -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flat(f"{prefix}.{k}" if prefix else k, v))
        return out
    return {prefix: redact(str(value))}  # a param is shown to everyone who can read the store: no credential


def _pip_requirements() -> list[str]:
    # "+cpu"-style local build tags are not installable pins elsewhere: keep the public version
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in RUNTIME_REQUIREMENTS]


def _experiment_id(mlflow, name: str, uri: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=artifact_root(uri))


def _log_run_contents(mlflow, params: Params, model_dir: Path, eval_dir: Path, train_dir: Path | None,
                      summary: dict | None, labels: list[str]):
    from mlflow.models import infer_signature

    from longdoc.registry.pyfunc import LongdocModel

    metrics = json.loads((eval_dir / "metrics.json").read_text())
    mlflow.log_params(_flat("", params.model_dump()))
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
    if train_dir is not None:
        mlflow.log_metrics({f"train_{k}": float(v) for k, v in summary.items() if isinstance(v, int | float)})
        for row in json.loads((train_dir / "history.json").read_text()):
            mlflow.log_metric("train_loss", row["loss"], step=row["step"])
            if "val_macro_f1" in row:
                mlflow.log_metric("val_macro_f1", row["val_macro_f1"], step=row["step"])
    for name in [*sorted(p.name for p in eval_dir.glob("*.png")), "metrics.json", "predictions.parquet",
                 "calibration.json", FOLDS_FILE, PROFILE_FILE, META_FILE]:
        if (eval_dir / name).is_file():
            mlflow.log_artifact(str(eval_dir / name), artifact_path="evaluation")
    example = pd.DataFrame({"text": ["Shares in the media giant rose after quarterly profits beat forecasts."]})
    output = pd.DataFrame([{"label": labels[0], "n_chunks": 1, **{f"prob_{k}": 1 / len(labels) for k in labels}}])
    artifacts = {"model": str(model_dir)}
    if (eval_dir / "calibration.json").is_file():
        artifacts["calibration"] = str(eval_dir / "calibration.json")
    for key, name in (("reference_profile", PROFILE_FILE), ("reference_meta", META_FILE)):
        if (eval_dir / name).is_file():  # so the Bento carries the reference it is watched against
            artifacts[key] = str(eval_dir / name)
    info = mlflow.pyfunc.log_model(
        name="model", python_model=LongdocModel(), artifacts=artifacts,
        signature=infer_signature(example, output), input_example=example,
        pip_requirements=_pip_requirements(),
    )
    return info, metrics


def register(params: Params, model_dir: Path, eval_dir: Path, variant: str, labels: list[str], lineage: Lineage,
             train_dir: Path | None = None, kind: str = "model") -> Registration:
    """Log the run and register a new version of the task's model with its metrics and lineage.

    No promotion here: the gate runs once per run over all candidates (``longdoc.registry.promotion.decide``).
    If any step after the version exists fails, the version is deleted and the run marked failed, so
    the registry never holds a version without its metrics and lineage.
    """
    uri = resolve_tracking_uri(params.registry.tracking_uri)
    mlflow = use_tracking(uri)
    client = mlflow.MlflowClient()
    task = task_name(params, labels)
    name = registered_name(params, labels)
    ensure_task_model(client, name, task, labels)
    experiment_id = _experiment_id(mlflow, params.registry.experiment, uri)
    version = None
    summary = json.loads((train_dir / "train_summary.json").read_text()) if train_dir is not None else None
    tags = {"variant": variant, "kind": kind, "task": task, "model_name": name, **_lineage_tags(params, lineage),
            **_learning_tags(summary), **_evaluation_tags(eval_dir)}
    tags = {key: redact(value) for key, value in tags.items()}  # data_source names the repository it came from
    with mlflow.start_run(experiment_id=experiment_id, run_name=variant) as run:
        try:
            info, metrics = _log_run_contents(mlflow, params, model_dir, eval_dir, train_dir, summary, labels)
            tags.update(_fold_runs(mlflow, eval_dir, variant))
            mlflow.set_tags(tags)
            version = mlflow.register_model(info.model_uri, name, tags={
                **tags, "labels": json.dumps(sorted(labels)), "status": "candidate",
                **{k: f"{metrics[k]:.6f}" for k in TAGGED_METRICS if k in metrics}})
        except BaseException:
            if version is not None:
                client.delete_model_version(name, version.version)
            raise
    return Registration(name, str(version.version), run.info.run_id, variant, f"models:/{name}/{version.version}")


def _evaluation_tags(eval_dir: Path) -> dict[str, str]:
    """How the version's metrics were measured, for the registry entry, the gate's reasons and ``/metadata``:
    ``cross-fitted`` over every document (each predicted by models that never saw it) or on the ``held-out``
    test split, and over how many documents."""
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    documents = str(int(metrics.get("test_docs", 0)))
    if not is_cross_fitted(eval_dir):
        return {"evaluation": "held-out", "decision_docs": documents}
    return {"evaluation": "cross-fitted", "folds": str(int(metrics["folds"])), "decision_docs": documents}


def _fold_runs(mlflow, eval_dir: Path, variant: str) -> dict[str, str]:
    """One nested run per fold under the candidate's run, with that fold's figures and training cost; the
    parent's ``fold_runs`` tag lists them."""
    if not is_cross_fitted(eval_dir):
        return {}
    runs = []
    experiment_id = mlflow.active_run().info.experiment_id  # a nested run otherwise lands in the default experiment
    for fold in json.loads((eval_dir / FOLDS_FILE).read_text()):
        with mlflow.start_run(run_name=f"{variant} fold {fold['fold']}", nested=True,
                              experiment_id=experiment_id) as child:
            mlflow.set_tags({"kind": "fold", "variant": variant, "fold": str(fold["fold"])})
            mlflow.log_metrics({k: float(v) for k, v in fold.items() if k != "fold"})
            runs.append(child.info.run_id)
    return {"fold_runs": ",".join(runs)}


def _learning_tags(summary: dict | None) -> dict[str, str]:
    """``undertrained`` (and why) from the training summary: the gate refuses such a version."""
    if summary is None:
        return {}
    tags = {"undertrained": "true" if summary.get("undertrained") else "false"}
    if summary.get("undertrained"):
        tags["undertrained_reason"] = str(summary.get("undertrained_reason", ""))[:4000]
    return tags


def _lineage_tags(params: Params, lineage: Lineage) -> dict[str, str]:
    return {"data_version": lineage.data_version, "dvc_md5": lineage.dvc_md5, "corpus_sha256": lineage.corpus_sha256,
            "git_commit": lineage.git_commit, "params_hash": params_hash(params),
            "pipeline_run_id": lineage.pipeline_run_id, "quarantined_docs": str(lineage.quarantined),
            **({"data_source": lineage.data_source} if lineage.data_source else {}),
            **({"triggered_by": params.registry.triggered_by} if params.registry.triggered_by else {})}


def registration_json(reg: Registration) -> str:
    return json.dumps(asdict(reg), indent=2)



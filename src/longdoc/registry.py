"""Registering a trained model in MLflow with its evaluation and lineage.

Every registered version carries as tags: its key metrics, the data version from ``data.dvc``, the
git commit, a hash of the params and the pipeline run id. Whether it becomes champion is decided by
:mod:`longdoc.promotion`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd

from longdoc.config import Params
from longdoc.tracking import artifact_root, resolve_tracking_uri, use_tracking

RUNTIME_REQUIREMENTS = ("torch", "transformers", "tokenizers", "safetensors", "pandas", "numpy", "mlflow")
TAGGED_METRICS = ("normal_accuracy", "normal_macro_f1", "inverted_macro_f1", "inverted_gap_macro_f1",
                  "shuffled_gap_macro_f1", "normal_ece")


@dataclass
class Lineage:
    data_version: str
    corpus_sha256: str
    git_commit: str
    pipeline_run_id: str = "local"


@dataclass
class Registration:
    model_name: str
    version: str
    run_id: str
    alias: str | None
    promoted: bool
    reason: str
    model_uri: str


def params_hash(params: Params) -> str:
    return hashlib.sha256(json.dumps(params.model_dump(), sort_keys=True).encode()).hexdigest()[:16]


def _flat(prefix: str, value) -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flat(f"{prefix}.{k}" if prefix else k, v))
        return out
    return {prefix: str(value)}


def _pip_requirements() -> list[str]:
    # "+cpu"-style local build tags are not installable pins elsewhere: keep the public version
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in RUNTIME_REQUIREMENTS]


def _experiment_id(mlflow, name: str, uri: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=artifact_root(uri))


def _log_run_contents(mlflow, params: Params, model_dir: Path, eval_dir: Path, train_dir: Path) -> object:
    from mlflow.models import infer_signature

    from longdoc.pyfunc import LongdocModel

    metrics = json.loads((eval_dir / "metrics.json").read_text())
    summary = json.loads((train_dir / "train_summary.json").read_text())
    history = json.loads((train_dir / "history.json").read_text())
    mlflow.log_params(_flat("", params.model_dump()))
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
    mlflow.log_metrics({f"train_{k}": float(v) for k, v in summary.items() if isinstance(v, int | float)})
    for row in history:
        mlflow.log_metric("train_loss", row["loss"], step=row["step"])
        if "val_macro_f1" in row:
            mlflow.log_metric("val_macro_f1", row["val_macro_f1"], step=row["step"])
    for png in sorted(eval_dir.glob("*.png")):
        mlflow.log_artifact(str(png), artifact_path="evaluation")
    mlflow.log_artifact(str(eval_dir / "metrics.json"), artifact_path="evaluation")
    example = pd.DataFrame({"text": ["Shares in the media giant rose after quarterly profits beat forecasts."]})
    output = pd.DataFrame([{"label": summary["labels"][0], "n_chunks": 1,
                            **{f"prob_{k}": 0.2 for k in summary["labels"]}}])
    return mlflow.pyfunc.log_model(
        name="model", python_model=LongdocModel(), artifacts={"model": str(model_dir)},
        signature=infer_signature(example, output), input_example=example,
        pip_requirements=_pip_requirements(),
    ), metrics


def register(params: Params, model_dir: Path, eval_dir: Path, train_dir: Path, lineage: Lineage) -> Registration:
    """Log the run, register a new version with its metrics and lineage, then apply the promotion gate.

    If any step after the version exists fails, the version is deleted and the run marked failed, so
    the registry never holds a version without its metrics and lineage.
    """
    from longdoc.promotion import apply_gate

    uri = resolve_tracking_uri(params.registry.tracking_uri)
    mlflow = use_tracking(uri)
    client = mlflow.MlflowClient()
    name = params.registry.model_name
    experiment_id = _experiment_id(mlflow, params.registry.experiment, uri)
    version = None
    variant = json.loads((train_dir / "train_summary.json").read_text())["variant"]
    with mlflow.start_run(experiment_id=experiment_id, run_name=variant) as run:
        try:
            info, metrics = _log_run_contents(mlflow, params, model_dir, eval_dir, train_dir)
            mlflow.set_tags({"variant": variant, "kind": "model", **_lineage_tags(params, lineage)})
            version = mlflow.register_model(info.model_uri, name, tags={
                "variant": variant, **{k: f"{metrics[k]:.6f}" for k in TAGGED_METRICS},
                **_lineage_tags(params, lineage)})
            decision = apply_gate(client, uri, name, str(version.version), params.registry.champion_alias,
                                  lineage.data_version, params.registry.gate)
        except BaseException:
            if version is not None:
                client.delete_model_version(name, version.version)
            raise
    alias = params.registry.champion_alias if decision.promoted else None
    return Registration(name, str(version.version), run.info.run_id, alias, decision.promoted, decision.reason,
                        f"models:/{name}/{version.version}")


def log_baseline(params: Params, eval_dir: Path, lineage: Lineage) -> str:
    """The TF-IDF baseline as its own run (not registered): the bar in the comparison table."""
    from longdoc.baseline import BASELINE_NAME

    uri = resolve_tracking_uri(params.registry.tracking_uri)
    mlflow = use_tracking(uri)
    with mlflow.start_run(experiment_id=_experiment_id(mlflow, params.registry.experiment, uri),
                          run_name=BASELINE_NAME) as run:
        metrics = json.loads((eval_dir / "metrics.json").read_text())
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.log_params(_flat("", {"data": params.data.model_dump(), "evaluate": params.evaluate.model_dump()}))
        mlflow.set_tags({"variant": BASELINE_NAME, "kind": "baseline", **_lineage_tags(params, lineage)})
        for png in sorted(eval_dir.glob("*.png")):
            mlflow.log_artifact(str(png), artifact_path="evaluation")
    return run.info.run_id


def _lineage_tags(params: Params, lineage: Lineage) -> dict[str, str]:
    return {"data_version": lineage.data_version, "corpus_sha256": lineage.corpus_sha256,
            "git_commit": lineage.git_commit, "params_hash": params_hash(params),
            "pipeline_run_id": lineage.pipeline_run_id}


def registration_json(reg: Registration) -> str:
    return json.dumps(asdict(reg), indent=2)



"""Registering a trained model in MLflow with its evaluation and lineage, and the first promotion rule.

Every registered version carries as tags: its key metrics, the data version from ``data.dvc``, the
git commit, a hash of the params and the pipeline run id. Aliases keep no history, so each promotion
also writes who/when/why/previous champion onto the version it promotes.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pandas as pd

from longdoc.config import Params
from longdoc.tracking import artifact_root, resolve_tracking_uri, use_tracking

RUNTIME_REQUIREMENTS = ("torch", "transformers", "tokenizers", "safetensors", "pandas", "numpy", "mlflow")
PROMOTION_METRIC = "normal_macro_f1"


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
    return [f"{name}=={metadata.version(name)}" for name in RUNTIME_REQUIREMENTS]


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
    """Log the run, register a new version, tag it, then apply the promotion rule.

    If any step after the version exists fails, the version is deleted and the run marked failed, so
    the registry never holds a version without its metrics and lineage.
    """
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
            mlflow.set_tags({"variant": variant, **_lineage_tags(params, lineage)})
            version = mlflow.register_model(info.model_uri, name, tags={
                "variant": variant, PROMOTION_METRIC: f"{metrics[PROMOTION_METRIC]:.6f}",
                "inverted_gap_macro_f1": f"{metrics['inverted_gap_macro_f1']:.6f}",
                **_lineage_tags(params, lineage)})
            promoted, reason = promote_if_better(client, name, version.version, metrics[PROMOTION_METRIC],
                                                 params.registry.champion_alias)
        except BaseException:
            if version is not None:
                client.delete_model_version(name, version.version)
            raise
    alias = params.registry.champion_alias if promoted else None
    return Registration(name, str(version.version), run.info.run_id, alias, promoted, reason,
                        f"models:/{name}/{version.version}")


def _lineage_tags(params: Params, lineage: Lineage) -> dict[str, str]:
    return {"data_version": lineage.data_version, "corpus_sha256": lineage.corpus_sha256,
            "git_commit": lineage.git_commit, "params_hash": params_hash(params),
            "pipeline_run_id": lineage.pipeline_run_id}


def promote_if_better(client, name: str, version: str, score: float, alias: str) -> tuple[bool, str]:
    """First promotion rule: champion if there is none, or if macro-F1 beats the champion's."""
    try:
        champion = client.get_model_version_by_alias(name, alias)
    except Exception:  # noqa: BLE001 - MLflow raises a generic RestException when the alias is unset
        champion = None
    if champion is not None:
        best = float(champion.tags.get(PROMOTION_METRIC, "-1"))
        if score <= best:
            reason = f"{PROMOTION_METRIC} {score:.4f} does not beat champion v{champion.version} ({best:.4f})"
            client.set_model_version_tag(name, version, "promotion", f"refused: {reason}")
            return False, reason
        reason = f"{PROMOTION_METRIC} {score:.4f} beats champion v{champion.version} ({best:.4f})"
    else:
        reason = "no champion yet"
    set_champion(client, name, version, alias, reason, previous=champion.version if champion else None)
    return True, reason


def set_champion(client, name: str, version: str, alias: str, reason: str, previous: str | None) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_registered_model_alias(name, alias, version)
    for key, value in {"promotion": f"{alias}: {reason}", "promoted_at": now, "promoted_by": getpass.getuser(),
                       "previous_champion": previous or ""}.items():
        client.set_model_version_tag(name, version, key, value)


def champion_uri(params: Params) -> str:
    return f"models:/{params.registry.model_name}@{params.registry.champion_alias}"


def registration_json(reg: Registration) -> str:
    return json.dumps(asdict(reg), indent=2)



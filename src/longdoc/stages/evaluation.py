"""The evaluation stages: one model on the test split and its views, and the run's comparison table.
"""

from __future__ import annotations

from pathlib import Path

from longdoc.config.params import Params
from longdoc.stages.data import read_validated
from longdoc.stages.registry import tracking_server


def evaluate(params: Params, model_dir: Path, corpus_dir: Path, out_dir: Path, oof_dir: Path | None = None) -> dict:
    """A held-out run: the model on the test split. A cross-fitted one: the refit's calibration and speed with
    its variant's out-of-fold figures from ``oof_dir`` (the crossfit stage's output)."""
    from longdoc.evaluation.evaluate import load_for_evaluation
    from longdoc.stages.crossfit import evaluate_candidate

    return evaluate_candidate(params, load_for_evaluation(model_dir, params), read_validated(corpus_dir), out_dir,
                              oof_dir)


def compare(params: Params, run_ids: list[str], out_dir: Path, model_name: str) -> str:
    """The comparison table, logged as a 'comparison' run; returns the task's champion version ("" when none)."""
    from longdoc.evaluation.comparison import COMPARISON_FILES
    from longdoc.evaluation.comparison import compare as run_compare
    from longdoc.registry.promotion import current_champion
    from longdoc.registry.tracking import use_tracking

    mlflow = use_tracking(params.registry.tracking_uri)  # resolves the URI (env:...) and checks it
    client = mlflow.MlflowClient()
    with tracking_server(params, "comparing the run's candidates"):
        frame = run_compare(client, run_ids, out_dir)
        experiment = mlflow.get_experiment_by_name(params.registry.experiment)
        with mlflow.start_run(experiment_id=experiment.experiment_id, run_name="comparison"):
            trigger = params.registry.triggered_by
            mlflow.set_tags({"kind": "comparison", "runs": ",".join(run_ids),
                             **({"triggered_by": trigger} if trigger else {})})
            for name in COMPARISON_FILES:
                mlflow.log_artifact(str(out_dir / name))
        print(frame.drop(columns=["run_id"]).to_string(index=False))
        champion = current_champion(client, model_name, params.registry.champion_alias)
    return str(champion.version) if champion is not None else ""

"""The same search on a cluster: what the kfp sweep's tasks do (pipelines/tune_pipeline.py wires them).

The configurations are sampled up front by the study's own sampler (enqueued trials first, then TPE's
seeded random start-up samples: with nothing told yet, TPE has no model to follow), one kfp task per
configuration runs in parallel on its own GPU, and a last task picks the best. Every trial is a nested
run under one MLflow parent in the project's experiment, as with ``longdoc tune``. Parallel trials are
never pruned: a median needs finished trials, which a single round of parallel tasks does not have.

Shared work lives on the cluster's volume (``pipeline.work_dir``): a prepare task builds the base
params' chunks and stage-1 encoder once, and a trial whose sampled values do not touch them reuses
them (and reads its chunk vectors from the embedding cache on the same volume).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from longdoc.config.params import Params, parse_params
from longdoc.tuning.space import SearchSpace, parse_space
from longdoc.tuning.trial import Workspace


def sample_configurations(space: SearchSpace, n_trials: int) -> list[dict[str, Any]]:
    """``n_trials`` configurations from an in-memory study with the space's sampler: [{number, params}]."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=space.sampler.seed, n_startup_trials=space.sampler.n_startup_trials)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for values in space.enqueue:
        study.enqueue_trial(values)
    distributions = space.distributions()
    return [{"number": i, "params": study.ask(distributions).params} for i in range(n_trials)]


def work_root(params: Params, study: str) -> Path:
    """The sweep's shared folder: on the cluster's volume (pipeline.work_dir), else beside the pipeline root."""
    return Path(params.pipeline.work_dir or params.pipeline.pipeline_root) / "tune" / study


def _tracker(params: Params):
    from longdoc.registry.tracking import resolve_tracking_uri
    from longdoc.tuning.study import Tracker

    return Tracker(resolve_tracking_uri(params.registry.tracking_uri), params.registry.experiment)


def open_sweep(params_json: str, space_json: str, n_trials: int, study: str) -> tuple[str, list[dict]]:
    """The parent MLflow run and the sampled configurations."""
    space = parse_space(json.loads(space_json))
    trials = sample_configurations(space, n_trials)
    return _tracker(parse_params(params_json)).parent(study, space, "kfp sweep (no Optuna storage)"), trials


def prepare(params_json: str, study: str, corpus_dir: Path) -> str:
    """Chunks and stage-1 encoder of the base params on the shared volume, before the trials fan out."""
    params = parse_params(params_json)
    chunk_dir, stage1_dir, _ = Workspace(work_root(params, study)).prepare(params, corpus_dir)
    return f"chunks {chunk_dir.name}, stage 1 {stage1_dir.name if stage1_dir else 'none'}"


def trial(params_json: str, study: str, configuration: dict, parent_run_id: str, corpus_dir: Path) -> str:
    """One trial task: its record as JSON; a crashed trial is recorded FAIL (its MLflow run FAILED), not raised,
    so the other trials and the select task still run."""
    from longdoc.tuning.study import execute_trial

    raw = json.loads(params_json)
    params = parse_params(raw)
    workspace = Workspace(work_root(params, study))
    record = execute_trial(raw, configuration["params"], int(configuration["number"]), workspace,
                           workspace.root / "trials", _tracker(params), parent_run_id, study, None, corpus_dir)
    return json.dumps(record, default=str)


def select(params_json: str, space_json: str, study: str, parent_run_id: str, records: list[str],
           out: Path) -> str:
    """The best completed trial: its params file written to ``out`` and logged to the parent run, which is closed."""
    from types import SimpleNamespace

    from longdoc.tuning.study import write_best

    params = parse_params(params_json)
    tracker = _tracker(params)
    done = [json.loads(r) for r in records]
    complete = [r for r in done if r["state"] == "COMPLETE"]
    counts = {s: sum(1 for r in done if r["state"] == s) for s in {r["state"] for r in done}}
    client = tracker.client
    client.log_metric(parent_run_id, "cache_hit_trials", sum(1 for r in done if r.get("hit_cache")))
    if not complete:
        client.set_terminated(parent_run_id, "FAILED")
        from longdoc.errors import LongdocError

        raise LongdocError(f"no trial of the sweep completed ({counts}); see the FAILED runs under {parent_run_id}")
    best = max(complete, key=lambda r: r["value"])
    space = parse_space(json.loads(space_json))
    write_best(json.loads(params_json), SimpleNamespace(number=best["number"], value=best["value"],
                                                        params=best["params"]), study, list(space.space), out)
    client.log_metric(parent_run_id, "best_val_macro_f1", best["value"])
    client.set_tag(parent_run_id, "best_trial", str(best["number"]))
    client.log_artifact(parent_run_id, str(out))
    client.set_terminated(parent_run_id, "FINISHED")
    return json.dumps({"best": best, "counts": counts}, default=str)

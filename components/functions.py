"""Component bodies. Keep them to wiring: parse params, call one stage, hand over outputs."""

from typing import List, NamedTuple  # noqa: UP035 (kfp reads List[...] in an artifact's annotation)

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def validate(corpus_path: str, params: str, corpus: Output[Dataset], report: Output[Markdown]) -> int:
    """Run the GX suite; on failure the report is written and the task fails, stopping the run."""
    import shutil
    from pathlib import Path

    from longdoc.config.params import parse_params
    from longdoc.stages import validate as run

    out = Path(corpus.path)
    try:
        summary = run(parse_params(params), corpus_path, out)
    finally:
        if (out / "validation.md").exists():
            shutil.copyfile(out / "validation.md", report.path)
    source = summary["data_source"]["reference"] if summary.get("data_source") else corpus_path
    print(f"corpus {source} (DVC md5 {summary['dvc_md5']}, data version {summary['data_version']})")
    return int(summary["documents"])


def chunk(params: str, corpus: Input[Dataset], chunks: Output[Dataset]) -> int:
    from pathlib import Path

    from longdoc.config.params import parse_params
    from longdoc.stages import chunk as run

    return int(run(parse_params(params), Path(corpus.path), Path(chunks.path))["chunks"])


def train_encoder(params: str, chunks: Input[Dataset], encoder: Output[Model]) -> str:
    """Stage 1: fine-tune the encoder once and cache its chunk vectors (a no-op with train.two_stage off)."""
    from pathlib import Path

    from longdoc.config.params import parse_params
    from longdoc.stages import train_encoder as run

    summary = run(parse_params(params), Path(chunks.path), Path(encoder.path), work_key=chunks.uri)
    return summary.get("skipped") or f"stage 1: {summary['steps']} steps, encoder {summary['start']}"


def train(params: str, variant: str, chunks: Input[Dataset], encoder: Input[Model], model: Output[Model]) -> float:
    from pathlib import Path

    from longdoc.config.params import parse_params
    from longdoc.stages import train as run

    summary = run(parse_params(params), variant, Path(chunks.path), Path(model.path), Path(encoder.path),
                  work_key=f"{chunks.uri} {encoder.uri}")
    model.metadata.update({"variant": variant, "device": summary["device"], "steps": summary["steps"]})
    return float(summary["best_val_macro_f1"])


def crossfit_plan(corpus: Input[Dataset]) -> list:
    """The fold tasks: one per fold and candidate family, or one no-op when the run is not cross-fitted."""
    from pathlib import Path

    from longdoc.stages.crossfit import plan

    return plan(Path(corpus.path))


def crossfit_fold(params: str, item: dict, corpus: Input[Dataset], chunks: Input[Dataset],
                  fold: Output[Dataset]) -> str:
    """One fold of one candidate family: trained without the fold, predicting it."""
    from pathlib import Path

    from longdoc.config.params import parse_params
    from longdoc.stages.crossfit import run_fold

    record = run_fold(parse_params(params), item, Path(corpus.path), Path(chunks.path), Path(fold.path))
    return record.get("skipped") or f"fold {record['fold']} {record['family']}: {len(record['predicted'])} predicted"


def crossfit_collect(params: str, corpus: Input[Dataset], folds: Input[List[Dataset]],  # noqa: UP006
                     oof: Output[Dataset]) -> int:
    """Every candidate scored over its out-of-fold predictions, after the leak audit; the documents decided on."""
    from pathlib import Path

    from longdoc.config.params import parse_params
    from longdoc.stages.crossfit import collect

    summary = collect(parse_params(params), Path(corpus.path), [Path(f.path) for f in folds], Path(oof.path))
    return int(summary["documents"])


def evaluate(params: str, corpus: Input[Dataset], model: Input[Model], oof: Input[Dataset], evaluation: Output[Dataset],
             metrics: Output[Metrics]) -> float:
    from pathlib import Path

    from longdoc.config.params import parse_params
    from longdoc.stages import evaluate as run

    scores = run(parse_params(params), Path(model.path) / "model", Path(corpus.path), Path(evaluation.path),
                 Path(oof.path))
    for key in ("normal_accuracy", "normal_macro_f1", "inverted_accuracy", "inverted_macro_f1",
                "inverted_gap_macro_f1"):
        metrics.log_metric(key, round(scores[key], 4))
    return float(scores["normal_macro_f1"])


def register(params: str, git_commit: str, pipeline_run_id: str, corpus: Input[Dataset], model: Input[Model],
             evaluation: Input[Dataset]) -> NamedTuple(
                 "Registered", [("version", str), ("run_id", str), ("model_name", str)]):
    """Register the variant as a candidate of its task; the gate decides after every candidate is in."""
    from collections import namedtuple
    from pathlib import Path

    from longdoc.config.params import parse_params
    from longdoc.stages import register as run

    reg = run(parse_params(params), Path(model.path), Path(evaluation.path), Path(corpus.path), git_commit,
              pipeline_run_id)
    print(f"registered {reg.model_name} v{reg.version} ({reg.variant})")
    return namedtuple("Registered", ["version", "run_id", "model_name"])(reg.version, reg.run_id, reg.model_name)


def baseline(params: str, git_commit: str, pipeline_run_id: str, corpus: Input[Dataset], oof: Input[Dataset],
             evaluation: Output[Dataset]) -> NamedTuple(
                 "Registered", [("version", str), ("run_id", str), ("model_name", str)]):
    """TF-IDF + logistic regression, evaluated like the variants and registered as a candidate."""
    from collections import namedtuple
    from pathlib import Path

    from longdoc.config.params import parse_params
    from longdoc.stages import baseline as run

    reg = run(parse_params(params), Path(corpus.path), Path(evaluation.path), git_commit, pipeline_run_id,
              Path(oof.path))
    print(f"registered {reg.model_name} v{reg.version} ({reg.variant})")
    return namedtuple("Registered", ["version", "run_id", "model_name"])(reg.version, reg.run_id, reg.model_name)


def gate(params: str, model_name: str, versions: list, baseline_version: str, corpus: Input[Dataset]) -> str:
    """One promotion decision per run; returns "package" when a new champion was promoted, or when the
    champion has no Bento (its packaging failed in an earlier run).

    A single (unnamed) output on purpose: kfp's local runner resolves ``dsl.If`` conditions only on
    outputs called "Output".
    """
    from pathlib import Path

    from longdoc.config.params import parse_params
    from longdoc.stages import champion_without_bento
    from longdoc.stages import gate as run

    cfg = parse_params(params)
    decision = run(cfg, model_name, [*versions, baseline_version], Path(corpus.path))
    verdict = f"v{decision.version} promoted" if decision.promoted else "no new champion"
    print(f"gate: {verdict}: {decision.reason}")
    if decision.promoted:
        return "package"
    missing = champion_without_bento(cfg, model_name)  # a champion whose packaging failed in an earlier run
    if missing:
        print(f"gate: packaging the champion anyway: {missing}")
    return "package" if missing else "keep"


def compare(params: str, model_name: str, run_ids: list, baseline_run_id: str, comparison: Output[Dataset],
            table: Output[Markdown]) -> str:
    """The comparison table across variants and the baseline, with the gate's verdicts; the champion."""
    import shutil
    from pathlib import Path

    from longdoc.config.params import parse_params
    from longdoc.stages import compare as run

    champion = run(parse_params(params), [*run_ids, baseline_run_id], Path(comparison.path), model_name)
    shutil.copyfile(Path(comparison.path) / "comparison.md", table.path)
    return champion


def package(params: str, model_name: str, corpus: Input[Dataset] = None) -> NamedTuple(
        "Packaged", [("bento_tag", str), ("model_version", str)]):
    """Package the task's champion (the pipeline runs this only when the gate promoted a new one). A faster
    runtime is checked on the validated corpus's validation and test documents (without one: the configured
    corpus, validated in the step)."""
    from collections import namedtuple
    from pathlib import Path

    from longdoc.config.params import parse_params
    from longdoc.stages import package as run

    packaged = run(parse_params(params), model_name, corpus_dir=Path(corpus.path) if corpus else None)
    print(f"runtime: {packaged.runtime['runtime']} {packaged.runtime['precision']}: {packaged.runtime['reason']}")
    return namedtuple("Packaged", ["bento_tag", "model_version"])(packaged.bento_tag, packaged.model_version)


# --- the hyperparameter sweep (pipelines/tune_pipeline.py); logic in longdoc.tuning.sweep ---


def tune_open(params: str, space: str, n_trials: int, study: str) -> NamedTuple(
        "Opened", [("parent_run_id", str), ("trials", list)]):
    """The sweep's MLflow parent run and its sampled configurations (one per trial task)."""
    from collections import namedtuple

    from longdoc.tuning.sweep import open_sweep

    parent_run_id, trials = open_sweep(params, space, n_trials, study)
    return namedtuple("Opened", ["parent_run_id", "trials"])(parent_run_id, trials)


def tune_prepare(params: str, study: str, corpus: Input[Dataset]) -> str:
    """Chunks and stage-1 encoder of the base params on the shared volume, once, before the trials."""
    from pathlib import Path

    from longdoc.tuning.sweep import prepare

    return prepare(params, study, Path(corpus.path))


def tune_trial(params: str, study: str, trial: dict, parent_run_id: str, corpus: Input[Dataset]) -> str:
    """One trial (a nested MLflow run); a crashed trial is recorded, so the sweep goes on."""
    from pathlib import Path

    from longdoc.tuning.sweep import trial as run_trial

    return run_trial(params, study, trial, parent_run_id, Path(corpus.path))


def tune_select(params: str, space: str, study: str, parent_run_id: str, records: list,
                best_params: Output[Artifact]) -> str:
    """The best trial's params file (an artifact, and logged to the parent run)."""
    from pathlib import Path

    from longdoc.tuning.sweep import select

    return select(params, space, study, parent_run_id, records, Path(best_params.path))


def monitor(params: str, hours: float, retrain_host: str, report: Output[HTML]) -> bool:
    """Judge the served champion's last ``hours`` of records; on drift, with ``retrain_host``, submit the training
    pipeline (its versions carry the report's run as ``triggered_by``). Returns whether it drifted."""
    import tempfile
    from datetime import datetime, timedelta
    from pathlib import Path

    from longdoc.config.params import parse_params
    from longdoc.stages import monitor as run
    from longdoc.stages import retrain

    cfg = parse_params(params)
    out = Path(tempfile.mkdtemp())
    outcome = run(cfg, out, since=datetime.now() - timedelta(hours=hours))
    if outcome.result is None:
        Path(report.path).write_text(f"<p>{outcome.reason}</p>")
        print(outcome.reason)
        return False
    Path(report.path).write_text((out / "drift_report.html").read_text())
    print(f"drift: {outcome.drifted} ({', '.join(outcome.result.drifted_features)}); MLflow run {outcome.run_id}")
    if outcome.drifted and retrain_host:
        params_file = out / "params.json"  # JSON is YAML: the CLI reads it as a params file
        params_file.write_text(params)
        retrain(cfg, params_file, [], outcome.run_id, retrain_host, cwd=Path(cfg.pipeline.cluster.workdir))
    return outcome.drifted

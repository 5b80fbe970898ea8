"""The pipeline's stages as plain functions over folders.

The CLI, the DVC stages and the kfp components all call these, so a stage behaves the same whether
``dvc repro``, ``longdoc run`` (kfp local) or a Kubeflow cluster runs it. Each stage reads its inputs
from folders and writes its outputs into one folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from longdoc.config.params import Params, ddp_conflict
from longdoc.errors import LongdocError

CORPUS_FILE = "corpus.parquet"


def validate(params: Params, corpus_path: str | Path, out_dir: Path) -> dict:
    """Read, slice and split the corpus, apply the data-quality policy, write the kept corpus and the report.

    ``corpus_path`` is a path or a DVC reference (``dvc://<repo>?rev=<rev>#<path>``, see
    :mod:`longdoc.data.dvc_source`): a reference is pulled from the repository's DVC remote into
    ``out_dir`` first, so the CLI, ``dvc repro`` and every pipeline pod read the same bytes, and the
    summary records where they came from.

    The report (and the quarantine file, when documents were excluded) is written before the policy
    may stop the run, so a refused run leaves behind what the user must fix; no later stage runs.
    """
    from longdoc.data.dvc_source import materialise

    with materialise(corpus_path, out_dir) as source:
        summary = _validate_file(params, source.path, out_dir)
        summary.update({"dvc_md5": source.dvc_md5, "data_source": source.reference})
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _validate_file(params: Params, corpus_path: Path, out_dir: Path) -> dict:
    from longdoc.data.corpus import read_corpus
    from longdoc.data.splits import slice_and_split
    from longdoc.data.validation import PolicyError, apply_policy
    from longdoc.data.versioning import corpus_version, file_sha256

    frame = slice_and_split(read_corpus(corpus_path), params.data)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = apply_policy(frame, params.data)
    except PolicyError as err:
        quarantine_file = err.result.write(out_dir)
        where = f"report: {out_dir / 'validation.md'}"
        where += f", quarantined: {quarantine_file}" if quarantine_file else ""
        raise LongdocError(f"{err.summary} ({where})\n{err.table}") from None
    quarantine_file = result.write(out_dir)
    kept = result.kept
    kept.to_parquet(out_dir / CORPUS_FILE, index=False)
    return {"documents": len(kept), "corpus_sha256": file_sha256(corpus_path),
            "splits": kept["split"].value_counts().to_dict(), "labels": sorted(kept["label"].unique()),
            "quarantined": len(result.quarantined),
            "quarantine_file": str(quarantine_file) if quarantine_file else None,
            "data_version": corpus_version(kept)}


def read_validated(corpus_dir: Path) -> pd.DataFrame:
    path = corpus_dir / CORPUS_FILE
    if not path.is_file():
        raise LongdocError(f"no validated corpus at {path}; run the validate stage first")
    return pd.read_parquet(path)


def data_version(corpus_dir: Path) -> str:
    """The data version of a validated folder: what its summary records, else computed from its corpus."""
    summary = corpus_dir / "summary.json"
    recorded = json.loads(summary.read_text()).get("data_version") if summary.is_file() else None
    if recorded:
        return str(recorded)
    from longdoc.data.versioning import corpus_version

    return corpus_version(read_validated(corpus_dir))


def chunk(params: Params, corpus_dir: Path, out_dir: Path) -> dict:
    """Chunk the validated corpus; the stats carry its data version, which training fingerprints its checkpoints
    with (a checkpoint of other documents at the same path is never resumed)."""
    from longdoc.data.chunking import chunk_corpus
    from longdoc.data.versioning import corpus_version
    from longdoc.models.encoder import load_tokenizer

    corpus = read_validated(corpus_dir)
    stats = chunk_corpus(corpus, load_tokenizer(params.encoder.name_or_path), params.chunking, out_dir)
    stats["data_version"] = corpus_version(corpus)
    (out_dir / "chunk_stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def train_encoder(params: Params, chunk_dir: Path, out_dir: Path, work_key: str | None = None) -> dict:
    """Stage 1 of two-stage training: the encoder fine-tuned once, its chunk vectors cached.

    With ``train.two_stage`` off it only records that, so the pipeline and dvc.yaml keep one shape.
    ``work_key``: see :func:`on_work_volume`.
    """
    if not params.train.two_stage:
        out_dir.mkdir(parents=True, exist_ok=True)
        summary = {"stage": 1, "skipped": "train.two_stage is false: every variant starts from the pretrained encoder"}
        (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
        return summary
    return on_work_volume(params, "stage1", work_key, out_dir,
                          lambda folder: _train_encoder_in(params, chunk_dir, folder))


def _train_encoder_in(params: Params, chunk_dir: Path, folder: Path) -> dict:
    nproc = params.train.for_stage1().nproc_per_node
    if _launch(params, nproc, ["train-encoder", "--chunks", str(chunk_dir), "--out", str(folder)]):
        return _read_summary(folder)
    from longdoc.training.loop import train_encoder as run_stage1

    return run_stage1(chunk_dir, params, folder)


def work_folder(params: Params, name: str, work_key: str | None) -> Path | None:
    """The training folder on ``pipeline.work_dir`` (a cluster's PVC), or None to train into the output.

    Named by the task's inputs (``work_key``: its input artifacts' URIs) and params, so a retried pod
    finds its own checkpoints and no other run's.
    """
    import hashlib

    if not params.pipeline.work_dir or work_key is None:
        return None
    digest = hashlib.sha256(json.dumps([name, work_key, params.model_dump(mode="json")]).encode()).hexdigest()
    return Path(params.pipeline.work_dir) / f"{name}-{digest[:16]}"


def on_work_volume(params: Params, name: str, work_key: str | None, out_dir: Path, run) -> dict:
    """Run ``run(folder)`` in :func:`work_folder` and hand everything but the checkpoints over to ``out_dir``.

    On a cluster the output folder is the pod's own disk until the task ends, so a preempted pod
    would lose its checkpoints; on the PVC they survive for the retry. The folder is removed once
    handed over, so the volume holds only unfinished trainings.
    """
    import shutil

    folder = work_folder(params, name, work_key)
    if folder is None:
        return run(out_dir)
    summary = run(folder)
    shutil.copytree(folder, out_dir, ignore=shutil.ignore_patterns("checkpoints"), dirs_exist_ok=True)
    shutil.rmtree(folder)
    return summary


def encoder_start(params: Params, variant: str, encoder_dir: Path | None) -> Path | None:
    """Where ``variant`` starts: the stage-1 folder with two-stage training (unless the variant is end-to-end)."""
    if not params.train.two_stage or params.train.for_variant(variant).end_to_end:
        return None
    if encoder_dir is None or not (encoder_dir / "model").is_dir():
        raise LongdocError(f"train.two_stage is on, but there is no stage-1 encoder in {encoder_dir}: run "
                           "`longdoc train-encoder` first, or set train.two_stage=false")
    return encoder_dir


def train(params: Params, variant: str, chunk_dir: Path, out_dir: Path, encoder_dir: Path | None = None,
          work_key: str | None = None, on_validation=None) -> dict:
    """Train one variant into ``out_dir``: through the work volume on a cluster (:func:`on_work_volume`), in
    ``train.nproc_per_node`` processes (:func:`_launch`). ``on_validation``: see
    :data:`longdoc.training.loop.OnValidation` (this process only: refused with several processes)."""
    return on_work_volume(params, variant, work_key, out_dir,
                          lambda folder: _train_in(params, variant, chunk_dir, folder, encoder_dir, on_validation))


def _train_in(params: Params, variant: str, chunk_dir: Path, folder: Path, encoder_dir: Path | None,
              on_validation=None) -> dict:
    encoder_from = encoder_start(params, variant, encoder_dir)
    command = ["train", "--variant", variant, "--chunks", str(chunk_dir), "--out", str(folder)]
    if encoder_dir is not None:
        command += ["--encoder-from", str(encoder_dir)]
    nproc = params.train.for_variant(variant).nproc_per_node
    if why := ddp_conflict(variant, nproc):  # the params check train.variants; `train --variant` may name another
        raise LongdocError(why)
    if on_validation is not None and nproc > 1:
        raise LongdocError(f"{variant}: train.nproc_per_node={nproc} trains in other processes, which cannot report "
                           "each validation back to this one (pruning); use 1 process per trial")
    if _launch(params, nproc, command):
        return _read_summary(folder)
    from longdoc.training.loop import train as run_training

    return run_training(chunk_dir, params, variant, folder, encoder_from=encoder_from, on_validation=on_validation)


def _launch(params: Params, nproc_per_node: int, command: list[str]) -> bool:
    """With ``nproc_per_node`` > 1 outside torchrun, run ``longdoc COMMAND`` under torchrun and return True
    when it is done; otherwise False, and this process trains (alone, or as one rank of a torchrun it is in).

    Here rather than in the CLI, so the CLI, ``dvc repro`` and the kfp component all get it.
    """
    from longdoc.training.distributed import needs_launch, relaunch

    if not needs_launch(nproc_per_node):
        return False
    relaunch(params, nproc_per_node, command)
    return True


def _read_summary(out_dir: Path) -> dict:
    """The training summary rank 0 wrote: what a stage run under torchrun returns to its caller."""
    return json.loads((out_dir / "train_summary.json").read_text())


def evaluate(params: Params, model_dir: Path, corpus_dir: Path, out_dir: Path) -> dict:
    from longdoc.evaluation.evaluate import evaluate_model

    return evaluate_model(model_dir, read_validated(corpus_dir), params, out_dir)


def _corpus_summary(corpus_dir: Path) -> dict:
    """What the validate stage recorded about the corpus it kept (data version, DVC md5, quarantine)."""
    return json.loads((corpus_dir / "summary.json").read_text())


def _lineage(corpus_dir: Path, git_commit: str, pipeline_run_id: str):
    from longdoc.registry.register import Lineage

    summary = _corpus_summary(corpus_dir)
    source = summary.get("data_source") or {}
    return Lineage(summary["data_version"], summary["corpus_sha256"], git_commit, pipeline_run_id,
                   summary["dvc_md5"], int(summary["quarantined"]), source.get("reference", ""))


def _server(params: Params, doing: str):
    """A failing tracking server ends the step with one error naming it (see tracking.server_errors)."""
    from longdoc.registry.tracking import resolve_tracking_uri, server_errors

    return server_errors(resolve_tracking_uri(params.registry.tracking_uri), doing)


def register(params: Params, train_dir: Path, eval_dir: Path, corpus_dir: Path, git_commit: str,
             pipeline_run_id: str = "local"):
    """Register a trained variant as a candidate of its task (the gate runs later, once per run)."""
    from longdoc.registry.register import register as run_register

    summary = json.loads((train_dir / "train_summary.json").read_text())
    with _server(params, f"registering {summary['variant']}"):
        return run_register(params, train_dir / "model", eval_dir, summary["variant"], summary["labels"],
                            _lineage(corpus_dir, git_commit, pipeline_run_id), train_dir=train_dir)


def baseline(params: Params, corpus_dir: Path, out_dir: Path, git_commit: str, pipeline_run_id: str = "local"):
    """Fit, calibrate and evaluate the TF-IDF baseline and register it as a candidate like any variant."""
    from longdoc.evaluation.evaluate import evaluate as run_evaluate
    from longdoc.models.baseline import BASELINE_NAME, BaselinePredictor
    from longdoc.registry.register import register as run_register

    corpus = read_validated(corpus_dir)
    train = corpus[corpus["split"] == "train"]
    model = BaselinePredictor.fit(train["text"].tolist(), train["label"].tolist(), params.data.seed)
    model.save(out_dir / "model")
    run_evaluate(model, BASELINE_NAME, corpus, params, out_dir / "evaluation")  # calibrated like every variant
    labels = sorted(train["label"].unique())
    with _server(params, f"registering {BASELINE_NAME}"):
        return run_register(params, out_dir / "model", out_dir / "evaluation", BASELINE_NAME, labels,
                            _lineage(corpus_dir, git_commit, pipeline_run_id), kind="baseline")


def gate(params: Params, model_name: str, versions: list[str], corpus_dir: Path):
    """One decision for the run's candidates of one task: at most one becomes champion."""
    from longdoc.registry.promotion import decide
    from longdoc.registry.tracking import resolve_tracking_uri, use_tracking

    client = use_tracking(resolve_tracking_uri(params.registry.tracking_uri)).MlflowClient()
    current = _corpus_summary(corpus_dir)["data_version"]
    with _server(params, f"gating {model_name}"):
        return decide(client, model_name, versions, params.registry.champion_alias, current,
                      params.registry.gate, read_validated(corpus_dir))


def current_data(params: Params, out_dir: Path) -> tuple[str, pd.DataFrame]:
    """The data version of the configured corpus as a run would validate it now, and that corpus.

    What manual gate and promote commands compare a candidate's data version with: a corpus edited
    without ``dvc add``, read from another path or sliced differently gives another version.
    """
    return validate(params, params.data.corpus, out_dir)["data_version"], read_validated(out_dir)


def compare(params: Params, run_ids: list[str], out_dir: Path, model_name: str) -> str:
    """The comparison table, logged as a 'comparison' run; returns the task's champion version ("" when none)."""
    from longdoc.evaluation.comparison import COMPARISON_FILES
    from longdoc.evaluation.comparison import compare as run_compare
    from longdoc.registry.promotion import current_champion
    from longdoc.registry.tracking import resolve_tracking_uri, use_tracking

    mlflow = use_tracking(resolve_tracking_uri(params.registry.tracking_uri))
    client = mlflow.MlflowClient()
    with _server(params, "comparing the run's candidates"):
        frame = run_compare(client, run_ids, out_dir)
        experiment = mlflow.get_experiment_by_name(params.registry.experiment)
        with mlflow.start_run(experiment_id=experiment.experiment_id, run_name="comparison"):
            mlflow.set_tags({"kind": "comparison", "runs": ",".join(run_ids)})
            for name in COMPARISON_FILES:
                mlflow.log_artifact(str(out_dir / name))
        print(frame.drop(columns=["run_id"]).to_string(index=False))
        champion = current_champion(client, model_name, params.registry.champion_alias)
    return str(champion.version) if champion is not None else ""


def package(params: Params, model_name: str, version: str | None = None):
    from longdoc.registry.packaging import package as run_package

    with _server(params, f"packaging {model_name}"):
        return run_package(params, model_name, version)


def champion_without_bento(params: Params, model_name: str) -> str | None:
    """Why a run must package the champion it did not promote (see packaging.champion_without_bento)."""
    from longdoc.registry.packaging import champion_without_bento as missing

    with _server(params, f"looking for the Bento of {model_name}'s champion"):
        return missing(params, model_name)

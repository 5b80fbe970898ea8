"""The training stages: stage 1 (the encoder, with two-stage training) and one variant, on this
machine, under torchrun, or through a cluster's work volume that a retried pod resumes from.
"""

from __future__ import annotations

import json
from pathlib import Path

from longdoc.config.params import Params, ddp_conflict
from longdoc.errors import LongdocError


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

"""The pipeline's stages as plain functions over folders.

The CLI, the DVC stages and the kfp components all call these, so a stage behaves the same whether
``dvc repro``, ``longdoc run`` (kfp local) or a Kubeflow cluster runs it. Each stage reads its inputs
from folders and writes its outputs into one folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from longdoc.config import Params
from longdoc.errors import LongdocError

CORPUS_FILE = "corpus.parquet"


def validate(params: Params, corpus_path: str | Path, out_dir: Path) -> dict:
    """Read, slice and split the corpus, run the GX suite, write the validated corpus and the report.

    A failing suite writes its report and raises, so no later stage runs on bad data.
    """
    from longdoc.data.corpus import read_corpus
    from longdoc.data.splits import assign_splits, sample_per_label
    from longdoc.data.versioning import file_sha256
    from longdoc.validation import validate_corpus

    frame = read_corpus(corpus_path)
    frame = assign_splits(sample_per_label(frame, params.data.sample_per_label, params.data.seed), params.data)
    report = validate_corpus(frame, params.data)
    out_dir.mkdir(parents=True, exist_ok=True)
    report.write(out_dir)
    if not report.success:
        raise LongdocError(f"corpus validation failed (report: {out_dir / 'validation.md'})\n"
                           + report.to_markdown())
    frame.to_parquet(out_dir / CORPUS_FILE, index=False)
    summary = {"documents": len(frame), "corpus_sha256": file_sha256(corpus_path),
               "splits": frame["split"].value_counts().to_dict(), "labels": sorted(frame["label"].unique())}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def read_validated(corpus_dir: Path) -> pd.DataFrame:
    path = corpus_dir / CORPUS_FILE
    if not path.is_file():
        raise LongdocError(f"no validated corpus at {path}; run the validate stage first")
    return pd.read_parquet(path)


def chunk(params: Params, corpus_dir: Path, out_dir: Path) -> dict:
    from longdoc.chunking import chunk_corpus
    from longdoc.models.encoder import load_tokenizer

    stats = chunk_corpus(read_validated(corpus_dir), load_tokenizer(params.encoder.name_or_path),
                         params.chunking, out_dir)
    (out_dir / "chunk_stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def train(params: Params, variant: str, chunk_dir: Path, out_dir: Path) -> dict:
    from longdoc.training import train as run_training

    return run_training(chunk_dir, params, variant, out_dir)


def evaluate(params: Params, model_dir: Path, corpus_dir: Path, out_dir: Path) -> dict:
    from longdoc.evaluation import evaluate_model

    return evaluate_model(model_dir, read_validated(corpus_dir), params, out_dir)


def register(params: Params, train_dir: Path, eval_dir: Path, corpus_dir: Path, data_version: str,
             git_commit: str, pipeline_run_id: str = "local"):
    from longdoc.registry import Lineage
    from longdoc.registry import register as run_register

    summary = json.loads((corpus_dir / "summary.json").read_text())
    lineage = Lineage(data_version, summary["corpus_sha256"], git_commit, pipeline_run_id)
    return run_register(params, train_dir / "model", eval_dir, train_dir, lineage)


def baseline(params: Params, corpus_dir: Path, out_dir: Path, data_version: str, git_commit: str,
             pipeline_run_id: str = "local") -> str:
    """Fit and evaluate the TF-IDF baseline, log it to MLflow; returns the run id."""
    from longdoc.baseline import train_and_evaluate
    from longdoc.registry import Lineage, log_baseline

    train_and_evaluate(read_validated(corpus_dir), params, out_dir)
    summary = json.loads((corpus_dir / "summary.json").read_text())
    return log_baseline(params, out_dir, Lineage(data_version, summary["corpus_sha256"], git_commit,
                                                  pipeline_run_id))


def compare(params: Params, run_ids: list[str], out_dir: Path) -> str:
    """The comparison table; returns the current champion's version."""
    from longdoc.comparison import compare as run_compare
    from longdoc.promotion import current_champion
    from longdoc.tracking import use_tracking

    frame = run_compare(params, run_ids, out_dir)
    print(frame.drop(columns=["run_id"]).to_string(index=False))
    client = use_tracking(params.registry.tracking_uri).MlflowClient()
    champion = current_champion(client, params.registry.model_name, params.registry.champion_alias)
    return str(champion.version) if champion is not None else ""


def package(params: Params, version: str | None = None):
    from longdoc.packaging import package as run_package

    return run_package(params, version)

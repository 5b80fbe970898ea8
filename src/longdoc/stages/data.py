"""The data stages: validate the corpus (from a path or a ``dvc://`` reference) and chunk it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from longdoc.config.params import Params
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
    kept, folds = _deal_folds(params, result.kept)
    kept.to_parquet(out_dir / CORPUS_FILE, index=False)
    return {"documents": len(kept), "corpus_sha256": file_sha256(corpus_path),
            "splits": kept["split"].value_counts().to_dict(), "labels": sorted(kept["label"].unique()),
            "quarantined": len(result.quarantined),
            "quarantine_file": str(quarantine_file) if quarantine_file else None,
            "data_version": corpus_version(kept), **folds}


def _deal_folds(params: Params, kept: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Decide held-out or cross-fitted (``evaluate.folds``) on the kept documents; cross-fitted, the corpus
    gets its fold column and its test split trains the refit (:mod:`longdoc.data.folds`)."""
    from longdoc.data.folds import HELD_OUT, refit_splits
    from longdoc.data.splits import sample_per_label
    from longdoc.evaluation.resolution import resolve_folds

    held_out = len(sample_per_label(kept[kept["split"] == "test"], params.evaluate.docs_per_label, params.data.seed))
    k, why = resolve_folds(params.evaluate.folds, held_out, params.evaluate.wanted_resolution)
    record = {"folds": k, "folds_reason": why, "held_out_test_docs": held_out}
    if k == 0:
        return kept.assign(fold=HELD_OUT), record
    smallest = kept["label"].value_counts().min()
    if smallest < 2:
        raise LongdocError(f"evaluate.folds: a label has {smallest} document: cross-fitting needs at least 2 per "
                           "label (every fold must train on every label); add documents or set evaluate.folds=0")
    return refit_splits(kept, k, params.data.seed), record


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


def current_data(params: Params, out_dir: Path) -> tuple[str, pd.DataFrame]:
    """The data version of the configured corpus as a run would validate it now, and that corpus.

    What manual gate and promote commands compare a candidate's data version with: a corpus edited
    without ``dvc add``, read from another path or sliced differently gives another version.
    """
    return validate(params, params.data.corpus, out_dir)["data_version"], read_validated(out_dir)

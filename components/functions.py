"""Component bodies. Keep them to wiring: parse params, call one stage, hand over outputs."""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output


def validate(corpus_path: str, params: dict, corpus: Output[Dataset], report: Output[Markdown]) -> int:
    """Run the GX suite; on failure the report is written and the task fails, stopping the run."""
    import shutil
    from pathlib import Path

    from longdoc.config import parse_params
    from longdoc.stages import validate as run

    out = Path(corpus.path)
    try:
        summary = run(parse_params(params), corpus_path, out)
    finally:
        if (out / "validation.md").exists():
            shutil.copyfile(out / "validation.md", report.path)
    return int(summary["documents"])


def chunk(params: dict, corpus: Input[Dataset], chunks: Output[Dataset]) -> int:
    from pathlib import Path

    from longdoc.config import parse_params
    from longdoc.stages import chunk as run

    return int(run(parse_params(params), Path(corpus.path), Path(chunks.path))["chunks"])


def train(params: dict, variant: str, chunks: Input[Dataset], model: Output[Model]) -> float:
    from pathlib import Path

    from longdoc.config import parse_params
    from longdoc.stages import train as run

    summary = run(parse_params(params), variant, Path(chunks.path), Path(model.path))
    model.metadata.update({"variant": variant, "device": summary["device"], "steps": summary["steps"]})
    return float(summary["best_val_macro_f1"])


def evaluate(params: dict, corpus: Input[Dataset], model: Input[Model], evaluation: Output[Dataset],
             metrics: Output[Metrics]) -> float:
    from pathlib import Path

    from longdoc.config import parse_params
    from longdoc.stages import evaluate as run

    scores = run(parse_params(params), Path(model.path) / "model", Path(corpus.path), Path(evaluation.path))
    for key in ("normal_accuracy", "normal_macro_f1", "inverted_accuracy", "inverted_macro_f1",
                "inverted_gap_macro_f1"):
        metrics.log_metric(key, round(scores[key], 4))
    return float(scores["normal_macro_f1"])


def register(params: dict, data_version: str, git_commit: str, pipeline_run_id: str, corpus: Input[Dataset],
             model: Input[Model], evaluation: Input[Dataset]) -> NamedTuple(
                 "Registered", [("version", str), ("run_id", str), ("promoted", bool), ("reason", str)]):
    from collections import namedtuple
    from pathlib import Path

    from longdoc.config import parse_params
    from longdoc.stages import register as run

    reg = run(parse_params(params), Path(model.path), Path(evaluation.path), Path(corpus.path), data_version,
              git_commit, pipeline_run_id)
    print(f"version {reg.version}: {'promoted' if reg.promoted else 'not promoted'}: {reg.reason}")
    out = namedtuple("Registered", ["version", "run_id", "promoted", "reason"])
    return out(reg.version, reg.run_id, reg.promoted, reg.reason)


def baseline(params: dict, data_version: str, git_commit: str, pipeline_run_id: str, corpus: Input[Dataset],
             evaluation: Output[Dataset]) -> str:
    """TF-IDF + logistic regression, evaluated like the variants and logged as its own MLflow run."""
    from pathlib import Path

    from longdoc.config import parse_params
    from longdoc.stages import baseline as run

    return run(parse_params(params), Path(corpus.path), Path(evaluation.path), data_version, git_commit,
               pipeline_run_id)


def compare(params: dict, run_ids: list, baseline_run_id: str, promoted: list, comparison: Output[Dataset],
            table: Output[Markdown]) -> str:
    """The comparison table across variants and the baseline; returns "package" if the gate promoted one.

    A single (unnamed) output on purpose: kfp's local runner resolves ``dsl.If`` conditions only on
    outputs called "Output".
    """
    import shutil
    from pathlib import Path

    from longdoc.config import parse_params
    from longdoc.stages import compare as run

    cfg = parse_params(params)
    champion = run(cfg, [*run_ids, baseline_run_id], Path(comparison.path))
    shutil.copyfile(Path(comparison.path) / "comparison.md", table.path)
    print(f"gate: {sum(bool(p) for p in promoted)} of {len(promoted)} variants promoted; champion v{champion}")
    return "package" if any(promoted) else "keep"


def package(params: dict) -> NamedTuple("Packaged", [("bento_tag", str), ("model_version", str)]):
    """Package the champion (the pipeline runs this only when the gate promoted a new one)."""
    from collections import namedtuple

    from longdoc.config import parse_params
    from longdoc.stages import package as run

    packaged = run(parse_params(params))
    return namedtuple("Packaged", ["bento_tag", "model_version"])(packaged.bento_tag, packaged.model_version)

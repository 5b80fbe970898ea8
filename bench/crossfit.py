"""A user's small corpus, start to finish with shipped settings: what cross-fitting costs and what it decides.

    python -m bench.crossfit                 # ~180 documents, 2 labels, one line each, a bad row (~30-45 min)
    python -m bench.crossfit --per-label 20  # a quicker look

The corpus is built from the demo as a new user's would look: the BBC topics relabelled into two
classes, every text joined into one line (a transcript), and one document broken (a control
character), imported with ``longdoc data import`` and run with ``longdoc run`` in a fresh project
folder (its own MLflow store and Bento home). With ``evaluate.folds: auto`` the run cross-fits, since
its held-out test split is a few dozen documents. Writes bench/results/crossfit_small_corpus.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common

ROOT = Path(__file__).resolve().parents[1]
HARD = ("business", "politics")


def build_corpus(per_label: int, out: Path) -> dict:
    """The demo relabelled (hard vs soft news), ``per_label`` of each, one line per text, one row broken."""
    from longdoc.data.corpus import read_corpus, write_jsonl
    from longdoc.data.demo import write_demo
    from longdoc.data.splits import sample_per_label

    demo = out.parent / "demo.jsonl"
    write_demo(demo)
    frame = read_corpus(demo)
    frame["label"] = frame["label"].map(lambda x: "hard_news" if x in HARD else "soft_news")
    frame = sample_per_label(frame, per_label, 13)
    frame["text"] = frame["text"].map(lambda t: " ".join(t.split()))
    broken = str(frame["id"].iloc[len(frame) // 2])
    frame.loc[frame["id"] == broken, "text"] += " a bell \x07 rang"
    write_jsonl(frame, out)
    return {"documents": len(frame), "labels": sorted(frame["label"].unique()), "broken": broken}


def _project(folder: Path) -> None:
    """A project folder a user would run from: the params file and the pipeline, components and service code."""
    shutil.copyfile(ROOT / "params.yaml", folder / "params.yaml")
    for name in ("pipelines", "components", "serving"):
        (folder / name).symlink_to(ROOT / name)


def run(per_label: int, keep: Path | None) -> dict:
    folder = Path(keep or tempfile.mkdtemp(prefix="longdoc-crossfit-"))
    folder.mkdir(parents=True, exist_ok=True)
    _project(folder)
    env = {**os.environ, "BENTOML_HOME": str(folder / "bentoml"), "COLUMNS": "200"}
    longdoc = str(Path(sys.executable).with_name("longdoc"))
    corpus = build_corpus(per_label, folder / "theirs.jsonl")
    subprocess.run([longdoc, "data", "import", "theirs.jsonl", "--out", "data/corpus.jsonl", "--no-dvc"],
                   cwd=folder, env=env, check=True)
    started = time.perf_counter()
    done = subprocess.run([longdoc, "run"], cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    (folder / "run.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"longdoc run failed ({done.returncode}); log: {folder / 'run.log'}\n{done.stderr[-3000:]}")
    return {"corpus": corpus, "run_seconds": round(seconds, 1), "summary": _summary_lines(done.stdout),
            "candidates": _candidates(folder), "folder": str(folder)}


def _summary_lines(stdout: str) -> dict[str, str]:
    keys = ("validation", "decision", "resolves", "champion", "baseline wins")
    lines = {}
    for line in stdout.splitlines():
        match = re.match(r"^(\w[\w ]*?)\s{2,}(.*)$", line)
        if match and match.group(1) in keys:
            lines[match.group(1)] = match.group(2).strip()
    return lines


def _candidates(folder: Path) -> list[dict]:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlruns.db'}")
    out = []
    for version in client.search_model_versions():
        metrics = client.get_run(version.run_id).data.metrics
        out.append({"variant": version.tags.get("variant"), "version": version.version,
                    "evaluation": version.tags.get("evaluation"), "folds": version.tags.get("folds"),
                    "decision_docs": version.tags.get("decision_docs"), "gate": version.tags.get("gate"),
                    **{k: round(metrics[k], 4) for k in ("normal_macro_f1", "normal_macro_f1_lo", "normal_macro_f1_hi",
                                                         "normal_accuracy", "folds_train_seconds",
                                                         "folds_stage1_train_seconds") if k in metrics}})
    return sorted(out, key=lambda c: -c.get("normal_macro_f1", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-label", type=int, default=90)
    parser.add_argument("--keep", type=Path, default=None, help="Run in this folder (kept) instead of a temporary one.")
    args = parser.parse_args()
    result = run(args.per_label, args.keep)
    common.write("crossfit_small_corpus", result)
    print(json.dumps({k: result[k] for k in ("run_seconds", "summary")}, indent=2))


if __name__ == "__main__":
    main()

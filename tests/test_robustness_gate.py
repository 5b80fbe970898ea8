"""The robustness gate with the shipped rules, end to end: a model that only reads a document's opening
is trained for real on a corpus whose opening is its only clue, and the gate refuses it for what it
loses on inverted documents (nothing here lowers `registry.gate`)."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from longdoc.config.params import load_params
from longdoc.registry.promotion import audit_trail
from tests.conftest import ROOT, cli, set_args

pytestmark = pytest.mark.slow

TOPICS = ["business", "sports"]


def lead_only_corpus(path: Path, per_label: int = 48) -> Path:
    """Each document: a BBC business or sports article's title and lead, then six paragraphs drawn at random
    from politics, tech and entertainment articles, the same pool for both labels. Only the opening says
    the label; inverted (paragraphs reversed) the opening comes last."""
    from longdoc.data.demo import load_bbc
    from longdoc.data.splits import sample_per_label

    frame = load_bbc()[0]
    filler = [p for text in frame[~frame["label"].isin(TOPICS)]["text"] for p in text.split("\n\n")[2:]
              if len(p) > 120]
    rng = random.Random(0)
    rows = []
    for row in sample_per_label(frame[frame["label"].isin(TOPICS)], per_label, 13).itertuples():
        title, lead = row.text.split("\n\n")[:2]
        rows.append({"id": row.id, "label": row.label,
                     "text": "\n\n".join([f"{title}. {lead}", *rng.sample(filler, 6)])})
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    return path


def test_a_model_that_loses_on_inverted_documents_is_refused_for_it(tmp_path):
    shipped = load_params(ROOT / "params.yaml").registry.gate
    corpus = lead_only_corpus(tmp_path / "corpus.jsonl")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}", "BENTOML_HOME": str(tmp_path / "bentoml")}
    overrides = {"data.corpus": str(corpus), "data.test_fraction": 0.25, "pipeline.pipeline_root": str(tmp_path / "k"),
                 "train.variants": ["head"], "train.overrides": {}, "train.max_steps": 30, "train.batch_size": 8,
                 "train.two_stage": False, "train.freeze_encoder": False, "train.docs_per_label": None,
                 "train.val_docs_per_label": None, "chunking.chunk_tokens": 64, "chunking.overlap": 8,
                 "chunking.sentence_slack": 16, "evaluate.docs_per_label": None, "evaluate.sweep_docs_per_label": 2}
    done = cli("run", *set_args(overrides), env=env)
    assert done.returncode in (0, 2), done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr

    import mlflow

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_URI"])
    head = next(v for v in client.search_model_versions("name='longdoc-business-sports'")
                if v.tags["variant"] == "head")
    tags = head.tags
    # it learned what the opening says: well above chance on documents in their own order ...
    assert tags["undertrained"] == "false" and float(tags["normal_macro_f1_lo"]) > 0.6, tags
    # ... and lost it when the opening came last, by more than the shipped rule allows at the lower bound
    assert float(tags["inverted_gap_macro_f1_lo"]) > shipped.max_inverted_gap
    assert tags["gate"].startswith("refused") and "inverted" in tags["gate"], tags["gate"]
    assert "champion" not in head.aliases
    row = next(line for line in done.stdout.splitlines() if line.lstrip("│┃ ").startswith("head "))
    assert "refused" in row, done.stdout  # the run's summary table says so too
    trail = audit_trail(client, "longdoc-business-sports")
    assert any(e["action"] == "refused" and e["version"] == str(head.version) and "inverted" in e["why"]
               for e in trail)

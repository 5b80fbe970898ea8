"""The reference a served model is watched against: its profile on the documents it was evaluated on (validation
and test), the label mix it was trained on, and whether those documents were unseen when it learned.

Written by the evaluation, logged with the registered version (a run artifact, and inside the MLflow model, so
every Bento carries its own), read back by ``longdoc monitor``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from longdoc.monitoring.profile import SKETCH_DIM, SKETCH_SEED, Observer, profile_frame

PROFILE_FILE = "reference_profile.parquet"
META_FILE = "reference_profile.json"
# tested only when the reference documents were unseen by the model: on its own training documents a model is
# surer, and its vectors of them closer together, than on any new document
IN_SAMPLE_SKIPS = ("confidence", "embedding sketch")


@dataclass
class ReferenceMeta:
    documents: int
    training_mix: dict[str, int]
    in_sample: bool  # the reference documents trained the model (a cross-fitted corpus's refit)
    sketch_dim: int = SKETCH_DIM
    sketch_seed: int = SKETCH_SEED


def write_reference(model: Observer, texts: list[str], training_labels: list[str], in_sample: bool, out_dir: Path,
                    batch_size: int = 8) -> pd.DataFrame:
    frame = profile_frame(model, texts, batch_size)
    mix = pd.Series(training_labels).value_counts().sort_index()
    meta = ReferenceMeta(len(frame), {str(k): int(v) for k, v in mix.items()}, in_sample)
    frame.to_parquet(out_dir / PROFILE_FILE, index=False)
    (out_dir / META_FILE).write_text(json.dumps(asdict(meta), indent=2))
    return frame


def read_reference(folder: Path) -> tuple[pd.DataFrame, ReferenceMeta]:
    return pd.read_parquet(folder / PROFILE_FILE), ReferenceMeta(**json.loads((folder / META_FILE).read_text()))

"""Which documents' labels a trained model learned from, recorded beside it: the evidence that a
cross-fitted prediction comes from a model that never saw that document's label.

A model learns from its training documents, from the validation documents its best checkpoint was
chosen on, and from everything the encoder it started from learned; a stage-2 head on a stage-1
encoder trained with all documents would leak them all. So the record carries the encoder's record
inside it, taken when the model was trained, and a model whose encoder left no record is not
trusted (:func:`learned_from` returns None).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

LABELLED_FILE = "labelled_ids.json"


def write_record(out_dir: Path, train_ids: Iterable[str], val_ids: Iterable[str], encoder_from: Path | None) -> dict:
    """``labelled_ids.json`` in ``out_dir``: train and validation ids, and the start's ids (None: pretrained)."""
    encoder = None
    if encoder_from is not None:
        start = learned_from(encoder_from)
        encoder = sorted(start) if start is not None else "unknown"
    record = {"train": sorted(map(str, train_ids)), "val": sorted(map(str, val_ids)), "encoder": encoder}
    (out_dir / LABELLED_FILE).write_text(json.dumps(record))
    return record


def learned_from(model_dir: Path) -> set[str] | None:
    """Every id whose label the model in ``model_dir`` (a training folder) learned from; None when unknown."""
    path = model_dir / LABELLED_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("encoder") == "unknown":
        return None
    return {*record["train"], *record["val"], *(record.get("encoder") or [])}

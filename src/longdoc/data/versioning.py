"""Data versions: the hash of the corpus a run actually used, and DVC's md5 beside it.

``data.dvc`` says what the repository tracks, not what a run read: a corpus read from another
path, a ``sample_per_label`` slice or an edit without ``dvc add`` all carry the same md5. So the
version recorded on every model and compared by the gate is :func:`corpus_version`, a hash of the
validated documents, labels and splits; the DVC md5 is recorded beside it when the corpus is the
tracked one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import yaml

UNTRACKED = "untracked"
VERSION_CHARS = 16


def corpus_version(frame: pd.DataFrame) -> str:
    """Hash of (id, label, split, text) over the rows sorted by id: the data a model learned from."""
    digest = hashlib.sha256()
    cols = [c for c in ("id", "label", "split", "text") if c in frame.columns]
    for row in frame.sort_values("id", kind="stable")[cols].itertuples(index=False):
        for value in row:
            encoded = str(value).encode()
            digest.update(len(encoded).to_bytes(8, "big") + encoded)
    return digest.hexdigest()[:VERSION_CHARS]


def dvc_data_version(dvc_file: str | Path = "data.dvc") -> str:
    """The md5 DVC recorded for the data folder, or ``untracked`` when there is no .dvc file."""
    path = Path(dvc_file)
    if not path.is_file():
        return UNTRACKED
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", UNTRACKED))


def tracked_dvc_version(corpus_path: str | Path, dvc_file: str | Path = "data.dvc") -> str:
    """DVC's md5 when ``corpus_path`` lies in the folder ``dvc_file`` tracks, else ``untracked``."""
    dvc_path = Path(dvc_file)
    if not dvc_path.is_file():
        return UNTRACKED
    outs = (yaml.safe_load(dvc_path.read_text()) or {}).get("outs") or [{}]
    tracked = (dvc_path.parent / str(outs[0].get("path", ""))).resolve()
    corpus = Path(corpus_path).resolve()
    inside = corpus == tracked or tracked in corpus.parents
    return str(outs[0].get("md5", UNTRACKED)) if inside else UNTRACKED


def file_sha256(path: str | Path) -> str:
    """Content hash of the corpus file(s) read, so lineage also holds for data outside DVC."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()

"""The data version recorded as lineage: the hash DVC stores in ``data.dvc``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

UNTRACKED = "untracked"


def dvc_data_version(dvc_file: str | Path = "data.dvc") -> str:
    """The md5 DVC recorded for the data folder, or ``untracked`` when there is no .dvc file."""
    path = Path(dvc_file)
    if not path.is_file():
        return UNTRACKED
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", UNTRACKED))


def file_sha256(path: str | Path) -> str:
    """Content hash of the corpus actually read, so lineage also holds for data outside DVC."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()

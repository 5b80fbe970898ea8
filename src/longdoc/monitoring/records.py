"""Reading what the Bento recorded: BentoML's monitoring files (one JSON object per line), for a time window.

The service writes two streams through ``bentoml.monitor``: ``longdoc_documents`` (one row per classified document,
:mod:`longdoc.monitoring.profile`'s columns plus the model and version) and ``longdoc_feedback`` (document id and
true label). Each lands under ``<log_path>/<stream>/data/data.<worker>.log``, rotated daily.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd

from longdoc.errors import LongdocError

DOCUMENTS = "longdoc_documents"
FEEDBACK = "longdoc_feedback"


def stream_files(root: Path, stream: str) -> list[Path]:
    """A JSONL file stands for itself; a folder is a monitoring log path."""
    if root.is_file():
        return [root]
    return sorted((root / stream / "data").glob("data.*.log*"))


def read_stream(root: Path, stream: str, since: datetime | None = None, until: datetime | None = None,
                model: str | None = None, version: str | None = None) -> pd.DataFrame:
    """The records of one stream within [since, until), oldest first; unreadable lines (a line cut by a full disk)
    are skipped, a missing folder is an error that names it."""
    if not root.exists():
        raise LongdocError(f"no monitoring records at {root} (serving.monitor.log_path, or --records)")
    found = []
    for path in stream_files(root, stream):
        for line in path.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    frame = pd.DataFrame(found)
    if frame.empty:
        return frame
    if stream == DOCUMENTS and root.is_file() and "chars" not in frame:
        raise LongdocError(f"{root} holds no document records (no 'chars' column)")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], format="ISO8601")
    keep = pd.Series(True, index=frame.index)
    if since is not None:
        keep &= frame["timestamp"] >= pd.Timestamp(since)
    if until is not None:
        keep &= frame["timestamp"] < pd.Timestamp(until)
    if model is not None and "model" in frame:
        keep &= frame["model"].astype(str) == model
    if version is not None and "version" in frame:
        keep &= frame["version"].astype(str) == version
    return frame[keep].sort_values("timestamp").reset_index(drop=True)

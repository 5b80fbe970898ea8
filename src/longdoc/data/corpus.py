"""The corpus format and its readers.

A corpus is a table of documents with ``id``, ``text`` and ``label`` (and optionally ``split``).
On disk it is JSONL, one document per line, UTF-8. A folder with one sub-folder per label holding
``*.txt`` files is accepted on import as well. Paragraphs are separated by blank lines; they are kept
as they are because the robustness views (inverted, shuffled) reorder them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from longdoc.errors import LongdocError

COLUMNS = ["id", "text", "label"]
SPLITS = ("train", "val", "test")


def read_jsonl(path: Path) -> pd.DataFrame:
    """Read a JSONL corpus, naming the first line that breaks the format."""
    rows = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise LongdocError(f"{path}:{lineno}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise LongdocError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise LongdocError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [c for c in COLUMNS if c not in row]
            if missing:
                raise LongdocError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
            rows.append(row)
    if not rows:
        raise LongdocError(f"{path}: the corpus is empty")
    frame = pd.DataFrame(rows)
    frame["id"] = frame["id"].astype(str)
    return frame


def read_folder(path: Path) -> pd.DataFrame:
    """Read ``<path>/<label>/*.txt``; ids are ``<label>/<file stem>``."""
    rows = []
    for label_dir in sorted(p for p in path.iterdir() if p.is_dir()):
        for file in sorted(label_dir.glob("*.txt")):
            try:
                text = file.read_bytes().decode("utf-8")
            except UnicodeDecodeError as err:
                raise LongdocError(f"{file}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
            rows.append({"id": f"{label_dir.name}/{file.stem}", "text": text, "label": label_dir.name})
    if not rows:
        raise LongdocError(f"{path}: no <label>/*.txt files found")
    return pd.DataFrame(rows)


def read_corpus(path: str | Path) -> pd.DataFrame:
    """Read a corpus from JSONL or a label folder tree."""
    path = Path(path)
    if not path.exists():
        raise LongdocError(f"corpus not found: {path}")
    frame = read_folder(path) if path.is_dir() else read_jsonl(path)
    if "split" in frame.columns:
        bad = sorted(set(frame["split"].dropna()) - set(SPLITS))
        if bad:
            raise LongdocError(f"{path}: unknown split value(s) {bad}; use {list(SPLITS)}")
    return frame


def write_jsonl(frame: pd.DataFrame, path: Path) -> None:
    """Write deterministically (fixed key order, sorted rows) so DVC sees the same bytes every time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = [c for c in [*COLUMNS, "split"] if c in frame.columns]
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as fh:
        for row in frame.sort_values("id", kind="stable")[keys].itertuples(index=False):
            fh.write(json.dumps(dict(zip(keys, row, strict=True)), ensure_ascii=False) + "\n")
    tmp.replace(path)


def paragraphs(text: str) -> list[str]:
    """A document's natural units: blocks separated by blank lines, else single lines."""
    blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n")]
    blocks = [b for b in blocks if b]
    if len(blocks) <= 1:
        blocks = [line.strip() for line in text.splitlines() if line.strip()]
    return blocks or [text]


def join_paragraphs(parts: Iterable[str]) -> str:
    return "\n\n".join(parts)


def text_fingerprint(text: str) -> str:
    """Hash of a text up to case and whitespace: two documents with the same one are duplicates."""
    return hashlib.sha1(" ".join(text.split()).lower().encode()).hexdigest()

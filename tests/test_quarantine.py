"""The data-quality policy end to end: the real `longdoc` CLI and the real GX suite on a 40-document
slice of the BBC demo with two broken documents (a control character, a text over data.max_chars)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from longdoc.config.params import DataParams
from longdoc.data.corpus import read_corpus, write_jsonl
from longdoc.data.splits import assign_splits, sample_per_label
from longdoc.data.validation import apply_policy
from tests.conftest import cli, set_args

WIDE = {"COLUMNS": "200"}  # rich wraps table cells at the terminal width


@pytest.fixture(scope="module")
def broken(tmp_path_factory, demo_corpus) -> dict:
    """The corpus path, the two broken ids and the --set arguments that make the long one too long."""
    frame = sample_per_label(read_corpus(demo_corpus), 8, 13)
    control_id, long_id = frame["id"].iloc[3], frame["id"].iloc[20]
    max_chars = int(frame["text"].str.len().max()) + 100
    frame.loc[frame["id"] == control_id, "text"] = frame.loc[frame["id"] == control_id, "text"] + "bell \x07 here"
    long_text = frame.loc[frame["id"] == long_id, "text"].iloc[0]
    frame.loc[frame["id"] == long_id, "text"] = "\n\n".join([long_text] * (max_chars // len(long_text) + 1))
    path = tmp_path_factory.mktemp("broken") / "corpus.jsonl"
    write_jsonl(frame, path)
    return {"path": path, "control": control_id, "long": long_id, "documents": len(frame),
            "args": set_args({"data.corpus": str(path), "data.max_chars": max_chars})}


def _validate(broken: dict, out: Path, **overrides) -> object:
    return cli("validate", *broken["args"], *set_args(overrides), "--out", str(out))


def test_quarantine_keeps_the_run_going(broken, tmp_path):
    assert broken["documents"] == 40
    done = _validate(broken, tmp_path, **{"data.max_invalid_fraction": 0.1})
    assert done.returncode == 0, done.stderr
    assert "38 documents, 2 quarantined" in done.stdout and "quarantine.jsonl" in done.stdout

    assert len(pd.read_parquet(tmp_path / "corpus.parquet")) == 38
    quarantined = {q["id"]: q for q in map(json.loads, (tmp_path / "quarantine.jsonl").read_text().splitlines())}
    assert set(quarantined) == {broken["control"], broken["long"]}
    assert quarantined[broken["control"]]["reasons"] == [
        "expect_column_values_to_not_match_regex(text): control character"]
    assert quarantined[broken["long"]]["reasons"][0].startswith(
        "expect_column_value_lengths_to_be_between(text): too long (")
    assert {"label", "split", "text"} <= set(quarantined[broken["long"]])

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["documents"] == 38 and summary["quarantined"] == 2
    assert summary["quarantine_file"] == str(tmp_path / "quarantine.jsonl")
    assert len(summary["data_version"]) == 16 and summary["dvc_md5"] == "untracked"
    assert "FAILED" in (tmp_path / "validation.md").read_text()  # the report is of the corpus as read


def test_fail_policy_fails_with_the_table(broken, tmp_path):
    done = _validate(broken, tmp_path, **{"data.on_invalid": "fail"})
    output = done.stdout + done.stderr
    assert done.returncode == 2
    assert "| expectation | column | check | result | unexpected | example ids |" in done.stderr
    assert "expect_column_values_to_not_match_regex" in done.stderr
    assert "expect_column_value_lengths_to_be_between" in done.stderr
    assert "Traceback" not in output
    assert not (tmp_path / "quarantine.jsonl").exists() and not (tmp_path / "corpus.parquet").exists()


def test_too_many_invalid_documents_fail_naming_the_setting(broken, tmp_path):
    done = _validate(broken, tmp_path, **{"data.max_invalid_fraction": 0.02})
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert "2 of 40 documents (5.0%)" in done.stderr and "data.max_invalid_fraction=0.02" in done.stderr
    assert len((tmp_path / "quarantine.jsonl").read_text().splitlines()) == 2  # written for the user to read
    assert not (tmp_path / "corpus.parquet").exists()


def test_import_previews_what_the_policy_would_quarantine(broken, tmp_path):
    out = tmp_path / "data" / "corpus.jsonl"
    done = cli("data", "import", str(broken["path"]), "--out", str(out), "--no-dvc", *broken["args"], env=WIDE)
    assert done.returncode == 0, done.stderr
    assert "would quarantine 2 of 40 documents" in done.stdout
    for doc_id, reason in [(broken["control"], "control character"), (broken["long"], "too long")]:
        line = next(line for line in done.stdout.splitlines() if doc_id in line)
        assert reason in line
    assert len(read_corpus(out)) == 40  # the preview informs; the import writes every readable document


def test_duplicate_text_keeps_the_first_id(small_corpus):
    frame = assign_splits(read_corpus(small_corpus), DataParams())
    first, later = frame["id"].iloc[5], frame["id"].iloc[30]
    frame.loc[frame["id"] == later, "text"] = frame.loc[frame["id"] == first, "text"].iloc[0].upper()
    result = apply_policy(frame.iloc[::-1], DataParams(max_invalid_fraction=0.1))  # order must not matter
    assert result.quarantined["id"].tolist() == [later]
    assert result.quarantined["reasons"].iloc[0] == [
        f"expect_column_values_to_be_unique(text_hash): duplicate text (of {first})"]
    assert first in set(result.kept["id"])

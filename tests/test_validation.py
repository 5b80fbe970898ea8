"""The GX suite on the real demo corpus and on corrupted copies of it."""

import pytest

from longdoc.config import DataParams
from longdoc.data.corpus import read_corpus
from longdoc.data.splits import assign_splits
from longdoc.validation import validate_corpus


@pytest.fixture(scope="module")
def corpus(small_corpus):
    return assign_splits(read_corpus(small_corpus), DataParams())


def test_demo_corpus_passes(demo_corpus):
    report = validate_corpus(assign_splits(read_corpus(demo_corpus), DataParams()), DataParams())
    assert report.success, report.to_markdown()
    assert report.documents == 2124


def _failed(report) -> dict[tuple[str, str], list[str]]:
    return {(o.expectation, o.column): o.unexpected_ids for o in report.failures}


def test_corrupted_corpus_fails_naming_rows_and_expectations(corpus):
    bad = corpus.copy()
    test_row = bad.index[bad["split"] == "test"][0]
    train_rows = bad.index[bad["split"] == "train"]
    bad.loc[train_rows[0], "text"] = "   \n  "
    bad.loc[test_row, "label"] = "weather"
    bad.loc[train_rows[1], "id"] = bad.loc[train_rows[2], "id"]
    bad.loc[train_rows[3], "text"] = bad.loc[test_row, "text"].upper()
    bad.loc[train_rows[4], "text"] = bad.loc[train_rows[4], "text"] + " caf\ufffd"

    report = validate_corpus(bad, DataParams())
    failed = _failed(report)
    assert not report.success
    assert failed[("expect_column_values_to_match_regex", "text")] == [bad.loc[train_rows[0], "id"]]
    assert failed[("expect_column_values_to_be_in_set", "label")] == [bad.loc[test_row, "id"]]
    assert set(failed[("expect_column_values_to_be_unique", "id")]) == {bad.loc[train_rows[2], "id"]}
    assert bad.loc[train_rows[3], "id"] in failed[("expect_column_values_to_be_unique", "text_hash")]
    assert failed[("expect_column_values_to_not_match_regex", "text")] == [bad.loc[train_rows[4], "id"]]
    markdown = report.to_markdown()
    assert "FAILED" in markdown and "weather" not in markdown and bad.loc[test_row, "id"] in markdown


def test_length_bounds(corpus):
    report = validate_corpus(corpus, DataParams(min_chars=100_000))
    assert ("expect_column_value_lengths_to_be_between", "text") in _failed(report)

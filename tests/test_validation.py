"""The GX suite on the real demo corpus and on corrupted copies of it."""

import json

import pytest

from longdoc.config import DataParams
from longdoc.data.corpus import read_corpus
from longdoc.data.splits import assign_splits
from longdoc.validation import MAX_IDS_IN_REPORT, PolicyError, apply_policy, plan_policy, validate_corpus


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


def test_length_bounds_keep_every_id_but_the_report_cuts_them(corpus, tmp_path):
    report = validate_corpus(corpus, DataParams(min_chars=100_000))
    ids = _failed(report)[("expect_column_value_lengths_to_be_between", "text")]
    assert sorted(ids) == sorted(corpus["id"]) and len(ids) > MAX_IDS_IN_REPORT
    report.write(tmp_path)
    written = json.loads((tmp_path / "validation.json").read_text())["outcomes"]
    lengths = next(o for o in written if o["expectation"] == "expect_column_value_lengths_to_be_between")
    assert len(lengths["unexpected_ids"]) == MAX_IDS_IN_REPORT and lengths["unexpected_count"] == len(corpus)


def _reasons(result) -> dict[str, list[str]]:
    return {str(i): r for i, r in zip(result.quarantined["id"], result.quarantined["reasons"], strict=True)}


def test_policy_quarantines_row_failures_with_readable_reasons(corpus):
    bad = corpus.copy()
    rows = bad.index[bad["split"] == "train"]
    shared_id = bad.loc[rows[2], "id"]
    bad.loc[rows[0], "text"] = "   \n  "
    bad.loc[rows[1], "id"] = shared_id
    bad.loc[rows[3], "text"] = bad.loc[rows[3], "text"] + " caf\ufffd"
    bad.loc[rows[4], "label"] = None
    bad.loc[rows[5], "id"] = None
    params = DataParams(max_invalid_fraction=0.2)

    result = apply_policy(bad, params)
    reasons = _reasons(result)
    assert len(result.quarantined) == 6 and len(result.kept) == len(bad) - 6
    assert result.report.documents == len(bad) and not result.report.success
    assert "expect_column_values_to_match_regex(text): empty text" in reasons[bad.loc[rows[0], "id"]]
    assert "expect_column_value_lengths_to_be_between(text): too short (6 chars, min 50)" in \
        reasons[bad.loc[rows[0], "id"]]
    assert result.quarantined["id"].tolist().count(shared_id) == 2  # every row of a duplicate id
    assert reasons[shared_id] == ["expect_column_values_to_be_unique(id): duplicate id"]
    assert reasons[bad.loc[rows[3], "id"]] == ["expect_column_values_to_not_match_regex(text): replacement character"]
    assert reasons[bad.loc[rows[4], "id"]] == ["expect_column_values_to_not_be_null(label): missing label"]
    no_id = result.quarantined[result.quarantined["id"].isna()]
    assert no_id["reasons"].tolist() == [["expect_column_values_to_not_be_null(id): missing id"]]
    assert f"<row {bad.index.get_loc(rows[5])}>" in result.report.to_markdown()
    assert set(result.quarantined.columns) == {*bad.columns, "reasons"}
    assert result.kept["id"].notna().all() and result.kept["id"].is_unique


def test_table_level_failure_cannot_be_quarantined(corpus):
    no_test = corpus.assign(split=corpus["split"].replace({"test": "val"}))
    with pytest.raises(PolicyError, match="names no document") as err:
        apply_policy(no_test, DataParams(max_invalid_fraction=1.0))
    assert "expect_column_distinct_values_to_contain_set" in str(err.value)


def test_fail_policy_raises_with_table_and_quarantines_nothing(corpus):
    bad = corpus.copy()
    bad.loc[bad.index[0], "text"] = bad.loc[bad.index[0], "text"] + "\x07"
    params = DataParams(on_invalid="fail")
    plan = plan_policy(bad, params)
    assert plan.quarantined.empty and len(plan.invalid) == 1 and "on_invalid=fail" in plan.failure
    with pytest.raises(PolicyError) as err:
        apply_policy(bad, params)
    first, *table = str(err.value).splitlines()
    assert "expect_column_values_to_not_match_regex(text)" in first
    assert "| expect_column_values_to_not_match_regex | text | control character | FAIL | 1 |" in "\n".join(table)


def test_a_corpus_of_one_label_is_refused_before_anything_trains(corpus):
    one = corpus[corpus["label"] == corpus["label"].iloc[0]]
    with pytest.raises(PolicyError, match="names no document") as err:
        apply_policy(one, DataParams(max_invalid_fraction=1.0))
    assert "expect_column_unique_value_count_to_be_between(label)" in str(err.value)
    assert "fewer than two labels" in str(err.value)

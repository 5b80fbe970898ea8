"""The GX suite on the real demo corpus and on corrupted copies of it."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from longdoc.config.params import DataParams
from longdoc.data.corpus import read_corpus
from longdoc.data.splits import assign_splits
from longdoc.data.validation import (
    MAX_IDS_IN_REPORT,
    ExpectationOutcome,
    PolicyError,
    PolicyResult,
    ValidationReport,
    _policy_failure,
    apply_policy,
    document_name,
    plan_policy,
    quarantine_reasons,
    train_labels,
    validate_corpus,
    write_quarantine,
)


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


# --- one crafted corpus that breaks every row-level check, validated once -----------------------------

ODD_SPLITS = [f"holdout-{i}" for i in range(6)]
CRAFTED_PARAMS = DataParams(max_chars=300, max_invalid_fraction=1.0)


def _body(i: int, label: str) -> str:
    return f"Document number {i} is an ordinary article about {label}, long enough to pass the length check."


def _crafted() -> pd.DataFrame:
    """Four clean documents and one broken document per check; the split column has no test split."""
    rows = [
        ("a0", "sport", "train", _body(0, "sport")), ("a1", "tech", "train", _body(1, "tech")),
        ("a2", "sport", "val", _body(2, "sport")), ("a3", "tech", "val", _body(3, "tech")),
        (None, "sport", "train", _body(4, "sport")),
        ("dup", "tech", "train", _body(5, "tech")), ("dup", "sport", "val", _body(6, "sport")),
        ("a7", None, "train", _body(7, "x")), ("a8", "weather", "val", _body(8, "weather")),
        ("a9", "sport", "train", "   \n  "), ("a10", "tech", "train", _body(10, "tech") + " bell \x07"),
        ("a11", "tech", "train", _body(11, "tech") + " caf\ufffd"),
        ("a12", "sport", "train", _body(0, "sport").upper()),
        ("a13", "tech", "train", None), ("a14", "sport", "train", _body(14, "sport") * 4),
    ] + [(f"o{i}", "tech", s, _body(20 + i, "tech")) for i, s in enumerate(ODD_SPLITS)]
    return pd.DataFrame(rows, columns=["id", "label", "split", "text"])


EXPECTED = {  # check -> (expectation, column, names of the failing rows); None: the check passes
    "missing id": ("expect_column_values_to_not_be_null", "id", ["<row 4>"]),
    "duplicate id": ("expect_column_values_to_be_unique", "id", ["dup", "dup"]),
    "missing text": ("expect_column_values_to_not_be_null", "text", ["a13"]),
    "empty text": ("expect_column_values_to_match_regex", "text", ["a9"]),
    "too short or too long (50..300 chars)": ("expect_column_value_lengths_to_be_between", "text", ["a9", "a14"]),
    "replacement character": ("expect_column_values_to_not_match_regex", "text", ["a11"]),
    "control character": ("expect_column_values_to_not_match_regex", "text", ["a10"]),
    "duplicate text": ("expect_column_values_to_be_unique", "text_hash", ["a0", "a12"]),
    "missing label": ("expect_column_values_to_not_be_null", "label", ["a7"]),
    "label not in train split": ("expect_column_values_to_be_in_set", "label", ["a8"]),
    "fewer than two labels": ("expect_column_unique_value_count_to_be_between", "label", None),
    "unknown split": ("expect_column_values_to_be_in_set", "split", [f"o{i}" for i in range(6)]),
    "split lacks train or test": ("expect_column_distinct_values_to_contain_set", "split", []),
}


@pytest.fixture(scope="module")
def crafted() -> tuple[pd.DataFrame, PolicyResult]:
    frame = _crafted()
    return frame, plan_policy(frame, CRAFTED_PARAMS)


def test_every_check_names_its_expectation_column_and_failing_rows(crafted) -> None:
    """A report must say which rule broke and on which documents, so a user can fix exactly those:
    each check appears once, in suite order, with its rows (a missing id is named by its row)."""
    frame, plan = crafted
    report = plan.report
    assert report.documents == len(frame) and not report.success
    assert [o.check for o in report.outcomes] == list(EXPECTED)
    for o in report.outcomes:
        expectation, column, names = EXPECTED[o.check]
        assert (o.expectation, o.column, o.success) == (expectation, column, names is None), o
        assert o.unexpected_ids == (names or [])
        if names:  # row-level: every unexpected value traced to its row, no free-text detail
            assert o.unexpected_count == len(o.unexpected_rows) == len(names) and o.row_level and o.detail == ""
            assert [document_name(frame["id"].iloc[p], p) for p in o.unexpected_rows] == names
    passed = next(o for o in report.outcomes if o.success)
    assert (passed.unexpected_count, passed.unexpected_ids, passed.detail) == (0, [], "")
    table = report.outcomes[-1]
    assert not table.row_level and table.unexpected_count == 0 and json.loads(table.detail) is None


def test_row_failures_become_reasons_with_the_offending_value(crafted) -> None:
    """Every failing row gets one reason per failed check, in the words a user can act on: lengths with
    their numbers, set checks with the value, and a duplicate text naming the copy that is kept."""
    frame, plan = crafted
    reasons = dict(zip(plan.invalid.index, plan.invalid["reasons"], strict=True))
    assert reasons[9] == ["expect_column_values_to_match_regex(text): empty text",
                          "expect_column_value_lengths_to_be_between(text): too short (6 chars, min 50)"]
    assert reasons[14] == ["expect_column_value_lengths_to_be_between(text): too long (368 chars, max 300)"]
    assert reasons[8] == ["expect_column_values_to_be_in_set(label): label not in train split ('weather')"]
    assert reasons[15] == ["expect_column_values_to_be_in_set(split): unknown split ('holdout-0')"]
    assert reasons[12] == ["expect_column_values_to_be_unique(text_hash): duplicate text (of a0)"]
    assert reasons[4] == ["expect_column_values_to_not_be_null(id): missing id"]
    assert reasons[10] == ["expect_column_values_to_not_match_regex(text): control character"]
    assert reasons[13] == ["expect_column_values_to_not_be_null(text): missing text"]
    assert sorted(reasons) == [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, *range(15, 21)]
    assert plan.kept["id"].tolist() == ["a0", "a1", "a2", "a3"]  # the first copy of a duplicate text stays
    assert plan.quarantined is plan.invalid  # quarantine mode: what is invalid is what is excluded


def test_a_table_level_failure_stops_the_run_whatever_the_threshold(crafted) -> None:
    """No quarantine can add a missing split, so even with max_invalid_fraction=1 the plan fails, naming
    only the table-level check; the markdown shows its observed value where other rows show ids."""
    _, plan = crafted
    assert plan.failure == ("corpus validation failed: expect_column_distinct_values_to_contain_set(split) "
                            "names no document, so no quarantine can fix it")
    lines = plan.report.to_markdown().splitlines()
    assert lines[:3] == ["# Corpus validation FAILED", "", f"{len(_crafted())} documents, 1/13 expectations met."]
    assert "| expect_column_values_to_be_unique | id | duplicate id | FAIL | 2 | dup |" in lines
    assert "| expect_column_values_to_be_in_set | split | unknown split | FAIL | 6 | o0, o1, o2, o3, o4 ... |" in lines
    assert "| expect_column_unique_value_count_to_be_between | label | fewer than two labels | ok | 0 |  |" in lines
    assert lines[-1] == ("| expect_column_distinct_values_to_contain_set | split | split lacks train or test | FAIL "
                         f"| 0 | {plan.report.outcomes[-1].detail} |")


def test_fail_policy_keeps_the_whole_corpus_and_names_every_failed_check(capfd, monkeypatch) -> None:
    """With on_invalid=fail nothing is excluded (the run stops instead, carrying what was found), the
    message lists each failed check once, sorted; validating prints no progress bars and turns GX
    analytics off unless set."""
    monkeypatch.delenv("GX_ANALYTICS_ENABLED", raising=False)
    frame = _crafted()
    with pytest.raises(PolicyError) as err:
        apply_policy(frame, CRAFTED_PARAMS.model_copy(update={"on_invalid": "fail"}))
    plan = err.value.result
    assert err.value.summary == plan.failure and err.value.table == plan.report.to_markdown()
    assert os.environ["GX_ANALYTICS_ENABLED"] == "false"
    assert "Calculating Metrics" not in capfd.readouterr().err
    assert plan.kept is frame and plan.quarantined.empty and len(plan.invalid) == 17
    names = sorted({f"{e}({c})" for e, c, n in EXPECTED.values() if n is not None})
    assert plan.failure == (f"corpus validation failed: {', '.join(names)} (data.on_invalid=fail; "
                            "set data.on_invalid=quarantine to exclude failing documents instead)")


def test_recheck_judges_kept_documents_by_their_own_train_labels(corpus) -> None:
    """Quarantining the only train documents of a label leaves its val/test documents unlearnable: the
    re-check of the kept corpus fails and says how many were kept and quarantined."""
    bad = corpus.copy()
    label = bad["label"].iloc[0]
    train_of_label = bad.index[(bad["split"] == "train") & (bad["label"] == label)]
    bad.loc[train_of_label, "text"] = bad.loc[train_of_label, "text"] + "\x07"
    with pytest.raises(PolicyError) as err:
        apply_policy(bad, DataParams(max_invalid_fraction=0.5))
    kept = len(bad) - len(train_of_label)
    assert err.value.summary == (f"the {kept} documents kept after quarantining {len(train_of_label)} "
                                 "still fail validation")
    assert len(err.value.result.quarantined) == len(train_of_label) and len(err.value.result.kept) == kept
    assert "| expect_column_values_to_be_in_set | label | label not in train split | FAIL |" in err.value.table
    assert str(err.value) == f"{err.value.summary}\n{err.value.table}"


def test_a_given_label_set_overrides_the_train_labels() -> None:
    """A re-check can fix the label set: documents outside it fail even when their label is in train."""
    frame = _crafted().iloc[:4].assign(split=["train", "train", "test", "test"])
    report = validate_corpus(frame, DataParams(), labels=["sport"])
    failed = {o.check: o.unexpected_ids for o in report.failures}
    assert failed == {"label not in train split": ["a1", "a3"]}
    assert train_labels(frame) == ["sport", "tech"]


# --- the policy's pieces on reports built by hand (no GX) ---------------------------------------------

def _row_outcome(check: str, rows: list[int], column: str = "text",
                 expectation: str = "expect_column_values_to_not_match_regex") -> ExpectationOutcome:
    return ExpectationOutcome(expectation, column, success=not rows, unexpected_count=len(rows),
                              unexpected_ids=[str(r) for r in rows], check=check, unexpected_rows=list(rows))


@settings(max_examples=80, deadline=None)
@given(count=st.integers(0, 5), traced=st.integers(0, 5), column=st.sampled_from([None, "text"]))
def test_an_outcome_is_row_level_only_when_every_unexpected_value_has_its_row(count, traced, column) -> None:
    """Only a failure fully traced to rows can be cured by quarantining those rows."""
    o = ExpectationOutcome("expect_x", column, success=False, unexpected_count=count,
                           unexpected_rows=list(range(traced)))
    assert o.row_level == (count > 0 and traced == count)
    assert o.name() == ("expect_x(text)" if column else "expect_x")


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.text(alphabet="abc", min_size=1, max_size=3), max_size=40))
@example(ids=["a", "b", "c", "aa", "bb", "a"])  # exactly five distinct ids: all shown, no '...'
@example(ids=["a", "b", "c", "aa", "bb", "cc"])
def test_reports_cut_ids_but_count_them_all(tmp_path_factory, ids) -> None:
    """The JSON keeps at most MAX_IDS_IN_REPORT ids and no row positions, the markdown at most five
    distinct ids with '...' when there are more, and both keep the true count."""
    o = ExpectationOutcome("expect_x", None, success=not ids, unexpected_count=len(ids), unexpected_ids=ids,
                           detail="" if ids else "3", check="a check", unexpected_rows=list(range(len(ids))))
    ok = ExpectationOutcome("expect_y", "label", success=True, check="fine")
    report = ValidationReport(success=not ids, documents=7, outcomes=[ok, o])
    assert report.failures == ([o] if ids else [])
    assert o.summary() == {"expectation": "expect_x", "column": None, "check": "a check", "success": not ids,
                           "unexpected_count": len(ids), "unexpected_ids": ids[:MAX_IDS_IN_REPORT], "detail": o.detail}
    distinct = list(dict.fromkeys(ids))
    shown = ", ".join(distinct[:5]) + (" ..." if len(distinct) > 5 else "")
    markdown = report.to_markdown()
    assert markdown.endswith(f"| expect_x |  | a check | {'FAIL' if ids else 'ok'} | {len(ids)} | {shown or '3'} |\n")
    assert markdown.splitlines()[:6] == [
        f"# Corpus validation {'FAILED' if ids else 'PASSED'}", "",
        f"7 documents, {1 if ids else 2}/2 expectations met.", "",
        "| expectation | column | check | result | unexpected | example ids |", "|---|---|---|---|---|---|"]
    out = tmp_path_factory.mktemp("report") / "deep" / "er"
    report.write(out)
    assert (out / "validation.json").read_text().splitlines()[1] == f'  "success": {json.dumps(not ids)},'  # readable
    assert json.loads((out / "validation.json").read_text()) == {
        "success": not ids, "documents": 7, "outcomes": [ok.summary(), o.summary()]}
    assert (out / "validation.md").read_text() == markdown


@settings(max_examples=80, deadline=None)
@given(position=st.integers(0, 10_000),
       doc_id=st.one_of(st.none(), st.just(float("nan")), st.text(min_size=1, max_size=5), st.integers()))
def test_a_document_without_id_is_named_by_its_row(position, doc_id) -> None:
    """Null ids cannot name a document, so reports fall back to its row; any other id is its text."""
    expected = f"<row {position}>" if doc_id is None or doc_id != doc_id else str(doc_id)
    assert document_name(doc_id, position) == expected


TEXTS = ["Alpha story text.", "Beta story text.", "Gamma story text."]


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(st.tuples(st.one_of(st.none(), st.just(float("nan")), st.sampled_from(["a", "b", "c", "d"])),
                               st.integers(0, 2), st.booleans()), min_size=1, max_size=12))
def test_exactly_one_copy_of_a_duplicated_text_is_kept(rows) -> None:
    """Of each text's copies all but one are quarantined as duplicates: the kept copy is the first by id
    (null ids last, row breaking ties) among copies with no other failure, or the first overall."""
    texts = [TEXTS[r[1]].upper() if pos % 2 else TEXTS[r[1]] for pos, r in enumerate(rows)]  # case: still a copy
    frame = pd.DataFrame({"id": pd.Series([r[0] for r in rows], dtype=object), "text": texts,
                          "label": "x", "split": "train"})
    groups: dict[int, list[int]] = {}
    for pos, r in enumerate(rows):
        groups.setdefault(r[1], []).append(pos)
    dup_rows = sorted(p for g in groups.values() if len(g) > 1 for p in g)
    broken = [p for p, r in enumerate(rows) if r[2]]
    report = ValidationReport(False, len(frame), [
        _row_outcome("control character", broken),
        _row_outcome("duplicate text", dup_rows, "text_hash", "expect_column_values_to_be_unique"),
        ExpectationOutcome("expect_column_distinct_values_to_contain_set", "split", False, check="split lacks"),
    ])
    reasons = quarantine_reasons(frame, report, DataParams())
    assert set(reasons) == set(broken) | {p for p in dup_rows if any("duplicate" in r for r in reasons.get(p, []))}
    for p in broken:
        assert reasons[p][0] == "expect_column_values_to_not_match_regex(text): control character"

    def key(p: int) -> tuple:
        null = rows[p][0] is None or rows[p][0] != rows[p][0]  # None and NaN alike: a null id
        return (null, "" if null else rows[p][0], p)

    for copies in (g for g in groups.values() if len(g) > 1):
        clean = sorted((p for p in copies if p not in broken), key=key)
        keeper = clean[0] if clean else min(copies, key=key)
        name = document_name(rows[keeper][0], keeper)
        for p in copies:
            dup = [r for r in reasons.get(p, []) if "duplicate" in r]
            assert dup == ([] if p == keeper else
                           [f"expect_column_values_to_be_unique(text_hash): duplicate text (of {name})"])


@settings(max_examples=100, deadline=None)
@given(documents=st.integers(0, 200), data=st.data(), limit=st.floats(0, 1))
def test_quarantine_fails_the_run_only_beyond_the_invalid_fraction(documents, data, limit) -> None:
    """Quarantining is allowed up to max_invalid_fraction of the corpus and no further; the message gives
    the counts, the share and the setting to change."""
    invalid = data.draw(st.integers(0, documents))
    frame = pd.DataFrame({"id": [str(i) for i in range(invalid)]})
    report = ValidationReport(invalid == 0, documents, [_row_outcome("control character", list(range(invalid)))])
    failure = _policy_failure(report, frame, DataParams(max_invalid_fraction=limit))
    fraction = invalid / max(documents, 1)
    if fraction <= limit:
        assert failure is None
    else:
        assert failure == (f"{invalid} of {documents} documents ({fraction:.1%}) fail validation, more than "
                           f"data.max_invalid_fraction={limit:g}; fix them, or raise data.max_invalid_fraction "
                           "to quarantine them")
    assert _policy_failure(ValidationReport(True, documents, []), frame, DataParams(max_invalid_fraction=0)) is None


def test_table_level_failures_are_named_sorted_and_once() -> None:
    """Several failures no quarantine can fix are all named, once each, whatever the row failures."""
    table = [ExpectationOutcome("expect_b", "split", False), ExpectationOutcome("expect_a", "label", False),
             ExpectationOutcome("expect_a", "label", False)]
    report = ValidationReport(False, 10, [_row_outcome("control character", [1]), *table])
    assert _policy_failure(report, pd.DataFrame({"id": ["1"]}), DataParams(max_invalid_fraction=1)) == (
        "corpus validation failed: expect_a(label), expect_b(split) names no document, so no quarantine can fix it")


def test_quarantine_file_round_trips_and_a_stale_one_goes(tmp_path) -> None:
    """quarantine.jsonl is one readable JSON object a document (missing values null, reasons a list,
    non-ASCII kept as is); writing a result with nothing quarantined removes an earlier file."""
    quarantined = pd.DataFrame({"id": ["é1", None], "label": ["x", float("nan")], "split": ["train", "val"],
                                "text": ["café", "t"], "extra": [1, 2], "reasons": [["r1", "r2"], ["r3"]]})
    path = tmp_path / "q" / "r" / "quarantine.jsonl"
    write_quarantine(quarantined, path)
    lines = path.read_bytes().decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == 3 and "café" in lines[0] and "\r" not in path.read_bytes().decode()
    assert [json.loads(line) for line in lines[:2]] == [
        {"id": "é1", "label": "x", "split": "train", "text": "café", "reasons": ["r1", "r2"]},
        {"id": None, "label": None, "split": "val", "text": "t", "reasons": ["r3"]}]
    write_quarantine(quarantined[["id", "text"]], path)
    assert json.loads(path.read_text().splitlines()[0]) == {"id": "é1", "text": "café"}

    report = ValidationReport(True, 2, [])
    out = tmp_path / "run"
    written = PolicyResult(quarantined.iloc[:0], report, quarantined, quarantined).write(out)
    assert written == out / "quarantine.jsonl" and len(written.read_text().splitlines()) == 2
    assert PolicyResult(quarantined, report, quarantined.iloc[:0], quarantined.iloc[:0]).write(out) is None
    assert not (out / "quarantine.jsonl").exists() and (out / "validation.json").exists()


def test_a_failure_without_rows_reports_what_was_observed() -> None:
    """A check that names no document shows the observed value instead: one label seen, as JSON."""
    frame = _crafted().iloc[:4].assign(label="sport", split=["train", "train", "test", "test"])
    report = validate_corpus(frame, DataParams())
    assert [(o.check, o.detail) for o in report.failures] == [("fewer than two labels", "1")]
    assert report.failures[0].unexpected_ids == [] and not report.failures[0].row_level

"""The corpus quality gate: a Great Expectations suite run before any training.

The label set is taken from the train split, so a label that appears only in val/test (which no
model could learn) fails the suite. Results name the expectation and the offending document ids.

One bad document should not stop a run, nor should a silently shrinking corpus: :func:`apply_policy`
quarantines documents that fail a row-level expectation (``data.on_invalid: quarantine``) as long as
they are at most ``data.max_invalid_fraction`` of the corpus, and fails the run otherwise. A failed
table-level expectation (the split column lacks train or test) names no document, so it always fails.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from longdoc.config.params import DataParams
from longdoc.data.corpus import text_fingerprint
from longdoc.errors import LongdocError

CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
MAX_IDS_IN_REPORT = 20
POSITION = "position"
QUARANTINE_FILE = "quarantine.jsonl"


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int = 0
    unexpected_ids: list[str] = field(default_factory=list)
    detail: str = ""
    check: str = ""
    unexpected_rows: list[int] = field(default_factory=list)
    """Positions in the validated frame: ids can be null or repeated, positions cannot."""

    @property
    def row_level(self) -> bool:
        """Whether every unexpected value was traced to a row, so quarantining those rows cures it."""
        return self.unexpected_count > 0 and len(self.unexpected_rows) == self.unexpected_count

    def name(self) -> str:
        return f"{self.expectation}({self.column})" if self.column else self.expectation

    def summary(self) -> dict:
        """The JSON report's view: ids cut to a readable number, positions left out (they are internal)."""
        return {"expectation": self.expectation, "column": self.column, "check": self.check,
                "success": self.success, "unexpected_count": self.unexpected_count,
                "unexpected_ids": self.unexpected_ids[:MAX_IDS_IN_REPORT], "detail": self.detail}


@dataclass
class ValidationReport:
    success: bool
    documents: int
    outcomes: list[ExpectationOutcome]

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def to_markdown(self) -> str:
        status = "PASSED" if self.success else "FAILED"
        lines = [f"# Corpus validation {status}", "", f"{self.documents} documents, "
                 f"{len(self.outcomes) - len(self.failures)}/{len(self.outcomes)} expectations met.", "",
                 "| expectation | column | check | result | unexpected | example ids |", "|---|---|---|---|---|---|"]
        for o in self.outcomes:
            names = list(dict.fromkeys(o.unexpected_ids))
            ids = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
            lines.append(f"| {o.expectation} | {o.column or ''} | {o.check} | {'ok' if o.success else 'FAIL'} | "
                         f"{o.unexpected_count} | {ids or o.detail} |")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "validation.json").write_text(json.dumps(
            {"success": self.success, "documents": self.documents,
             "outcomes": [o.summary() for o in self.outcomes]}, indent=2))
        (out_dir / "validation.md").write_text(self.to_markdown())


def _with_derived_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns the suite checks that are not stored: a content hash for duplicate detection, and the
    row position so that a failure can be traced to its row even when the id is null or repeated."""
    frame = frame.copy()
    for col in ("id", "text", "label", "split"):
        frame[col] = frame[col].astype(object)
    frame["text_hash"] = [text_fingerprint(t) if isinstance(t, str) else None for t in frame["text"]]
    frame[POSITION] = range(len(frame))
    return frame


def train_labels(frame: pd.DataFrame) -> list[str]:
    """The labels a model can learn: those of the train split."""
    return sorted(frame.loc[frame["split"] == "train", "label"].dropna().astype(str).unique())


def _build_suite(gx, labels: list[str], params: DataParams):
    ex = gx.expectations
    bounds = f"too short or too long ({params.min_chars}..{params.max_chars} chars)"
    suite = gx.ExpectationSuite(name="longdoc_corpus")
    for expectation in [
        ex.ExpectColumnValuesToNotBeNull(column="id", meta={"check": "missing id"}),
        ex.ExpectColumnValuesToBeUnique(column="id", meta={"check": "duplicate id"}),
        ex.ExpectColumnValuesToNotBeNull(column="text", meta={"check": "missing text"}),
        ex.ExpectColumnValuesToMatchRegex(column="text", regex=r"\S", meta={"check": "empty text"}),
        ex.ExpectColumnValueLengthsToBeBetween(column="text", min_value=params.min_chars, max_value=params.max_chars,
                                               meta={"check": bounds}),
        ex.ExpectColumnValuesToNotMatchRegex(column="text", regex="\ufffd", meta={"check": "replacement character"}),
        ex.ExpectColumnValuesToNotMatchRegex(column="text", regex=CONTROL_CHARS, meta={"check": "control character"}),
        ex.ExpectColumnValuesToBeUnique(column="text_hash", meta={"check": "duplicate text"}),
        ex.ExpectColumnValuesToNotBeNull(column="label", meta={"check": "missing label"}),
        ex.ExpectColumnValuesToBeInSet(column="label", value_set=labels or ["<no train labels>"],
                                       meta={"check": "label not in train split"}),
        ex.ExpectColumnUniqueValueCountToBeBetween(column="label", min_value=2,
                                                   meta={"check": "fewer than two labels"}),
        ex.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val", "test"],
                                       meta={"check": "unknown split"}),
        ex.ExpectColumnDistinctValuesToContainSet(column="split", value_set=["train", "test"],
                                                  meta={"check": "split lacks train or test"}),
    ]:
        suite.add_expectation(expectation)
    return suite


def document_name(doc_id, position: int) -> str:
    """How reports name a document: its id, or its row when it has none."""
    return f"<row {int(position)}>" if pd.isna(doc_id) else str(doc_id)


def _row_name(row: dict) -> str:
    return document_name(row.get("id"), row[POSITION])


def _outcome(result) -> ExpectationOutcome:
    config = result.expectation_config
    res = result.result or {}
    rows = [row for row in res.get("unexpected_index_list") or [] if isinstance(row, dict) and POSITION in row]
    detail = ""
    if not result.success and not rows:
        detail = json.dumps(res.get("observed_value", ""), default=str)[:200]
    return ExpectationOutcome(
        expectation=config.type,
        column=config.kwargs.get("column"),
        success=bool(result.success),
        unexpected_count=int(res.get("unexpected_count") or 0),
        unexpected_ids=[_row_name(row) for row in rows],
        detail=detail,
        check=(config.meta or {}).get("check", ""),
        unexpected_rows=[int(row[POSITION]) for row in rows],
    )


def validate_corpus(frame: pd.DataFrame, params: DataParams, labels: list[str] | None = None) -> ValidationReport:
    """Run the suite on a corpus that already has its ``split`` column.

    ``labels`` fixes the label set; by default it is this frame's train labels. A re-check of the
    documents kept after a quarantine passes the original set, so it judges them by the same rule.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx  # 5 s import: only here

    data = _with_derived_columns(frame)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = (context.data_sources.add_pandas("corpus")
                 .add_dataframe_asset("documents")
                 .add_batch_definition_whole_dataframe("all"))
    suite = context.suites.add(_build_suite(gx, train_labels(frame) if labels is None else labels, params))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="corpus_validation", data=batch_def, suite=suite))
    result = definition.run(
        batch_parameters={"dataframe": data},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["id", POSITION]},
    )
    outcomes = [_outcome(r) for r in result.results]
    return ValidationReport(success=bool(result.success), documents=len(frame), outcomes=outcomes)


# --- the data-quality policy --------------------------------------------------------------------


@dataclass
class PolicyResult:
    kept: pd.DataFrame
    """The documents the run goes on with."""
    report: ValidationReport
    """The suite's verdict on the whole corpus, before anything was excluded."""
    quarantined: pd.DataFrame
    """The excluded documents: their original rows plus ``reasons`` (a list of strings)."""
    invalid: pd.DataFrame
    """Documents failing a row-level expectation, whatever the policy (for previews)."""
    failure: str | None = None
    """Why the policy stops the run (one line); None when it may go on."""

    def write(self, out_dir: Path) -> Path | None:
        """Write the report and the quarantine file; a stale quarantine file from an earlier run goes."""
        self.report.write(out_dir)
        path = out_dir / QUARANTINE_FILE
        path.unlink(missing_ok=True)
        if self.quarantined.empty:
            return None
        write_quarantine(self.quarantined, path)
        return path


class PolicyError(LongdocError):
    """The policy stops the run; carries the result so the caller can still write what was found."""

    def __init__(self, summary: str, report: ValidationReport, result: PolicyResult) -> None:
        self.summary, self.table, self.result = summary, report.to_markdown(), result
        super().__init__(f"{summary}\n{self.table}")


def _length_check(text: str, params: DataParams) -> str:
    if len(text) < params.min_chars:
        return f"too short ({len(text)} chars, min {params.min_chars})"
    return f"too long ({len(text)} chars, max {params.max_chars})"


def _check(outcome: ExpectationOutcome, row: pd.Series, params: DataParams) -> str:
    """The short phrase for one row, with the numbers or value that make it actionable."""
    if outcome.expectation == "expect_column_value_lengths_to_be_between":
        return _length_check(str(row["text"]), params)
    if outcome.expectation == "expect_column_values_to_be_in_set":
        return f"{outcome.check} ({row[outcome.column]!r})"
    return outcome.check


def _reason(outcome: ExpectationOutcome, check: str) -> str:
    return f"{outcome.name()}: {check}"


def _sort_key(frame: pd.DataFrame, pos: int) -> tuple[bool, str, int]:
    """First by id, null ids last, position breaking ties: which copy of a duplicate text is kept."""
    doc_id = frame["id"].iloc[pos]
    return (bool(pd.isna(doc_id)), "" if pd.isna(doc_id) else str(doc_id), pos)


def _later_duplicates(frame: pd.DataFrame, outcome: ExpectationOutcome,
                      reasons: dict[int, list[str]]) -> dict[int, str]:
    """Every copy of a text but one, mapped to the reason naming the kept copy.

    The kept copy is the first by id among copies with no other failure, so a text is not lost
    because its first copy is quarantined for something else.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for pos in outcome.unexpected_rows:
        groups[text_fingerprint(str(frame["text"].iloc[pos]))].append(pos)
    later: dict[int, str] = {}
    for copies in groups.values():
        ordered = sorted(copies, key=lambda p: _sort_key(frame, p))
        keeper = next((p for p in ordered if p not in reasons), ordered[0])
        name = _row_name({"id": frame["id"].iloc[keeper], POSITION: keeper})
        later.update({p: _reason(outcome, f"duplicate text (of {name})") for p in ordered if p != keeper})
    return later


def quarantine_reasons(frame: pd.DataFrame, report: ValidationReport, params: DataParams) -> dict[int, list[str]]:
    """Row position -> why that document fails, for every row-level failure in the report."""
    reasons: dict[int, list[str]] = defaultdict(list)
    duplicate_texts = [o for o in report.failures if o.row_level and o.column == "text_hash"]
    for outcome in report.failures:
        if outcome.row_level and outcome.column != "text_hash":
            for pos in outcome.unexpected_rows:
                reasons[pos].append(_reason(outcome, _check(outcome, frame.iloc[pos], params)))
    for outcome in duplicate_texts:
        for pos, reason in _later_duplicates(frame, outcome, reasons).items():
            reasons[pos].append(reason)
    return dict(reasons)


def _split_rows(frame: pd.DataFrame, reasons: dict[int, list[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    positions = sorted(reasons)
    invalid = frame.iloc[positions].copy()
    invalid["reasons"] = [reasons[p] for p in positions]
    kept = frame.iloc[[p for p in range(len(frame)) if p not in reasons]]  # by position: index labels may repeat
    return kept, invalid


def _policy_failure(report: ValidationReport, invalid: pd.DataFrame, params: DataParams) -> str | None:
    """One line saying why the policy stops the run, or None."""
    if report.success:
        return None
    names = sorted({o.name() for o in report.failures})
    if params.on_invalid == "fail":
        return (f"corpus validation failed: {', '.join(names)} (data.on_invalid=fail; "
                "set data.on_invalid=quarantine to exclude failing documents instead)")
    table_level = sorted({o.name() for o in report.failures if not o.row_level})
    if table_level:
        return f"corpus validation failed: {', '.join(table_level)} names no document, so no quarantine can fix it"
    fraction = len(invalid) / max(report.documents, 1)
    if fraction > params.max_invalid_fraction:
        return (f"{len(invalid)} of {report.documents} documents ({fraction:.1%}) fail validation, more than "
                f"data.max_invalid_fraction={params.max_invalid_fraction:g}; fix them, or raise "
                "data.max_invalid_fraction to quarantine them")
    return None


def plan_policy(frame: pd.DataFrame, params: DataParams) -> PolicyResult:
    """Validate and decide what the policy does, without raising: what ``data import`` previews."""
    report = validate_corpus(frame, params)
    kept, invalid = _split_rows(frame, quarantine_reasons(frame, report, params))
    failure = _policy_failure(report, invalid, params)
    if params.on_invalid == "fail":
        kept, quarantined = (frame if failure else kept), invalid.iloc[:0]
    else:
        quarantined = invalid
    return PolicyResult(kept=kept, report=report, quarantined=quarantined, invalid=invalid, failure=failure)


def apply_policy(frame: pd.DataFrame, params: DataParams) -> PolicyResult:
    """Validate, quarantine what the policy allows, and re-check that the kept documents pass.

    Raises :class:`PolicyError` (a LongdocError: one summary line plus the markdown table) when the
    policy stops the run.
    """
    result = plan_policy(frame, params)
    if result.failure:
        raise PolicyError(result.failure, result.report, result)
    if not result.quarantined.empty:
        # labels from the kept train split: a label whose train documents were all quarantined fails here
        recheck = validate_corpus(result.kept, params)
        if not recheck.success:
            raise PolicyError(f"the {len(result.kept)} documents kept after quarantining {len(result.quarantined)} "
                              "still fail validation", recheck, result)
    return result


def _json_value(value):
    """JSON for a cell: missing values (NaN, None) become null, lists stay lists."""
    if isinstance(value, list):
        return value
    return None if pd.isna(value) else value


def write_quarantine(quarantined: pd.DataFrame, path: Path) -> None:
    """One JSON object per document, so a user can read, fix and re-import them."""
    keys = [c for c in ("id", "label", "split", "text", "reasons") if c in quarantined.columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for row in quarantined[keys].itertuples(index=False):
            fh.write(json.dumps({k: _json_value(v) for k, v in zip(keys, row, strict=True)}, ensure_ascii=False)
                     + "\n")

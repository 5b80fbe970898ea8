"""The corpus quality gate: a Great Expectations suite run before any training.

The label set is taken from the train split, so a label that appears only in val/test (which no
model could learn) fails the suite. Results name the expectation and the offending document ids.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from longdoc.config import DataParams
from longdoc.data.corpus import text_fingerprint

CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
MAX_IDS_IN_REPORT = 20


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int = 0
    unexpected_ids: list[str] = field(default_factory=list)
    detail: str = ""


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
                 "| expectation | column | result | unexpected | example ids |", "|---|---|---|---|---|"]
        for o in self.outcomes:
            ids = ", ".join(o.unexpected_ids[:5]) + (" ..." if len(o.unexpected_ids) > 5 else "")
            lines.append(f"| {o.expectation} | {o.column or ''} | {'ok' if o.success else 'FAIL'} | "
                         f"{o.unexpected_count} | {ids or o.detail} |")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "validation.json").write_text(json.dumps(
            {"success": self.success, "documents": self.documents,
             "outcomes": [o.__dict__ for o in self.outcomes]}, indent=2))
        (out_dir / "validation.md").write_text(self.to_markdown())


def _with_derived_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns the suite checks that are not stored: a content hash for duplicate detection."""
    frame = frame.copy()
    for col in ("id", "text", "label", "split"):
        frame[col] = frame[col].astype(object)
    frame["text_hash"] = [text_fingerprint(t) if isinstance(t, str) else None for t in frame["text"]]
    return frame


def _build_suite(gx, frame: pd.DataFrame, params: DataParams):
    ex = gx.expectations
    train_labels = sorted(frame.loc[frame["split"] == "train", "label"].dropna().astype(str).unique())
    suite = gx.ExpectationSuite(name="longdoc_corpus")
    for expectation in [
        ex.ExpectColumnValuesToNotBeNull(column="id"),
        ex.ExpectColumnValuesToBeUnique(column="id"),
        ex.ExpectColumnValuesToNotBeNull(column="text"),
        ex.ExpectColumnValuesToMatchRegex(column="text", regex=r"\S"),
        ex.ExpectColumnValueLengthsToBeBetween(column="text", min_value=params.min_chars,
                                               max_value=params.max_chars),
        ex.ExpectColumnValuesToNotMatchRegex(column="text", regex="\ufffd"),
        ex.ExpectColumnValuesToNotMatchRegex(column="text", regex=CONTROL_CHARS),
        ex.ExpectColumnValuesToBeUnique(column="text_hash"),
        ex.ExpectColumnValuesToNotBeNull(column="label"),
        ex.ExpectColumnValuesToBeInSet(column="label", value_set=train_labels or ["<no train labels>"]),
        ex.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val", "test"]),
        ex.ExpectColumnDistinctValuesToContainSet(column="split", value_set=["train", "test"]),
    ]:
        suite.add_expectation(expectation)
    return suite


def _outcome(result) -> ExpectationOutcome:
    config = result.expectation_config
    res = result.result or {}
    ids = [str(row.get("id")) for row in res.get("unexpected_index_list") or [] if isinstance(row, dict)]
    detail = ""
    if not result.success and not ids:
        detail = json.dumps(res.get("observed_value", ""), default=str)[:200]
    return ExpectationOutcome(
        expectation=config.type,
        column=config.kwargs.get("column"),
        success=bool(result.success),
        unexpected_count=int(res.get("unexpected_count") or 0),
        unexpected_ids=ids[:MAX_IDS_IN_REPORT],
        detail=detail,
    )


def validate_corpus(frame: pd.DataFrame, params: DataParams) -> ValidationReport:
    """Run the suite on a corpus that already has its ``split`` column."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx  # 5 s import: only here

    data = _with_derived_columns(frame)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = (context.data_sources.add_pandas("corpus")
                 .add_dataframe_asset("documents")
                 .add_batch_definition_whole_dataframe("all"))
    suite = context.suites.add(_build_suite(gx, data, params))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="corpus_validation", data=batch_def, suite=suite))
    result = definition.run(
        batch_parameters={"dataframe": data},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["id"]},
    )
    outcomes = [_outcome(r) for r in result.results]
    return ValidationReport(success=bool(result.success), documents=len(frame), outcomes=outcomes)

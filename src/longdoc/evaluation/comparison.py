"""One table across variants and the baseline: accuracy beside robustness and speed.

Like Table 1 of the inverted-patents paper, with the inverted and shuffled gaps, calibration and
evaluation speed in the same row. Read back from MLflow so it shows exactly what was logged; written
as markdown, CSV and PNGs; the compare stage logs them to MLflow as a run of their own.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from longdoc.evaluation.plots import robustness_png, sweep_png
from longdoc.evaluation.views import SWEEP, SWEEP_POSITIONS

COMPARISON_FILES = ("comparison.md", "comparison.csv", "robustness.png", "position_sweep.png")  # what compare writes

COLUMNS = {
    "normal_accuracy": "accuracy", "normal_accuracy_lo": "accuracy lo", "normal_accuracy_hi": "accuracy hi",
    "normal_macro_f1": "macro-F1", "normal_macro_f1_lo": "macro-F1 lo",
    "normal_macro_f1_hi": "macro-F1 hi", "inverted_gap_macro_f1": "inverted gap (F1)",
    "inverted_gap_macro_f1_lo": "inverted gap lo", "inverted_gap_macro_f1_hi": "inverted gap hi",
    "normal_ece_uncalibrated": "ECE raw", "inverted_accuracy": "inverted acc",
    "inverted_gap_accuracy": "inverted gap (acc)", "shuffled_accuracy": "shuffled acc",
    "shuffled_gap_accuracy": "shuffled gap (acc)", "normal_ece": "ECE", "docs_per_second": "docs/s",
    "eval_peak_rss_mb": "peak MB", "train_train_seconds": "train s", "train_encoder_tokens": "encoder tokens",
    "train_stage1_train_seconds": "stage-1 s", "train_stage1_encoder_tokens": "stage-1 encoder tokens",
}


def comparison_frame(client, run_ids: list[str]) -> pd.DataFrame:
    rows = []
    for run_id in run_ids:
        run = client.get_run(run_id)
        m = run.data.metrics
        row = {"variant": run.data.tags.get("variant", run_id[:8]), "kind": run.data.tags.get("kind", "model"),
               "run_id": run_id}
        row.update({label: m.get(key) for key, label in COLUMNS.items()})
        versions = client.search_model_versions(f"run_id='{run_id}'")
        row["gate"] = versions[0].tags.get("gate", "") if versions else ""
        row.update({f"sweep {v[-3:].lstrip('0') or '0'}%": m.get(f"sweep_accuracy_{v}") for v in SWEEP})
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values(["kind", "macro-F1"], ascending=[True, False]).reset_index(drop=True)


def to_markdown(frame: pd.DataFrame) -> str:
    shown = frame.drop(columns=["run_id"]).copy()
    for col in shown.columns:
        if shown[col].dtype.kind == "f":
            digits = 0 if "tokens" in col else 1 if col in ("docs/s", "peak MB", "train s", "stage-1 s") else 4
            shown[col] = shown[col].map(lambda v, d=digits: "" if pd.isna(v) else f"{v:.{d}f}")
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def compare(client, run_ids: list[str], out_dir: Path) -> pd.DataFrame:
    """Write comparison.md/.csv and the robustness plots into ``out_dir`` (``client``: an MlflowClient)."""
    frame = comparison_frame(client, run_ids)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / "comparison.csv", index=False)
    (out_dir / "comparison.md").write_text(to_markdown(frame))
    robustness_png(frame, out_dir / "robustness.png")
    sweep_png({r["variant"]: [r[f"sweep {v[-3:].lstrip('0') or '0'}%"] for v in SWEEP] for _, r in frame.iterrows()},
              SWEEP_POSITIONS, "accuracy by position of the first paragraph", out_dir / "position_sweep.png")
    return frame

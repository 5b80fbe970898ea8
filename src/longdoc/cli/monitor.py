"""``longdoc monitor``: is the served model still right? Exit 0: no drift (or too few documents to say); 1: drift;
2: an error (as every command). A scheduler acts on the 1."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from longdoc.cli.options import OUT, ParamsOpt, SetOpt, _console, _params
from longdoc.errors import LongdocError

DRIFT_EXIT = 1


def _when(value: str | None, option: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise LongdocError(f"{option} expects an ISO date or time (2026-12-06T09:00), got {value!r}") from None


def monitor(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            model: Annotated[str | None, typer.Option(help="Registered model (default: the one task with a "
                                                           "champion).")] = None,
            version: Annotated[str | None, typer.Option(help="Version to judge (default: the champion).")] = None,
            records: Annotated[Path | None, typer.Option(help="The Bento's monitoring folder or a JSONL file of "
                                                              "records (default: monitor.log_path).")] = None,
            feedback: Annotated[Path | None, typer.Option(help="Where /feedback records are (default: the records "
                                                               "folder).")] = None,
            since: Annotated[str | None, typer.Option(help="Window start, ISO time (the service's clock).")] = None,
            until: Annotated[str | None, typer.Option(help="Window end (excluded), ISO time.")] = None,
            out: Annotated[Path, typer.Option(help="Where the report is written.")] = OUT / "monitor",
            retrain: Annotated[bool, typer.Option(help="On drift, start `longdoc run` here (or submit the "
                                                       "pipeline with --host); its runs link this report.")] = False,
            host: Annotated[str | None, typer.Option(help="Kubeflow Pipelines endpoint for --retrain.")] = None,
            ) -> None:
    """Compare a window of served documents with the version's reference; log the report to MLflow."""
    from longdoc.stages import monitor as run_monitor

    cfg = _params(params, set_)
    outcome = run_monitor(cfg, out, model, version, records, feedback, _when(since, "--since"),
                          _when(until, "--until"))
    console = _console()
    if outcome.result is None:
        console.print(f"[yellow]{outcome.reason}[/]")
        return
    _print(console, outcome)
    if not outcome.drifted:
        return
    if retrain:
        from longdoc.stages import retrain as start_retraining

        console.print(f"retraining ({'submitting to ' + host if host else 'longdoc run'}): its runs carry "
                      f"triggered_by={outcome.run_id}")
        start_retraining(cfg, params, set_ or [], outcome.run_id, host)
    raise typer.Exit(DRIFT_EXIT)


def _print(console, outcome) -> None:
    from rich.table import Table

    result = outcome.result
    table = Table("feature", "test", "statistic", "p-value", "threshold", "", "note",
                  title=f"{outcome.model_name} v{outcome.version}: {result.served_docs} served documents against "
                        f"{result.reference_docs} reference documents")
    for c in result.checks:
        verdict = "[red]drift[/]" if c.drifted else "[green]ok[/]"
        table.add_row(c.feature, c.test, f"{c.statistic:.4g}", f"{c.p_value:.3g}", f"{c.threshold:.3g}", verdict,
                      c.note)
    console.print(table)
    a = outcome.accuracy
    if a is not None:
        console.print(f"served accuracy from feedback: {a.accuracy:.3f} [{a.low:.3f}, {a.high:.3f}] "
                      f"({a.confidence:.0%} Wilson interval, {a.correct}/{a.documents} documents)")
    verdict = f"[red]DRIFT[/] in {', '.join(result.drifted_features)}" if result.drifted else "[green]no drift[/]"
    console.print(f"{verdict} (an alarm when a p-value is under alpha {result.alpha} / {len(result.checks)} tests); "
                  f"report {outcome.out_dir / 'drift_report.html'}, MLflow run {outcome.run_id}")



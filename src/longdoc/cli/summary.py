"""The closing summary of ``longdoc run``, read back from MLflow so it shows what was stored.

It says in words what the table means: which model the gate chose and why, whether the TF-IDF
baseline won and what the transformers would cost extra, and what to run next; a run where nothing
was promoted says so instead of asking MLflow for a champion that does not exist.
"""

from __future__ import annotations

import math

from longdoc.config.params import Params
from longdoc.registry.tracking import redact, resolve_tracking_uri, use_tracking


def latest_bento(name: str) -> str | None:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentos = sorted(bentoml.bentos.list(name), key=lambda b: b.info.creation_time)
    except NotFound:
        return None
    return str(bentos[-1].tag) if bentos else None


def _interval(m: dict, key: str) -> str:
    value, low, high = m.get(key), m.get(f"{key}_lo"), m.get(f"{key}_hi")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if low is None or math.isnan(low):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _cell(m: dict, key: str, digits: int = 3) -> str:
    value = m.get(key)
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _cost_note(runs: list, champion_run) -> str:
    """What the best transformer would cost beyond the baseline champion, in serving speed."""
    models = [r for r in runs if r.data.tags.get("kind") == "model"]
    if not models:
        return ""
    best = max(models, key=lambda r: r.data.metrics.get("normal_macro_f1", 0))
    base_speed = champion_run.data.metrics.get("docs_per_second", float("nan"))
    speed = best.data.metrics.get("docs_per_second", float("nan"))
    return (f"the best transformer, {best.data.tags.get('variant')} (macro-F1 "
            f"{_interval(best.data.metrics, 'normal_macro_f1')}), reads {speed:.1f} docs/s against the baseline's "
            f"{base_speed:.0f} ({base_speed / speed:.0f}x slower) and needs training")


SUMMARY_COLUMNS = ("variant", "version", "accuracy [95% CI]", "macro-F1 [95% CI]", "inverted gap (F1) [95% CI]",
                   "shuffled gap (F1)", "ECE raw -> calibrated", "docs/s", "steps", "training cost")


def summary_table():
    """The table's columns keep their headers whole, and the training cost stays on one line; the gate's
    reason is the one that wraps, since a header or a cost broken over lines cannot be read, or searched
    for in a log."""
    from rich.table import Column, Table

    return Table(*(Column(name, min_width=len(name), no_wrap=name == "training cost") for name in SUMMARY_COLUMNS),
                 Column("gate", ratio=1))


def training_cost(m: dict) -> str:
    """Encoder tokens through forward and backward, and seconds: the variant's own, plus the stage-1 fine-tune
    it starts from (shared by every variant of the run), plus, cross-fitted, its k fold trainings (each with
    its fold's own stage 1)."""
    own = f"{m.get('train_encoder_tokens', 0) / 1e6:.2f}M tok, {m.get('train_train_seconds', 0):.0f} s"
    if m.get("train_stage1_encoder_tokens"):
        shared = m["train_stage1_encoder_tokens"] / 1e6
        own += f" + stage 1 {shared:.2f}M tok, {m['train_stage1_train_seconds']:.0f} s"
    if m.get("folds"):
        tokens = (m.get("folds_encoder_tokens", 0) + m.get("folds_stage1_encoder_tokens", 0)) / 1e6
        seconds = m.get("folds_train_seconds", 0) + m.get("folds_stage1_train_seconds", 0)
        own += f" + {int(m['folds'])} folds {tokens:.2f}M tok, {seconds:.0f} s"
    return own


def decision_rows(client, name: str, runs: list, versions: dict) -> list[tuple[str, str]]:
    """How many documents the decision rests on and the smallest difference it can resolve there: the half-width
    of the paired interval between the best transformer and the baseline (a gain smaller than that is noise at
    this size), beside what the size alone promised before training."""
    from longdoc.evaluation.resolution import observed_resolution, planned_resolution
    from longdoc.registry.promotion import difference

    first = runs[0].data
    documents = int(first.metrics.get("test_docs", 0))
    if first.tags.get("evaluation") == "cross-fitted":
        how = (f"cross-fitted: all {documents} documents, each predicted by models of {int(first.metrics['folds'])} "
               "folds that never saw its label; the registered models are refit on all of them")
    else:
        how = f"held out: {documents} test documents"
    rows = [("decision", f"{how} ({int(first.metrics.get('single_unit_docs', 0))} with a single unit, left out of "
                         "the robustness gaps)")]
    models = [r for r in runs if r.data.tags.get("kind") == "model" and r.info.run_id in versions]
    base = [r for r in runs if r.data.tags.get("kind") == "baseline" and r.info.run_id in versions]
    planned = f"about ±{planned_resolution(documents):.3f} expected from the size alone"
    if not models or not base:
        return [*rows, ("resolves", f"{planned} (no transformer and baseline pair to measure it on)")]
    best = max(models, key=lambda r: r.data.metrics.get("normal_macro_f1", 0))
    try:
        diff = difference(client, name, versions[best.info.run_id], versions[base[0].info.run_id])
    except Exception as err:  # the table above is what matters; this line says why it has no measurement
        return [*rows, ("resolves", f"{planned} (not measured: {type(err).__name__}: {redact(str(err))[:200]})")]
    resolution = observed_resolution(diff.low, diff.high)
    verdict = "resolved" if diff.low > 0 or diff.high < 0 else "not resolved"
    return [*rows, ("resolves", f"macro-F1 differences beyond ±{resolution:.3f} on these documents ({planned}); "
                                f"{best.data.tags.get('variant')} - baseline = {diff.point:+.3f} "
                                f"[{diff.low:+.3f}, {diff.high:+.3f}]: {verdict}")]


def print_summary(params: Params, outputs: dict[str, str], since_ms: int) -> bool:
    """The comparison of this run's candidates, the gate's choice and reasons, and what to run next.

    Returns whether the task has a champion, so ``longdoc run`` can fail when it has none.
    """
    from rich.console import Console

    from longdoc.registry.promotion import current_champion

    mlflow = use_tracking(params.registry.tracking_uri)
    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name(params.registry.experiment)
    runs = client.search_runs([experiment.experiment_id], f"attributes.start_time >= {since_ms}")
    runs = [r for r in runs if r.data.tags.get("kind") in ("model", "baseline")]
    console = Console(soft_wrap=True, width=200)  # no wrapping: the tag and the next command stay copyable
    console.rule("longdoc run: summary")
    if not runs:
        console.print("no candidate was registered in this run")
        return False
    name = runs[0].data.tags["model_name"]
    versions = {v.run_id: v for v in client.search_model_versions(f"name='{name}'")}
    table = summary_table()
    for run in sorted(runs, key=lambda r: -r.data.metrics.get("normal_macro_f1", 0)):
        m, version = run.data.metrics, versions.get(run.info.run_id)
        is_model = run.data.tags.get("kind") == "model"
        steps = f"{_cell(m, 'train_steps', 0)} ({_cell(m, 'train_epochs', 1)} ep)" if is_model else "-"
        table.add_row(run.data.tags.get("variant", "?"), str(version.version) if version else "-",
                      _interval(m, "normal_accuracy"), _interval(m, "normal_macro_f1"),
                      _interval(m, "inverted_gap_macro_f1"), _cell(m, "shuffled_gap_macro_f1"),
                      f"{_cell(m, 'normal_ece_uncalibrated')} -> {_cell(m, 'normal_ece')}",
                      _cell(m, "docs_per_second", 1), steps, training_cost(m) if is_model else "-",
                      version.tags.get("gate", "") if version else "")
    console.print(table)
    first = runs[0]
    champion = current_champion(client, name, params.registry.champion_alias)
    promoted = outputs.get("decision") == "package"
    m = first.data.metrics
    rows = [
        ("task", f"{first.data.tags.get('task')} (registered model {name})"),
        ("data version", f"{first.data.tags.get('data_version')} (hash of the validated corpus; DVC md5 "
                         f"{first.data.tags.get('dvc_md5', 'untracked')})"),
        ("validation", f"passed; {first.data.tags.get('quarantined_docs', '0')} document(s) quarantined"),
        *decision_rows(client, name, runs, versions),
        ("tracking URI", redact(resolve_tracking_uri(params.registry.tracking_uri))),
    ]
    if champion is None:
        rows.append(("champion", "none: every candidate was refused (see the gate column); nothing was packaged"))
    else:
        gate = champion.tags.get("gate", "")
        rows.append(("champion", f"{name} v{champion.version} ({champion.tags.get('variant', '?')}), "
                                 f"models:/{name}@{params.registry.champion_alias}: {gate}"))
        if champion.tags.get("kind") == "baseline":
            base_run = next((r for r in runs if r.info.run_id == champion.run_id), None)
            note = _cost_note(runs, base_run) if base_run else ""
            rows.append(("baseline wins", "no transformer beat TF-IDF + logistic regression by min_gain on these "
                                          f"documents; {note}"))
    bento = champion.tags.get("bento") if champion is not None else None
    if bento:
        when = "packaged by this run" if promoted else "packaged by an earlier run: no new champion this run"
        rows += [("Bento", f"{bento} ({when})"),
                 ("next", f"longdoc serve --bento {bento}   # or: bentoml serve {bento}")]
    else:
        rows.append(("Bento", "none: the champion has no Bento (packaging failed? see above; the next run retries)"))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        console.print(f"[bold]{key:<{width}}[/]  {value}", highlight=False)
    return champion is not None


def print_runtime(console, runtime: dict) -> None:
    """What `longdoc package` decided the Bento serves with, and each candidate's check against torch fp32."""
    from rich.table import Table

    if runtime.get("candidates"):
        limit = runtime["max_disagreement"]
        table = Table(title=f"serving runtimes checked on {runtime['checked_docs']} documents (validation, test, "
                            f"training) against torch fp32 ({runtime['torch_docs_per_s']:.1f} docs/s)")
        for column in ("runtime", "labels differing", "docs/s", "largest probability change", "refused because"):
            table.add_column(column)
        for c in runtime["candidates"]:
            over = c["disagreement"] is not None and c["disagreement"] > limit
            table.add_row(f"{c['engine']} {c['precision']}", "" if c["differing"] is None else f"{c['differing']}",
                          "" if c["docs_per_s"] is None else f"{c['docs_per_s']:.1f}",
                          "" if c["max_prob_diff"] is None else f"{c['max_prob_diff']:.4f}",
                          c["error"] or (f"{c['disagreement']:.1%} differ > {limit:.1%}" if over else ""))
        console.print(table)
    console.print(f"runtime: {runtime.get('runtime')} {runtime.get('precision')}: {runtime.get('reason')}")

"""The closing summary of ``longdoc run``, read back from MLflow so it shows what was stored."""

from __future__ import annotations

from longdoc.config import Params
from longdoc.data.versioning import dvc_data_version
from longdoc.tracking import resolve_tracking_uri, use_tracking


def latest_bento(name: str) -> str | None:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentos = sorted(bentoml.bentos.list(name), key=lambda b: b.info.creation_time)
    except NotFound:
        return None
    return str(bentos[-1].tag) if bentos else None


def print_summary(params: Params, outputs: dict[str, str], since_ms: int) -> None:
    """The comparison of this run's models and baseline, the champion, and what to run next."""
    from rich.console import Console
    from rich.table import Table

    from longdoc.comparison import comparison_frame

    mlflow = use_tracking(params.registry.tracking_uri)
    client = mlflow.MlflowClient()
    name = params.registry.model_name
    experiment = mlflow.get_experiment_by_name(params.registry.experiment)
    runs = client.search_runs([experiment.experiment_id], f"attributes.start_time >= {since_ms}")
    runs = [r for r in runs if r.data.tags.get("kind") in ("model", "baseline")]
    frame = comparison_frame(client, [r.info.run_id for r in runs])
    versions = {v.run_id: v for v in client.search_model_versions(f"name='{name}'")}

    console = Console(soft_wrap=True, width=160)  # no wrapping: the tag and the next command stay copyable
    console.rule("longdoc run: summary")
    columns = ["accuracy", "macro-F1", "inverted acc", "inverted gap (acc)", "shuffled gap (acc)", "ECE",
               "docs/s", "train s"]
    table = Table("variant", "version", *columns, "gate")
    for _, row in frame.iterrows():
        version = versions.get(row["run_id"])
        cells = [("" if v != v or v is None else (f"{v:.1f}" if c in ("docs/s", "train s") else f"{v:.4f}"))
                 for c, v in row[columns].items()]
        gate = version.tags.get("gate", "") if version else "baseline (not registered)"
        table.add_row(row["variant"], str(version.version) if version else "-", *cells, gate[:60])
    console.print(table)
    test_docs = int(client.get_run(runs[0].info.run_id).data.metrics.get("test_docs", 0)) if runs else 0
    champion = client.get_model_version_by_alias(name, params.registry.champion_alias)
    bento = latest_bento("longdoc") or "none"
    rows = [
        ("data version (data.dvc)", dvc_data_version()),
        ("validation", f"passed; evaluated on {test_docs} test documents"),
        ("champion", f"{name} version {champion.version} ({champion.tags.get('variant', '?')}), "
                     f"models:/{name}@{params.registry.champion_alias}"),
        ("tracking URI", resolve_tracking_uri(params.registry.tracking_uri)),
        ("Bento", bento),
        ("next", f"longdoc serve --bento {bento}   # or: bentoml serve {bento}"),
    ]
    if params.train.overrides:
        budget = "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in override.items())
                           for name, override in params.train.overrides.items())
        rows.insert(2, ("training budget", f"scaled by train.overrides in params.yaml ({budget})"))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        console.print(f"[bold]{key:<{width}}[/]  {value}", highlight=False)

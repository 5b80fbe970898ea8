"""The closing summary of ``longdoc run``, read back from the registry so it shows what was stored."""

from __future__ import annotations

from longdoc.config import Params
from longdoc.data.versioning import dvc_data_version
from longdoc.tracking import resolve_tracking_uri, use_tracking


def print_summary(params: Params, outputs: dict[str, str], since_ms: int) -> None:
    """One line per version this run registered, then where everything is and what to run next."""
    from rich.console import Console
    from rich.table import Table

    mlflow = use_tracking(params.registry.tracking_uri)
    client = mlflow.MlflowClient()
    name = params.registry.model_name
    versions = [v for v in client.search_model_versions(f"name='{name}'") if v.creation_timestamp >= since_ms]
    console = Console(soft_wrap=True, width=150)  # no wrapping: the tag and the next command stay copyable
    console.rule("longdoc run: summary")
    table = Table("variant", "version", "test acc", "macro-F1", "inverted acc", "inverted macro-F1",
                  "gap (F1)", "training", "aliases")
    test_docs = 0
    for v in sorted(versions, key=lambda v: int(v.version)):
        m = client.get_run(v.run_id).data.metrics
        test_docs = int(m.get("test_docs", 0))
        steps = f"{int(m.get('train_steps', 0))} steps, {m.get('train_train_seconds', 0):.0f} s"
        table.add_row(v.tags.get("variant", "?"), str(v.version), f"{m['normal_accuracy']:.4f}",
                      f"{m['normal_macro_f1']:.4f}", f"{m['inverted_accuracy']:.4f}", f"{m['inverted_macro_f1']:.4f}",
                      f"{m['inverted_gap_macro_f1']:+.4f}", steps, ", ".join(v.aliases) or "-")
    console.print(table)
    champion = client.get_model_version_by_alias(name, params.registry.champion_alias)
    rows = [
        ("data version (data.dvc)", dvc_data_version()),
        ("validation", f"passed; {test_docs} test documents"),
        ("champion", f"{name} version {champion.version} ({champion.tags.get('variant', '?')}), "
                     f"models:/{name}@{params.registry.champion_alias}"),
        ("tracking URI", resolve_tracking_uri(params.registry.tracking_uri)),
        ("Bento", outputs["bento_tag"]),
        ("next", f"longdoc serve --bento {outputs['bento_tag']}   # or: bentoml serve {outputs['bento_tag']}"),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        console.print(f"[bold]{key:<{width}}[/]  {value}", highlight=False)

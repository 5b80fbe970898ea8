"""The closing summary of ``longdoc run``, read back from the registry so it shows what was stored."""

from __future__ import annotations

from longdoc.config import Params
from longdoc.data.versioning import dvc_data_version
from longdoc.tracking import resolve_tracking_uri, use_tracking


def print_summary(params: Params, outputs: dict[str, str]) -> None:
    from rich.console import Console

    mlflow = use_tracking(params.registry.tracking_uri)
    client = mlflow.MlflowClient()
    name = params.registry.model_name
    mv = client.get_model_version(name, outputs["model_version"])
    metrics = client.get_run(mv.run_id).data.metrics
    aliases = ", ".join(mv.aliases) or "none"
    rows = [
        ("data version (data.dvc)", dvc_data_version()),
        ("validation", f"passed ({int(metrics.get('test_docs', 0))} test documents)"),
        ("variant", mv.tags.get("variant", "?")),
        ("test accuracy / macro-F1", f"{metrics['normal_accuracy']:.4f} / {metrics['normal_macro_f1']:.4f}"),
        ("inverted accuracy / macro-F1", f"{metrics['inverted_accuracy']:.4f} / {metrics['inverted_macro_f1']:.4f}"),
        ("inverted gap (macro-F1)", f"{metrics['inverted_gap_macro_f1']:+.4f}"),
        ("MLflow", f"{name} version {mv.version}, aliases: {aliases} ({mv.tags.get('promotion', '')})"),
        ("tracking URI", resolve_tracking_uri(params.registry.tracking_uri)),
        ("Bento", outputs["bento_tag"]),
        ("next", f"longdoc serve --bento {outputs['bento_tag']}   # or: bentoml serve {outputs['bento_tag']}"),
    ]
    console = Console(soft_wrap=True)  # no wrapping: the tag and the next command stay copyable
    console.rule("longdoc run: summary")
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        console.print(f"[bold]{key:<{width}}[/]  {value}", highlight=False)

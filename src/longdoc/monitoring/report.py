"""The drift report people look at: one PNG (each feature, reference against served, and every test's p-value
against the threshold) and one HTML page that holds the table and the picture."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from longdoc.monitoring.drift import DriftResult
from longdoc.monitoring.feedback import ServedAccuracy

PANELS = ("chars", "tokens", "chunks", "confidence")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _histogram(ax, feature: str, reference: pd.DataFrame, served: pd.DataFrame) -> None:
    both = np.concatenate([reference[feature].to_numpy(float), served[feature].to_numpy(float)])
    bins = np.histogram_bin_edges(both, bins=min(30, max(5, len(np.unique(both)))))
    ax.hist(reference[feature], bins=bins, density=True, alpha=0.55, label="reference", color="#4c72b0")
    ax.hist(served[feature], bins=bins, density=True, alpha=0.55, label="served", color="#dd8452")
    ax.set_title(feature)
    ax.set_yticks([])


def _label_mix(ax, served: pd.DataFrame, training_mix: dict[str, float]) -> None:
    labels = sorted(training_mix)
    total = sum(training_mix.values())
    x = np.arange(len(labels))
    served_share = served["label"].value_counts(normalize=True).reindex(labels, fill_value=0)
    ax.bar(x - 0.2, [training_mix[k] / total for k in labels], 0.4, label="training", color="#4c72b0")
    ax.bar(x + 0.2, served_share, 0.4, label="served (predicted)", color="#dd8452")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_title("label mix")


def _sketch(ax, reference: pd.DataFrame, served: pd.DataFrame) -> None:
    """The sketches on their first two principal axes (of both samples together)."""
    x, y = np.stack(reference["sketch"].to_list()), np.stack(served["sketch"].to_list())
    both = np.vstack([x, y])
    centred = both - both.mean(0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    shown = centred @ axes[:2].T
    ax.scatter(*shown[: len(x)].T, s=8, alpha=0.6, label="reference", color="#4c72b0")
    ax.scatter(*shown[len(x):].T, s=8, alpha=0.6, label="served", color="#dd8452")
    ax.set_title("embedding sketch (2 principal axes)")
    ax.set_xticks([])
    ax.set_yticks([])


def _p_values(ax, result: DriftResult) -> None:
    names = [c.feature for c in result.checks]
    scores = [-np.log10(max(c.p_value, 1e-300)) for c in result.checks]
    colours = ["#c44e52" if c.drifted else "#55a868" for c in result.checks]
    ax.barh(names, np.minimum(scores, 50), color=colours)
    threshold = result.checks[0].threshold if result.checks else result.alpha
    ax.axvline(-np.log10(threshold), color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("-log10 p (dashed: alarm threshold)")
    ax.set_title("tests")


def report_png(reference: pd.DataFrame, served: pd.DataFrame, training_mix: dict[str, float], result: DriftResult,
               title: str, path: Path) -> Path:
    plt = _pyplot()
    fig, grid = plt.subplots(2, 4, figsize=(17, 7.5), dpi=100)
    for ax, feature in zip(grid[0], PANELS, strict=True):
        _histogram(ax, feature, reference, served)
    grid[0][0].legend(fontsize=8)
    _label_mix(grid[1][0], served, training_mix)
    grid[1][0].legend(fontsize=8)
    _histogram(grid[1][1], "top_chunk", reference, served)
    _sketch(grid[1][2], reference, served)
    _p_values(grid[1][3], result)
    verdict = "DRIFT: " + ", ".join(result.drifted_features) if result.drifted else "no drift"
    fig.suptitle(f"{title}: {verdict} ({result.served_docs} served vs {result.reference_docs} reference documents)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def report_html(result: DriftResult, accuracy: ServedAccuracy | None, title: str, png: Path, path: Path) -> Path:
    rows = "".join(
        f"<tr class={'drift' if c.drifted else 'ok'}><td>{html.escape(c.feature)}</td><td>{html.escape(c.test)}</td>"
        f"<td>{c.statistic:.4g}</td><td>{c.p_value:.3g}</td><td>{c.threshold:.3g}</td>"
        f"<td>{'drift' if c.drifted else 'ok'}</td><td>{html.escape(c.note)}</td></tr>" for c in result.checks)
    served = ("<p>No labelled feedback matched a served document in this window.</p>" if accuracy is None else
              f"<p>Served accuracy from feedback: {accuracy.accuracy:.3f} "
              f"[{accuracy.low:.3f}, {accuracy.high:.3f}] ({accuracy.confidence:.0%} Wilson interval, "
              f"{accuracy.correct}/{accuracy.documents} documents).</p>")
    picture = base64.b64encode(png.read_bytes()).decode()
    path.write_text(f"""<!doctype html><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:4px 10px;border-bottom:1px solid #ddd}}
tr.drift{{background:#fbe3e4}}</style>
<h1>{html.escape(title)}: {"drift" if result.drifted else "no drift"}</h1>
<p>{result.served_docs} served documents against {result.reference_docs} reference documents; an alarm when a
p-value is under alpha / tests = {result.alpha} / {len(result.checks)}.</p>{served}
<table><tr><th>feature</th><th>test</th><th>statistic</th><th>p-value</th><th>threshold</th><th></th><th></th></tr>
{rows}</table><img alt="drift report" src="data:image/png;base64,{picture}" style="max-width:100%">
""")
    return path

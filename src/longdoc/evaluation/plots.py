"""PNG figures that people look at; logged to MLflow and linked from the README."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_png(matrix: np.ndarray, labels: list[str], title: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.8), dpi=110)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    limit = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > limit else "black")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def sweep_png(curves: dict[str, list[float]], positions: tuple[float, ...], title: str, path: Path) -> Path:
    """Accuracy against where the first paragraph sits, one line per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, accuracy in curves.items():
        ax.plot([100 * p for p in positions], accuracy, marker="o", label=name)
    ax.set_xlabel("position of the first paragraph (% of the document)")
    ax.set_ylabel("accuracy")
    ax.set_xticks([100 * p for p in positions])
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def robustness_png(frame, path: Path) -> Path:
    """Accuracy on normal, inverted and shuffled documents, one group of bars per model.

    The normal bar carries the 95% bootstrap interval of accuracy, so a reader sees which gaps are
    larger than the resolution of the test split.
    """
    plt = _pyplot()
    views = [("accuracy", "normal"), ("inverted acc", "inverted"), ("shuffled acc", "shuffled")]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(frame)), 4), dpi=110)
    width = 0.8 / len(views)
    for k, (column, label) in enumerate(views):
        values = frame[column].astype(float)
        errors = None
        if k == 0 and {"accuracy lo", "accuracy hi"} <= set(frame.columns):
            errors = [(values - frame["accuracy lo"].astype(float)).clip(lower=0),
                      (frame["accuracy hi"].astype(float) - values).clip(lower=0)]
        ax.bar([i + k * width for i in range(len(frame))], values, width, label=label, yerr=errors, capsize=3)
    ax.set_xticks([i + width for i in range(len(frame))], frame["variant"], rotation=20, ha="right")
    low = float(frame[[c for c, _ in views]].astype(float).min().min())
    ax.set_ylim(max(0.0, low - 0.1), 1.0)
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("robustness to paragraph order")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def scaling_png(rows: list[dict], path: Path) -> Path:
    """Seconds (top) and peak memory (bottom) against document length, log-log, one line per method and pass.

    Rows without a time (out of memory) are left out; memory at or below 0 MB (the RSS sampler saw nothing above
    its starting level) cannot sit on a log axis and is left out of the lower panels only.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), dpi=110, sharex=True)
    for col, kind in enumerate(("forward", "forward+backward")):
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == method and r["pass"] == kind and "median_s" in r]
            axes[0, col].plot([r["tokens"] for r in mine], [r["median_s"] for r in mine], marker="o", label=method)
            mem = [r for r in mine if r.get("peak_mb", 0) > 0]
            axes[1, col].plot([r["tokens"] for r in mem], [r["peak_mb"] for r in mem], marker="o", label=method)
        for row, label in ((0, "seconds per document"), (1, "peak memory (MB)")):
            ax = axes[row, col]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
        axes[0, col].set_title(kind)
        axes[1, col].set_xlabel("document length (tokens)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

"""ROC and FROC plots (PNG), drawn with matplotlib's non-interactive backend."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], path: Path,
             title: str) -> None:
    """``curves``: label -> (fpr, tpr, auc)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, (fpr, tpr, a) in curves.items():
        ax.plot(fpr, tpr, label=f"{label} (AUC {a:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_froc(curves: Mapping[str, dict], path: Path, title: str) -> None:
    """``curves``: label -> :func:`lungcad_inference.metrics.froc` output (with ``cpm``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, c in curves.items():
        fps = np.maximum(np.asarray(c["fp_per_scan"]), 1e-3)
        ax.step(fps, c["sensitivity"], where="post", label=f"{label} (CPM {c.get('cpm', 0):.3f})")
    ax.set_xscale("log")
    ax.set(xlim=(0.125, 8), ylim=(0, 1.02), xlabel="false positives per scan",
           ylabel="sensitivity", title=title)
    ax.minorticks_off()
    ax.set_xticks([0.125, 0.25, 0.5, 1, 2, 4, 8], ["1/8", "1/4", "1/2", "1", "2", "4", "8"])
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

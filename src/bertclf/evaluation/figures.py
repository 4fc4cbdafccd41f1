"""The figures of `bertclf analyze` and of a run's report, as PNG files (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from bertclf.fileio import atomic_path  # noqa: E402


def _save(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _integer_bins(values, most: int = 60) -> np.ndarray:
    """Bin edges on whole numbers, at most `most` bins: a count never straddles two bars,
    and a narrow range does not become hairlines."""
    low, high = int(np.min(values)), int(np.max(values)) + 1
    width = max(1, int(np.ceil((high - low) / most)))
    return np.arange(low, high + width, width) - 0.5


def plot_word_counts(words_by_class: dict[str, np.ndarray], path: Path) -> Path:
    """One histogram panel of words per document for each class."""
    n = len(words_by_class)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, words) in zip(axes.flat, words_by_class.items(), strict=False):
        ax.hist(words, bins=_integer_bins(words), color="tab:blue", edgecolor="white")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{name} word counts ({len(words)} documents)")
        ax.set_xlabel("words per document")
        ax.set_ylabel("documents")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


def plot_token_counts(tokens: np.ndarray, suggested: dict[str, Any], path: Path) -> Path:
    """Histogram of WordPiece tokens per document, the suggested --seq-len marked."""
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.hist(tokens, bins=_integer_bins(tokens), color="tab:gray", edgecolor="white")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # documents are counted whole
    cut = suggested["seq_len"]
    ax.axvline(
        cut,
        color="tab:red",
        linestyle="--",
        label=f"suggested --seq-len {cut} ({suggested['coverage']:.1%} kept whole)",
    )
    ax.set_xlabel("WordPiece tokens per document (incl. [CLS] and [SEP])")
    ax.set_ylabel("documents")
    ax.set_title("Token counts, all classes")
    ax.legend()
    return _save(fig, path)


def plot_curves(
    history: list[dict[str, float]],
    path: Path,
    baseline_f1: float | None = None,
    kept_epoch: int | None = None,
    multilabel: bool = False,
) -> Path:
    """Side by side: loss, accuracy (single-label) and the selection metric, validation
    macro-F1, with the linear baseline's as a dashed line and the kept epoch marked.

    A multi-label run shows loss and macro-F1 only: its subset accuracy (the whole label
    set right) is no headline.
    """
    epochs = [r["epoch"] for r in history]
    panels = ["loss"] if multilabel else ["loss", "accuracy"]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(5.2 * (len(panels) + 1), 3.8))
    for ax, key in zip(axes, panels, strict=False):
        ax.plot(
            epochs,
            [r[f"train_{key}"] for r in history],
            "o-",
            color="tab:red",
            label=f"training {key}",
        )
        ax.plot(
            epochs,
            [r[f"val_{key}"] for r in history],
            "o-",
            color="tab:blue",
            label=f"validation {key}",
        )
        ax.set_title(key.capitalize())
    ax = axes[-1]
    ax.plot(
        epochs,
        [r["val_macro_f1"] for r in history],
        "o-",
        color="tab:blue",
        label="validation macro-F1 (selects the kept epoch)",
    )
    if baseline_f1 is not None:
        ax.axhline(
            baseline_f1,
            color="tab:gray",
            linestyle="--",
            label=f"linear baseline, validation ({baseline_f1:.3f})",
        )
    if kept_epoch is not None:
        kept = next(r for r in history if r["epoch"] == kept_epoch)
        ax.plot(
            [kept_epoch],
            [kept["val_macro_f1"]],
            marker="*",
            markersize=16,
            color="tab:orange",
            linestyle="none",
            label=f"kept: epoch {kept_epoch}",
        )
    ax.set_title("Validation macro-F1")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(matrix: list[list[int]], labels: list[str], title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 3, 1.0 * len(labels) + 2.5))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=labels).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45
    )
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)

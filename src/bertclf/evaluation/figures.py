"""The figures of `bertclf analyze` and of a run's report, as PNG files (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from bertclf.fileio import atomic_path  # noqa: E402


def _save(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_word_counts(words_by_class: dict[str, np.ndarray], path: Path) -> Path:
    """One histogram panel of words per document for each class."""
    n = len(words_by_class)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, words) in zip(axes.flat, words_by_class.items(), strict=False):
        ax.hist(words, bins=50, color="tab:blue")
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
    ax.hist(tokens, bins=60, color="tab:gray")
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


def plot_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Training and validation loss and accuracy per epoch."""
    epochs = [r["epoch"] for r in history]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for ax, key, title in ((top, "loss", "Loss"), (bottom, "accuracy", "Accuracy")):
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
        ax.set_title(f"Training and validation {key}")
        ax.set_ylabel(title)
        ax.legend()
    bottom.set_xlabel("epoch")
    bottom.set_xticks(epochs)
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

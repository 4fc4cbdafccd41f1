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


def plot_reliability(parts: dict[str, dict[str, Any]], path: Path) -> Path:
    """Reliability diagrams before and after calibration, one panel per split.

    Args:
        parts: split -> its calibration.json entry (`reliability_before`/`_after` bins,
            `ece_before`/`_after`).
    """
    fig, axes = plt.subplots(1, len(parts), figsize=(5 * len(parts), 4.2), squeeze=False)
    for ax, (split, m) in zip(axes.flat, parts.items(), strict=True):
        ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="perfectly calibrated")
        for when, style in (("before", "o--"), ("after", "s-")):
            bins = m[f"reliability_{when}"]
            points = [
                (c, f)
                for c, f, n in zip(
                    bins["confidence"], bins["frequency"], bins["count"], strict=True
                )
                if n
            ]
            x, y = zip(*points, strict=True) if points else ((), ())
            ax.plot(x, y, style, label=f"{when} (ECE {m[f'ece_{when}']:.3f})")
        ax.set_xlim(0, 1), ax.set_ylim(0, 1)
        ax.set_xlabel("predicted probability (15 bins)")
        ax.set_ylabel("observed frequency")
        ax.set_title(f"{split}: {m['examples']} texts")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_coverage(curve: dict[str, list[float]], abstain: float | None, path: Path) -> Path:
    """Accuracy and macro-F1 of the texts kept as the confidence threshold rises."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(curve["coverage"], curve["accuracy"], "o-", label="accuracy")
    ax.plot(curve["coverage"], curve["macro_f1"], "s--", label="macro-F1")
    if abstain is not None:
        kept = [
            c for c, t in zip(curve["coverage"], curve["threshold"], strict=True) if t >= abstain
        ]
        if kept:
            ax.axvline(min(kept), color="tab:red", linestyle=":", label="abstain threshold")
    ax.invert_xaxis()  # from every text to the most confident few
    ax.set_xlabel("coverage: share of validation texts kept (most confident first)")
    ax.set_ylabel("score on the kept texts")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_ood(scores: np.ndarray, threshold: float, path: Path) -> Path:
    """The validation split's OOD scores, the top-1% threshold marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(scores, bins=40, color="tab:gray", edgecolor="white")
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"top 1%: {threshold:.1f}")
    ax.set_xlabel("out-of-distribution score (higher: less like the training texts)")
    ax.set_ylabel("validation texts")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)

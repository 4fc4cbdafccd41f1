"""Score a trained run on labelled data with scikit-learn's metrics.

The metrics themselves (`compute_metrics`, `format_metrics`) need no TensorFlow: the
linear baseline reports through them too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn import metrics as skm

from bertclf.data import Examples, read_labelled
from bertclf.errors import DataError
from bertclf.labels import LabelFormat

if TYPE_CHECKING:
    from bertclf.run import TrainedRun

logger = logging.getLogger(__name__)


def compute_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    label_names: list[str],
    thresholds: np.ndarray | None = None,
) -> dict[str, Any]:
    """Loss, accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix.

    Multi-label data (`labels` [n, num_labels] 0/1) gets `multilabel_metrics`.

    Args:
        labels: [n] integer labels, or [n, num_labels] 0/1.
        probs: [n, num_labels] predicted probabilities.
        label_names: names in label order.
        thresholds: multilabel: [num_labels] decision thresholds.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return multilabel_metrics(labels, probs, label_names, thresholds)
    ids = list(range(len(label_names)))
    predicted = probs.argmax(axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=ids, zero_division=0
    )
    return {
        "examples": int(len(labels)),
        "loss": float(skm.log_loss(labels, np.clip(probs, 1e-7, 1.0), labels=ids)),
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "macro_f1": float(
            skm.f1_score(labels, predicted, labels=ids, average="macro", zero_division=0)
        ),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(label_names)
        },
        "labels": list(label_names),
        "confusion_matrix": skm.confusion_matrix(labels, predicted, labels=ids).tolist(),
    }


def multilabel_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    label_names: list[str],
    thresholds: np.ndarray | None = None,
) -> dict[str, Any]:
    """Multi-label metrics at the given thresholds (default 0.5 for every label).

    `accuracy` is the subset accuracy (the whole label set right), `loss` the binary
    cross-entropy averaged over labels and texts, `macro_f1` the mean of the labels'
    F1 (the kept-epoch metric); also micro- and sample-averaged F1, the Hamming loss,
    and per label precision, recall, F1, support, threshold and its [[tn, fp], [fn, tp]].
    """
    from bertclf.thresholds import DEFAULT, apply

    labels = np.asarray(labels, dtype=np.int64).reshape(len(labels), len(label_names))
    probs = np.asarray(probs, dtype=np.float64).reshape(labels.shape)
    if thresholds is None:
        thresholds = np.full(len(label_names), DEFAULT, np.float32)
    predicted = apply(probs, thresholds)
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    bce = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, zero_division=0
    )

    def average(kind: str) -> float:
        # samples: a text with no label and none predicted is right (F1 1), not 0.
        zero = 1.0 if kind == "samples" else 0.0
        return float(skm.f1_score(labels, predicted, average=kind, zero_division=zero))

    confusion = skm.multilabel_confusion_matrix(labels, predicted) if len(labels) else None
    return {
        "examples": int(len(labels)),
        "multilabel": True,
        "loss": float(bce.mean()) if len(labels) else 0.0,
        "accuracy": float(skm.accuracy_score(labels, predicted)) if len(labels) else 0.0,
        "macro_f1": average("macro"),
        "micro_f1": average("micro"),
        "samples_f1": average("samples") if len(labels) else 0.0,
        "hamming_loss": float(skm.hamming_loss(labels, predicted)) if len(labels) else 0.0,
        "per_class": _per_label(label_names, precision, recall, f1, support, thresholds, confusion),
        "labels": list(label_names),
    }


def _per_label(names, precision, recall, f1, support, thresholds, confusion) -> dict:
    return {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "threshold": float(thresholds[i]),
            "confusion": confusion[i].tolist() if confusion is not None else None,
        }
        for i, name in enumerate(names)
    }


def evaluate_examples(run: TrainedRun, examples: Examples) -> dict[str, Any]:
    """Metrics of `run`'s best weights on `examples` (labels in the run's order)."""
    if examples.multilabel != run.multilabel:
        kind = "multi-label" if run.multilabel else "single-label"
        raise DataError(
            f"{run.path} is a {kind} run, but the data was read as "
            f"{'multi-label' if examples.multilabel else 'single-label'}; score it on "
            f"{kind} data"
        )
    probs = run.predict_proba(examples.texts)
    return compute_metrics(np.asarray(examples.labels), probs, run.label_names, run.thresholds)


def evaluate(
    run_dir: str | Path, data: str | Path, text_field: str = "text", label_field: str = "label"
) -> dict[str, Any]:
    """`bertclf evaluate RUN DATA`: read DATA as the run read its data, score the run.

    DATA's labels are read in the run's form (`run_label_format`): a multi-label run
    reads the same label lists, separator, 0/1 columns or names file as in training.

    Example:
    >>> m = evaluate("runs/demo", "examples/demo_data")  # doctest: +SKIP
    >>> sorted(m)[:3]
    ['accuracy', 'confusion_matrix', 'examples']
    """
    from bertclf.run import load_run  # TensorFlow: only when a run is scored

    fmt = run_label_format(run_dir, label_field)
    run = load_run(run_dir)
    examples = read_labelled(data, text_field, fmt, label_names=run.label_names)
    return evaluate_examples(run, examples)


def run_label_format(run_dir: str | Path, label_field: str | None = None) -> LabelFormat:
    """How a run's labelled data is read (its config.json), `label_field` overriding."""
    from bertclf.config import RunConfig
    from bertclf.rundir import read_meta

    config = RunConfig.from_dict(read_meta(Path(run_dir))["config"])
    return LabelFormat.from_config(config.data, label_field)


def format_metrics(m: dict[str, Any]) -> str:
    """A terminal table of the metrics and the confusion matrix."""
    if m.get("multilabel"):
        return format_multilabel(m)
    names = m["labels"]
    width = max(12, *(len(n) for n in names))
    lines = [
        f"examples {m['examples']}  loss {m['loss']:.4f}  accuracy {m['accuracy']:.4f}  "
        f"macro-F1 {m['macro_f1']:.4f}",
        "",
        f"{'label':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}",
    ]
    for name in names:
        c = m["per_class"][name]
        lines.append(
            f"{name:<{width}} {c['precision']:>9.4f} {c['recall']:>9.4f} "
            f"{c['f1']:>9.4f} {c['support']:>8d}"
        )
    lines += [
        "",
        "confusion matrix (rows: true, columns: predicted)",
        " " * width + " " + " ".join(f"{n[:8]:>8}" for n in names),
    ]
    for name, row in zip(names, m["confusion_matrix"], strict=True):
        lines.append(f"{name:<{width}} " + " ".join(f"{v:>8d}" for v in row))
    return "\n".join(lines)


def format_multilabel(m: dict[str, Any]) -> str:
    """A terminal table of multi-label metrics: averages, then one row per label."""
    names = m["labels"]
    width = max(12, *(len(n) for n in names))
    lines = [
        f"examples {m['examples']}  loss {m['loss']:.4f}  macro-F1 {m['macro_f1']:.4f}  "
        f"micro-F1 {m['micro_f1']:.4f}  samples-F1 {m['samples_f1']:.4f}",
        f"subset accuracy {m['accuracy']:.4f}  Hamming loss {m['hamming_loss']:.4f}",
        "",
        f"{'label':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8} "
        f"{'threshold':>9} {'tp':>6} {'fp':>6} {'fn':>6}",
    ]
    for name in names:
        c = m["per_class"][name]
        (_, fp), (fn, tp) = c["confusion"] or [[0, 0], [0, 0]]
        lines.append(
            f"{name:<{width}} {c['precision']:>9.4f} {c['recall']:>9.4f} {c['f1']:>9.4f} "
            f"{c['support']:>8d} {c['threshold']:>9.2f} {tp:>6d} {fp:>6d} {fn:>6d}"
        )
    return "\n".join(lines)

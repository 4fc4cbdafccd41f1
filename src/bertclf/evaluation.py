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

if TYPE_CHECKING:
    from bertclf.run import TrainedRun

logger = logging.getLogger(__name__)


def compute_metrics(
    labels: np.ndarray, probs: np.ndarray, label_names: list[str]
) -> dict[str, Any]:
    """Loss, accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix.

    Args:
        labels: [n] integer labels.
        probs: [n, num_labels] predicted probabilities.
        label_names: names in label order.
    """
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


def evaluate_examples(run: TrainedRun, examples: Examples) -> dict[str, Any]:
    """Metrics of `run`'s best weights on `examples` (labels in the run's order)."""
    probs = run.predict_proba(examples.texts)
    return compute_metrics(np.asarray(examples.labels), probs, run.label_names)


def evaluate(
    run_dir: str | Path, data: str | Path, text_field: str = "text", label_field: str = "label"
) -> dict[str, Any]:
    """`bertclf evaluate RUN DATA`: read DATA, check its labels, score the run.

    Example:
    >>> m = evaluate("runs/demo", "examples/demo_data")  # doctest: +SKIP
    >>> sorted(m)[:3]
    ['accuracy', 'confusion_matrix', 'examples']
    """
    from bertclf.run import load_run  # TensorFlow: only when a run is scored

    run = load_run(run_dir)
    examples = read_labelled(data, text_field, label_field, label_names=run.label_names)
    return evaluate_examples(run, examples)


def format_metrics(m: dict[str, Any]) -> str:
    """A terminal table of the metrics and the confusion matrix."""
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

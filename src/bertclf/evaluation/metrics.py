"""Score a trained run on labelled data with scikit-learn's metrics.

The metrics themselves (`compute_metrics`, `format_metrics`) need no TensorFlow: the
linear baseline reports through them too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn import metrics as skm

from bertclf.prediction.predictor import DEFAULT, apply

if TYPE_CHECKING:
    pass

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


# ------------------------------------------------------------------ F1 from counts
# Where the predictions are not at hand as label arrays, F1 comes from counts: the
# training loop sums a confusion matrix in the graph, across replicas, and the
# threshold search counts every label at 99 cuts at once. One formula for both, tested
# equal to scikit-learn's f1_score (tests/test_metrics.py).


def f1_from_counts(tp, fp, fn) -> np.ndarray:
    """F1 = 2tp / (2tp + fp + fn), elementwise; 0 where nothing was true or predicted
    (scikit-learn's `zero_division=0`)."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(np.shape(tp)), where=denominator > 0)


def macro_f1_from_confusion(confusion: np.ndarray) -> float:
    """Macro-F1 from a confusion matrix (rows: true, columns: predicted), as scikit-learn.

    >>> macro_f1_from_confusion([[2, 1], [0, 1]])
    0.7333333333333334
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    return float(f1_from_counts(tp, confusion.sum(axis=0) - tp, confusion.sum(axis=1) - tp).mean())


# ------------------------------------------------------------------ calibration

ECE_BINS = 15  # equal-width confidence bins, as Guo et al. 2017


def _binary_view(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) pairs whose agreement calibration measures.

    Single-label: the top probability and whether the top label is right (Guo et al.).
    Multi-label: every label's probability and whether the text has that label, all
    labels pooled (each row of a label's reliability diagram then counts).
    """
    labels, probs = np.asarray(labels), np.asarray(probs, np.float64)
    if labels.ndim == 2:
        return probs.reshape(-1), labels.reshape(-1).astype(np.float64)
    return probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64)


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> dict[str, list]:
    """Per equal-width bin: mean confidence, observed frequency, count (empty bins: None)."""
    confidence, correct = _binary_view(labels, probs)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    conf = np.bincount(which, weights=confidence, minlength=bins)
    hits = np.bincount(which, weights=correct, minlength=bins)
    return {
        "confidence": [float(c / n) if n else None for c, n in zip(conf, count, strict=True)],
        "frequency": [float(h / n) if n else None for h, n in zip(hits, count, strict=True)],
        "count": count.tolist(),
    }


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray) -> float:
    """ECE: the count-weighted mean |confidence - frequency| over `ECE_BINS` bins.

    Multi-label: the mean of each label's ECE over its own probabilities.

    >>> round(expected_calibration_error(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]])), 3)
    0.45
    """
    labels, probs = np.asarray(labels), np.asarray(probs)
    if labels.ndim == 2:
        return float(np.mean([_ece(labels[:, [j]], probs[:, [j]]) for j in range(labels.shape[1])]))
    return _ece(labels, probs)


def _ece(labels, probs) -> float:
    r = reliability(labels, probs)
    n = sum(r["count"])
    return float(
        sum(
            c * abs(conf - freq)
            for conf, freq, c in zip(r["confidence"], r["frequency"], r["count"], strict=True)
            if c
        )
        / max(n, 1)
    )


def calibration_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """ECE (15 bins), negative log-likelihood and Brier score of `probs` against `labels`.

    Single-label: NLL is the cross-entropy, Brier the squared distance to the one-hot
    label summed over labels. Multi-label: each label's binary NLL and squared error,
    averaged over labels and texts.
    """
    labels, probs = np.asarray(labels), np.clip(np.asarray(probs, np.float64), 1e-7, 1 - 1e-7)
    if labels.ndim == 2:
        y = labels.astype(np.float64)
        nll = -np.mean(y * np.log(probs) + (1 - y) * np.log(1 - probs))
        brier = np.mean((probs - y) ** 2)
    else:
        onehot = np.eye(probs.shape[1])[labels]
        nll = -np.mean(np.log(probs[np.arange(len(labels)), labels]))
        brier = np.mean(np.sum((probs - onehot) ** 2, axis=1))
    return {
        "ece": expected_calibration_error(labels, probs),
        "nll": float(nll),
        "brier": float(brier),
    }


def coverage_curve(labels, predicted, confidence, num_labels: int) -> dict[str, list[float]]:
    """Accuracy and macro-F1 of the texts kept as the confidence threshold rises.

    Args:
        labels: [n] ids or [n, L] 0/1.
        predicted: [n] predicted ids or [n, L] 0/1 predictions.
        confidence: [n] each text's confidence (`bertclf.model.calibration.confidence_np`).
        num_labels: L.

    Returns: {"coverage", "threshold", "accuracy", "macro_f1"}: one point per 5% of
    coverage, from every text down to the most confident 5% (multi-label accuracy: the
    share of exactly right label sets).
    """
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    confidence = np.asarray(confidence)
    order = np.argsort(-confidence, kind="stable")
    out = {"coverage": [], "threshold": [], "accuracy": [], "macro_f1": []}
    for share in np.arange(20, 0, -1) / 20:
        kept = order[: max(1, round(share * len(order)))]
        y, p = labels[kept], predicted[kept]
        right = np.all(y == p, axis=1) if y.ndim == 2 else y == p
        ids = None if y.ndim == 2 else list(range(num_labels))
        out["coverage"].append(len(kept) / len(order))
        out["threshold"].append(float(confidence[kept[-1]]))
        out["accuracy"].append(float(np.mean(right)))
        out["macro_f1"].append(
            float(skm.f1_score(y, p, labels=ids, average="macro", zero_division=0))
        )
    return out

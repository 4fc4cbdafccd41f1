"""What a score means: the calibrated probabilities, abstaining and the out-of-distribution score.

A trained run turns a text into logits and a sentence vector (`BertClassifier.
logits_and_vectors`). `Calibration` turns those into what a user acts on, with the same
TensorFlow ops in `bertclf predict` and in the export's graph (so the two agree):

- `scores`: the probabilities of the logits divided by a temperature fitted on the
  validation split (Guo et al. 2017): one divide before the softmax or sigmoid, one
  temperature (single-label) or one per label (multi-label). It never moves the argmax.
- `ood_score`: how unlike the training data a text is: the Mahalanobis distance of its
  sentence vector to the nearest class mean, under one covariance shared by the classes
  (Lee et al. 2018; Podolskiy et al. 2021 found it the strongest such score for
  fine-tuned transformers). Multi-label runs use one mean. Higher is stranger; the run
  stores the value above which 1% of validation texts fall (`ood_threshold`).
- `abstain`: True where the confidence is below the threshold `--abstain-precision`
  chose (the top probability; multi-label: the least sure label decision, a label's
  probability when predicted and one minus it when not). Never True without the option.

Files: RUN/calibration.json (the fitted values and their measurements, written by
`bertclf.training.calibration`) and RUN/ood.npz (the class means and the precision
matrix, arrays too large for JSON to carry well). A run made before calibration existed
has neither: it predicts as it always did (`read` returns None).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertclf.errors import RunError
from bertclf.fileio import atomic_path, read_json, write_json

CALIBRATION = "calibration.json"
OOD_ARRAYS = "ood.npz"
OOD_QUANTILE = 0.99  # the share of validation texts below the stored OOD threshold


@dataclass(frozen=True)
class Calibration:
    """A run's calibration: how logits and vectors become `scores`, `ood_score`, `abstain`.

    Args:
        method: `temperature` or `none` (temperatures of 1).
        temperature: [1] (single-label) or [num_labels] (multi-label) divisors of the logits.
        means: [classes, hidden] training class means of the sentence vectors ([1, hidden]
            for a multi-label run).
        precision: [hidden, hidden] inverse of their shared covariance.
        ood_threshold: the OOD score above which 1% of validation texts fall.
        abstain_threshold: the confidence below which the model abstains (None: never).
        thresholds: multi-label decision thresholds ([num_labels]), or None.

    Example:
    >>> import numpy as np
    >>> c = Calibration("temperature", np.array([2.0]), np.zeros((2, 3)), np.eye(3), 9.0)
    >>> c.outputs_np(np.array([[2.0, 0.0]]), np.array([[3.0, 0.0, 4.0]]), "softmax")["ood_score"]
    array([25.], dtype=float32)
    """

    method: str
    temperature: np.ndarray
    means: np.ndarray
    precision: np.ndarray
    ood_threshold: float
    abstain_threshold: float | None = None
    thresholds: np.ndarray | None = None

    # ---------------------------------------------------------------- the graph's ops

    def outputs(self, model, logits, vectors) -> dict[str, Any]:
        """TensorFlow: logits [b, L'] and vectors [b, H] -> scores [b, L], ood_score [b],
        abstain [b] (bool). The same ops in `bertclf predict` and in the export."""
        import tensorflow as tf

        temperature = tf.constant(self.temperature, tf.float32)  # [1] or [L]
        scores = model.probabilities(tf.cast(logits, tf.float32) / temperature)
        ood = self._mahalanobis(tf, tf.cast(vectors, tf.float32))
        abstain = self._confidence(tf, scores) < self._abstain_cut()
        return {"scores": scores, "ood_score": ood, "abstain": abstain}

    def _mahalanobis(self, tf, x):
        # min over classes of (x - m)^T P (x - m) = x^T P x - 2 x^T P m + m^T P m,
        # as matrix products: [b, H] @ [H, H] then [b, H] @ [H, C]: no per-class loop.
        precision = tf.constant(self.precision, tf.float32)  # [H, H]
        means = tf.constant(self.means, tf.float32)  # [C, H]
        mpm = tf.constant(np.einsum("ch,hk,ck->c", self.means, self.precision, self.means))
        xp = tf.matmul(x, precision)  # [b, H]
        xpx = tf.reduce_sum(xp * x, axis=-1, keepdims=True)  # [b, 1]
        d = xpx - 2.0 * tf.matmul(xp, means, transpose_b=True) + tf.cast(mpm, tf.float32)[None]
        return tf.maximum(tf.reduce_min(d, axis=-1), 0.0)  # [b]; rounding can dip below 0

    def _confidence(self, tf, scores):
        if self.thresholds is None:
            return tf.reduce_max(scores, axis=-1)  # [b]
        cuts = tf.constant(self.thresholds, tf.float32)[None, :]
        sure = tf.where(scores >= cuts, scores, 1.0 - scores)  # [b, L]
        return tf.reduce_min(sure, axis=-1)

    def _abstain_cut(self) -> float:
        # Without --abstain-precision, a cut no confidence is below: nothing abstains.
        return -1.0 if self.abstain_threshold is None else float(self.abstain_threshold)

    # ---------------------------------------------------------------- the same, in NumPy

    def outputs_np(self, logits: np.ndarray, vectors: np.ndarray, head: str) -> dict[str, Any]:
        """What `outputs` computes, in NumPy (for fitting and measuring; float32)."""
        scores = probabilities_np(np.asarray(logits, np.float32) / self.temperature, head)
        x = np.asarray(vectors, np.float32)
        diff = x[:, None, :] - self.means[None].astype(np.float32)  # [b, C, H]
        d = np.einsum("bch,hk,bck->bc", diff, self.precision.astype(np.float32), diff)
        return {
            "scores": scores,
            "ood_score": np.maximum(d.min(axis=1), 0.0).astype(np.float32),
            "abstain": confidence_np(scores, self.thresholds) < self._abstain_cut(),
        }

    # ---------------------------------------------------------------- files

    def to_dict(self) -> dict[str, Any]:
        """The small values (calibration.json's `fitted`); the arrays go to ood.npz."""
        return {
            "method": self.method,
            "temperature": [float(t) for t in self.temperature],
            "ood_threshold": float(self.ood_threshold),
            "abstain_threshold": self.abstain_threshold,
        }

    def metadata(self) -> dict[str, Any]:
        """What an export's metadata says about its extra outputs."""
        return {
            **self.to_dict(),
            "ood_score": "Mahalanobis distance to the nearest training class mean (higher: "
            "less like the training data)",
            "abstain": "confidence below abstain_threshold (never when it is null)",
        }


def probabilities_np(logits: np.ndarray, head: str) -> np.ndarray:
    """`BertClassifier.probabilities` in NumPy: [n, L'] logits -> [n, L] probabilities."""
    z = np.asarray(logits, np.float64)
    if head == "sigmoid":
        p1 = 1.0 / (1.0 + np.exp(-z))
        return np.concatenate([1.0 - p1, p1], axis=-1).astype(np.float32)
    if head == "multilabel":
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def confidence_np(scores: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
    """[n] confidence: the top probability, or (multi-label) the least sure decision."""
    scores = np.asarray(scores, np.float32)
    if thresholds is None:
        return scores.max(axis=-1)
    cuts = np.asarray(thresholds, np.float32)[None, :]
    return np.where(scores >= cuts, scores, 1.0 - scores).min(axis=-1)


def write(run_dir: Path, calibration: Calibration, report: dict[str, Any]) -> None:
    """RUN/ood.npz, then RUN/calibration.json (`fitted` and the measurements in `report`).

    The JSON is written last: a run that has it has both files.
    """
    with atomic_path(run_dir / OOD_ARRAYS) as tmp, open(tmp, "wb") as f:
        np.savez(f, means=calibration.means, precision=calibration.precision)
    write_json(run_dir / CALIBRATION, {"fitted": calibration.to_dict(), **report})


def read(run_dir: Path, thresholds: np.ndarray | None = None) -> Calibration | None:
    """A run's calibration, or None for a run made before calibration existed."""
    file = run_dir / CALIBRATION
    if not file.is_file():
        return None
    try:
        fitted = read_json(file)["fitted"]
        with np.load(run_dir / OOD_ARRAYS) as arrays:
            means, precision = arrays["means"], arrays["precision"]
        return Calibration(
            fitted["method"],
            np.asarray(fitted["temperature"], np.float32),
            means,
            precision,
            float(fitted["ood_threshold"]),
            fitted.get("abstain_threshold"),
            thresholds,
        )
    except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as e:
        raise RunError(
            f"{file}: damaged ({type(e).__name__}: {e}); restore it from a copy of the run, "
            "or train again with --overwrite"
        ) from None

"""Multi-label decision thresholds: one probability cut per label, tuned or fixed.

A multi-label model gives each label its own probability; a text gets every label
whose probability reaches that label's threshold. One fixed cut (0.5) suits frequent
labels but leaves rare ones (a few percent of texts) almost never predicted: their
probabilities rarely climb that high. `--thresholds tune` (the default) picks, for
each label, the cut in `GRID` that maximises the label's F1 on the validation split
(as Demszky et al. 2020 tuned GoEmotions' per-label thresholds); a tie goes to the
cut nearest 0.5.

A label with fewer than `MIN_SUPPORT` (10) validation positives, or fewer than 10
negatives, keeps 0.5. With k positives the F1-best cut sits on one of their k scores,
and one text moves the label's F1 by about 1/k: below ten, a single text chooses the
threshold, and the cut it picks (0.03 on a label with two positives, say) floods the
label with false positives on new texts. On calibrated scores (`--calibrate`, the
default) 0.5 means "more likely than not", a cut that needs no tuning data.

`--thresholds 0.3` uses one value for every label. The thresholds of the kept
epoch are stored in the run (thresholds.json) and compiled into the export; how they
turn probabilities into label sets is `bertclf.prediction.predictor.apply`.
"""

from __future__ import annotations

import numpy as np

from bertclf.evaluation.metrics import f1_from_counts
from bertclf.prediction.predictor import DEFAULT

# Candidate cuts 0.01 .. 0.99, in float32 as the exported graph compares them.
GRID = np.round(np.arange(0.01, 1.0, 0.01), 2).astype(np.float32)


def _counts(labels: np.ndarray, probs: np.ndarray, cuts: np.ndarray):
    """(tp, fp, fn) of each label at each cut, each [num_labels, len(cuts)]."""
    y = labels.astype(bool)[:, :, None]  # [n, L, 1]
    predicted = probs[:, :, None] >= cuts[None, None, :]  # [n, L, k]
    tp = np.sum(predicted & y, axis=0)  # [L, k]
    fp = np.sum(predicted & ~y, axis=0)
    fn = np.sum(~predicted & y, axis=0)
    return tp, fp, fn


def tune(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """[num_labels] thresholds, each maximising its label's F1 on (labels, probs).

    Example:
    >>> y = np.array([[1]] * 10 + [[0]] * 10)
    >>> p = np.array([[0.30]] * 10 + [[0.10]] * 10)
    >>> round(float(tune(y, p)[0]), 2)  # every cut in (0.10, 0.30] is best: nearest 0.5
    0.3
    >>> float(tune(y[8:], p[8:])[0])  # two positives: too few to tune on
    0.5
    """
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float32)
    f1 = f1_from_counts(*_counts(labels, probs, GRID))  # [L, k]
    best = f1 >= f1.max(axis=1, keepdims=True) - 1e-12
    # Among the cuts with the best F1, the one nearest 0.5 (argmin of distance, masked).
    distance = np.where(best, np.abs(GRID - DEFAULT)[None, :], np.inf)
    chosen = GRID[np.argmin(distance, axis=1)]
    return np.where(too_few(labels), DEFAULT, chosen).astype(np.float32)


MIN_SUPPORT = 10  # validation positives and negatives a label needs to tune its cut


def support(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([num_labels] positives, [num_labels] negatives) in 0/1 `labels` [n, num_labels]."""
    labels = np.asarray(labels).astype(bool)
    positives = labels.sum(axis=0)
    return positives, len(labels) - positives


def too_few(labels: np.ndarray) -> np.ndarray:
    """[num_labels] True where a label has too few positives or negatives to tune on."""
    positives, negatives = support(labels)
    return (positives < MIN_SUPPORT) | (negatives < MIN_SUPPORT)


def decide(setting: str, labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The thresholds `--thresholds` asks for: tuned on (labels, probs), or one value."""
    if setting == "tune":
        return tune(labels, probs)
    return np.full(np.asarray(labels).shape[1], float(setting), dtype=np.float32)

"""One inference interface for a trained run and for an exported model.

`Predictor` holds what both share (batching, `predict_proba`, `predict`); a run
(`bertclf.prediction.trained_run.TrainedRun`) and an export
(`bertclf.prediction.exported_model.ExportedModel`) each supply only `label_names` and
`_outputs`, their scoring of one batch. This module imports neither TensorFlow nor
keras-hub, and neither of the two: inference on an export never loads the training side.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bertclf import servable

DEFAULT = 0.5  # a multi-label decision threshold where none was tuned

# Texts an explanation call takes at once: each costs `attribution.STEPS + 2` forward and
# backward passes, so a batch of 8 already holds 272 copies of the text.
EXPLAIN_BATCH = 8


class Predictor:
    """Label texts in batches. Subclasses set `label_names` and implement `_outputs` (or `_scores`).

    A multi-label model also sets `thresholds` ([num_labels]); its predictions are
    label sets.
    """

    label_names: list[str]
    thresholds: np.ndarray | None = None

    def _outputs(self, texts: list[str]) -> dict[str, np.ndarray]:
        """One batch: [b] texts -> `scores` [b, num_labels] (probabilities in label order)
        and, where the model has them, `ood_score` [b] and `abstain` [b]. A subclass
        with scores only may implement `_scores` instead."""
        return {"scores": self._scores(texts)}

    def _scores(self, texts: list[str]) -> np.ndarray:
        """One batch: [b] texts -> [b, num_labels] probabilities in label order."""
        raise NotImplementedError

    def outputs(self, texts: list[str], batch_size: int = 32) -> dict[str, np.ndarray]:
        """[n] texts -> each output for all of them (`scores` [n, num_labels], ...)."""
        parts = [self._outputs(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        if not parts:
            return {"scores": np.zeros((0, len(self.label_names)), np.float32)}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """[n] texts -> [n, num_labels] probabilities in label order (calibrated where
        the run was)."""
        return self.outputs(texts, batch_size)["scores"]

    def _explain(self, texts: list[str]) -> dict[str, np.ndarray]:
        """One batch: [b] texts -> the outputs of the export's `explain` signature
        (`bertclf.model.attribution.IntegratedGradients.explain`)."""
        raise NotImplementedError

    def explain(self, texts: list[str], batch_size: int = EXPLAIN_BATCH) -> list[dict[str, Any]]:
        """Which words drove each prediction: integrated gradients, summed to words.

        Each row: single-label, `label`, `score` (its calibrated probability),
        `baseline_score` (the same with every word removed), `explanation`, the
        `[word, weight]` pairs of the words the model read, in text order, and
        `log_odds` and `baseline_log_odds`: a weight is a share of the label's log-odds,
        and the weights add up to `log_odds - baseline_log_odds`. Multi-label: the same
        for each predicted label, keyed by label (`baseline_scores`). `not_read`: the
        1-based word ranges a long text's cut left out.

        Example:
        >>> run.explain(["The invoice was charged twice"])[0]["explanation"]  # doctest: +SKIP
        [['The', 0.002], ['invoice', 0.41], ['was', -0.01], ['charged', 0.22], ...]
        """
        rows: list[dict[str, Any]] = []
        multilabel = self.thresholds is not None
        for i in range(0, len(texts), batch_size):
            out = self._explain(texts[i : i + batch_size])
            rows.extend(servable.explanation_rows(out, self.label_names, multilabel))
        return rows

    def predict(self, texts: list[str], batch_size: int = 32) -> list[dict[str, Any]]:
        """Label, its probability and every label's probability, for each text.

        Multi-label: `labels`, the names whose probability reaches their threshold
        (possibly none), and every label's probability. A calibrated model's rows also
        say whether it abstains (`abstain`) and how unlike the training data the text is
        (`ood_score`).
        """
        out = self.outputs(texts, batch_size)
        rows = probabilities_to_predictions(out["scores"], self.label_names, self.thresholds)
        for key in EXTRA_OUTPUTS:
            for row, value in zip(rows, out.get(key, ()), strict=False):
                row[key] = value.item()
        return rows


# Outputs beside `scores` that a calibrated model gives for each text.
EXTRA_OUTPUTS = ("abstain", "ood_score")


def probabilities_to_predictions(
    probs: np.ndarray, labels: list[str], thresholds: np.ndarray | None = None
) -> list[dict[str, Any]]:
    if thresholds is not None:
        return [
            {
                "labels": [name for name, on in zip(labels, row, strict=True) if on],
                "probabilities": {name: float(v) for name, v in zip(labels, p, strict=True)},
            }
            for p, row in zip(probs, apply(probs, thresholds), strict=True)
        ]
    rows = []
    for p in probs:
        top = int(np.argmax(p))
        rows.append(
            {
                "label": labels[top],
                "probability": float(p[top]),
                "probabilities": {name: float(v) for name, v in zip(labels, p, strict=True)},
            }
        )
    return rows


def apply(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """[n, L] 0/1 predictions: probability >= the label's threshold."""
    thresholds = np.asarray(thresholds, dtype=np.float32)[None, :]
    return (np.asarray(probs, dtype=np.float32) >= thresholds).astype(np.int64)

"""One inference interface for a trained run and for an exported model.

`Predictor` holds what both share (batching, `predict_proba`, `predict`); a run
(`bertclf.run.TrainedRun`) and an export (`bertclf.exported.ExportedModel`) each
supply only `label_names` and `_scores`, their scoring of one batch. This module
imports neither TensorFlow nor keras-hub: inference on an export never loads the
training side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bertclf import servable
from bertclf.errors import RunError


class Predictor:
    """Label texts in batches. Subclasses set `label_names` and implement `_scores`."""

    label_names: list[str]

    def _scores(self, texts: list[str]) -> np.ndarray:
        """One batch: [b] texts -> [b, num_labels] probabilities in label order."""
        raise NotImplementedError

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """[n] texts -> [n, num_labels] probabilities in label order."""
        out = [self._scores(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.label_names)), np.float32)

    def predict(self, texts: list[str], batch_size: int = 32) -> list[dict[str, Any]]:
        """Label, its probability and every label's probability, for each text."""
        return probabilities_to_predictions(self.predict_proba(texts, batch_size), self.label_names)


def probabilities_to_predictions(probs: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
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


def load_predictor(path: str | Path) -> Predictor:
    """A run directory (config.json) -> `TrainedRun`; BASE/NAME[/VERSION] -> `ExportedModel`.

    Both give the same output for the same texts.
    """
    path = Path(path)
    if (path / "config.json").is_file() and not servable.is_version_dir(path):
        from bertclf.run import load_run

        return load_run(path)
    if servable.find_version_dir(path) is None:
        raise RunError(
            f"{path}: neither a bertclf run (no config.json) nor an exported model "
            "(no saved_model.pb); pass a run directory or BASE/NAME[/VERSION]"
        )
    from bertclf.exported import ExportedModel

    return ExportedModel(path)

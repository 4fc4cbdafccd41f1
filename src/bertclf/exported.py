"""Load an exported SavedModel (BASE/NAME or BASE/NAME/VERSION) for prediction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF Text ops the graph uses)

from bertclf.errors import RunError
from bertclf.run import probabilities_to_predictions


def find_version_dir(path: Path) -> Path | None:
    """BASE/NAME/VERSION itself, or the highest numeric version under BASE/NAME."""
    if (path / "saved_model.pb").is_file():
        return path
    if path.is_dir():
        numeric = sorted(
            (int(p.name), p)
            for p in path.iterdir()
            if p.name.isdigit() and (p / "saved_model.pb").is_file()
        )
        if numeric:
            return numeric[-1][1]
    return None


class ExportedModel:
    """An exported model, with the same `predict` interface as a `TrainedRun`.

    Args:
        path: BASE/NAME (the latest version is used) or BASE/NAME/VERSION.

    Example:
    >>> model = ExportedModel("exports/demo")  # doctest: +SKIP
    >>> model.predict(["The invoice was charged twice"])[0]["label"]
    'billing'
    """

    def __init__(self, path: str | Path):
        version_dir = find_version_dir(Path(path))
        if version_dir is None:
            raise RunError(
                f"{path}: no SavedModel (no saved_model.pb, no numeric version "
                "directory); pass BASE/NAME or BASE/NAME/VERSION of 'bertclf export'"
            )
        self.path = version_dir
        self.version = int(version_dir.name) if version_dir.name.isdigit() else None
        self.metadata: dict[str, Any] = {}
        meta_file = version_dir / "assets.extra" / "bertclf.json"
        if meta_file.is_file():
            self.metadata = json.loads(meta_file.read_text(encoding="utf-8"))
        self.model = tf.saved_model.load(str(version_dir))
        self.signature = self.model.signatures["serving_default"]
        self.label_names = self.metadata.get("labels") or self._labels_from_assets()

    def _labels_from_assets(self) -> list[str]:
        labels = self.path / "assets" / "labels.txt"
        return [ln for ln in labels.read_text(encoding="utf-8").splitlines() if ln]

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """[n] texts -> [n, num_labels] probabilities in label order."""
        out = [
            self.signature(text=tf.constant(texts[i : i + batch_size]))["scores"].numpy()
            for i in range(0, len(texts), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, len(self.label_names)), np.float32)

    def predict(self, texts: list[str], batch_size: int = 32) -> list[dict[str, Any]]:
        return probabilities_to_predictions(self.predict_proba(texts, batch_size), self.label_names)

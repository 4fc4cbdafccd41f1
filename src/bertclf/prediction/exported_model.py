"""Load an exported SavedModel (BASE/NAME or BASE/NAME/VERSION) for prediction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF Text ops the graph uses)

from bertclf import servable
from bertclf.errors import RunError
from bertclf.prediction.predictor import EXTRA_OUTPUTS, Predictor


class ExportedModel(Predictor):
    """An exported model, with the same `predict` interface as a `TrainedRun`.

    Args:
        path: BASE/NAME (the latest version is used) or BASE/NAME/VERSION.

    Example:
    >>> model = ExportedModel("exports/demo")  # doctest: +SKIP
    >>> model.predict(["The invoice was charged twice"])[0]["label"]
    'billing'
    """

    def __init__(self, path: str | Path):
        version_dir = servable.find_version_dir(Path(path))
        if version_dir is None:
            raise RunError(
                f"{path}: no SavedModel (no saved_model.pb, no numeric version "
                "directory); pass BASE/NAME or BASE/NAME/VERSION of 'bertclf export'"
            )
        if servable.is_onnx_version(version_dir):
            raise RunError(
                f"{version_dir}: an ONNX export; load it with OnnxModel or load_predictor"
            )
        self.path = version_dir
        self.version = servable.parse_version(version_dir.name)
        self.metadata: dict[str, Any] = {}
        meta_file = version_dir / servable.METADATA
        if meta_file.is_file():
            self.metadata = json.loads(meta_file.read_text(encoding="utf-8"))
        try:
            self.model = tf.saved_model.load(str(version_dir))
        except (tf.errors.OpError, OSError, ValueError) as e:
            raise RunError(
                f"{version_dir}: the SavedModel cannot be loaded ({type(e).__name__}); "
                "export the run again"
            ) from None
        self.signature = self.model.signatures[servable.DEFAULT_SIGNATURE]
        self.label_names = servable.read_labels(version_dir)
        if self.metadata.get("task") == "multilabel":  # the thresholds compiled into the graph
            self.thresholds = np.asarray(self.metadata["thresholds"], dtype=np.float32)

    def _explain(self, texts: list[str]) -> dict[str, np.ndarray]:
        if servable.EXPLAIN_SIGNATURE not in self.model.signatures:
            raise RunError(
                f"{self.path}: this export has no '{servable.EXPLAIN_SIGNATURE}' signature "
                "(it was made before explanations); export the run again, or explain the run"
            )
        batch = tf.constant(texts, tf.string)
        out = self.model.signatures[servable.EXPLAIN_SIGNATURE](**{servable.TEXT_INPUT: batch})
        return {k: v.numpy() for k, v in out.items()}

    def _outputs(self, texts: list[str]) -> dict[str, np.ndarray]:
        batch = tf.constant(texts, tf.string)
        out = self.signature(**{servable.TEXT_INPUT: batch})
        return {k: out[k].numpy() for k in ("scores", *EXTRA_OUTPUTS) if k in out}

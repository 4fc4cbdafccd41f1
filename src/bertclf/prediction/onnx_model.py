"""Load an ONNX export (`bertclf export --format onnx`) with ONNX Runtime, without TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bertclf import servable
from bertclf.errors import RunError
from bertclf.prediction.predictor import EXTRA_OUTPUTS, Predictor


def session(model_file: Path, threads: int = 0):
    """An ONNX Runtime session for a model.onnx (`bertclf.servable.onnx_session`)."""
    return servable.onnx_session(model_file, threads)


class OnnxModel(Predictor):
    """An ONNX export, with the same `predict` interface as a `TrainedRun`.

    Args:
        path: BASE/NAME (the latest version) or BASE/NAME/VERSION holding model.onnx.

    Example:
    >>> model = OnnxModel("exports/demo-onnx")  # doctest: +SKIP
    >>> model.predict(["The invoice was charged twice"])[0]["label"]
    'billing'
    """

    def __init__(self, path: str | Path):
        version_dir = servable.find_version_dir(Path(path))
        if version_dir is None or not servable.is_onnx_version(version_dir):
            raise RunError(
                f"{path}: no ONNX model (no {servable.ONNX_MODEL} in a numeric version "
                "directory); pass BASE/NAME or BASE/NAME/VERSION of 'bertclf export --format onnx'"
            )
        self.path = version_dir
        self.version = servable.parse_version(version_dir.name)
        meta_file = version_dir / servable.METADATA
        self.metadata: dict[str, Any] = {}
        if meta_file.is_file():
            self.metadata = json.loads(meta_file.read_text(encoding="utf-8"))
        try:
            self.session = session(version_dir / servable.ONNX_MODEL)
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own exception types
            raise RunError(
                f"{version_dir / servable.ONNX_MODEL}: ONNX Runtime cannot load it "
                f"({type(e).__name__}: {str(e)[:160]}); export the run again"
            ) from None
        self.label_names = servable.read_labels(version_dir)
        if self.metadata.get("task") == "multilabel":  # the thresholds compiled into the graph
            self.thresholds = np.asarray(self.metadata["thresholds"], dtype=np.float32)

    def run(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Every output of the model for one batch of texts."""
        return servable.run_onnx(self.session, texts, len(self.label_names))

    def _outputs(self, texts: list[str]) -> dict[str, np.ndarray]:
        out = self.run(texts)
        return {k: out[k] for k in ("scores", *EXTRA_OUTPUTS) if k in out}

    def _explain(self, texts: list[str]) -> dict[str, np.ndarray]:
        raise RunError(
            f"{self.path}: an ONNX export does not explain (integrated gradients need "
            "gradients); explain with the run or its SavedModel export"
        )

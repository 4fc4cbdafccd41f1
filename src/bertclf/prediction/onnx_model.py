"""Load an ONNX export (`bertclf export --format onnx`) with ONNX Runtime, without TensorFlow."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bertclf import servable
from bertclf.errors import RunError
from bertclf.prediction.predictor import EXTRA_OUTPUTS, Predictor


def _load_extensions_privately() -> None:
    """Load onnxruntime-extensions' library with its own symbols first (RTLD_DEEPBIND).

    Why: it carries a build of RE2, and so does TensorFlow. In a process that imported
    TensorFlow first, the library's RE2 calls went to TensorFlow's build and its string
    ops split and replaced wrongly ("New Orleans??" read as [UNK] [UNK]; measured, diary
    2026-12 §9). Bound to its own symbols, it reads texts as in a process without
    TensorFlow, whatever was imported before. Done once, before the package is imported."""
    import ctypes
    import glob
    import importlib.util

    if "onnxruntime_extensions" in sys.modules or not hasattr(os, "RTLD_DEEPBIND"):
        return
    spec = importlib.util.find_spec("onnxruntime_extensions")
    if spec is None or not spec.submodule_search_locations:
        return
    for library in glob.glob(
        os.path.join(spec.submodule_search_locations[0], "_extensions_pydll*.so")
    ):
        ctypes.CDLL(library, mode=os.RTLD_NOW | os.RTLD_DEEPBIND)


def session(model_file: Path, threads: int = 0):
    """An ONNX Runtime session with onnxruntime-extensions' ops (the string side) registered.

    Args:
        model_file: a model.onnx.
        threads: intra-op threads; 0 lets ONNX Runtime choose (one per core).
    """
    _load_extensions_privately()
    try:
        import onnxruntime as ort
        import onnxruntime_extensions
    except ImportError:
        raise RunError(
            f"{model_file}: running an ONNX export needs onnxruntime and "
            "onnxruntime-extensions: pip install 'bertclf[onnx]'"
        ) from None

    options = ort.SessionOptions()
    options.register_custom_ops_library(onnxruntime_extensions.get_library_path())
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: its warnings are for ONNX Runtime's authors
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(string)": object,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": bool,
}


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
        self.outputs_named = [o.name for o in self.session.get_outputs()]
        self.label_names = servable.read_labels(version_dir)
        if self.metadata.get("task") == "multilabel":  # the thresholds compiled into the graph
            self.thresholds = np.asarray(self.metadata["thresholds"], dtype=np.float32)

    def run(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Every output of the model for one batch of texts (none: empty outputs, which
        the converted graph cannot make itself)."""
        if not len(texts):
            return {
                o.name: np.zeros(
                    (0, *[len(self.label_names)] * (len(o.shape) - 1)), _DTYPES[o.type]
                )
                for o in self.session.get_outputs()
            }
        feed = {servable.TEXT_INPUT: np.asarray(texts, dtype=object).reshape(-1)}
        return dict(zip(self.outputs_named, self.session.run(None, feed), strict=True))

    def _outputs(self, texts: list[str]) -> dict[str, np.ndarray]:
        out = self.run(texts)
        return {k: out[k] for k in ("scores", *EXTRA_OUTPUTS) if k in out}

    def _explain(self, texts: list[str]) -> dict[str, np.ndarray]:
        raise RunError(
            f"{self.path}: an ONNX export does not explain (integrated gradients need "
            "gradients); explain with the run or its SavedModel export"
        )

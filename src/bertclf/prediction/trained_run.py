"""Loading a trained run (its best weights) for evaluation, prediction and export.

The run directory's layout and creation rules live in `bertclf.model.rundir`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras_hub
import numpy as np
import tensorflow as tf

from bertclf.config.run import RunConfig
from bertclf.errors import RunError
from bertclf.fileio import read_json
from bertclf.model import calibration as calibration_lib
from bertclf.model.attribution import IntegratedGradients
from bertclf.model.calibration import Calibration
from bertclf.model.classifier import BertClassifier, build_classifier
from bertclf.model.preprocessing import TextPreprocessor, inference_features
from bertclf.model.rundir import BEST_WEIGHTS, SAMPLES, THRESHOLDS, check_trained
from bertclf.prediction.predictor import Predictor
from bertclf.tflog import quiet

logger = logging.getLogger(__name__)


def build_from_meta(path: Path, meta: dict[str, Any]):
    """Rebuild (preprocessor, model) from a run's saved description, without weights."""
    cfg = RunConfig.from_dict(meta["config"])
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=str(path / meta["tokenizer"]["vocabulary"]),
        lowercase=meta["tokenizer"]["lowercase"],
    )
    backbone = keras_hub.models.BertBackbone.from_config(meta["backbone"])
    multilabel = cfg.data.multilabel
    return build_classifier(backbone, tokenizer, cfg.model, len(meta["labels"]), multilabel)


@dataclass
class TrainedRun(Predictor):
    """A trained classifier loaded from a run directory (best weights).

    Example:
    >>> run = load_run("runs/demo")  # doctest: +SKIP
    >>> run.predict(["The invoice was charged twice"])[0]["label"]
    'billing'
    """

    path: Path
    meta: dict[str, Any]
    preprocessor: TextPreprocessor
    model: BertClassifier

    @property
    def label_names(self) -> list[str]:
        return list(self.meta["labels"])

    @property
    def config(self) -> RunConfig:
        return RunConfig.from_dict(self.meta["config"])

    @property
    def multilabel(self) -> bool:
        return self.config.data.multilabel

    @functools.cached_property
    def thresholds(self) -> np.ndarray | None:
        """Multi-label: the kept epoch's threshold per label (thresholds.json, read once)."""
        if not self.multilabel:
            return None
        file = self.path / THRESHOLDS
        if not file.is_file():
            raise RunError(f"{file}: missing; a multi-label run stores its thresholds there")
        return np.asarray(read_json(file)["thresholds"], dtype=np.float32)

    @functools.cached_property
    def calibration(self) -> Calibration | None:
        """The run's calibration (calibration.json), or None for a run made before it."""
        return calibration_lib.read(self.path, self.thresholds)

    def __post_init__(self):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def forward(texts):
            return self.outputs_graph(texts)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def raw(texts):
            features = inference_features(self.preprocessor, texts)  # [b, width]
            return self.model.logits_and_vectors(features, training=False)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def explain(texts):
            return self.explainer.explain(texts)

        self._forward, self._raw, self._explain_graph = forward, raw, explain

    @functools.cached_property
    def explainer(self) -> IntegratedGradients:
        """Integrated gradients of this run's calibrated scores (`bertclf.model.attribution`)."""
        temperature = None if self.calibration is None else self.calibration.temperature
        return IntegratedGradients(self.preprocessor, self.model, temperature, self.thresholds)

    def outputs_graph(self, texts) -> dict[str, tf.Tensor]:
        """TensorFlow: texts [b] -> `scores` [b, L] and, for a calibrated run, `ood_score`
        [b] and `abstain` [b]: the graph the export holds, traced by the caller."""
        # The batch padded only to its longest text, as the export does.
        features = inference_features(self.preprocessor, texts)  # [b, width]
        logits, vectors = self.model.logits_and_vectors(features, training=False)
        if self.calibration is None:
            return {"scores": self.model.probabilities(logits)}
        return self.calibration.outputs(self.model, logits, vectors)

    def logits_and_vectors(self, texts: list[str], batch_size: int = 32):
        """([n, L'] logits, [n, hidden] sentence vectors), uncalibrated: what calibration
        is fitted on."""
        parts = [
            self._raw(tf.constant(texts[i : i + batch_size], tf.string))
            for i in range(0, len(texts), batch_size)
        ]
        if not parts:
            raise ValueError("no texts")
        return tuple(np.concatenate([p[k].numpy() for p in parts]) for k in (0, 1))

    def sample_texts(self) -> list[str]:
        """The validation texts stored with the run (empty for runs made by older versions)."""
        if not (self.path / SAMPLES).is_file():
            return []
        return list(read_json(self.path / SAMPLES).get("texts", []))

    def _outputs(self, texts: list[str]) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self._forward(tf.constant(texts, tf.string)).items()}

    def _explain(self, texts: list[str]) -> dict[str, np.ndarray]:
        out = self._explain_graph(tf.constant(texts, tf.string))
        return {k: v.numpy() for k, v in out.items()}


def load_run(path: str | Path, precision: str = "run") -> TrainedRun:
    """Load a run's best weights for evaluation, prediction or export.

    Args:
        path: the run directory.
        precision: `run` computes as the run trained (a bf16 run in bf16); `fp32`
            rebuilds the encoder with float32 compute around the same (float32) weights.
    """
    path = Path(path)
    meta = check_trained(path)
    build_meta = meta
    if precision == "fp32":  # the backbone's config carries its dtype policy
        build_meta = {**meta, "backbone": {**meta["backbone"], "dtype": "float32"}}
    with quiet():  # building the model runs TensorFlow's first ops: its set-up lines
        preprocessor, model = build_from_meta(path, build_meta)
        try:
            model.load_weights(str(path / BEST_WEIGHTS))
        except Exception as e:  # noqa: BLE001 - Keras raises many types for a mismatch
            raise RunError(
                f"{path / BEST_WEIGHTS}: does not fit the model config.json describes "
                f"({type(e).__name__}); train again with --overwrite"
            ) from None
    run = TrainedRun(path, meta, preprocessor, model)
    if run.calibration is None:
        logger.info(
            "%s was trained before calibration existed: raw scores, no abstain flag and no "
            "ood_score (train it again for them)",
            path,
        )
    return run

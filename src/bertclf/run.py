"""The run directory: its layout, its creation rules, and loading a trained run.

RUN/
  config.json        resolved RunConfig, label names, encoder source, backbone config
  labels.txt         one label per line, in model output order
  vocab.txt          the tokenizer's WordPiece vocabulary
  best.weights.h5    weights with the best validation accuracy so far
  checkpoints/       last finished epoch: model + optimizer state (for --resume)
  history.json       per-epoch metrics
  logs/train, logs/validation   TensorBoard event files
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from bertclf import __version__
from bertclf.config import RunConfig
from bertclf.errors import RunError
from bertclf.fileio import read_json, write_json, write_text
from bertclf.model import BertClassifier
from bertclf.preprocessing import TextPreprocessor

logger = logging.getLogger(__name__)

CONFIG = "config.json"
LABELS = "labels.txt"
VOCAB = "vocab.txt"
BEST_WEIGHTS = "best.weights.h5"
CHECKPOINTS = "checkpoints"
HISTORY = "history.json"
LOGS = "logs"


def prepare_run_dir(out: str | Path, resume: bool, overwrite: bool) -> Path:
    """Create `out`, or accept it for --resume; never replace a run silently."""
    path = Path(out)
    if resume and overwrite:
        raise RunError(f"{path}: --resume and --overwrite contradict each other; pick one")
    if resume:
        if not (path / CONFIG).is_file():
            raise RunError(f"{path}: no run to resume (no {CONFIG}); drop --resume to start one")
        return path
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        if not overwrite:
            raise RunError(
                f"{path}: already exists; pass --resume to continue that run or --overwrite "
                "to replace it"
            )
        logger.warning("--overwrite: deleting the existing run %s", path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{path}: cannot create the run directory ({e.strerror})") from e
    return path


def write_run_files(
    path: Path, config: RunConfig, labels: list[str], encoder: dict[str, str], backbone, tokenizer
) -> dict[str, Any]:
    """Write config.json, labels.txt and vocab.txt (each atomically)."""
    meta = {
        "bertclf_version": __version__,
        "config": config.to_dict(),
        "labels": list(labels),
        "encoder": encoder,
        "backbone": backbone.get_config(),
        "tokenizer": {"vocabulary": VOCAB, "lowercase": bool(tokenizer.lowercase)},
    }
    write_text(path / VOCAB, "\n".join(tokenizer.get_vocabulary()) + "\n")
    write_text(path / LABELS, "\n".join(labels) + "\n")
    write_json(path / CONFIG, meta)
    return meta


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise RunError(
            f"{path}: not a bertclf run (no {CONFIG}); pass the --out folder of 'bertclf train'"
        )
    return read_json(path / CONFIG)


def build_from_meta(path: Path, meta: dict[str, Any]):
    """Rebuild (preprocessor, model) from a run's saved description, without weights."""
    cfg = RunConfig.from_dict(meta["config"])
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=str(path / meta["tokenizer"]["vocabulary"]),
        lowercase=meta["tokenizer"]["lowercase"],
    )
    backbone = keras_hub.models.BertBackbone.from_config(meta["backbone"])
    preprocessor = TextPreprocessor(
        tokenizer, cfg.model.seq_len, clean=cfg.model.clean, truncate=cfg.model.truncate
    )
    model = BertClassifier(
        backbone,
        len(meta["labels"]),
        pooling=cfg.model.pooling,
        dropout=cfg.model.dropout,
        head=cfg.model.head,
    )
    model(preprocessor(tf.constant(["build"])))
    return preprocessor, model


@dataclass
class TrainedRun:
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

    def __post_init__(self):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def forward(texts):
            logits = self.model(self.preprocessor(texts), training=False)
            return self.model.probabilities(logits)

        self._forward = forward

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """[n] texts -> [n, num_labels] probabilities in label order."""
        out = [
            self._forward(tf.constant(texts[i : i + batch_size])).numpy()
            for i in range(0, len(texts), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, len(self.label_names)), np.float32)

    def predict(self, texts: list[str], batch_size: int = 32) -> list[dict[str, Any]]:
        """Label and per-label probabilities for each text."""
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


def load_run(path: str | Path) -> TrainedRun:
    """Load a run's best weights for evaluation, prediction or export."""
    path = Path(path)
    meta = read_meta(path)
    if not (path / BEST_WEIGHTS).is_file():
        raise RunError(
            f"{path}: no {BEST_WEIGHTS} (training has not finished an epoch); "
            "train it to the end or resume it with --resume"
        )
    preprocessor, model = build_from_meta(path, meta)
    model.load_weights(str(path / BEST_WEIGHTS))
    return TrainedRun(path, meta, preprocessor, model)


def keras_version_info() -> dict[str, str]:
    return {
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "tensorflow": tf.__version__,
    }

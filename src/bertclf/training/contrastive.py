"""SetFit's contrastive stage: shape the encoder's sentence vectors before fine-tuning.

The default encoder, all-MiniLM-L6-v2, is a sentence-transformer: it was trained so that
the cosine of two texts' mean-pooled vectors says how alike they are. SetFit (Tunstall
et al. 2022, "Efficient Few-Shot Learning Without Prompts") fine-tunes such an encoder
on pairs of training texts, the cosine pulled to 1 for two texts of one class and to 0
for two of different classes, before a classifier is fitted on the vectors; on a few
hundred labelled texts that beats standard fine-tuning (BENCHMARKS.md §8). Every text
then meets `iterations` partners of its own class and as many of others, so a 200-text
training split gives 8,000 pairs to learn from instead of 200 labels.

`--contrastive N` runs this stage (N = SetFit's `num_iterations`) on the model's own
encoder and pooling, then the usual fine-tuning loop starts from the result. Its settings
are SetFit's defaults: one same-class and one other-class partner per text and
iteration, the cosine-similarity (mean squared error) loss, batches of 16 pairs, AdamW at
2e-5 with 10% linear warm-up and linear decay, one pass. Single-label only: a pair of
multi-label texts has no single "same class".

Example:
>>> draw_pairs([0, 0, 1], iterations=1, seed=0).shape  # (i, j, target) per pair
(6, 3)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from bertclf.config.run import RunConfig
from bertclf.config.train import TrainConfig
from bertclf.fileio import write_json
from bertclf.model import rundir
from bertclf.model.preprocessing import trim_to_bucket
from bertclf.training.optimization import make_optimizer
from bertclf.training.pipeline import EpochDataset, bucket_width
from bertclf.training.trainer import steps_bar

logger = logging.getLogger(__name__)

PAIR_BATCH = 16  # SetFit's default batch size (pairs)
PAIR_LR = 2e-5  # SetFit's default body learning rate
PAIR_WARMUP = 0.1  # SetFit's default warm-up proportion


def stage_steps(labels, iterations: int) -> int:
    """How many optimizer steps the stage takes (`draw_pairs`' rows in batches)."""
    pairs = iterations * len(labels) * (2 if len(set(labels)) > 1 else 1)
    return math.ceil(pairs / PAIR_BATCH)


def draw_pairs(labels, iterations: int, seed: int) -> np.ndarray:
    """[2 * iterations * n, 3] float64 rows (i, j, target), shuffled.

    Per iteration and text i: one partner j of i's class (target 1; it may be i itself
    when i is alone in its class) and one of another class (target 0).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    same = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    other = {c: np.flatnonzero(labels != c) for c in same}
    rows = []
    for _ in range(iterations):
        for i, c in enumerate(labels):
            rows.append((i, rng.choice(same[c]), 1.0))
            if len(other[c]):  # none only when the split holds a single class
                rows.append((i, rng.choice(other[c]), 0.0))
    return np.asarray(rows, dtype=np.float64)[rng.permutation(len(rows))]


class ContrastiveStage:
    """One pass over SetFit's pairs of the training texts, moving the encoder only.

    Args:
        model: a `BertClassifier` (its `pool()` gives the sentence vectors).
        preprocessor: its `TextPreprocessor`.
        train_config: the run's training settings (optimizer kind, embedding update,
            weight decay and precision; the rate and warm-up are SetFit's).
        bucket: batches are cut to their longest pair text, rounded up to this.
    """

    def __init__(self, model, preprocessor, train_config: TrainConfig, bucket: int):
        self.model, self.preprocessor, self.bucket = model, preprocessor, bucket
        self.train_config = train_config

    def run(self, packed: dict, labels, iterations: int, seed: int, progress) -> dict:
        """Train on the pairs; returns {pairs, steps, seconds, first_loss, last_loss}.

        Args:
            packed: the training texts as packed once for the run (`EpochDataset.packed`:
                dict of [n, seq_len]); a step gathers its pairs' rows.
            labels: [n] class ids.
            progress: a bool (a bar of its own, on a terminal), or the run's bar to advance
                (`bertclf.training.trainer.steps_bar`).
        """
        pairs = draw_pairs(labels, iterations, seed)
        steps = math.ceil(len(pairs) / PAIR_BATCH)
        settings = dataclasses.replace(
            self.train_config, lr=PAIR_LR, warmup=PAIR_WARMUP, layer_decay=1.0
        )
        self.optimizer = make_optimizer(
            settings, steps, loss_scaling=self.train_config.precision == "fp16"
        )
        self.packed = packed
        self.variables = self.model.backbone.trainable_variables
        self.optimizer.build(self.variables)
        step = tf.function(
            self._step,
            input_signature=[tf.TensorSpec([None], tf.int32)] * 2
            + [tf.TensorSpec([None], tf.float32)],
        )
        start, losses = time.perf_counter(), []
        bar = progress if hasattr(progress, "update") else steps_bar(steps, progress)
        bar.set_description("contrastive")
        for s in range(steps):
            batch = pairs[s * PAIR_BATCH : (s + 1) * PAIR_BATCH]
            a, b = (tf.constant(batch[:, k], tf.int32) for k in (0, 1))
            losses.append(float(step(a, b, tf.constant(batch[:, 2], tf.float32))))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        window = max(1, min(50, steps // 10))  # the loss of single batches is noisy
        return {
            "pairs": len(pairs),
            "steps": steps,
            "seconds": time.perf_counter() - start,
            "first_loss": float(np.mean(losses[:window])),
            "last_loss": float(np.mean(losses[-window:])),
        }

    def _vectors(self, rows, training: bool):
        """[b] text rows -> [b, hidden] unit sentence vectors (float32)."""
        features = {k: tf.gather(v, rows) for k, v in self.packed.items()}
        features = trim_to_bucket(features, self.preprocessor.sequence_length, self.bucket)
        return tf.math.l2_normalize(self.model.pool(features, training=training), axis=-1)

    def _step(self, a, b, target):
        with tf.GradientTape() as tape:
            u, v = self._vectors(a, True), self._vectors(b, True)  # [b, hidden] each
            cosine = tf.reduce_sum(u * v, axis=-1)  # [b]
            loss = tf.reduce_mean(tf.square(cosine - target))
            scaled = self.optimizer.scale_loss(loss)  # identity unless fp16 loss scaling
        grads = tape.gradient(scaled, self.variables)
        self.optimizer.apply_gradients(zip(grads, self.variables, strict=True))
        return loss


def contrastive_stage(
    config: RunConfig, train: EpochDataset, labels, model, preprocessor, run_dir: Path, progress
):
    """--contrastive: the stage on the training split (`train`, packed once for the run),
    its figures to contrastive.json and the log. `bertclf.training` calls it before the
    first epoch."""
    iterations = config.train.contrastive
    stage = ContrastiveStage(
        model, preprocessor, config.train, bucket_width(config.train.jit == "on")
    )
    stats = stage.run(train.packed, labels, iterations, config.seed, progress)
    write_json(run_dir / rundir.CONTRASTIVE, {"iterations": iterations, **stats})
    logger.info(
        "contrastive stage (--contrastive %d): %d pairs in %d steps, %.0f s; pair loss %.4f "
        "-> %.4f",
        iterations,
        stats["pairs"],
        stats["steps"],
        stats["seconds"],
        stats["first_loss"],
        stats["last_loss"],
    )

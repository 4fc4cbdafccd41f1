"""Optimizers for fine-tuning: AdamW (or Adam) with linear warm-up and linear decay."""

from __future__ import annotations

import keras
import tensorflow as tf

from bertclf.config import TrainConfig


@keras.saving.register_keras_serializable(package="bertclf")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then linear decay to 0.

    This is BERT's fine-tuning schedule (and the seed notebook's
    `official.nlp.optimization.create_optimizer`), without the TF Model Garden.

    Args:
        peak: the learning rate reached at the end of warm-up.
        total_steps: steps of the whole run; the rate is 0 from here on.
        warmup_steps: steps of linear warm-up (may be 0).

    Example:
    >>> s = WarmupLinearDecay(1e-3, total_steps=10, warmup_steps=2)
    >>> [round(float(s(i)), 6) for i in (0, 1, 2, 6, 10)]
    [0.0, 0.0005, 0.001, 0.0005, 0.0]
    """

    def __init__(self, peak: float, total_steps: int, warmup_steps: int):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = tf.cast(max(self.warmup_steps, 1), tf.float32)
        decay_span = tf.cast(max(self.total_steps - self.warmup_steps, 1), tf.float32)
        warmup_lr = self.peak * step / warm
        decay_lr = self.peak * tf.maximum(
            0.0, (tf.cast(self.total_steps, tf.float32) - step) / decay_span
        )
        return tf.where(step < self.warmup_steps, warmup_lr, decay_lr)

    def get_config(self):
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
        }


def make_optimizer(cfg: TrainConfig, total_steps: int, loss_scaling: bool = False):
    """AdamW (weight decay off for biases and LayerNorm) or Adam on the schedule.

    With `loss_scaling` (fp16), the optimizer is wrapped in Keras'
    `LossScaleOptimizer`, which scales the loss and skips steps with inf/nan grads.
    """
    warmup_steps = int(cfg.warmup * total_steps)
    schedule = WarmupLinearDecay(cfg.lr, total_steps, warmup_steps)
    if cfg.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(
            learning_rate=schedule, weight_decay=cfg.weight_decay, epsilon=1e-6
        )
        # Keras variable names are short ("bias", "gamma", "beta", "kernel"):
        # gamma/beta exist only in LayerNormalization layers.
        optimizer.exclude_from_weight_decay(var_names=["^bias$", "^gamma$", "^beta$"])
    else:
        optimizer = keras.optimizers.Adam(learning_rate=schedule, epsilon=1e-6)
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def inner(optimizer):
    """The Adam(W) behind a LossScaleOptimizer, or the optimizer itself."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def moments(optimizer, variable) -> tuple:
    """Adam's first and second moments (m, v) for `variable`.

    Keras names a slot variable after the variable's path with '/' replaced by
    '_', suffixed `_momentum` (m) or `_velocity` (v).
    """
    key = variable.path.replace("/", "_")
    found = {}
    for slot in inner(optimizer).variables:
        for kind in ("momentum", "velocity"):
            if slot.path.endswith(f"/{key}_{kind}"):
                found[kind] = slot
    return found.get("momentum"), found.get("velocity")


def current_lr(optimizer) -> float:
    opt = inner(optimizer)
    return (
        float(opt.learning_rate)
        if not callable(opt._learning_rate)
        else float(opt._learning_rate(opt.iterations))
    )

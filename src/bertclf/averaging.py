"""The weights' moving average (`--ema`): kept beside the model, swapped in to validate.

Why a moving average, and its decay rule: `bertclf.policy`.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf


def average_decay(step, decay: float):
    """The moving average's decay after `step` optimizer steps: min(decay, (1 + t) / (10 + t)).

    The second term is tf.train.ExponentialMovingAverage's `num_updates` rule: early on
    the average spans about the last t / 9 steps, so it does not hold on to the
    pre-trained weights and the random head; `decay` caps it at 1 / (1 - decay) steps.

    >>> [round(float(average_decay(t, 0.99)), 3) for t in (0, 8, 90, 10_000)]
    [0.1, 0.5, 0.91, 0.99]
    """
    t = tf.cast(step, tf.float32)
    return tf.minimum(decay, (1.0 + t) / (10.0 + t))


class WeightAverage:
    """An exponential moving average of a model's trainable variables.

    Args:
        model: the Keras model being trained.
        optimizer: its optimizer (its `iterations` count the steps).
        strategy: the `tf.distribute` strategy the model was built under.
        decay: the cap of `average_decay`, in (0, 1).

    Example:
    >>> average = WeightAverage(model, optimizer, strategy, 0.99)  # doctest: +SKIP
    >>> average.update()  # after each optimizer step  # doctest: +SKIP
    >>> with average.swapped_in():  # doctest: +SKIP
    ...     evaluate(model)  # the model holds the averages here
    """

    def __init__(self, model, optimizer, strategy, decay: float):
        self.model, self.optimizer, self.decay = model, optimizer, decay
        with strategy.scope():  # mirrored like the weights; replicas hold equal values
            self.variables = [
                tf.Variable(
                    v.value,
                    trainable=False,
                    name=f"average_{i}",
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                )
                for i, v in enumerate(model.trainable_variables)
            ]
        # On one device XLA fuses each variable's update into one loop: 11 ms instead
        # of 64 ms a step for MiniLM's 22.6M parameters on 2 cores (BENCHMARKS.md §8).
        # Under a multi-replica strategy the averages are mirrored variables, which
        # stay on TensorFlow's kernels.
        self.update = tf.function(self._update, jit_compile=strategy.num_replicas_in_sync == 1)

    def _update(self) -> None:
        """average = d * average + (1 - d) * weight, for every trainable variable."""
        decay = average_decay(self.optimizer.iterations.value, self.decay)
        for average, var in zip(self.variables, self.model.trainable_variables, strict=True):
            average.assign(decay * average + (1.0 - decay) * tf.cast(var.value, tf.float32))

    @contextlib.contextmanager
    def swapped_in(self):
        """Within: the model holds the averages; after: its raw weights again."""
        weights = self.model.trainable_variables
        raw = [tf.identity(v.value) for v in weights]
        for var, average in zip(weights, self.variables, strict=True):
            var.assign(average.read_value())
        try:
            yield
        finally:
            for var, value in zip(weights, raw, strict=True):
                var.assign(value)

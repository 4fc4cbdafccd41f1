"""Optimizers for fine-tuning: AdamW (or Adam) with linear warm-up and linear decay."""

from __future__ import annotations

import contextlib
import re

import keras
import tensorflow as tf

from bertclf.config.train import TrainConfig


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


class FusedAdamUpdate:
    """Adam's moment and weight update in one TensorFlow kernel per variable.

    Keras' `Adam.update_step` is four element-wise passes over every variable and
    its two moments (22.7M parameters for MiniLM, half of them the word embeddings,
    which are updated densely whatever the batch). TensorFlow's `ResourceApplyAdam`
    kernel does the same arithmetic (bias-corrected step size, epsilon outside the
    square root) in one pass: 27 ms instead of 68 ms per MiniLM step on this
    machine's 2 cores, with results equal to float32 rounding (tests/test_optimization.py).
    AdamW's decoupled weight decay runs before it as `var -= var * (lr * wd)`: two
    passes instead of Keras' three (`var * wd * lr` multiplies twice). It also
    decides exclusions by the Keras variable's name ("bias", "gamma"): Keras'
    TensorFlow path asks with the underlying `tf.Variable`, named "dense/bias:0",
    caches the answer, and so decays variables that an anchored pattern such as
    "^bias$" was meant to exclude.

    With `lazy_rows` (bertclf's default), a variable whose gradient arrives as
    `tf.IndexedSlices` (the word and segment embeddings) gets a lazy update: only the
    rows the batch used have their moments, decay and step applied, as in TF Addons'
    LazyAdam. A batch of 16 x 60 tokens touches a few hundred of MiniLM's 30,522
    vocabulary rows, so this skips most of the densest work of a short-text step.
    Dense Adam, which PyTorch's AdamW does, also keeps moving the rows a batch did
    not use (their momentum decays) and decays them; `lazy_rows = False` restores it.

    With `set_layer_decay`, each variable's learning rate (and so its weight decay, which
    AdamW scales by the rate) is the schedule's times its layer's factor.
    """

    lazy_rows = False
    _lazy: dict = {}  # var key -> decay?, for this step's row-sparse variables
    _scales: dict = {}  # var key -> learning-rate factor (layer-wise decay); absent: 1

    def set_layer_decay(self, variables, decay: float) -> int:
        """Scale each variable's rate by `layer_scales(variables, decay)`; returns how
        many variables got a factor other than 1 (0: no layer was recognised)."""
        self._scales = {
            self._var_key(v): scale
            for v, scale in zip(variables, layer_scales(variables, decay), strict=True)
            if scale != 1.0
        }
        return len(self._scales)

    def _backend_apply_gradients(self, grads, trainable_variables):
        # Decided here, where the Keras variables (and their names) and the gradient
        # types are both at hand; update_step only sees the tf.Variable.
        self._lazy = {
            self._var_key(v): self.weight_decay is not None and self._use_weight_decay(v)
            for g, v in zip(grads, trainable_variables, strict=True)
            if self.lazy_rows and isinstance(g, tf.IndexedSlices)
        }
        super()._backend_apply_gradients(grads, trainable_variables)

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None:
            return
        decayed = [  # Keras names; lazy rows are decayed in their own update
            v for v in variables if self._var_key(v) not in self._lazy and self._use_weight_decay(v)
        ]

        def apply(distribution, decayed):
            rate = self.learning_rate * self.weight_decay  # the schedule, once per step
            for variable in decayed:
                scale = self._scales.get(self._var_key(variable), 1.0)
                r = tf.cast(rate if scale == 1.0 else rate * scale, variable.dtype)
                distribution.extended.update(
                    variable.value, lambda var, r=r: var.assign_sub(var * r), group=False
                )

        tf.__internal__.distribute.interim.maybe_merge_call(
            apply, self._distribution_strategy, decayed
        )

    def update_step(self, gradient, variable, learning_rate):
        scale = self._scales.get(self._var_key(variable))
        if scale is not None:  # --layer-decay: this variable's layer trains slower
            learning_rate = learning_rate * scale
        if isinstance(gradient, tf.IndexedSlices):  # embedding rows
            decay = self._lazy.get(self._var_key(variable))
            if decay is not None:
                return self._lazy_update(gradient, variable, learning_rate, decay)
            gradient = tf.convert_to_tensor(gradient)  # dense Adam: every row moves
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )

    def _lazy_update(self, gradient, variable, learning_rate, decay: bool):
        """Adam(W) on the rows in `gradient` only: values [k, d], indices [k] (repeats)."""
        dtype = variable.dtype
        rows, position = tf.unique(gradient.indices)  # [u], [k]
        # Repeated tokens add up first, so v gets the square of the row's whole gradient.
        g = tf.math.unsorted_segment_sum(tf.cast(gradient.values, dtype), position, tf.size(rows))
        index = self._get_variable_index(variable)
        m_slot, v_slot = self._momentums[index].value, self._velocities[index].value
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        m = beta_1 * tf.gather(m_slot, rows) + (1.0 - beta_1) * g  # [u, d]
        v = beta_2 * tf.gather(v_slot, rows) + (1.0 - beta_2) * tf.square(g)
        step = tf.cast(self.iterations + 1, dtype)
        lr = tf.cast(learning_rate, dtype)
        alpha = lr * tf.sqrt(1.0 - tf.pow(beta_2, step)) / (1.0 - tf.pow(beta_1, step))
        delta = alpha * m / (tf.sqrt(v) + tf.cast(self.epsilon, dtype))  # as ResourceApplyAdam
        if decay:  # AdamW's decoupled decay of these rows, from their values before the step
            delta += tf.gather(variable, rows) * (lr * tf.cast(self.weight_decay, dtype))
        m_slot.scatter_update(tf.IndexedSlices(m, rows))
        v_slot.scatter_update(tf.IndexedSlices(v, rows))
        variable.scatter_sub(tf.IndexedSlices(delta, rows))


class FusedAdamW(FusedAdamUpdate, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with the fused update (see `FusedAdamUpdate`)."""


class FusedAdam(FusedAdamUpdate, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with the fused update (see `FusedAdamUpdate`)."""


_LAYER = re.compile(r"(?:^|/)transformer_layer_(\d+)/")


def layer_scales(variables, decay: float) -> list[float]:
    """Layer-wise learning-rate decay (Sun et al. 2019, "How to Fine-Tune BERT for Text
    Classification?"): the head keeps the peak rate, transformer layer i of L gets
    decay**(L - i), the embeddings decay**(L + 1). Layers are read from keras-hub's
    variable paths ("transformer_layer_3/...", "token_embedding/...").

    Example:
    >>> class V:
    ...     def __init__(self, path): self.path = path
    >>> paths = ["token_embedding/embeddings", "transformer_layer_0/x/kernel",
    ...          "transformer_layer_1/x/kernel", "classifier/kernel"]
    >>> [round(s, 4) for s in layer_scales([V(p) for p in paths], 0.5)]
    [0.125, 0.25, 0.5, 1.0]
    """
    depth = [_LAYER.search(v.path) for v in variables]
    layers = 1 + max((int(m[1]) for m in depth if m), default=-1)
    scales = []
    for v, m in zip(variables, depth, strict=True):
        if m:
            scales.append(decay ** (layers - int(m[1])))
        elif "embedding" in v.path.split("/")[0]:  # token, position, segment; their norm
            scales.append(decay ** (layers + 1))
        else:  # the head (and any pooler): the peak rate
            scales.append(1.0)
    return scales


def make_optimizer(cfg: TrainConfig, total_steps: int, loss_scaling: bool = False):
    """AdamW (weight decay off for biases and LayerNorm) or Adam on the schedule.

    With `loss_scaling` (fp16), the optimizer is wrapped in Keras'
    `LossScaleOptimizer`, which scales the loss and skips steps with inf/nan grads.
    """
    warmup_steps = int(cfg.warmup * total_steps)
    schedule = WarmupLinearDecay(cfg.lr, total_steps, warmup_steps)
    if cfg.optimizer == "adamw":
        optimizer = FusedAdamW(learning_rate=schedule, weight_decay=cfg.weight_decay, epsilon=1e-6)
        # Keras variable names are short ("bias", "gamma", "beta", "kernel"):
        # gamma/beta exist only in LayerNormalization layers.
        optimizer.exclude_from_weight_decay(var_names=["^bias$", "^gamma$", "^beta$"])
    else:
        optimizer = FusedAdam(learning_rate=schedule, epsilon=1e-6)
    optimizer.lazy_rows = cfg.embedding_update == "lazy"
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


# ------------------------------------------------------------------ the weights' moving average


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

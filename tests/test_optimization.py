"""The optimizers: fused Adam(W) equals Keras' own, lazy embedding rows, the schedule."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from bertclf.config.train import TrainConfig
from bertclf.training.optimization import (
    FusedAdam,
    FusedAdamW,
    WarmupLinearDecay,
    layer_scales,
    make_optimizer,
    moments,
)


def _tiny_model(seed: int):
    """Embedding (sparse gradients), dense kernel + bias, LayerNorm gamma/beta."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input([5], dtype="int32")
    x = keras.layers.Embedding(50, 8)(inputs)  # [b, 5, 8]
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(x))
    return keras.Model(inputs, x)


def _train(optimizer, steps: int = 12, densify: bool = False) -> list[np.ndarray]:
    model = _tiny_model(0)
    rng = np.random.RandomState(1)
    tokens = tf.constant(rng.randint(0, 50, (steps, 4, 5)), tf.int32)  # few rows per step
    labels = tf.constant(rng.randint(0, 3, (steps, 4)), tf.int32)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            )
        grads = tape.gradient(loss, model.trainable_variables)
        if densify:  # the embedding's IndexedSlices (rows repeat) -> one dense gradient
            grads = [tf.convert_to_tensor(g) for g in grads]
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))

    for i in range(steps):
        step(tokens[i], labels[i])
    return [v.numpy() for v in model.trainable_variables]


@pytest.mark.parametrize(
    ("fused", "plain", "kwargs"),
    [
        (FusedAdamW, keras.optimizers.AdamW, {"weight_decay": 0.1}),
        (FusedAdam, keras.optimizers.Adam, {}),
    ],
)
def test_fused_update_equals_keras(fused, plain, kwargs):
    def make(cls):
        opt = cls(learning_rate=WarmupLinearDecay(1e-2, 12, 3), epsilon=1e-6, **kwargs)
        if "weight_decay" in kwargs:
            # Unanchored: Keras' own AdamW matches them against "dense/bias:0".
            opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        return opt

    # The reference is Keras' optimizer on dense gradients, i.e. textbook Adam. (Fed the
    # embedding's IndexedSlices, Keras squares each repeated row's slice separately, so
    # its second moment is a sum of squares instead of the square of the summed gradient.)
    ours, theirs = _train(make(fused)), _train(make(plain), densify=True)
    start = [v.numpy() for v in _tiny_model(0).trainable_variables]
    for a, b, s in zip(ours, theirs, start, strict=True):
        assert not np.allclose(a, s)  # every variable (the embedding too) was trained
        np.testing.assert_allclose(a, b, atol=2e-6)


def test_weight_decay_skips_biases_and_layer_norm():
    # Keras' AdamW given these anchored patterns decays LayerNorm's gamma too (it asks
    # with tf.Variable names, "layer_normalization/gamma:0"); ours decays only the
    # two matrices.
    model = _tiny_model(0)
    opt = make_optimizer(TrainConfig(lr=0.1, weight_decay=0.5, warmup=0.0), 10)
    start = [v.numpy() for v in model.trainable_variables]
    zeros = [tf.zeros_like(v) for v in model.trainable_variables]  # Adam's own step is 0
    opt.apply_gradients(zip(zeros, model.trainable_variables, strict=True))
    for v, s in zip(model.trainable_variables, start, strict=True):
        decayed = v.name in ("embeddings", "kernel")
        expected = s * (1 - 0.1 * 0.5) if decayed else s
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-6, err_msg=v.path)


def test_make_optimizer_uses_the_fused_update():
    assert isinstance(make_optimizer(TrainConfig(), 10), FusedAdamW)
    assert isinstance(make_optimizer(TrainConfig(optimizer="adam"), 10), FusedAdam)
    scaled = make_optimizer(TrainConfig(precision="fp16"), 10, loss_scaling=True)
    assert isinstance(scaled.inner_optimizer, FusedAdamW)


def _embedding_steps(optimizer, batches, weight_decay_rows=None):
    """Train a bare [6, 4] embedding table on a few batches of row ids; return it."""
    keras.utils.set_random_seed(0)
    table = keras.layers.Embedding(6, 4)
    table.build(None)
    target = tf.constant(np.random.RandomState(2).randn(6, 4), tf.float32)

    @tf.function
    def step(ids):
        with tf.GradientTape() as tape:
            rows = table(ids)  # [k, 4]; tf.gather's gradient is IndexedSlices
            loss = tf.reduce_sum(tf.square(rows - tf.gather(target, ids)))
        grads = tape.gradient(loss, table.trainable_variables)
        assert isinstance(grads[0], tf.IndexedSlices)
        optimizer.apply_gradients(zip(grads, table.trainable_variables, strict=True))

    for ids in batches:
        step(tf.constant(ids, tf.int32))
    return table.embeddings.numpy(), optimizer


def _adamw(lazy: bool):
    update = "lazy" if lazy else "dense"
    cfg = TrainConfig(lr=0.05, weight_decay=0.1, warmup=0.0, embedding_update=update)
    return make_optimizer(cfg, 10)


def test_lazy_rows_equal_dense_adam_when_every_row_is_used():
    # Every batch uses all 6 rows (some twice): lazy and dense Adam(W) are the same update.
    batches = [[0, 1, 2, 3, 4, 5, 2], [5, 4, 3, 2, 1, 0, 0], [1, 0, 3, 2, 5, 4, 4]]
    lazy, _ = _embedding_steps(_adamw(True), batches)
    dense, _ = _embedding_steps(_adamw(False), batches)
    np.testing.assert_allclose(lazy, dense, rtol=1e-5, atol=1e-6)


def test_lazy_rows_leave_unused_rows_alone():
    start, _ = _embedding_steps(_adamw(True), [])
    batches = [[0, 1, 1], [0, 2]]  # rows 3-5 never used; row 1 only in the first batch
    lazy, opt = _embedding_steps(_adamw(True), batches)
    dense, _ = _embedding_steps(_adamw(False), batches)
    np.testing.assert_array_equal(lazy[3:], start[3:])  # no decay, no step
    assert not np.allclose(dense[3:], start[3:])  # dense AdamW decays them every step
    after_first, _ = _embedding_steps(_adamw(True), batches[:1])
    np.testing.assert_array_equal(lazy[1], after_first[1])  # no momentum step when unused
    assert not np.allclose(dense[1], after_first[1])
    m, v = (s.numpy() for s in moments(opt, opt._trainable_variables[0]))
    assert not m[3:].any() and not v[3:].any() and m[:3].any()


def test_lazy_rows_are_decayed_once_per_step():
    # A zero gradient on rows 1 and 3: Adam's step is 0, so only decoupled decay moves them.
    keras.utils.set_random_seed(0)
    table = keras.layers.Embedding(6, 4)
    table.build(None)
    start = table.embeddings.numpy()
    opt = _adamw(True)
    zero = tf.IndexedSlices(tf.zeros([3, 4]), tf.constant([1, 3, 1]), tf.constant([6, 4]))
    opt.apply_gradients([(zero, table.embeddings)])
    expected = start.copy()
    expected[[1, 3]] *= 1 - 0.05 * 0.1
    np.testing.assert_allclose(table.embeddings.numpy(), expected, rtol=1e-6)


def test_make_optimizer_embedding_update_setting():
    assert make_optimizer(TrainConfig(), 10).lazy_rows  # the default
    assert not make_optimizer(TrainConfig(embedding_update="dense"), 10).lazy_rows
    scaled = make_optimizer(TrainConfig(precision="fp16"), 10, loss_scaling=True)
    assert scaled.inner_optimizer.lazy_rows


def _layered_model():
    """Named as keras-hub names a BERT's parts: embeddings, two layers, a head."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input([5], dtype="int32")
    x = keras.layers.Embedding(50, 8, name="token_embedding")(inputs)
    for i in range(2):
        x = keras.layers.Dense(8, activation="tanh", name=f"transformer_layer_{i}")(x)
    x = keras.layers.Dense(3, name="classifier")(keras.layers.GlobalAveragePooling1D()(x))
    return keras.Model(inputs, x)


def _one_step(layer_decay: float) -> tuple[list[np.ndarray], list]:
    model = _layered_model()
    before = [v.numpy() for v in model.trainable_variables]
    optimizer = make_optimizer(TrainConfig(lr=0.05, weight_decay=0.1, warmup=0.0), 10)
    optimizer.build(model.trainable_variables)
    scaled = optimizer.set_layer_decay(model.trainable_variables, layer_decay)
    assert scaled == (0 if layer_decay == 1.0 else 5)  # the embedding, 2 layers x (kernel, bias)
    x = tf.constant(np.random.RandomState(1).randint(0, 50, (4, 5)), tf.int32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(model(x)))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    deltas = [v.numpy() - b for v, b in zip(model.trainable_variables, before, strict=True)]
    return deltas, model.trainable_variables


def test_layer_decay_scales_each_layers_step_and_weight_decay():
    # Adam's first step and AdamW's decay are both proportional to the rate, so with
    # layer-wise decay every variable moves by its layer's factor times the plain step.
    plain, _ = _one_step(1.0)
    decayed, variables = _one_step(0.5)
    scales = layer_scales(variables, 0.5)
    expected = {
        "token_embedding/embeddings": 0.125,
        "transformer_layer_0/kernel": 0.25,
        "transformer_layer_0/bias": 0.25,
        "transformer_layer_1/kernel": 0.5,
        "classifier/kernel": 1.0,
    }
    for v, scale in zip(variables, scales, strict=True):
        assert expected.get(v.path, scale) == scale, v.path
    for d, p, scale in zip(decayed, plain, scales, strict=True):
        assert np.abs(p).max() > 0
        np.testing.assert_allclose(d, scale * p, rtol=1e-4, atol=1e-7)

"""The cheaper GELU and dropout kernels equal what they replace."""

from __future__ import annotations

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from bertclf.model import fastops
from bertclf.model.classifier import BertClassifier
from bertclf.training.hardware import precision_policy


def _backbone(dropout: float = 0.1):
    keras.utils.set_random_seed(3)
    return keras_hub.models.BertBackbone(
        vocabulary_size=30,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        dropout=dropout,
    )


def _inputs(batch: int = 3, width: int = 7):
    ids = tf.constant(np.random.RandomState(0).randint(1, 30, (batch, width)), tf.int32)
    return {"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": ids > 0}


def test_gelu_and_its_gradient_equal_keras_hubs():
    x = tf.linspace(-8.0, 8.0, 2001)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = fastops.gelu_approximate(x)
        theirs = tf.nn.gelu(x, approximate=True)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=2e-6)
    # Gradients differ by up to 4e-6 near x = -5, where float32 tanh has saturated to
    # -1 and TensorFlow's gradient is exactly 0; the sigmoid form keeps the tail.
    np.testing.assert_allclose(
        tape.gradient(ours, x).numpy(), tape.gradient(theirs, x).numpy(), atol=1e-5
    )


def test_gelu_keeps_a_reduced_precision_dtype():
    x = tf.cast(tf.linspace(-4.0, 4.0, 101), tf.bfloat16)
    y = fastops.gelu_approximate(x)
    assert y.dtype == tf.bfloat16
    expected = tf.nn.gelu(tf.cast(x, tf.float32), approximate=True)
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), expected.numpy(), atol=2e-2)


@pytest.mark.parametrize("shape", [[64, 33, 257], [4, 2, 50, 50]])  # odd and even last axes
def test_keep_mask_drops_the_rate_and_is_seeded(shape):
    seed = tf.constant([7, 9], tf.int64)
    mask = fastops.keep_mask(shape, 0.1, seed)
    assert mask.shape == shape and mask.dtype == tf.bool
    dropped = 1.0 - float(tf.reduce_mean(tf.cast(mask, tf.float32)))
    assert abs(dropped - 0.1) < 0.01, dropped
    np.testing.assert_array_equal(mask, fastops.keep_mask(shape, 0.1, seed))
    assert not np.array_equal(mask, fastops.keep_mask(shape, 0.1, seed + 1))


def test_dropout_scales_kept_values_and_passes_the_mask_to_the_gradient():
    layer = keras.layers.Dropout(0.25, seed=5)
    assert fastops.install(layer) == {"gelu": 0, "dropout": 1, "embedding": 0}
    x = tf.random.stateless_normal([16, 40], [1, 2]) + 3.0  # no exact zeros
    np.testing.assert_array_equal(layer(x, training=False), x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
    kept = y.numpy() != 0
    assert 0.15 < 1 - kept.mean() < 0.35
    np.testing.assert_allclose(y.numpy()[kept], x.numpy()[kept] / 0.75, rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), kept / 0.75, rtol=1e-6)


def _traced_ops(fn, *args) -> set[str]:
    return {op.type for op in tf.function(fn).get_concrete_function(*args).graph.get_operations()}


def test_embedding_reads_only_the_looked_up_rows():
    keras.utils.set_random_seed(1)
    layer = keras.layers.Embedding(50, 4)
    ids = tf.constant([[3, 7, 3], [49, 0, 7]])
    before = layer(ids)
    assert fastops.install(layer)["embedding"] == 1
    np.testing.assert_array_equal(layer(ids).numpy(), before.numpy())
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(ids))
    grad = tape.gradient(y, layer.embeddings.value)
    assert isinstance(grad, tf.IndexedSlices)  # rows, as Keras' gather gives
    assert sorted(set(grad.indices.numpy().tolist())) == [0, 3, 7, 49]
    # It gathers from the variable, never reading (so never copying) the whole table.
    ops = _traced_ops(layer, ids)
    assert "ResourceGather" in ops and "ReadVariableOp" not in ops, ops


def test_embedding_sparse_read_in_a_mixed_precision_backbone():
    with precision_policy("bf16"):
        backbone = _backbone()
    x = _inputs()
    before = backbone(x, training=False)["sequence_output"]
    fastops.install(backbone)
    after = backbone(x, training=False)["sequence_output"]
    assert after.dtype == tf.bfloat16
    np.testing.assert_array_equal(after.numpy(), before.numpy())
    assert "ResourceGather" in _traced_ops(lambda x: backbone(x, training=False), x)


def test_install_swaps_every_gelu_and_dropout_and_keeps_the_outputs():
    backbone = _backbone()
    x = _inputs()
    before = backbone(x, training=False)["sequence_output"].numpy()
    # Per layer: GELU in the feed-forward; attention-probability, attention-output
    # and feed-forward dropout. Plus the embeddings' dropout, and the token and
    # segment embeddings (the position embedding is keras-hub's own layer).
    assert fastops.install(backbone) == {"gelu": 2, "dropout": 2 * 3 + 1, "embedding": 2}
    after = backbone(x, training=False)["sequence_output"].numpy()
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_the_classifier_trains_with_them_reproducibly():
    first, second = BertClassifier(_backbone(), 3), BertClassifier(_backbone(), 3)
    dense = [
        layer
        for layer in first._flatten_layers()
        if isinstance(layer, keras.layers.Dense) and "intermediate" in layer.name
    ]
    assert dense and all(d.activation is fastops.gelu_approximate for d in dense)
    x = _inputs()
    step_1 = first(x, training=True).numpy()
    np.testing.assert_array_equal(step_1, second(x, training=True).numpy())  # same seeds
    assert not np.allclose(step_1, first(x, training=True).numpy())  # a new mask each call

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from bertclf.model.classifier import BertClassifier


def tiny_backbone():
    keras.utils.set_random_seed(1)
    return keras_hub.models.BertBackbone(
        vocabulary_size=20,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        dropout=0.0,
    )


def inputs(ids):
    ids = tf.constant(ids, tf.int32)
    return {"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": ids != 0}


@pytest.mark.parametrize("head,labels", [("softmax", 3), ("softmax", 2), ("sigmoid", 2)])
def test_probabilities_have_one_column_per_label(head, labels):
    model = BertClassifier(tiny_backbone(), labels, head=head)
    probs = model.probabilities(model(inputs([[2, 5, 6, 3], [2, 7, 3, 0]]))).numpy()
    assert probs.shape == (2, labels)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_sigmoid_columns_are_in_label_order():
    model = BertClassifier(tiny_backbone(), 2, head="sigmoid")
    logits = tf.constant([[3.0]])  # strongly label 1
    probs = model.probabilities(logits).numpy()[0]
    assert probs[1] > 0.9 and probs[0] < 0.1
    loss = model.per_example_loss(tf.constant([1]), logits).numpy()
    assert loss[0] == pytest.approx(np.log1p(np.exp(-3.0)), rel=1e-5)


def test_sigmoid_needs_two_labels():
    with pytest.raises(ValueError, match="exactly 2 labels"):
        BertClassifier(tiny_backbone(), 3, head="sigmoid")


def test_mean_pooling_ignores_padding():
    model = BertClassifier(tiny_backbone(), 2, pooling="mean")
    short = model.pool(inputs([[2, 5, 3]])).numpy()
    padded = model.pool(inputs([[2, 5, 3, 0, 0, 0]])).numpy()
    np.testing.assert_allclose(short, padded, atol=1e-5)


def test_mean_pooling_freezes_unused_pooler():
    model = BertClassifier(tiny_backbone(), 2, pooling="mean")
    model(inputs([[2, 3]]))
    names = [v.path for v in model.trainable_variables]
    assert not any("pooled_dense" in n for n in names)
    cls = BertClassifier(tiny_backbone(), 2, pooling="cls")
    cls(inputs([[2, 3]]))
    assert any("pooled_dense" in v.path for v in cls.trainable_variables)


def test_chunked_texts_get_one_logit_row_and_one_loss_each():
    # Text 0 has one used window, text 1 three (its fourth is all padding).
    model = BertClassifier(tiny_backbone(), 3)
    windows = [
        [[2, 5, 6, 3], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
        [[2, 7, 8, 3], [2, 9, 10, 3], [2, 11, 3, 0], [0, 0, 0, 0]],
    ]
    logits = model(inputs(windows))
    assert logits.shape == (2, 3)
    # Each text's logits are the mean over its used windows, encoded alone.
    alone = model(inputs([w for w in windows[1][:3]])).numpy()
    np.testing.assert_allclose(logits[1], alone.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(logits[0], model(inputs([windows[0][0]]))[0], atol=1e-5)
    # The loss is per text: [2], each the cross-entropy of that text's pooled logits.
    loss = model.per_example_loss(tf.constant([0, 2]), logits).numpy()
    assert loss.shape == (2,)
    want = -np.log(model.probabilities(logits).numpy()[[0, 1], [0, 2]])
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    # --chunk-pool max: each label's largest window logit; one window: the same as mean.
    model.chunk_pool = "max"
    pooled = model(inputs(windows)).numpy()
    np.testing.assert_allclose(pooled[1], alone.max(axis=0), atol=1e-5)
    np.testing.assert_allclose(pooled[0], logits[0], atol=1e-5)

"""Input pipeline: length-grouped order, bucket trimming, and that trimming changes nothing."""

import keras_hub
import numpy as np
import tensorflow as tf

from bertclf.data.datasets import Examples
from bertclf.model.classifier import BertClassifier
from bertclf.model.preprocessing import TextPreprocessor, pack_all, tokenize_all, trim_to_bucket
from bertclf.training.pipeline import EpochDataset, bucket_width, grouped_order, shuffled_order


def test_grouped_order_is_a_seeded_permutation_of_similar_length_batches():
    rng = np.random.RandomState(0)
    lengths = rng.randint(5, 128, size=1003)
    order = grouped_order(lengths, 16, seed=7)
    assert sorted(order.tolist()) == list(range(1003))
    assert np.array_equal(order, grouped_order(lengths, 16, seed=7))
    assert not np.array_equal(order, grouped_order(lengths, 16, seed=8))
    batches = [order[i : i + 16] for i in range(0, 1003, 16)]
    assert [len(b) for b in batches[:-1]] == [16] * 62 and len(batches[-1]) == 11
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random = shuffled_order(1003, 7)
    random_spread = np.mean([np.ptp(lengths[random[i : i + 16]]) for i in range(0, 1003, 16)])
    assert spread < random_spread / 5  # batches hold texts of similar length


def test_trim_to_bucket_widths():
    mask = tf.sequence_mask([3, 40], 128)
    features = {"token_ids": tf.cast(mask, tf.int32), "padding_mask": mask}
    assert trim_to_bucket(features, 128)["token_ids"].shape == (2, 40)  # default: multiples of 4
    mask41 = tf.sequence_mask([3, 41], 128)
    assert trim_to_bucket({"padding_mask": mask41}, 128)["padding_mask"].shape == (2, 44)
    assert trim_to_bucket(features, 128, bucket_width(jit=True))["token_ids"].shape == (2, 64)
    mask = tf.sequence_mask([3, 5], 128)
    assert trim_to_bucket({"padding_mask": mask}, 128)["padding_mask"].shape == (2, 8)  # 5 -> 8
    assert trim_to_bucket({"padding_mask": mask}, 128, 32)["padding_mask"].shape == (2, 32)
    mask = tf.sequence_mask([100, 98], 128)
    assert trim_to_bucket({"padding_mask": mask}, 100)["padding_mask"].shape == (2, 100)


def test_trimmed_batches_give_the_same_outputs():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c"]
    tok = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    pre = TextPreprocessor(tok, sequence_length=96)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=8, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, dropout=0.0
    )
    model = BertClassifier(backbone, 2)
    texts = ["a b c " * n for n in (1, 3, 9)]
    ex = Examples(texts, [0, 1, 0], ["x", "y"], ["1", "2", "3"])
    full, trimmed = (next(iter(EpochDataset(ex, pre, 3, bucketing=b)()))[0] for b in (False, True))
    assert full["token_ids"].shape == (3, 96) and trimmed["token_ids"].shape == (3, 32)
    np.testing.assert_allclose(model(full).numpy(), model(trimmed).numpy(), atol=1e-5)


def test_tokenized_once_batches_equal_the_preprocessor(tiny_encoder):
    """Gathered, packed ids are exactly what the exported model's preprocessor makes."""
    from bertclf.model import encoders

    _, tokenizer = encoders.load(encoders.resolve(tiny_encoder))
    pre = TextPreprocessor(tokenizer, 12, clean=("lower",))
    texts = ["Crash ERROR " * 9, "", "refund", "é invoice ✓ please add", "bug " * 3]
    ex = Examples(texts, [0, 1, 2, 0, 1], ["a", "b", "c"], [str(i) for i in range(5)])
    order = np.array([3, 0, 4, 1, 2])
    for bucketing in (False, True):
        batches = list(EpochDataset(ex, pre, 2, bucketing=bucketing)(order))
        expected = pre(tf.constant([texts[i] for i in order]))
        for key, want in expected.items():
            got = [b[0][key].numpy() for b in batches]  # [2, w], [2, w], [1, w]
            width = max(g.shape[1] for g in got)
            got = np.concatenate([np.pad(g, [(0, 0), (0, width - g.shape[1])]) for g in got])
            np.testing.assert_array_equal(got, want.numpy()[:, :width])
            assert not want.numpy()[:, width:].any()  # trimmed columns were padding only
        labels = np.concatenate([b[1].numpy() for b in batches])
        np.testing.assert_array_equal(labels, np.array(ex.labels)[order])


def test_pack_all_in_chunks_equals_the_preprocessor(tiny_encoder):
    from bertclf.model import encoders

    _, tokenizer = encoders.load(encoders.resolve(tiny_encoder))
    pre = TextPreprocessor(tokenizer, 10)
    texts = ["crash error " * 9, "", "refund", "invoice please", "bug " * 3]
    packed = pack_all(pre, tokenize_all(pre, texts), batch=2)  # chunks of 2, 2 and 1 rows
    expected = pre(tf.constant(texts))
    assert sorted(packed) == sorted(expected)
    for key, want in expected.items():
        assert packed[key].dtype == want.dtype
        np.testing.assert_array_equal(packed[key].numpy(), want.numpy())

"""tf.data input pipelines: batch raw strings, tokenize in parallel, prefetch.

Tokenizing happens in `Dataset.map` on CPU threads, after batching (one
vectorised tokenizer call per batch), and `prefetch` keeps the next batches
ready while the current step runs.
"""

from __future__ import annotations

import tensorflow as tf

from bertclf.data import Examples
from bertclf.preprocessing import TextPreprocessor

BUCKET = 32  # batch widths are multiples of this (fewer distinct shapes for XLA)


def trim_to_bucket(features: dict, max_len: int, bucket: int = BUCKET) -> dict:
    """Drop padding columns: keep the longest row, rounded up to a multiple of `bucket`.

    [batch, max_len] -> [batch, width], width = min(ceil(longest / bucket) * bucket, max_len).
    Texts were already truncated to `max_len`, so nothing but padding is removed.
    """
    longest = tf.reduce_max(tf.reduce_sum(tf.cast(features["padding_mask"], tf.int32), axis=1))
    width = tf.minimum((longest + bucket - 1) // bucket * bucket, max_len)
    return {k: v[:, :width] for k, v in features.items()}


def make_dataset(
    examples: Examples,
    preprocessor: TextPreprocessor,
    batch_size: int,
    shuffle_seed: int | None = None,
    bucketing: bool = True,
) -> tf.data.Dataset:
    """(features, labels) batches for training or evaluation.

    Args:
        examples: texts and integer labels.
        preprocessor: the run's `TextPreprocessor` (the exported model's too).
        batch_size: examples per batch; the last batch may be smaller.
        shuffle_seed: shuffle the whole set with this seed (one fixed order per
            seed, so an epoch can be replayed exactly on --resume); None keeps order.
        bucketing: pad each batch only as far as its longest text needs.
    """
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(examples.texts, tf.string), tf.constant(examples.labels, tf.int32))
    )
    if shuffle_seed is not None:
        ds = ds.shuffle(len(examples), seed=shuffle_seed, reshuffle_each_iteration=False)
    ds = ds.batch(batch_size)

    def encode(texts, labels):
        features = preprocessor(texts)  # each [batch, seq_len]
        if bucketing:
            features = trim_to_bucket(features, preprocessor.sequence_length)
        return features, labels

    ds = ds.map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)

"""Cheaper kernels for the encoder's element-wise work (GELU, dropout) and embedding reads.

On a CPU, a fine-tuning step of a small BERT spends about as much time in
element-wise ops as in matrix products, and each element-wise op is a separate
pass over memory (TensorFlow without XLA fuses none of them; XLA fuses them but
its CPU matrix products are slower than oneDNN's). A profile of one MiniLM step
(batch 16 x 56 tokens, bf16) put a quarter of the op time in two places:

- keras-hub's approximate GELU, `0.5 x (1 + tanh(c (x + 0.044715 x^3)))`: eight
  kernels forward and about a dozen for its automatic gradient, in bfloat16,
  whose element-wise kernels are slower than float32's on this CPU;
- Keras' dropout, which draws one float32 uniform number per element.

`gelu_approximate` computes the same function as `x * sigmoid(2c (x + 0.044715 x^3))`
(the identity `0.5 (1 + tanh z) = sigmoid(2z)`) in float32 with a hand-written
gradient: fewer passes, equal to keras-hub's GELU to float32 rounding.
`fast_dropout_call` draws 16 random bits per element (one 32-bit Philox draw
feeds two elements) and keeps an element when its bits are >= rate * 2^16.

`sparse_embedding_call` looks up embedding rows with a sparse read of the table
(`ResourceGather`) instead of Keras' whole-table read and gather: once an optimizer
has updated a table's rows sparsely (bertclf's lazy Adam rows), TensorFlow keeps
that variable in copy-on-read mode, and every whole-table read copies it (MiniLM's
30,522 x 384 float32 words, 47 MB, each step).

`install(model)` puts all three into a built model in place: same weights, same
layers and names, same seeds, so training and the exported model share them.
"""

from __future__ import annotations

import functools
import logging
import math

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)

_K1 = 2.0 * math.sqrt(2.0 / math.pi)  # 2c: sigmoid(2z) == 0.5 * (1 + tanh(z))
_K2 = _K1 * 0.044715


@tf.custom_gradient
def _gelu_float32(x):
    """Approximate GELU of a float32 tensor, with its gradient in 7 passes."""
    x2 = tf.square(x)
    s = tf.sigmoid(x * (_K1 + _K2 * x2))
    y = x * s

    def grad(dy):
        # d/dx [x * s(z(x))] = s + x s (1 - s) z'(x),  z'(x) = K1 + 3 K2 x^2
        return dy * (s + y * (1.0 - s) * (_K1 + 3.0 * _K2 * x2))

    return y, grad


def gelu_approximate(x):
    """keras-hub's approximate GELU, computed in float32 with a cheaper gradient.

    Args:
        x: a float tensor of any shape and float dtype.

    Returns:
        `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))` in x's dtype.

    Example:
    >>> y = gelu_approximate(tf.constant([-1.0, 0.0, 2.0]))
    >>> bool(tf.reduce_max(tf.abs(y - tf.nn.gelu([-1.0, 0.0, 2.0], approximate=True))) < 1e-6)
    True
    """
    x = tf.convert_to_tensor(x)
    if x.dtype == tf.float32:
        return _gelu_float32(x)
    return tf.cast(_gelu_float32(tf.cast(x, tf.float32)), x.dtype)


def keep_mask(shape, rate: float, seed) -> tf.Tensor:
    """A boolean mask of `shape`, each element False with probability `rate`.

    Args:
        shape: the mask's shape (a 1-D int tensor or list).
        rate: drop probability in [0, 1), resolved to 1/65536.
        seed: a stateless seed, int64 [2].
    """
    shape = tf.convert_to_tensor(shape, tf.int32)
    last = shape[-1]
    half = (last + 1) // 2  # one uint32 draw feeds two elements of the last axis
    bits = tf.random.stateless_uniform(
        tf.concat([shape[:-1], [half]], 0), seed, minval=None, maxval=None, dtype=tf.uint32
    )
    bits = tf.bitcast(bits, tf.uint16)  # [..., half, 2]
    bits = tf.reshape(bits, tf.concat([shape[:-1], [2 * half]], 0))[..., :last]
    return bits >= tf.constant(round(rate * 65536), tf.uint16)


def fast_dropout_call(layer: keras.layers.Dropout, inputs, training=False):
    """`keras.layers.Dropout.call` with `keep_mask`'s 16-bit draws.

    Same semantics as Keras: identity unless training, kept elements scaled by
    1 / (1 - rate), seeds from the layer's own `SeedGenerator`.
    """
    if not training or layer.rate == 0:
        return inputs
    inputs = tf.convert_to_tensor(inputs)
    seed = tf.cast(layer.seed_generator.next(), tf.int64)
    keep = keep_mask(tf.shape(inputs), layer.rate, seed)
    scale = tf.constant(1.0 / (1.0 - layer.rate), inputs.dtype)
    # One select makes the [...] multiplier; its gradient is one multiply.
    return inputs * tf.where(keep, scale, tf.zeros([], inputs.dtype))


def sparse_embedding_call(layer: keras.layers.Embedding, inputs, reverse=False):
    """`keras.layers.Embedding.call` that reads only the looked-up rows of the table.

    Same rows, same output dtype (the layer's compute dtype) and the same
    `tf.IndexedSlices` gradient as Keras' `ops.take` on the whole table. Keras'
    own call runs where the table reads as a tensor (a mixed-precision layer
    called on its own, outside a model, casts its whole table) and for a
    `ReversibleEmbedding` asked for `reverse` (logits over the vocabulary).
    """
    if reverse:
        return type(layer).call(layer, inputs, reverse=True)
    table = layer.embeddings.value  # the tf.Variable, unless an autocast scope casts it
    if not isinstance(table, tf.Variable):
        return type(layer).call(layer, inputs)
    ids = tf.convert_to_tensor(inputs)
    if ids.dtype not in (tf.int32, tf.int64):
        ids = tf.cast(ids, tf.int32)
    rows = tf.gather(table, ids)  # on a tf.Variable: ResourceGather
    return tf.cast(rows, layer.compute_dtype)


def install(model: keras.layers.Layer) -> dict[str, int]:
    """Swap in `gelu_approximate`, `fast_dropout_call` and `sparse_embedding_call`.

    Args:
        model: a built Keras layer or model (a `BertClassifier` or a backbone).

    Returns:
        How many layers were changed: {"gelu": n, "dropout": m, "embedding": k}.

    Dense layers whose activation is keras-hub's `gelu_approximate` get ours;
    every `keras.layers.Dropout` without a `noise_shape` gets the cheaper mask;
    every plain `keras.layers.Embedding` (no masking, LoRA or quantization) the
    sparse read.
    """
    counts = {"gelu": 0, "dropout": 0, "embedding": 0}
    for layer in model._flatten_layers(include_self=True):
        activation = getattr(layer, "activation", None)
        if isinstance(layer, keras.layers.Dense) and _is_keras_hub_gelu(activation):
            layer.activation = gelu_approximate
            counts["gelu"] += 1
        if isinstance(layer, keras.layers.Dropout) and layer.noise_shape is None:
            layer.call = functools.partial(fast_dropout_call, layer)
            counts["dropout"] += 1
        if _is_plain_embedding(layer):
            layer.call = functools.partial(sparse_embedding_call, layer)
            counts["embedding"] += 1
    logger.debug("fast element-wise ops installed: %s", counts)
    return counts


def _is_plain_embedding(layer) -> bool:
    return (
        isinstance(layer, keras.layers.Embedding)
        and layer.built
        and not layer.mask_zero
        and not getattr(layer, "lora_enabled", False)
        and getattr(layer, "quantization_mode", None) is None
    )


def _is_keras_hub_gelu(fn) -> bool:
    return getattr(fn, "__name__", "") == "gelu_approximate" and fn is not gelu_approximate

"""Time one step's update of the weights' moving average (--ema) for MiniLM-L6's shapes.

    .venv/bin/python bench/ema_update.py [--rounds 7]

`tf` is the update with TensorFlow's element-wise kernels (d * a + (1 - d) * w, then an
assign: four kernels a variable); `xla` is the same function XLA-compiled, as
`bertclf.trainer` runs it on one device. Medians over rounds of 10 calls, in ms.
"""

import argparse
import json
import statistics
import time

import tensorflow as tf


def minilm_shapes() -> list[tuple[int, ...]]:
    """The trainable variables of all-MiniLM-L6-v2 with a 5-label head (22.6M values)."""
    shapes = [(30522, 384), (512, 384), (2, 384), (384,), (384,)]
    layer = [(384, 12, 32), (12, 32)] * 3 + [(12, 32, 384), (384,), (384,), (384,)]
    layer += [(384, 1536), (1536,), (1536, 384), (384,), (384,), (384,)]
    return shapes + layer * 6 + [(384, 5), (5,)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    weights = [tf.Variable(tf.random.normal(s)) for s in minilm_shapes()]
    averages = [tf.Variable(w) for w in weights]
    step = tf.Variable(100.0)

    def update():
        decay = tf.minimum(0.99, (1.0 + step) / (10.0 + step))
        for average, weight in zip(averages, weights, strict=True):
            average.assign(decay * average + (1.0 - decay) * weight)

    variants = {"tf": tf.function(update), "xla": tf.function(update, jit_compile=True)}
    for fn in variants.values():
        fn(), fn()  # trace and compile
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(10):
                fn()
            times[name].append((time.perf_counter() - start) / 10 * 1000)
    print(json.dumps({name: round(statistics.median(t), 1) for name, t in times.items()}))


if __name__ == "__main__":
    main()

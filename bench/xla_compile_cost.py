"""Benchmark: what a new input shape costs an export's first and second calls.

    TF_XLA_FLAGS="--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit" \\
        .venv/bin/python bench/xla_compile_cost.py EXPORT_VERSION_DIR

Run with and without XLA's auto-clustering (the variable above, read when TensorFlow
starts), this times two calls of `serving_default` at each of a few (batch, words)
pairs, each pair new to the process: a compile shows as one slow call per new shape.
The export trims each batch to its longest text (rounded up to a multiple of 4), so a
server sees up to 32 widths times every batch size its batcher forms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import bbc_texts, machine  # noqa: E402

SHAPES = ((1, 5), (1, 20), (1, 40), (4, 40), (8, 40), (1, 41), (1, 100), (32, 100))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", help="an export's version directory (BASE/NAME/VERSION)")
    args = parser.parse_args()
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

    signature = tf.saved_model.load(args.export).signatures["serving_default"]
    words = " ".join(bbc_texts(40)).split()
    rows = []
    for batch, count in SHAPES:
        texts = tf.constant([" ".join(words[:count])] * batch)
        ms = []
        for _ in range(2):
            start = time.perf_counter()
            signature(text=texts)
            ms.append(round(1000 * (time.perf_counter() - start), 1))
        rows.append({"batch": batch, "words": count, "first_ms": ms[0], "second_ms": ms[1]})
    report = {**machine(), "TF_XLA_FLAGS": os.environ.get("TF_XLA_FLAGS", ""), "calls": rows}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Benchmark: exported SavedModels called in-process, batch 1 by text length and batch 32.

    .venv/bin/python bench/batch1_latency.py NAME=EXPORT_DIR [NAME=EXPORT_DIR ...] [--rounds 7]

Each EXPORT_DIR is a version directory (BASE/NAME/VERSION). All exports are loaded in
one process and called in alternation, round by round, so that they share the
machine's state: per round, each export answers 30 batch-1 calls on a short (~10
words), a medium (~40 words) and a long (~200 words) BBC excerpt, and 3 batch-32
calls on BBC articles. Reports the median over all calls of each kind, and the ratio
of each export to the first. Results: JSON on stdout and bench/out/batch1_latency.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, bbc_texts, machine, timed  # noqa: E402

WORDS = {"short": 10, "medium": 40, "long": 200}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("exports", nargs="+", help="NAME=EXPORT_DIR (a version directory)")
    p.add_argument("--rounds", type=int, default=7)
    a = p.parse_args()

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the graphs' WordPiece ops)

    words = bbc_texts(1)[0].split()
    texts = {kind: " ".join(words[:n]) for kind, n in WORDS.items()}
    batch = bbc_texts(32)
    models = {}
    for spec in a.exports:
        name, path = spec.split("=", 1)
        models[name] = tf.saved_model.load(path).signatures["serving_default"]
    calls = {kind: [tf.constant([t]) for _ in range(30)] for kind, t in texts.items()}
    calls["batch32"] = [tf.constant(batch)] * 3
    times = {name: {kind: [] for kind in calls} for name in models}
    for _ in range(a.rounds):
        for name, serve in models.items():
            for kind, inputs in calls.items():
                it = iter(inputs)
                times[name][kind] += timed(
                    lambda s=serve, i=it: s(text=next(i)), len(inputs) - 1, 1
                )
    medians = {
        name: {kind: 1000 * statistics.median(v) for kind, v in per.items()}
        for name, per in times.items()
    }
    first = next(iter(medians))
    report = {
        **machine(),
        "rounds": a.rounds,
        "tokens_hint_words": WORDS,
        "median_ms": medians,
        "ratio_to_" + first: {
            name: {kind: m[kind] / medians[first][kind] for kind in m}
            for name, m in medians.items()
        },
    }
    (OUT / "batch1_latency.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

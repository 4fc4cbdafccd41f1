"""Benchmark: a batch-1 call with the encoder and head XLA-compiled, against the graph runtime.

    .venv/bin/python bench/xla_batch1.py RUN [--rounds 3]

The export runs the encoder in TensorFlow's graph runtime, op by op; XLA compiles the
encoder and head into fused kernels, but TF Serving runs such a graph only with its
experimental `--xla_cpu_compilation_enabled` flag, and XLA compiles once per input shape.
This measures what XLA would gain, in one process, before anyone builds it: the run
loaded in float32 (as `bertclf export --precision fp32`), texts to probabilities
through the export's own preprocessing (`bertclf.pipeline.inference_features`), with
the model call plain or inside `tf.function(jit_compile=True)`; the tokenizer alone
beside them. 10- and 40-word texts, batch 1, round by round, medians of 60 calls after
5 warm-up calls (the compile happens there). Also prints the largest probability
difference between the two. ONNX Runtime's figures come from bench/batch1_latency.py.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import forty_words, machine, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a trained run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import tensorflow as tf

    from bertclf.model.preprocessing import inference_features
    from bertclf.prediction.trained_run import load_run

    run = load_run(args.run, "fp32")
    preprocessor, model = run.preprocessor, run.model

    def model_call(features):  # features [1, width] -> probabilities [1, num_labels]
        return model.probabilities(model(features, training=False))

    compiled = tf.function(model_call, jit_compile=True)
    spec = [tf.TensorSpec([None], tf.string)]
    calls = {
        "graph runtime": tf.function(
            lambda t: model_call(inference_features(preprocessor, t)), input_signature=spec
        ),
        "xla": tf.function(
            lambda t: compiled(inference_features(preprocessor, t)), input_signature=spec
        ),
        "tokenizer alone": tf.function(
            lambda t: inference_features(preprocessor, t), input_signature=spec
        ),
    }
    words = forty_words().split()
    texts = {"10 words": " ".join(words[:10]), "40 words": " ".join(words)}
    diff = max(
        float(abs(calls["graph runtime"](x) - calls["xla"](x)).numpy().max())
        for x in (tf.constant([t]) for t in texts.values())
    )
    times: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(args.rounds):
        for text_name, text in texts.items():
            x = tf.constant([text])
            for call_name, call in calls.items():
                times[f"{call_name}, {text_name}"] += timed(lambda c=call, x=x: c(x), 60, warmup=5)
    report = {
        **machine(),
        "run": args.run,
        "rounds": args.rounds,
        "max_probability_difference": diff,
        "median_ms": {k: round(1000 * statistics.median(v), 2) for k, v in times.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

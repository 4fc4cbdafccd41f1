"""Benchmark: the floor of a batch-1 call in TensorFlow's runtime, against ONNX Runtime's.

    .venv/bin/python bench/encoder_floor.py EXPORT_VERSION_DIR [--rounds 3] [--profile]

Three things, in one process, round by round (medians of 60 calls each):
- the export's `serving_default` on an empty string and on 10- and 40-word texts (an
  empty string still runs the whole graph at width 4: its time is the fixed cost);
- keras-hub's `BertBackbone` at the default encoder's size (6 layers, hidden 384,
  12 heads, random weights), alone, at widths 4, 16, 48 and 128 (batch 1);
- a lean encoder of the same size written directly in TensorFlow ops (one fused QKV
  matmul per layer, 2-D matmuls, no Keras), at the same widths: what TensorFlow's
  graph runtime costs when the model code has no overhead of its own.
`--xla` adds both encoders compiled by XLA (`jit_compile=True`; compiled once per
width in the warm-up calls). `--profile` adds a TensorFlow profiler trace of 20
empty-string calls of the export, summed by op type (time per call). ONNX Runtime's
figures for the same architecture come from bench/batch1_latency.py. Results: JSON on
stdout and bench/out/encoder_floor.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, forty_words, machine, timed  # noqa: E402

HIDDEN, HEADS, LAYERS, FFN, VOCAB = 384, 12, 6, 1536, 30522
WIDTHS = (4, 16, 48, 128)


def lean_encoder(tf, jit: bool = False):
    """A BERT encoder in plain TensorFlow ops, random weights, batch x width token ids."""
    g = tf.random.Generator.from_seed(0)

    def w(*shape):
        return g.normal(shape, stddev=0.02)

    emb, pos, seg = w(VOCAB, HIDDEN), w(512, HIDDEN), w(2, HIDDEN)
    names = ("qkv", "bqkv", "o", "bo", "g1", "b1", "f1", "bf1", "f2", "bf2", "g2", "b2")
    shapes = ((HIDDEN, 3 * HIDDEN), (3 * HIDDEN,), (HIDDEN, HIDDEN), (HIDDEN,), (HIDDEN,))
    shapes += ((HIDDEN,), (HIDDEN, FFN), (FFN,), (FFN, HIDDEN), (HIDDEN,), (HIDDEN,), (HIDDEN,))
    layers = [{n: w(*s) for n, s in zip(names, shapes, strict=True)} for _ in range(LAYERS)]
    head = HIDDEN // HEADS

    def norm(x, gamma, beta):
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + 1e-12) * gamma + beta

    spec = [tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.bool)]

    @tf.function(input_signature=spec, jit_compile=jit)
    def encode(ids, mask):
        b, t = tf.shape(ids)[0], tf.shape(ids)[1]
        x = tf.reshape(tf.gather(emb, ids) + pos[tf.newaxis, :t] + seg[0], [b * t, HIDDEN])
        bias = (1.0 - tf.cast(mask, tf.float32))[:, tf.newaxis, tf.newaxis, :] * -1e9
        for p in layers:
            qkv = tf.nn.bias_add(tf.matmul(x, p["qkv"]), p["bqkv"])  # [b*t, 3*hidden]
            qkv = tf.transpose(tf.reshape(qkv, [b, t, 3, HEADS, head]), [2, 0, 3, 1, 4])
            scores = tf.matmul(qkv[0], qkv[1], transpose_b=True) * head**-0.5 + bias
            ctx = tf.matmul(tf.nn.softmax(scores), qkv[2])  # [b, heads, t, head]
            ctx = tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [b * t, HIDDEN])
            x = norm(x + tf.nn.bias_add(tf.matmul(ctx, p["o"]), p["bo"]), p["g1"], p["b1"])
            h = tf.nn.gelu(tf.nn.bias_add(tf.matmul(x, p["f1"]), p["bf1"]))
            x = norm(x + tf.nn.bias_add(tf.matmul(h, p["f2"]), p["bf2"]), p["g2"], p["b2"])
        return tf.reshape(x, [b, t, HIDDEN])

    return encode


def keras_hub_encoder(tf, jit: bool = False):
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=LAYERS,
        num_heads=HEADS,
        hidden_dim=HIDDEN,
        intermediate_dim=FFN,
    )
    spec = [tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.bool)]

    @tf.function(input_signature=spec, jit_compile=jit)
    def encode(ids, mask):
        x = {"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": mask}
        return backbone(x)["sequence_output"]

    return encode


def op_profile(tf, signature, text) -> dict[str, float]:
    """Microseconds per call by op type, from a profiler trace of 20 calls."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    x = tf.constant([text])
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(20):
            signature(text=x)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())
    per_op: collections.Counter = collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if line.name.startswith("tf_Compute"):
                for e in line.events:
                    per_op[names.get(e.metadata_id, "?").rsplit(":", 1)[-1]] += e.duration_ps
    return {op: ps / 1e6 / 20 for op, ps in per_op.most_common(12)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("export", help="an export's version directory (BASE/NAME/VERSION)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--xla", action="store_true", help="also both encoders XLA-compiled")
    a = p.parse_args()
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

    signature = tf.saved_model.load(a.export).signatures["serving_default"]
    words = forty_words().split()
    texts = {"empty": "", "10 words": " ".join(words[:10]), "40 words": " ".join(words)}
    encoders = {"keras_hub": keras_hub_encoder(tf), "lean": lean_encoder(tf)}
    if a.xla:  # one compile per width, in the warm-up calls
        encoders |= {
            "keras_hub_xla": keras_hub_encoder(tf, True),
            "lean_xla": lean_encoder(tf, True),
        }
    times: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(a.rounds):
        for name, text in texts.items():
            x = tf.constant([text])
            times[f"export {name}"] += timed(lambda x=x: signature(text=x), 60, warmup=5)
        for name, encode in encoders.items():
            for width in WIDTHS:
                args = (tf.ones([1, width], tf.int32), tf.ones([1, width], tf.bool))
                call = lambda f=encode, args=args: f(*args)  # noqa: E731
                times[f"{name} width {width}"] += timed(call, 60, warmup=5)
    report = {
        **machine(),
        "export": a.export,
        "rounds": a.rounds,
        "median_ms": {k: 1000 * statistics.median(v) for k, v in times.items()},
    }
    if a.profile:
        report["empty_string_us_per_call_by_op"] = op_profile(tf, signature, "")
    (OUT / "encoder_floor.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

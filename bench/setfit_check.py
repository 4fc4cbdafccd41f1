"""Benchmark: SetFit's recipe (contrastive stage + logistic head) on a finished run's split.

    python bench/setfit_check.py RUN [RUN ...] [--iterations 5] [--lr 2e-5] [--json OUT]

all-MiniLM-L6-v2, the default encoder, is a sentence-transformer: it was trained so that
the cosine of two texts' mean-pooled vectors says how alike they are. SetFit (Tunstall et
al. 2022, "Efficient Few-Shot Learning Without Prompts") fine-tunes such an encoder on
pairs of training texts (cosine -> 1 for two texts of one class, -> 0 for two of
different classes) and then fits a logistic regression on the vectors; on small labelled
sets it beats standard fine-tuning. This checks it on finished runs before anyone builds
it into `bertclf train` (built since as `--contrastive`, with the fine-tuning loop
after the stage instead of this script's logistic head): for each run it rebuilds the
run's own split
(`bertclf.data.load_splits` with the run's config and seed), loads the encoder afresh,
and scores the validation split and the test set with

- `probe`: the logistic regression on the encoder's vectors as they come (no training),
- `setfit`: the same after the contrastive stage,

beside the run's own (fine-tuned) figures. The contrastive stage follows SetFit's
defaults where they fit this machine: pairs drawn per text and iteration (one positive,
one negative; `--iterations`, SetFit's default is 20), the cosine-similarity loss (mean
squared error), AdamW at 2e-5 with 10% linear warm-up then linear decay, batches of 16
pairs, one pass; the head is scikit-learn's LogisticRegression on L2-normalised vectors
(the model's sentence-transformers pipeline normalises them), `class_weight="balanced"`
as the run's loss is weighted. Single-label runs only; fp32; each batch is cut to its
longest text.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from bertclf.config.run import RunConfig
from bertclf.data.datasets import load_splits
from bertclf.model import encoders
from bertclf.model.classifier import build_classifier
from bertclf.model.preprocessing import trim_to_bucket
from bertclf.training.contrastive import draw_pairs
from bertclf.training.optimization import WarmupLinearDecay

BATCH = 16


def _exact(preprocessor, inputs: dict) -> dict:
    """A packed batch cut to its longest text: [b, seq_len] -> [b, longest]."""
    return trim_to_bucket(inputs, preprocessor.sequence_length, bucket=1)


def embed(preprocessor, model, texts: list[str]) -> np.ndarray:
    """[n, hidden] L2-normalised mean-pooled vectors."""
    out = []
    for i in range(0, len(texts), 64):
        inputs = _exact(preprocessor, preprocessor(tf.constant(texts[i : i + 64])))
        out.append(tf.math.l2_normalize(model.pool(inputs), axis=1).numpy())
    return np.concatenate(out)


def contrastive(preprocessor, model, texts, labels, iterations, lr, seed) -> float:
    """One pass of the cosine-similarity loss over SetFit's pairs; returns seconds."""
    # SetFit's pairs as `--contrastive` draws them: rows (i, j, target).
    plan = [(int(i), int(j), t) for i, j, t in draw_pairs(labels, iterations, seed)]
    steps = -(-len(plan) // BATCH)
    schedule = WarmupLinearDecay(lr, steps, max(1, steps // 10))
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=0.01)
    variables = model.backbone.trainable_variables

    @tf.function(reduce_retracing=True)
    def step(a, b, y):
        with tf.GradientTape() as tape:
            u = tf.math.l2_normalize(model.pool(a, training=True), axis=1)
            v = tf.math.l2_normalize(model.pool(b, training=True), axis=1)
            loss = tf.reduce_mean(tf.square(tf.reduce_sum(u * v, axis=1) - y))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    start, texts = time.perf_counter(), np.asarray(texts, dtype=object)
    for s in range(steps):
        batch = plan[s * BATCH : (s + 1) * BATCH]
        a = _exact(preprocessor, preprocessor(tf.constant(list(texts[[p[0] for p in batch]]))))
        b = _exact(preprocessor, preprocessor(tf.constant(list(texts[[p[1] for p in batch]]))))
        loss = step(a, b, tf.constant([p[2] for p in batch], tf.float32))
        if s % 200 == 0:
            print(f"  step {s}/{steps} loss {float(loss):.4f}", file=sys.stderr, flush=True)
    return time.perf_counter() - start


def _scores(head, vectors, labels) -> dict:
    pred = head.predict(vectors)
    return {
        "accuracy": accuracy_score(labels, pred),
        "macro_f1": f1_score(labels, pred, average="macro"),
    }


def _heads(preprocessor, model, splits) -> dict:
    train = embed(preprocessor, model, splits.train.texts)
    head = LogisticRegression(class_weight="balanced", max_iter=5000)
    head.fit(train, splits.train.labels)
    parts = {"validation": splits.val, "test": splits.test}
    return {
        name: _scores(head, embed(preprocessor, model, part.texts), part.labels)
        for name, part in parts.items()
        if part is not None
    }


def check_run(run: Path, iterations: int, lr: float) -> dict:
    saved = json.loads((run / "config.json").read_text())
    config = RunConfig.from_dict(saved["config"])
    splits = load_splits(config.data, config.seed)
    keras.utils.set_random_seed(config.seed)
    spec = encoders.resolve(config.model.model)
    backbone, tokenizer = encoders.load(spec)
    preprocessor, model = build_classifier(
        backbone, tokenizer, config.model, len(splits.label_names)
    )
    row = {"run": run.name, "probe": _heads(preprocessor, model, splits)}
    seconds = contrastive(
        preprocessor, model, splits.train.texts, splits.train.labels, iterations, lr, config.seed
    )
    row["setfit"] = _heads(preprocessor, model, splits)
    row["setfit_seconds"] = round(seconds, 1)
    history = json.loads((run / "history.json").read_text())
    kept = next(r for r in reversed(history) if r["kept"])
    row["run_val_macro_f1"] = kept.get("val_macro_f1")
    test = run / "test_metrics.json"
    if test.exists():
        row["run_test_macro_f1"] = json.loads(test.read_text()).get("macro_f1")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished single-label run folders")
    parser.add_argument("--iterations", type=int, default=5, help="pair draws per text")
    parser.add_argument("--lr", type=float, default=2e-5, help="the contrastive stage's peak rate")
    parser.add_argument("--json", type=Path, help="also append the rows here (JSON lines)")
    args = parser.parse_args()
    for run in args.runs:
        row = check_run(run, args.iterations, args.lr)
        row.update(iterations=args.iterations, lr=args.lr)
        print(json.dumps(row), flush=True)
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

"""Benchmark: would averaging the fine-tuned model with a linear TF-IDF model help?

    python bench/ensemble_check.py RUN [RUN ...] [--C 1.0] [--json OUT]

A lexical model and a fine-tuned encoder make different errors (BBC's linear baseline
ties the fine-tuned model on average), so the mean of their probabilities might beat
both. This measures it on finished runs before anyone builds it into the export (which
would need TF-IDF inside the graph): for each run it rebuilds the run's own split
(`bertclf.data.load_splits` with the run's config and seed), scores the validation split
and the test set (if the run has one) with the run's kept weights, fits on the run's
training split

- the in-tool baseline (TF-IDF word 1-2 grams + LinearSVC, the softmax of its margins),
- a logistic regression on the same TF-IDF features (calibrated probabilities;
  `class_weight="balanced"`, scikit-learn's defaults otherwise, `--C`),

and prints accuracy and macro-F1 of each, and of the fine-tuned model's probabilities
averaged with each linear model's (weight 1/2 each: no weight is fitted). Single-label
runs only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline

from bertclf.evaluation import baseline

sys.path.insert(0, str(Path(__file__).parent))
from common import finished_run  # noqa: E402

COLUMNS = ("fine-tuned", "LinearSVC", "logistic", "mean with SVC", "mean with logistic")


def _figures(labels: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    pred = probs.argmax(axis=1)
    return accuracy_score(labels, pred), f1_score(labels, pred, average="macro")


def check_run(run: Path, c: float) -> list[dict]:
    """One row per scored split of `run`: accuracy and macro-F1 of each model."""
    splits, predictor = finished_run(run)
    if splits.train.multilabel:
        raise SystemExit(f"{run}: a multi-label run; this check is for single-label runs")
    train_labels = np.asarray(splits.train.labels)
    svc = baseline.make_baseline().fit(splits.train.texts, train_labels)
    logistic = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        LogisticRegression(C=c, class_weight="balanced", max_iter=5000),
    ).fit(splits.train.texts, train_labels)
    rows = []
    for name, part in (("validation", splits.val), ("test", splits.test)):
        if part is None:
            continue
        labels = np.asarray(part.labels)
        tuned = predictor.predict_proba(part.texts)
        svc_probs = baseline._scores(svc, part.texts, len(splits.label_names))
        logistic_probs = logistic.predict_proba(part.texts)
        probs = (tuned, svc_probs, logistic_probs, (tuned + svc_probs) / 2)
        probs += ((tuned + logistic_probs) / 2,)
        figures = {col: _figures(labels, p) for col, p in zip(COLUMNS, probs, strict=True)}
        rows.append({"run": run.name, "split": name, "examples": len(labels), **figures})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished single-label run folders")
    parser.add_argument("--C", type=float, default=1.0, help="the logistic regression's C")
    parser.add_argument("--json", type=Path, help="also write the rows here (JSON lines)")
    args = parser.parse_args()
    rows = [row for run in args.runs for row in check_run(run, args.C)]
    print("| run | split | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for row in rows:
        cells = [f"{row[col][0]:.4f} / {row[col][1]:.4f}" for col in COLUMNS]
        print(f"| {row['run']} | {row['split']} | " + " | ".join(cells) + " |")
    print("(accuracy / macro-F1)", file=sys.stderr)
    if args.json:
        args.json.write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    main()

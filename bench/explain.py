"""Benchmark: explanations (integrated gradients): completeness, the deletion test, cost.

    python bench/calibration.py prepare && python bench/calibration.py train --seeds 1 \
        --only civility bbc-1            # the two runs (defaults, seed 1)
    python bench/explain.py [--texts 100] [--only civility bbc]

On civility-1 (the first `--texts` civility-gh test sentences) and bbc-1 (the first
`--texts` articles of its validation split):
- completeness: |sum of the word weights - (log-odds - baseline log-odds)| at 8, 16, 32
  and 64 Gauss-Legendre steps (on the first 20 texts), in the run's precision and in
  fp32, with the log-odds' change itself for scale;
- deletion: remove the top 20% of a text's words by weight (at least one), or a random
  20% (3 draws), and measure how far the predicted label's probability falls; the
  ratio top/random, for integrated gradients and for gradient x input;
- cost: seconds a text for `Predictor.explain` (batches of 8) against `predict`.
Results: bench/out/explain.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, finished_run, machine  # noqa: E402

RUNS = {"civility": OUT / "calibration" / "civility-1", "bbc": OUT / "calibration" / "bbc-1"}
STEPS = (8, 16, 32, 64)
SHARE = 0.2


def texts_of(name: str, splits, n: int) -> list[str]:
    part = splits.test if name == "civility" else splits.val
    return list(part.texts[:n])


def completeness(run, texts: list[str], steps: int) -> list[float]:
    from bertclf import servable
    from bertclf.model.attribution import IntegratedGradients

    ig = IntegratedGradients(
        run.preprocessor, run.model, run.explainer.temperature, run.thresholds, steps
    )
    import tensorflow as tf

    graph = tf.function(ig.explain)
    errors, changes = [], []
    for i in range(0, len(texts), 4):
        out = {k: v.numpy() for k, v in graph(tf.constant(texts[i : i + 4])).items()}
        for row in servable.explanation_rows(out, run.label_names, run.thresholds is not None):
            total = sum(w for _, w in row["explanation"])
            errors.append(abs(total - (row["log_odds"] - row["baseline_log_odds"])))
            changes.append(abs(row["log_odds"] - row["baseline_log_odds"]))
    return errors, changes


def gradient_times_input(run):
    """The same graph with one gradient at the input itself: (x - x') . dF/dx at x."""
    from bertclf.model import attribution

    class GradientTimesInput(attribution.IntegratedGradients):
        def quadrature(self):
            return np.ones(1, np.float32), np.ones(1, np.float32)

    return GradientTimesInput(run.preprocessor, run.model, run.explainer.temperature, None, 1)


def words_without(words: list[str], drop: set[int]) -> str:
    return " ".join(w for i, w in enumerate(words) if i not in drop)


def deletion(run, texts: list[str], rows: list[dict], rng: random.Random) -> dict:
    """Mean fall of the explained label's probability: top 20% of words vs random 20%."""
    labels = run.label_names
    top_texts, random_texts, meta = [], [], []
    for row in rows:
        pairs = row["explanation"]
        if not pairs:
            continue
        k = max(1, math.ceil(SHARE * len(pairs)))
        words = [w for w, _ in pairs]
        order = sorted(range(len(pairs)), key=lambda i: -pairs[i][1])
        top_texts.append(words_without(words, set(order[:k])))
        for _ in range(3):
            random_texts.append(words_without(words, set(rng.sample(range(len(pairs)), k))))
        meta.append((labels.index(row["label"]), row["score"]))
    p_top = run.predict_proba(top_texts)
    p_rand = run.predict_proba(random_texts).reshape(len(meta), 3, -1)
    fall_top = [s - p_top[i, j] for i, (j, s) in enumerate(meta)]
    fall_rand = [s - p_rand[i, :, j].mean() for i, (j, s) in enumerate(meta)]
    return {
        "texts": len(meta),
        "fall_top": float(np.mean(fall_top)),
        "fall_random": float(np.mean(fall_rand)),
        "ratio": float(np.mean(fall_top) / max(np.mean(fall_rand), 1e-9)),
    }


def measure(name: str, n: int, precision_steps: bool, steps_list: list[int]) -> dict:
    import tensorflow as tf

    from bertclf import servable
    from bertclf.prediction.trained_run import load_run

    splits, run = finished_run(RUNS[name])
    texts = texts_of(name, splits, n)
    result: dict = {"run": RUNS[name].name, "texts": len(texts)}

    run.predict(texts[:8])  # traces
    run.explain(texts[:2])
    start = time.perf_counter()
    rows = run.explain(texts)
    result["explain_seconds_per_text"] = (time.perf_counter() - start) / len(texts)
    start = time.perf_counter()
    run.predict(texts, 8)
    result["predict_seconds_per_text"] = (time.perf_counter() - start) / len(texts)
    result["mean_words"] = float(np.mean([len(r["explanation"]) for r in rows]))

    rng = random.Random(1)
    result["deletion_ig"] = deletion(run, texts, rows, rng)
    gxi = gradient_times_input(run)
    graph = tf.function(gxi.explain)
    gx_rows = []
    for i in range(0, len(texts), 8):
        out = {k: v.numpy() for k, v in graph(tf.constant(texts[i : i + 8])).items()}
        gx_rows.extend(servable.explanation_rows(out, run.label_names, False))
    result["deletion_gradient_x_input"] = deletion(run, texts, gx_rows, random.Random(1))

    sample = texts[:20]
    result["completeness"] = {}
    for precision in ("run", "fp32") if precision_steps else ("run",):
        loaded = run if precision == "run" else load_run(RUNS[name], "fp32")
        for steps in steps_list:
            errors, changes = completeness(loaded, sample, steps)
            result["completeness"][f"{precision} {steps}"] = {
                "mean": float(np.mean(errors)),
                "max": float(np.max(errors)),
                "mean_change": float(np.mean(changes)),
                "mean_relative": float(np.mean(np.divide(errors, np.maximum(changes, 1e-9)))),
            }
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=100)
    ap.add_argument("--only", nargs="*", default=list(RUNS))
    ap.add_argument("--no-fp32", action="store_true", help="completeness in the run's precision")
    ap.add_argument("--steps", type=int, nargs="+", default=list(STEPS), help="completeness")
    a = ap.parse_args()
    results = {"machine": machine(), "runs": {}}
    for name in a.only:
        results["runs"][name] = measure(name, a.texts, not a.no_fp32, a.steps)
        print(json.dumps({name: results["runs"][name]}, indent=1), flush=True)
    (OUT / "explain.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

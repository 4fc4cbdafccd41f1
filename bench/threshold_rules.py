"""Benchmark: multi-label threshold rules on a trained run's own validation and test sets.

    python bench/threshold_rules.py RUN [RUN ...]

For each multi-label run: its kept model's probabilities on its validation split and
its --test set (cached in RUN/threshold_probs.npz), and the linear baseline's on the same
split; then each rule decides thresholds on validation and is scored on test:
`max` (each label's best validation F1), `one_se` (the highest cut within one standard
error of it), and a fixed 0.5. Reports macro-, micro- and sample-F1 and the mean number
of labels predicted per text (the true mean beside it). Results: one JSON line per run
and rule, and bench/out/threshold_rules.jsonl.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, machine  # noqa: E402

RULES = ("max", "one_se", "0.5")


def model_probs(run_dir: Path, splits) -> tuple[np.ndarray, np.ndarray]:
    cache = run_dir / "threshold_probs.npz"
    if cache.is_file():
        saved = np.load(cache)
        return saved["val"], saved["test"]
    from bertclf.prediction.trained_run import load_run

    run = load_run(run_dir)
    val, test = run.predict_proba(splits.val.texts), run.predict_proba(splits.test.texts)
    np.savez(cache, val=val, test=test)
    return val, test


def baseline_probs(splits) -> tuple[np.ndarray, np.ndarray]:
    from bertclf.evaluation.baseline import _label_scores, make_baseline

    model = make_baseline(True).fit(splits.train.texts, np.asarray(splits.train.labels))
    n = len(splits.label_names)
    return _label_scores(model, splits.val.texts, n), _label_scores(model, splits.test.texts, n)


def decide(rule: str, labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    from bertclf.evaluation import thresholds

    if rule in ("max", "one_se"):
        return thresholds.tune(labels, probs)
    return np.full(labels.shape[1], float(rule), np.float32)


def main() -> None:
    from bertclf.config.run import RunConfig
    from bertclf.data.datasets import load_splits
    from bertclf.evaluation.metrics import multilabel_metrics
    from bertclf.model.rundir import read_meta

    rows = []
    for run_dir in map(Path, sys.argv[1:]):
        config = RunConfig.from_dict(read_meta(run_dir)["config"])
        splits = load_splits(config.data, config.seed)
        y_val, y_test = np.asarray(splits.val.labels), np.asarray(splits.test.labels)
        for model, (p_val, p_test) in (
            ("fine-tuned", model_probs(run_dir, splits)),
            ("baseline", baseline_probs(splits)),
        ):
            for rule in RULES:
                cuts = decide(rule, y_val, p_val)
                m = multilabel_metrics(y_test, p_test, splits.label_names, cuts)
                predicted = (p_test >= cuts[None, :]).sum(axis=1).mean()
                row = {
                    "run": run_dir.name,
                    "model": model,
                    "rule": rule,
                    "test_macro_f1": round(m["macro_f1"], 4),
                    "test_micro_f1": round(m["micro_f1"], 4),
                    "test_samples_f1": round(m["samples_f1"], 4),
                    "labels_per_text": round(float(predicted), 2),
                    "true_labels_per_text": round(float(y_test.sum(axis=1).mean()), 2),
                }
                print(json.dumps(row), flush=True)
                rows.append({**row, "machine": machine()})
    with open(OUT / "threshold_rules.jsonl", "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()

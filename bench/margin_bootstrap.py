"""Benchmark aid: how precisely a test set measures the fine-tuned runs' margin over a baseline.

    .venv/bin/python bench/margin_bootstrap.py bench/out/small-civility-{1,2,3} [--target 0.05]

The small-data issue's civility-gh target is a margin: the runs' mean test macro-F1 at
least 0.05 above TF-IDF + LinearSVC fitted on all of train/ (the reference baseline,
0.698). Both sides are scored on the same 283 test texts, so the margin carries the test
set's own sampling error. This resamples the test texts with replacement (a paired
bootstrap: one resample scores every run and the baseline alike) and reports the margin's
standard error, its 95% percentile interval and the share of resamples at or above the
target. Each run's kept weights score its own test split (`common.finished_run`), and the
observed margin is checked against the run's test_metrics.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bertclf.data.datasets import read_labelled  # noqa: E402
from bertclf.evaluation.baseline import make_baseline  # noqa: E402
from bertclf.evaluation.metrics import f1_from_counts  # noqa: E402
from common import DATA, finished_run  # noqa: E402


def _macro_f1(weights: np.ndarray, true: np.ndarray, pred: np.ndarray, classes: int):
    """Macro-F1 under each row of resampling weights ([B, n] -> [B]): each resample's
    counts (a text drawn k times counts k times), then bertclf's F1 of counts."""
    f1 = [
        f1_from_counts(
            weights @ ((pred == c) & (true == c)),
            weights @ ((pred == c) & (true != c)),
            weights @ ((pred != c) & (true == c)),
        )
        for c in range(classes)
    ]
    return np.mean(f1, axis=0)


def _run_predictions(run: Path, test_texts: list[str], true: np.ndarray) -> np.ndarray:
    """The run's argmax on the test set, checked against the macro-F1 it recorded."""
    splits, predictor = finished_run(run)
    if splits.test is None or list(splits.test.texts) != list(test_texts):
        raise SystemExit(f"{run}: not a civility-gh run with --test .../civility-gh/test")
    pred = predictor.predict_proba(test_texts).argmax(axis=1)
    recorded = json.loads((run / "test_metrics.json").read_text())["macro_f1"]
    scored = _macro_f1(np.ones((1, len(true))), true, pred, len(splits.label_names))[0]
    if abs(scored - recorded) > 1e-6:
        raise SystemExit(f"{run}: test macro-F1 {scored:.4f}, but the run recorded {recorded:.4f}")
    return pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="civility-gh runs trained with --test")
    parser.add_argument("--target", type=float, default=0.05, help="the margin asked for")
    parser.add_argument("--resamples", type=int, default=10000)
    a = parser.parse_args()
    train = read_labelled(DATA / "civility-gh" / "train")
    test = read_labelled(DATA / "civility-gh" / "test", label_names=train.label_names)
    names, true = list(train.label_names), np.asarray(test.labels)
    reference = make_baseline().fit(train.texts, train.labels).predict(test.texts)
    runs = [_run_predictions(r, test.texts, true) for r in a.runs]

    n, k = len(true), len(names)

    def margin(w: np.ndarray) -> np.ndarray:  # [B, n] weights -> [B] margins
        runs_f1 = np.mean([_macro_f1(w, true, p, k) for p in runs], axis=0)
        return runs_f1 - _macro_f1(w, true, np.asarray(reference), k)

    print(f"observed margin over the reference baseline: {margin(np.ones((1, n)))[0]:+.4f}")
    weights = np.random.default_rng(0).multinomial(n, np.full(n, 1 / n), size=a.resamples)
    m = margin(weights)
    low, high = np.percentile(m, [2.5, 97.5])
    share = np.mean(m >= a.target)
    print(
        f"over {a.resamples} resamples of the {n} test texts: standard error {m.std():.4f}, "
        f"95% interval [{low:+.4f}, {high:+.4f}], at or above {a.target:+.2f} in {share:.0%}"
    )


if __name__ == "__main__":
    main()

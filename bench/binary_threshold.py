"""Benchmark: should a binary run move its decision threshold off 0.5, as multi-label runs do?

    python bench/binary_threshold.py RUN [RUN ...]

Multi-label runs tune each label's threshold on the validation split (`--thresholds
tune`). A binary, imbalanced single-label run could do the same with its one threshold:
pick the probability of class 1 that maximises validation macro-F1 (candidates: every
validation probability and 0.5; ties go to the one nearest 0.5), then apply it to the
test set. This measures that on finished runs with a test set, against argmax (0.5).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).parent))
from common import finished_run  # noqa: E402


def _macro_f1(labels: np.ndarray, positive: np.ndarray, threshold: float) -> float:
    return f1_score(labels, (positive >= threshold).astype(int), average="macro")


def check_run(run: Path) -> dict:
    splits, predictor = finished_run(run)
    if len(splits.label_names) != 2 or splits.test is None or splits.train.multilabel:
        raise SystemExit(f"{run}: needs a binary single-label run trained with --test")
    val_labels, test_labels = np.asarray(splits.val.labels), np.asarray(splits.test.labels)
    val_pos = predictor.predict_proba(splits.val.texts)[:, 1]
    test_pos = predictor.predict_proba(splits.test.texts)[:, 1]
    candidates = np.unique(np.append(val_pos, 0.5))
    tuned = max(candidates, key=lambda t: (_macro_f1(val_labels, val_pos, t), -abs(float(t) - 0.5)))
    return {
        "run": run.name,
        "threshold": float(tuned),
        "test_macro_f1_at_0.5": _macro_f1(test_labels, test_pos, 0.5),
        "test_macro_f1_tuned": _macro_f1(test_labels, test_pos, tuned),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished binary runs with --test")
    rows = [check_run(run) for run in parser.parse_args().runs]
    print("| run | tuned threshold | test macro-F1 at 0.5 | tuned |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['threshold']:.3f} | {r['test_macro_f1_at_0.5']:.4f} "
            f"| {r['test_macro_f1_tuned']:.4f} |"
        )
    at_half = statistics.mean(r["test_macro_f1_at_0.5"] for r in rows)
    tuned = statistics.mean(r["test_macro_f1_tuned"] for r in rows)
    print(f"| mean | | {at_half:.4f} | {tuned:.4f} |")


if __name__ == "__main__":
    main()

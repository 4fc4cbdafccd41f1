"""Benchmark aid: which validation texts finished runs of one split get wrong, and how often.

Given runs trained on the same data and seed (so the same split), for instance the
configurations of `bench/long_docs.py` at one seed, it counts each validation text in
the runs' `misclassified.jsonl` and fits the in-tool linear baseline on the first run's
training split to mark the texts it gets wrong too. A text that most configurations
and the linear model get wrong points at the label, not at what a configuration reads.
Needs no TensorFlow model: the runs' own files and scikit-learn.

    .venv/bin/python bench/shared_errors.py bench/out/long-{truncate,head_tail}-{128,256}
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from bertclf.config.run import RunConfig
from bertclf.data.datasets import load_splits
from bertclf.evaluation import baseline


def _key(text: str) -> str:
    return " ".join(text.split())[:60]


def _run_errors(run: Path, n_val: int) -> list[tuple[str, str, str]]:
    """(text key, true, predicted) per wrong validation text: a duplicated article twice.

    The run's file lists its most confident mistakes only (50 a split), so a run with
    more validation errors than it lists is refused rather than undercounted."""
    rows = [json.loads(line) for line in (run / "misclassified.jsonl").open()]
    wrong = [
        (_key(r["text"]), r["true"], r["predicted"]) for r in rows if r["split"] == "validation"
    ]
    kept = next(r for r in reversed(json.loads((run / "history.json").read_text())) if r["kept"])
    if len(wrong) != round((1 - kept["val_accuracy"]) * n_val):
        raise SystemExit(f"shared_errors.py: {run} lists {len(wrong)} of its validation errors")
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders, one split")
    a = parser.parse_args()
    configs = [json.loads((r / "config.json").read_text())["config"] for r in a.runs]
    splits_of = {(json.dumps(c["data"], sort_keys=True), c["seed"]) for c in configs}
    if len(splits_of) != 1:
        raise SystemExit("shared_errors.py: the runs do not share one data config and seed")
    config = RunConfig.from_dict(configs[0])
    splits = load_splits(config.data, config.seed)
    svc = baseline.make_baseline().fit(splits.train.texts, np.asarray(splits.train.labels))
    rows = zip(splits.val.texts, splits.val.labels, svc.predict(splits.val.texts), strict=True)
    linear = Counter(_key(t) for t, y, p in rows if y != p)
    errors = {run.name: _run_errors(run, len(splits.val.texts)) for run in a.runs}
    runs_wrong = Counter(key for e in errors.values() for key in {k for k, _, _ in e})
    labels = {key: (true, predicted) for e in errors.values() for key, true, predicted in e}
    print(f"{len(splits.val.texts)} validation texts; errors per run:")
    for name, e in errors.items():
        print(f"  {name}: {len(e)}")
    print(f"  linear baseline: {sum(linear.values())}")
    print(f"| runs wrong (of {len(a.runs)}) | linear wrong | true -> predicted | text |")
    print("|---|---|---|---|")
    for key, n in runs_wrong.most_common():
        true, predicted = labels[key]
        print(f"| {n} | {'yes' if key in linear else 'no'} | {true} -> {predicted} | {key} |")
    print(f"wrong in the linear baseline only: {len(set(linear) - set(runs_wrong))}")
    # What no choice among these runs gets under: the fewest errors of any one run (an
    # oracle's pick, made after seeing validation), and the texts every run gets wrong.
    best = min(errors, key=lambda name: len(errors[name]))
    print(f"fewest errors of one run: {len(errors[best])} ({best})")
    print(f"wrong in every run: {sum(n == len(a.runs) for n in runs_wrong.values())}")


if __name__ == "__main__":
    main()

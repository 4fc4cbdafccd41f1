"""Benchmark: the defaults on small, imbalanced data (and BBC) against the linear baseline.

    python bench/small_data.py civility [--seeds 1 2 3]
    python bench/small_data.py bbc [--seeds 1 2 3] [--extra ARGS...]

civility: `bertclf train ../shared/data/civility-gh/train --test .../test --out OUT
--seed N` with no other flag, for each seed; reports test macro-F1 and accuracy of the
kept epoch, the baseline's on the same training split (inside the run), and the
reference baseline fitted on the whole train/ folder (the figure the data's README
quotes). bbc: `bertclf train ../shared/data/bbc --out OUT --seed N [--extra]`, 80/20;
reports validation accuracy and macro-F1 of the kept epoch, the baseline's, and wall
time. Results: one JSON line per run, and bench/out/small_data_<what>.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BERTCLF, DATA, OUT, machine, run_training  # noqa: E402


def run(args: list[str], out: Path) -> tuple[dict, float]:
    cmd = [str(BERTCLF), "train", *args, "--out", str(out), "--overwrite", "--no-progress"]
    history, config, wall = run_training(cmd, out)
    kept = next(r for r in reversed(history) if r["kept"])
    baseline = json.loads((out / "baseline.json").read_text())
    result = {
        "epochs": len(history),
        "kept_epoch": kept["epoch"],
        "val_accuracy": kept["val_accuracy"],
        "val_macro_f1": kept["val_macro_f1"],
        "baseline_val_accuracy": baseline["validation"]["accuracy"],
        "baseline_val_macro_f1": baseline["validation"]["macro_f1"],
        "class_weight": config["train"]["class_weight"],
        "split": config["data"]["split"],
        "precision": config["train"]["precision"],
        "wall_seconds": round(wall, 1),
    }
    if (out / "test_metrics.json").is_file():
        test = json.loads((out / "test_metrics.json").read_text())
        result |= {
            "test_accuracy": test["accuracy"],
            "test_macro_f1": test["macro_f1"],
            "baseline_test_accuracy": test["baseline"]["accuracy"],
            "baseline_test_macro_f1": test["baseline"]["macro_f1"],
        }
    return result, wall


def reference_baseline() -> dict:
    """The baseline fitted on all of civility-gh/train/ (no validation split), on test/."""
    from bertclf.data.datasets import read_labelled
    from bertclf.evaluation.baseline import make_baseline, score

    train = read_labelled(DATA / "civility-gh" / "train")
    test = read_labelled(DATA / "civility-gh" / "test", label_names=train.label_names)
    model = make_baseline().fit(train.texts, train.labels)
    m = score(model, test)
    return {"reference_baseline_test_macro_f1": m["macro_f1"], "accuracy": m["accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("civility", "bbc"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train flags")
    args = ap.parse_args()
    if args.what == "civility":
        data = ["civility-gh/train", "--test", str(DATA / "civility-gh" / "test")]
        print(json.dumps(reference_baseline()), flush=True)
    else:
        data = ["bbc"]
    lines = []
    for seed in args.seeds:
        tag = "".join(args.extra).replace("-", "")  # e.g. "truncatehead_tail"
        out = OUT / f"small-{args.what}-{seed}{'-' + tag if tag else ''}"
        result, _ = run([str(DATA / data[0]), *data[1:], "--seed", str(seed), *args.extra], out)
        line = {"what": args.what, "seed": seed, "extra": args.extra, **result, **machine()}
        print(json.dumps(line), flush=True)
        lines.append(line)
    with open(OUT / f"small_data_{args.what}.jsonl", "a") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()

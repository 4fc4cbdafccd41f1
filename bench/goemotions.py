"""Benchmark: multi-label GoEmotions (28 emotions, Demszky et al. 2020) against the baseline.

    python bench/goemotions.py full  [--seed 42] [--extra ARGS...]
    python bench/goemotions.py quick [--seed 42] [--extra ARGS...]

full: train on train.tsv (43,410), validate on dev.tsv (`--val`), test on test.tsv.
quick: dev.tsv alone (5,426) with the seeded 80/20 split, test on test.tsv.
Both run `bertclf train ... --task multilabel --label-field labels --label-sep ,
--label-names emotions.txt` with the defaults otherwise, and report the kept epoch's
test macro-/micro-F1, the per-label table, the TF-IDF one-vs-rest LinearSVC baseline on
the same split (thresholds tuned on the same validation split), and wall time.

The TSV files have no header row: each is copied once, with one, into bench/out
(`printf 'text\\tlabels\\tid\\n' | cat - train.tsv > train.tsv`, the README's command).
Results: bench/out/goemotions_<mode>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BERTCLF, DATA, OUT, machine, run_training  # noqa: E402

GOEMOTIONS = DATA / "goemotions"


def with_header(name: str) -> Path:
    """A copy of DATA/name with the header row bertclf reads (text, labels, id)."""
    target = OUT / "goemotions" / name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("text\tlabels\tid\n" + (GOEMOTIONS / name).read_text(encoding="utf-8"))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("full", "quick"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[])
    a = parser.parse_args()
    labels = ["--task", "multilabel", "--label-field", "labels", "--label-sep", ","]
    labels += ["--label-names", str(GOEMOTIONS / "emotions.txt")]
    test = ["--test", str(with_header("test.tsv"))]
    if a.mode == "full":
        data = [str(with_header("train.tsv")), "--val", str(with_header("dev.tsv"))]
    else:
        data = [str(with_header("dev.tsv"))]
    tag = "".join(x.lstrip("-") for x in a.extra)
    out = OUT / f"goemotions-{a.mode}-{a.seed}{tag}"
    args = [*data, *test, *labels, "--seed", str(a.seed), *a.extra]
    cmd = [str(BERTCLF), "train", *args, "--out", str(out), "--overwrite", "--no-progress"]
    history, config, wall = run_training(cmd, out)
    test_m = json.loads((out / "test_metrics.json").read_text())
    base = test_m["baseline"]
    result = {
        "mode": a.mode,
        "seed": a.seed,
        "extra": a.extra,
        "epochs": len(history),
        "kept_epoch": next(r["epoch"] for r in reversed(history) if r["kept"]),
        "precision": config["train"]["precision"],
        "test_macro_f1": test_m["macro_f1"],
        "test_micro_f1": test_m["micro_f1"],
        "test_samples_f1": test_m["samples_f1"],
        "baseline_test_macro_f1": base["macro_f1"],
        "baseline_test_micro_f1": base["micro_f1"],
        "per_label_f1": {n: round(c["f1"], 4) for n, c in test_m["per_class"].items()},
        "baseline_per_label_f1": {n: round(c["f1"], 4) for n, c in base["per_class"].items()},
        "wall_seconds": round(wall, 1),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    (OUT / f"goemotions_{a.mode}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if "per_label" not in k}))
    print(f"{'label':<16} {'ours':>6} {'baseline':>8}")
    for name, f1 in result["per_label_f1"].items():
        print(f"{name:<16} {f1:>6.3f} {result['baseline_per_label_f1'][name]:>8.3f}")


if __name__ == "__main__":
    main()

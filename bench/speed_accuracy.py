"""Benchmark: do the speed settings keep the accuracy of fp32 fixed-padding training?

    .venv/bin/python bench/speed_accuracy.py [--seeds 1 2 3] [--settings fixed-fp32 defaults]
        [--short]

Trains `bertclf train` on BBC (3 epochs, seq-len 128, batch 16, mean pooling) once
per (seed, setting), settings alternating within each seed; the seed sets the split,
initialisation, order and dropout, so each seed is a paired comparison. The reference,
`fixed-fp32`, is fp32 with every batch padded to --seq-len and dense AdamW. Reports best
and final validation accuracy per run, their means, and the mean paired difference
of each setting from `fixed-fp32`. `--short` trains on the short-text set of
bench/train_speed.py (the first two sentences of every BBC article) instead.
Results: bench/out/speed_accuracy[_short].json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BBC, OUT, machine, run_training  # noqa: E402

SETTINGS = {
    # The textbook reference: fp32, every batch padded to --seq-len, dense AdamW (every
    # embedding row moves every step, as PyTorch's AdamW does).
    "fixed-fp32": [
        *("--precision", "fp32", "--bucketing", "off", "--jit", "off"),
        *("--embedding-update", "dense"),
    ],
    "bucketing-fp32": ["--precision", "fp32", "--bucketing", "on", "--jit", "off"],
    "bucketing-bf16": ["--precision", "bf16", "--bucketing", "on", "--jit", "off"],
    "defaults": [],
}


def run_one(data: str, setting: str, seed: int) -> dict:
    out = OUT / f"acc-{Path(data).stem}-{setting}"
    cmd = [
        sys.executable,
        *("-m", "bertclf", "train", data, "--out", str(out), "--overwrite"),
        *("--epochs", "3", "--seq-len", "128", "--batch-size", "16", "--pooling", "mean"),
        *("--seed", str(seed), "--no-progress", *SETTINGS[setting]),
    ]
    history, config, wall = run_training(cmd, out)
    train_cfg = config["train"]
    return {
        "setting": setting,
        "seed": seed,
        "best_val_accuracy": max(r["val_accuracy"] for r in history),
        "final_val_accuracy": history[-1]["val_accuracy"],
        "val_accuracy_per_epoch": [round(r["val_accuracy"], 4) for r in history],
        "train_examples_per_second": [round(r["examples_per_second"], 2) for r in history],
        "wall_seconds": round(wall, 1),
        "resolved": {
            k: train_cfg.get(k) for k in ("precision", "bucketing", "jit", "embedding_update")
        },
    }


def summarize(runs: list[dict], settings: list[str]) -> dict:
    by = {s: {r["seed"]: r for r in runs if r["setting"] == s} for s in settings}
    rows = {}
    for s in settings:
        seeds = sorted(by[s])
        row = {
            key: statistics.mean(by[s][k][key] for k in seeds)
            for key in ("best_val_accuracy", "final_val_accuracy")
        }
        row["median_train_ex_per_s"] = statistics.median(
            x for k in seeds for x in by[s][k]["train_examples_per_second"]
        )
        if "fixed-fp32" in by and s != "fixed-fp32":
            for key in ("best_val_accuracy", "final_val_accuracy"):
                diffs = [by[s][k][key] - by["fixed-fp32"][k][key] for k in seeds]
                row[f"{key}_minus_fixed_fp32_points"] = 100 * statistics.mean(diffs)
        rows[s] = row
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default=str(BBC))
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--settings", nargs="+", default=["fixed-fp32", "defaults"], choices=SETTINGS)
    p.add_argument("--short", action="store_true", help="the first two sentences of each article")
    a = p.parse_args()
    if a.short:
        from train_speed import write_datasets

        a.data = str(write_datasets(10**6, OUT / "speed-accuracy")["short"])
    runs = []
    for seed in a.seeds:
        for setting in a.settings:
            runs.append(run_one(a.data, setting, seed))
            print(json.dumps(runs[-1]), flush=True)
    report = {**machine(), "runs": runs, "summary": summarize(runs, a.settings)}
    OUT.mkdir(parents=True, exist_ok=True)
    name = "speed_accuracy_short.json" if a.short else "speed_accuracy.json"
    (OUT / name).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["summary"], indent=2))


if __name__ == "__main__":
    main()

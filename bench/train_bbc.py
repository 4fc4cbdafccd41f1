"""Benchmark: fine-tune the default encoder on BBC news (issue: pipeline).

Trains `bertclf train` in a child process (80/20 split, seed 42, 3 epochs,
seq-len 128) once per --pooling value and reports the best validation
accuracy, wall time, training examples per second and the child's peak RSS.

    .venv/bin/python bench/train_bbc.py --pooling mean cls

Results go to bench/out/train_bbc.json and are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BBC, ROOT, run_training  # noqa: E402


def run_one(data: str, pooling: str, extra: list[str]) -> dict:
    out = ROOT / "bench" / "out" / f"bbc-{pooling}"
    cmd = [
        sys.executable,
        "-m",
        "bertclf",
        "train",
        data,
        "--out",
        str(out),
        "--overwrite",
        "--pooling",
        pooling,
        "--epochs",
        "3",
        "--seq-len",
        "128",
        "--batch-size",
        "16",
        "--seed",
        "42",
        "--no-progress",
        *extra,
    ]
    history, config, wall = run_training(cmd, out)
    return {
        "pooling": pooling,
        "best_val_accuracy": max(r["val_accuracy"] for r in history),
        "val_accuracy_per_epoch": [round(r["val_accuracy"], 4) for r in history],
        "wall_seconds": round(wall, 1),
        "train_examples_per_second_per_epoch": [
            round(r["examples_per_second"], 2) for r in history
        ],
        # ru_maxrss of the finished child, in KiB on Linux.
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "train_settings": config["train"],
        "command": " ".join(cmd[1:]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default=str(BBC))
    p.add_argument("--pooling", nargs="+", default=["mean", "cls"])
    p.add_argument("extra", nargs="*", help="more `bertclf train` flags, after --")
    a = p.parse_args()
    results = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "runs": [],
    }
    for pooling in a.pooling:
        results["runs"].append(run_one(a.data, pooling, a.extra))
        print(json.dumps(results["runs"][-1]), flush=True)
    out = ROOT / "bench" / "out" / "train_bbc.json"
    out.write_text(json.dumps(results, indent=2))
    print("| pooling | best val acc | wall s | train ex/s (per epoch) | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for r in results["runs"]:
        print(
            f"| {r['pooling']} | {r['best_val_accuracy']:.4f} | {r['wall_seconds']} | "
            f"{r['train_examples_per_second_per_epoch']} | {r['peak_rss_mib']} |"
        )


if __name__ == "__main__":
    main()

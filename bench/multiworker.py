"""Benchmark: `bertclf train --local-workers 2` against one worker, same global batch.

    python bench/multiworker.py [--rounds 2] [--extra ARGS...]

Trains the demo data (`examples/demo_data`, MiniLM, `--seq-len 64 --epochs 3
--precision fp32`) as one process and as two local workers (MultiWorkerMirroredStrategy
over loopback gRPC), alternating, in fresh processes; reports wall times, the medians,
their ratio, and whether the two runs' per-epoch losses agree. On a machine with two
cores, two workers share the cores one worker already uses: expect no speed-up.
Results: bench/out/multiworker.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BERTCLF, MODEL, OUT, ROOT, machine  # noqa: E402


def run(out: Path, extra: list[str]) -> tuple[float, list[dict]]:
    args = [
        str(BERTCLF),
        "train",
        str(ROOT / "examples" / "demo_data"),
        "--out",
        str(out),
        "--overwrite",
        "--no-progress",
        "--seq-len",
        "64",
        "--epochs",
        "3",
        "--precision",
        "fp32",
        "--model",
        MODEL,
        *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"train failed:\n{proc.stderr[-3000:]}")
    return wall, json.loads((out / "history.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[])
    a = parser.parse_args()
    times: dict[str, list[float]] = {"one": [], "two": []}
    histories = {}
    for r in range(a.rounds):
        for name, extra in (("one", []), ("two", ["--local-workers", "2"])):
            wall, histories[name] = run(OUT / f"multiworker-{name}", [*extra, *a.extra])
            times[name].append(wall)
        print(json.dumps({"round": r, **{k: round(v[-1], 1) for k, v in times.items()}}))
    diff = max(
        abs(x[k] - y[k])
        for x, y in zip(histories["one"], histories["two"], strict=True)
        for k in ("train_loss", "val_loss")
    )
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "seconds": times,
        "median_seconds": medians,
        "two_over_one": medians["two"] / medians["one"],
        "max_loss_difference": diff,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    (OUT / "multiworker.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "seconds"}))


if __name__ == "__main__":
    main()

"""Benchmark: `bertclf score` on Beam's DirectRunner against `bertclf predict --input`.

    python bench/score_throughput.py EXPORT [--texts 10000] [--rounds 3]

The same texts (the first N of GoEmotions' train.tsv, Reddit comments of ~13 words) in
one JSONL file; each round runs `bertclf predict EXPORT --input F --output X.jsonl` and
`.venv-beam/bin/python -m bertclf score EXPORT --input F --output PREFIX`, alternating,
in fresh processes (start-up and model loading included in both). Reports each wall
time, the medians and score/predict. Results: bench/out/score_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BERTCLF, DATA, OUT, ROOT, machine  # noqa: E402

TEXTS = DATA / "goemotions" / "train.tsv"
BEAM_PYTHON = ROOT / ".venv-beam" / "bin" / "python"


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{cmd[:3]} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("export")
    parser.add_argument("--texts", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args()
    work = OUT / "score_throughput"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    lines = TEXTS.read_text(encoding="utf-8").splitlines()[: a.texts]
    source = work / "texts.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": i, "text": ln.split("\t")[0]}) + "\n" for i, ln in enumerate(lines)
        )
    )
    times: dict[str, list[float]] = {"predict": [], "score": []}
    for r in range(a.rounds):
        predict = ["predict", a.export, "--input", str(source)]
        times["predict"].append(
            timed([str(BERTCLF), *predict, "--output", str(work / f"predict{r}.jsonl")])
        )
        score = ["score", a.export, "--input", str(source), "--output", str(work / f"score{r}")]
        times["score"].append(timed([str(BEAM_PYTHON), "-m", "bertclf", *score]))
        print(json.dumps({"round": r, **{k: round(v[-1], 1) for k, v in times.items()}}))
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "texts": a.texts,
        "seconds": times,
        "median_seconds": medians,
        "score_over_predict": medians["score"] / medians["predict"],
        "texts_per_second": {k: a.texts / v for k, v in medians.items()},
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    (OUT / "score_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "seconds"}))


if __name__ == "__main__":
    main()

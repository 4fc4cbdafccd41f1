"""Benchmark: what a server's first request costs, with and without the warm-up records.

    .venv/bin/python bench/first_request.py EXPORT_VERSION_DIR [--rounds 5]

Each round starts two fresh processes that load the SavedModel as a server does
(`tf.saved_model.load`). One answers a 40-word BBC excerpt at once; the other first
replays the export's `assets.extra/tf_serving_warmup_requests` (`bertclf.warmup`, as
TF Serving and `bertclf serve` do before they report the version available), then
answers the same text. Both then time a steady call (median of 20). Reports medians
over the rounds: load, replay, first call, steady call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, forty_words, machine  # noqa: E402

CHILD = """
import json, statistics, sys, time
from pathlib import Path
start = time.perf_counter()
import tensorflow as tf, tensorflow_text  # noqa: F401
from bertclf import servable as warmup
path, text, replay = Path(sys.argv[1]), tf.constant([sys.argv[2]]), sys.argv[3] == "1"
model = tf.saved_model.load(str(path))
loaded = time.perf_counter()
if replay:
    servable.replay_warmup(model, path)
ready = time.perf_counter()
model.signatures["serving_default"](text=text)
first = time.perf_counter()
steady = []
for _ in range(20):
    t = time.perf_counter()
    model.signatures["serving_default"](text=text)
    steady.append(time.perf_counter() - t)
print(json.dumps({"load_s": loaded - start, "replay_s": ready - loaded,
                  "first_ms": 1000 * (first - ready),
                  "steady_ms": 1000 * statistics.median(steady)}))
"""


def child(version_dir: str, text: str, replay: bool) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, version_dir, text, "1" if replay else "0"],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("version_dir", help="an export's BASE/NAME/VERSION")
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    text = forty_words()
    rows = {"cold": [], "warmed": []}
    for _ in range(a.rounds):  # alternate, so drift hits both alike
        rows["cold"].append(child(a.version_dir, text, replay=False))
        rows["warmed"].append(child(a.version_dir, text, replay=True))
    report = {**machine(), "export": a.version_dir, "rounds": a.rounds, "medians": {}}
    for name, runs in rows.items():
        report["medians"][name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    report["runs"] = rows
    (OUT / "first_request.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report["medians"], indent=2))


if __name__ == "__main__":
    main()

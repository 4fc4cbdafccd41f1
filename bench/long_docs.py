"""Benchmark: long documents on BBC: truncation, head+tail and chunk-and-pool (issue: long docs).

Each configuration NAME:SEQ_LEN (NAME: `truncate` (`--truncate waterfall`), `head_tail` (the
default cut since 2026-11-27), `chunk` or `chunk_max`) trains
`bertclf train` in a child process (Keras' 80/20 split, seed 42 or `--seed`, 3 epochs,
default encoder), exports the run, and times the export at batch 1 on a long article (the
longest of the validation split's first 64). Reports validation accuracy (kept epoch and
per epoch), the linear baseline on the same split, the training wall time and its
per-epoch seconds, and the export's p50 latency.

    bash bench/run_snapshot.sh bench/long_docs.py truncate:256 chunk:128

Results go to bench/out/long_docs.json (a configuration run again replaces its row) and
are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BBC, OUT, machine, run_training  # noqa: E402

FLAGS = {
    "truncate": ["--truncate", "waterfall"],  # the default until 2026-11-27
    "head_tail": ["--truncate", "head_tail"],
    "chunk": ["--long", "chunk"],  # windows' logits averaged (the default --chunk-pool)
    "chunk_max": ["--long", "chunk", "--chunk-pool", "max"],
}

LATENCY = """
import json, statistics, sys, time
import tensorflow as tf, tensorflow_text  # noqa: F401
model = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
text = tf.constant([sys.argv[2]])
for _ in range(5):
    model(text=text)
times = []
for _ in range(30):
    start = time.perf_counter()
    model(text=text)
    times.append(time.perf_counter() - start)
print(json.dumps({"p50_ms": 1000 * statistics.median(times)}))
"""


def run_one(spec: str, epochs: int, data: str, extra: list[str], seed: int = 42) -> dict:
    name, seq_len = spec.split(":")
    tag = "" if seed == 42 else f"-seed{seed}"  # seed 42's runs keep their first names
    out, exports = OUT / f"long-{name}-{seq_len}{tag}", OUT / "long-exports"
    cmd = [sys.executable, "-m", "bertclf", "train", data, "--out", str(out)]
    cmd += ["--overwrite", "--seq-len", seq_len, "--epochs", str(epochs), "--seed", str(seed)]
    cmd += ["--no-progress", *FLAGS[name], *extra]
    history, _, wall = run_training(cmd, out)
    kept = next(r for r in history if r["epoch"] == max(h["epoch"] for h in history if h["kept"]))
    baseline = json.loads((out / "baseline.json").read_text())["validation"]
    export = [sys.executable, "-m", "bertclf", "export", str(out), "--to", str(exports)]
    # No parity check: it is tested (tests/test_export.py), and here only the latency counts.
    export += ["--name", f"{name}-{seq_len}{tag}", "--quiet", "--no-verify"]
    shutil.rmtree(exports / f"{name}-{seq_len}{tag}", ignore_errors=True)  # so it is version 1
    subprocess.run(export, check=True, capture_output=True, text=True)
    samples = json.loads((out / "samples.json").read_text())
    article = max(samples["texts"], key=len)
    timing = subprocess.run(
        [sys.executable, "-c", LATENCY, str(exports / f"{name}-{seq_len}{tag}" / "1"), article],
        check=True,
        capture_output=True,
        text=True,
    )
    return {
        "config": spec if seed == 42 else f"{spec}@{seed}",
        "seed": seed,
        "kept_epoch": kept["epoch"],
        "kept_val_accuracy": kept["val_accuracy"],
        "kept_val_macro_f1": kept["val_macro_f1"],
        "val_accuracy_per_epoch": [round(r["val_accuracy"], 4) for r in history],
        "baseline_val_accuracy": baseline["accuracy"],
        "wall_seconds": round(wall, 1),
        "epoch_seconds": [round(r["seconds"], 1) for r in history],
        "article_words": len(article.split()),
        "export_batch1_p50_ms": round(json.loads(timing.stdout)["p50_ms"], 1),
        "command": " ".join(cmd[1:]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("configs", nargs="+", help="NAME:SEQ_LEN, e.g. truncate:256 chunk:128")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=42, help="the split's and the run's seed")
    p.add_argument("--data", default=str(BBC))
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train flags")
    a = p.parse_args()
    for spec in a.configs:
        name, _, seq_len = spec.partition(":")
        if name not in FLAGS or not seq_len.isdigit():
            p.error(f"{spec}: use NAME:SEQ_LEN with NAME in {sorted(FLAGS)}")
    path = OUT / "long_docs.json"
    old = json.loads(path.read_text())["runs"] if path.exists() else []
    results = {"date": date.today().isoformat(), "machine": machine(), "runs": []}
    keys = [c if a.seed == 42 else f"{c}@{a.seed}" for c in a.configs]
    results["runs"] = [r for r in old if r["config"] not in keys]
    for spec in a.configs:
        results["runs"].append(run_one(spec, a.epochs, a.data, a.extra, a.seed))
        print(json.dumps(results["runs"][-1]), flush=True)
        path.write_text(json.dumps(results, indent=2))
    print("| config | kept val acc (epoch) | per epoch | baseline | wall s | s/epoch | p50 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        print(
            f"| {r['config']} | {r['kept_val_accuracy']:.4f} ({r['kept_epoch']}) | "
            f"{r['val_accuracy_per_epoch']} | {r['baseline_val_accuracy']:.4f} | "
            f"{r['wall_seconds']} | {r['epoch_seconds']} | {r['export_batch1_p50_ms']} |"
        )


if __name__ == "__main__":
    main()

"""Benchmark: batch-1 latency by text length, and batch 32, of exports and ONNX Runtime.

    .venv/bin/python bench/batch1_latency.py NAME=EXPORT_DIR [NAME=EXPORT_DIR ...]
        [--onnx] [--rounds 7] [--env NAME:VAR=VALUE ...]

Each EXPORT_DIR is a version directory (BASE/NAME/VERSION), called through its
`serving_default` signature in-process (an ONNX export, `--format onnx`: through ONNX
Runtime, in a process without TensorFlow); `--onnx` adds ONNX Runtime on the same
architecture (bench/latency_child.py says how it is built; it needs bench/.venv-onnx,
`make bench-onnx`). Every engine runs in its own process, loaded once; the engines then
take turns, round by round, so that they share the machine's state: per round each
answers 30 batch-1 calls on a short (10 words), a medium (40 words) and a long (200
words) BBC excerpt, and 3 batch-32 calls on BBC articles, timed from Python strings to
probabilities. `--env` sets an environment variable for one engine's process only (the
same export under two runtime settings, e.g. `TF_ENABLE_ONEDNN_OPTS=0`). Reports the
median of all calls of each kind and each engine's ratio to the first. Results: JSON on
stdout and bench/out/batch1_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import LATENCY_WORDS as WORDS  # noqa: E402
from common import ONNX_PYTHON, OUT, bbc_texts, machine  # noqa: E402

CHILD = Path(__file__).with_name("latency_child.py")


def texts_file() -> Path:
    words = bbc_texts(1)[0].split()
    texts = {kind: [" ".join(words[:n])] for kind, n in WORDS.items()}
    texts["batch32"] = bbc_texts(32)
    path = OUT / "latency_texts.json"
    path.write_text(json.dumps(texts))
    return path


def start(
    python: Path, engine: str, path: str, texts: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    proc = subprocess.Popen(
        [str(python), str(CHILD), engine, path, str(texts)],
        env={**os.environ, **(env or {})},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if line.strip() == "ready":
            return proc
    sys.exit(f"{engine} {path}: the child exited ({proc.wait()}) before it was ready")


def alternate(engines: dict, rounds: int) -> dict[str, dict[str, list[float]]]:
    """`rounds` rounds, each engine's process timing every text kind in turn: seconds."""
    times: dict[str, dict[str, list[float]]] = {name: {} for name in engines}
    for _ in range(rounds):
        for name, proc in engines.items():
            proc.stdin.write("round\n")
            proc.stdin.flush()
            for kind, values in json.loads(proc.stdout.readline()).items():
                times[name].setdefault(kind, []).extend(values)
    for proc in engines.values():
        proc.stdin.close()
        proc.wait(timeout=60)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("exports", nargs="*", help="NAME=EXPORT_DIR (a version directory)")
    p.add_argument("--onnx", action="store_true", help="add ONNX Runtime (bench/.venv-onnx)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE",
        help="an environment variable for engine NAME's process only (repeatable)",
    )
    a = p.parse_args()
    envs: dict[str, dict[str, str]] = {}
    for item in a.env:
        name, _, assignment = item.partition(":")
        var, _, value = assignment.partition("=")
        envs.setdefault(name, {})[var] = value

    from bertclf.model.encoders import offline_model_dir

    texts = texts_file()
    engines = {}
    for spec in a.exports:
        name, path = spec.split("=", 1)
        kind = "bertclf-onnx" if (Path(path) / "model.onnx").is_file() else "savedmodel"
        engines[name] = start(Path(sys.executable), kind, path, texts, envs.get(name))
    if a.onnx:
        engines["onnxruntime"] = start(ONNX_PYTHON, "onnx", str(offline_model_dir()), texts)
    times = alternate(engines, a.rounds)
    medians = {
        name: {kind: 1000 * statistics.median(v) for kind, v in per.items()}
        for name, per in times.items()
    }
    first = next(iter(medians))
    report = {
        **machine(),
        "rounds": a.rounds,
        "env": envs,
        "words": WORDS,
        "median_ms": medians,
        f"ratio_to_{first}": {
            name: {kind: m[kind] / medians[first][kind] for kind in m}
            for name, m in medians.items()
        },
        "short_vs_medium": {name: m["medium"] / m["short"] for name, m in medians.items()},
    }
    (OUT / "batch1_latency.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

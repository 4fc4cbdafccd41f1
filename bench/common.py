"""What the benchmarks share: where the data, the encoder and the results are; timing statistics.

Three environment variables let the suite run every script at its smallest size
(tests/test_bench.py) on data it makes itself and a tiny random BERT:
`BERTCLF_BENCH_DATA` (default `../shared/data`), `BERTCLF_BENCH_MODEL` (default
`minilm-l6`) and `BERTCLF_BENCH_OUT` (default `bench/out`).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

# BERTCLF_REPO lets a snapshot of bench/ (run while the tree is being edited) write here.
ROOT = Path(os.environ.get("BERTCLF_REPO", Path(__file__).resolve().parents[1]))
DATA = Path(os.environ.get("BERTCLF_BENCH_DATA", ROOT.parent / "shared" / "data"))
BBC = DATA / "bbc"
MODEL = os.environ.get("BERTCLF_BENCH_MODEL", "minilm-l6")
OUT = Path(os.environ.get("BERTCLF_BENCH_OUT", ROOT / "bench" / "out"))
OUT.mkdir(parents=True, exist_ok=True)
BERTCLF = Path(sys.executable).with_name("bertclf")  # the console script of this venv
# The reference pipeline's venv (`make bench-onnx`), and the batch-1 latency texts: the
# first N words of BBC's first article (batch1_latency.py, onnx_split.py).
ONNX_PYTHON = ROOT / "bench" / ".venv-onnx" / "bin" / "python"
LATENCY_WORDS = {"short": 10, "medium": 40, "long": 200}


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bbc_texts(n: int | None = None) -> list[str]:
    """BBC articles in sorted path order (decoded with replacement, as bertclf reads them)."""
    paths = sorted(BBC.glob("*/*.txt"))[:n]
    return [p.read_bytes().decode("utf-8", errors="replace") for p in paths]


def write_class_folders(root: Path, texts: list[str], labels: list, names: list[str]) -> Path:
    """`root/<label name>/NNNN.txt`, one file per text: the layout `bertclf train` reads."""
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:04d}.txt").write_text(text)
    return root


def forty_words() -> str:
    words = bbc_texts(1)[0].split()
    return " ".join(words[:40])


def timed(fn: Callable[[], object], repeats: int, warmup: int = 3) -> list[float]:
    """Seconds per call of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
        if len(values) > 1
        else values[0]
    )


def machine() -> dict[str, str]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": date.today().isoformat(),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
    }


def run_training(cmd: list[str], out: Path) -> tuple[list[dict], dict, float]:
    """Run a `bertclf train` command (with `--model MODEL` added unless it names one);
    (history, saved config, wall seconds). Exits on failure."""
    if "--model" not in cmd:
        cmd = [*cmd, "--model", MODEL]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    history = json.loads((out / "history.json").read_text())
    config = json.loads((out / "config.json").read_text())["config"]
    return history, config, wall


def finished_run(run: Path):
    """A finished run's own split (its config and seed) and its predictor: (splits, predictor)."""
    from bertclf import RunConfig
    from bertclf.data import datasets
    from bertclf.prediction.predict import load_predictor

    config = RunConfig.from_dict(json.loads((run / "config.json").read_text())["config"])
    return datasets.load_splits(config.data, config.seed), load_predictor(run)

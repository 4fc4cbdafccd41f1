"""First contact with the CLI: time to a bad-input error, and predict --input's peak memory.

    python bench/cli_first_contact.py --src SRC [--src OTHER_SRC ...] [--lines 100000]

Each SRC is a `src` folder of some bertclf commit (e.g. `git archive COMMIT src | tar -x
-C /tmp/old`); every measurement runs `python -m bertclf` with PYTHONPATH=SRC, the SRCs
alternating, so that they share the sitting. Reports, per SRC:
- `train MISSING_FOLDER --out X`: wall seconds to exit (median of --repeats) and the
  number of stderr lines;
- `predict RUN --input FILE` on --lines short lines: peak RSS (/usr/bin/time's maximum
  resident set size), with a tiny random BERT (1 layer, hidden 16) trained here for one
  epoch, so that the figure shows what reading and holding the texts costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine

SENTENCE = "the app crashes when I log in and my invoice was charged twice"


def tiny_run(work: Path, src: str) -> Path:
    """A 1-layer BERT preset (random weights), trained one epoch on the demo data."""
    enc, run = work / "enc", work / "run"
    script = f"""
import keras, keras_hub
vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(97, 123)]
vocab += ["##" + chr(c) for c in range(97, 123)]
keras.utils.set_random_seed(0)
bb = keras_hub.models.BertBackbone(vocabulary_size=len(vocab), num_layers=1, num_heads=2,
    hidden_dim=16, intermediate_dim=32, max_sequence_length=64)
bb.save_to_preset({str(enc)!r})
keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True).save_to_preset({str(enc)!r})
"""
    env = {**os.environ, "PYTHONPATH": src}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True)
    cmd = [sys.executable, "-m", "bertclf", "train", str(ROOT / "examples" / "demo_data")]
    cmd += ["--out", str(run), "--model", str(enc), "--seq-len", "32", "--epochs", "1"]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return run


def missing_folder(src: str, work: Path) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = src
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bertclf", "train", str(work / "missing"), "--out", str(work / "x")],
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 2, proc.stderr
    return seconds, len([ln for ln in proc.stderr.splitlines() if ln.strip()])


def predict_rss(src: str, run: Path, lines: Path) -> float:
    """Peak RSS in MiB of `predict RUN --input LINES` (results to /dev/null)."""
    env = {**os.environ, "PYTHONPATH": src}
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "bertclf", "predict", str(run)]
    cmd += ["--input", str(lines)]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stderr.decode().strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", action="append", required=True, help="a bertclf src folder")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lines", type=int, default=100_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bertclf-first-contact-"))
    run = tiny_run(work, args.src[0])  # the oldest format, which every newer version reads
    lines = work / "lines.txt"
    words = SENTENCE.split()
    lines.write_text(
        "".join(" ".join(words[i % 7 : i % 7 + 6]) + f" {i}\n" for i in range(args.lines))
    )
    times: dict[str, list[float]] = {s: [] for s in args.src}
    stderr_lines: dict[str, int] = {}
    for _ in range(args.repeats):
        for src in args.src:
            seconds, count = missing_folder(src, work)
            times[src].append(seconds)
            stderr_lines[src] = count
    rss = {src: predict_rss(src, run, lines) for src in args.src}
    for src in args.src:
        print(
            json.dumps(
                {
                    "src": src,
                    "missing_folder_seconds_median": round(statistics.median(times[src]), 3),
                    "missing_folder_seconds": [round(t, 3) for t in times[src]],
                    "stderr_lines": stderr_lines[src],
                    "predict_lines": args.lines,
                    "predict_peak_rss_mib": round(rss[src], 1),
                    **machine(),
                }
            )
        )


if __name__ == "__main__":
    main()

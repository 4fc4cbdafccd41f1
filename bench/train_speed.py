"""Benchmark: bertclf's training throughput against Hugging Face transformers + PyTorch.

    make bench-setup          # bench/.venv-torch: torch==2.13.0 (CPU), transformers
    .venv/bin/python bench/train_speed.py [--steps 20] [--rounds 3] [--configs ...]

Same model (all-MiniLM-L6-v2 from the offline package), same data, batch 16,
seq-len 128, a fixed number of steps, each measurement in a fresh process
(bench/speed_child.py), configurations alternating within each round. Two datasets:
BBC (long texts) and a short-text set made from it (the first two sentences of each
article). Reports examples/s and real (non-padding) tokens/s, the ratios, and the
achieved training FLOP/s against this machine's dense matmul peak measured in the
same run (fp32 and bf16).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BBC, MODEL, OUT, ROOT, machine  # noqa: E402

TORCH_PY = ROOT / "bench" / ".venv-torch" / "bin" / "python"
CHILD = Path(__file__).with_name("speed_child.py")
CONFIGS = {
    "pytorch (transformers, dynamic padding, fp32)": ("torch", {}),
    "bertclf fp32, fixed padding": ("bertclf", {"precision": "fp32", "bucketing": "off"}),
    "bertclf bf16, fixed padding": ("bertclf", {"precision": "bf16", "bucketing": "off"}),
    "bertclf fp32, bucketing": ("bertclf", {"precision": "fp32", "bucketing": "on"}),
    "bertclf bf16, bucketing": ("bertclf", {"precision": "bf16", "bucketing": "on"}),
    "bertclf bf16, bucketing, XLA": (
        "bertclf",
        {"precision": "bf16", "bucketing": "on", "jit": "on"},
    ),
    "bertclf defaults (auto)": (
        "bertclf",
        {"precision": "auto", "bucketing": "auto", "jit": "auto"},
    ),
}
# all-MiniLM-L6-v2: 6 layers, hidden 384; 22.7M parameters of which 11.9M are embeddings.
LAYERS, HIDDEN = 6, 384


def write_datasets(n_examples: int, out: Path = OUT / "speed") -> dict[str, Path]:
    """BBC articles and their first two sentences, as JSONL (under bench/out/speed)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = sorted(BBC.glob("*/*.txt"))
    order = __import__("numpy").random.RandomState(0).permutation(len(paths))[:n_examples]
    files = {"bbc": out / "bbc.jsonl", "short": out / "short.jsonl"}
    with open(files["bbc"], "w") as full, open(files["short"], "w") as short:
        for i in order:
            path = paths[i]
            text = path.read_bytes().decode("utf-8", errors="replace")
            body = " ".join(text.split("\n")[1:]).strip()  # drop the title line
            sentences = re.split(r"(?<=[.!?])\s+", body)
            label = path.parent.name
            full.write(json.dumps({"text": text, "label": label}) + "\n")
            short.write(json.dumps({"text": " ".join(sentences[:2]), "label": label}) + "\n")
    return files


def non_embedding_params() -> int:
    per_layer = 4 * HIDDEN * HIDDEN + 4 * HIDDEN + 2 * HIDDEN * 4 * HIDDEN + 4 * HIDDEN + 5 * HIDDEN
    return LAYERS * per_layer


def train_flops(r: dict) -> float:
    """6 x non-embedding params x real tokens, plus attention (12 L H s^2 per text)."""
    dense = 6 * non_embedding_params() * r["real_tokens"]
    attention = 12 * LAYERS * HIDDEN * sum(s * s for s in r["lengths"])
    return dense + attention


def matmul_peak() -> dict[str, float]:
    code = """
import json, time, tensorflow as tf
out = {}
for name, dt in (("fp32", tf.float32), ("bf16", tf.bfloat16)):
    a = tf.cast(tf.random.normal([2048, 2048]), dt); b = tf.cast(tf.random.normal([2048, 2048]), dt)
    f = tf.function(lambda x, y: tf.matmul(x, y)); f(a, b).numpy()
    best = 0.0
    for _ in range(5):
        t = time.perf_counter(); [f(a, b) for _ in range(5)][-1].numpy()
        best = max(best, 5 * 2 * 2048**3 / (time.perf_counter() - t))
    out[name] = best
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_child(framework: str, options: dict, data: Path, steps: int) -> dict:
    python = str(TORCH_PY) if framework == "torch" else sys.executable
    from bertclf.model.encoders import offline_model_dir

    cmd = [
        python,
        str(CHILD),
        "--framework",
        framework,
        "--data",
        str(data),
        "--steps",
        str(steps),
        "--model-dir",
        str(offline_model_dir()),
    ]
    if framework == "bertclf":
        cmd += ["--model", MODEL]
    for key, value in options.items():
        cmd += [f"--{key}", value]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--datasets", nargs="+", default=["short", "bbc"])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS))
    a = p.parse_args()
    if not TORCH_PY.exists() and any(CONFIGS[c][0] == "torch" for c in a.configs):
        sys.exit("bench/.venv-torch is missing: run 'make bench-setup'")
    files = write_datasets(a.steps * 16)
    report = {
        **machine(),
        "steps": a.steps,
        "batch_size": 16,
        "seq_len": 128,
        "matmul_peak_flops": matmul_peak(),
        "datasets": {},
    }
    for name in a.datasets:
        runs = {c: [] for c in a.configs}
        for _ in range(a.rounds):
            for config in a.configs:  # alternating, so drift hits every configuration alike
                framework, options = CONFIGS[config]
                runs[config].append(run_child(framework, options, files[name], a.steps))
                print(name, config, round(runs[config][-1]["examples_per_s"], 2), flush=True)
        report["datasets"][name] = summarize(runs, report["matmul_peak_flops"])
    (OUT / "train_speed.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def summarize(runs: dict[str, list[dict]], peak: dict[str, float]) -> dict:
    rows = {}
    for config, results in runs.items():
        resolved = results[0].get("resolved", {})
        precision = resolved.get("precision", "bf16" if "bf16" in config else "fp32")
        eps = statistics.median(r["examples_per_s"] for r in results)
        tps = statistics.median(r["real_tokens_per_s"] for r in results)
        flops = statistics.median(train_flops(r) / r["seconds"] for r in results)
        rows[config] = {
            "resolved": resolved,
            "examples_per_s": eps,
            "real_tokens_per_s": tps,
            "padding_share": 1 - results[0]["real_tokens"] / results[0]["padded_tokens"],
            "train_tflops": flops / 1e12,
            "share_of_matmul_peak": flops / peak[precision],
            "runs_examples_per_s": [r["examples_per_s"] for r in results],
        }
    torch_key = next((k for k in rows if k.startswith("pytorch")), None)
    for row in rows.values():
        if torch_key is not None:
            row["vs_pytorch"] = row["examples_per_s"] / rows[torch_key]["examples_per_s"]
        # Against bertclf with fixed padding: in fp32, and in the row's own precision
        # (which isolates what length-aware batching adds).
        for name, key in (
            ("vs_bertclf_fp32_fixed", "bertclf fp32, fixed padding"),
            ("vs_bertclf_fixed_same_precision", f"bertclf {_precision(row)}, fixed padding"),
        ):
            if key in rows:
                row[name] = row["examples_per_s"] / rows[key]["examples_per_s"]
                # Each round's configurations ran minutes apart, so a round's ratio is
                # the least drift-exposed comparison; the median of those is reported too.
                per_round = [
                    a / b
                    for a, b in zip(
                        row["runs_examples_per_s"], rows[key]["runs_examples_per_s"], strict=True
                    )
                ]
                row[f"{name}_per_round"] = per_round
                row[f"{name}_median_of_rounds"] = statistics.median(per_round)
    return rows


def _precision(row: dict) -> str:
    return row["resolved"].get("precision", "fp32")


if __name__ == "__main__":
    main()

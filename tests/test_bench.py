"""Every maintained benchmark script runs, at its smallest size (a smoke test, not a figure).

The scripts read their data from `BERTCLF_BENCH_DATA` (here: a few texts per class,
laid out as ../shared/data is), train `BERTCLF_BENCH_MODEL` (here: a tiny random BERT)
and write to `BERTCLF_BENCH_OUT`; each must finish and write its result. The PyTorch
and ONNX Runtime sides need their own venvs (`make bench-setup`, `make bench-onnx`) and
are left out here.
"""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TOPICS, make_texts, save_tiny_encoder

BENCH = Path(__file__).resolve().parents[1] / "bench"
SMALL = ["--epochs", "1", "--seq-len", "32", "--batch-size", "8", "--contrastive", "0"]
BBC = ("business", "entertainment", "politics", "sport", "tech")


def _folders(root: Path, classes, per_class: int, seed: int) -> None:
    topics = list(TOPICS)
    for i, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for j, text in enumerate(make_texts(topics[i % 3], per_class, seed + i)):
            # A title line, then the text (train_speed.py's short set drops the title)
            (root / name / f"{j:03d}.txt").write_text(f"{name} news\n{text}. {text}. {text}.")


def _goemotions(root: Path) -> None:
    root.mkdir(parents=True)
    names = ["joy", "anger", "neutral"]
    (root / "emotions.txt").write_text("\n".join(names) + "\n")
    rng = random.Random(0)
    for split, n in (("train", 40), ("dev", 40), ("test", 20)):
        rows = []
        for i in range(n):
            label = i % 3
            text = make_texts(list(TOPICS)[label], 1, i + len(split))[0]
            extra = f",{(label + 1) % 3}" if rng.random() < 0.2 else ""
            rows.append(f"{text}\t{label}{extra}\tid{i}")
        (root / f"{split}.tsv").write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    data = root / "data"
    _folders(data / "bbc", BBC, 8, 0)
    _folders(data / "civility-gh" / "train", ("civil", "uncivil"), 16, 1)
    _folders(data / "civility-gh" / "test", ("civil", "uncivil"), 6, 2)
    _goemotions(data / "goemotions")
    encoder = save_tiny_encoder(root / "encoder", max_sequence_length=512)
    return {
        **os.environ,
        "BERTCLF_BENCH_DATA": str(data),
        "BERTCLF_BENCH_MODEL": encoder,
        "BERTCLF_BENCH_OUT": str(root / "out"),
    }


def bench(env, script: str, *args: str, timeout: float = 600) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def out(env) -> Path:
    return Path(env["BERTCLF_BENCH_OUT"])


def test_small_data_and_the_margin_bootstrap(env):
    bench(env, "small_data.py", "civility", "--seeds", "1", "--extra", *SMALL)
    [line] = (out(env) / "small_data_civility.jsonl").read_text().splitlines()
    assert 0 <= json.loads(line)["test_macro_f1"] <= 1
    [run] = out(env).glob("small-civility-1*")
    printed = bench(env, "margin_bootstrap.py", str(run), "--resamples", "50")
    assert "standard error" in printed


def test_goemotions_and_long_documents(env):
    bench(env, "goemotions.py", "quick", "--extra", *SMALL)
    assert "test_micro_f1" in json.loads((out(env) / "goemotions_quick.json").read_text())
    bench(
        env,
        "long_docs.py",
        "chunk:32",  # the path with most parts (windows, pooling); the cuts are unit-tested
        "--epochs",
        "1",
        "--extra",
        "--batch-size",
        "8",
    )
    runs = json.loads((out(env) / "long_docs.json").read_text())["runs"]
    assert [r["config"] for r in runs] == ["chunk:32"]


def test_training_speed_and_two_workers(env):
    bench(
        env,
        "train_speed.py",
        "--steps",
        "2",
        "--rounds",
        "1",
        "--datasets",
        "short",
        "--configs",
        "bertclf defaults (auto)",
    )
    report = json.loads((out(env) / "train_speed.json").read_text())
    assert report["datasets"]["short"]["bertclf defaults (auto)"]["examples_per_s"] > 0
    bench(env, "multiworker.py", "--rounds", "1", "--extra", "--epochs", "1", "--contrastive", "0")
    assert json.loads((out(env) / "multiworker.json").read_text())["two_over_one"] > 0


def test_latency_the_server_under_load_and_bulk_scoring(env, tmp_path):
    bench(env, "small_data.py", "bbc", "--seeds", "1", "--extra", *SMALL)
    [run] = out(env).glob("small-bbc-1*")
    exports = tmp_path / "exports"
    for name, *extra in (("tiny", "--no-verify"), ("tiny-onnx", "--format", "onnx")):
        done = subprocess.run(
            [
                str(Path(sys.executable).with_name("bertclf")),
                "export",
                str(run),
                "--to",
                str(exports),
                "--name",
                name,
                *extra,
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    onnx_dir = exports / "tiny-onnx" / "1"
    bench(
        env,
        "batch1_latency.py",
        f"tiny={exports / 'tiny' / '1'}",
        f"onnx={onnx_dir}",
        "--rounds",
        "1",
    )
    assert {"tiny", "onnx"} <= set(
        json.loads((out(env) / "batch1_latency.json").read_text())["median_ms"]
    )
    bench(env, "onnx_parity.py", str(run), str(onnx_dir), "--per-corpus", "8")
    parity = json.loads((out(env) / "onnx_parity.json").read_text())
    assert parity["hard cases"]["token_ids_differ"] == 0 and parity["bbc"]["texts"] == 8
    bench(env, "onnx_split.py", str(run), str(onnx_dir), "--rounds", "1")
    split = json.loads((out(env) / "onnx_split.json").read_text())["median_ms"]["bertclf"]
    assert split["text side"]["medium"] < split["whole"]["medium"]
    bench(
        env, "serve_load.py", "--export", str(exports / "tiny"), "--paired", "1", "--clients", "raw"
    )
    rounds = json.loads((out(env) / "serve_load_paired.json").read_text())["rounds"]
    assert rounds[0]["raw"]["c32"]["errors"] == 0
    bench(env, "score_throughput.py", str(exports / "tiny"), "--texts", "20", "--rounds", "1")
    assert json.loads((out(env) / "score_throughput.json").read_text())["texts"] == 20


def test_the_audit_benchmarks(env):
    bench(env, "audit.py", "flips", "civility", "bbc", "goemotions", "--draws", "1")
    flips = json.loads((out(env) / "audit_flips.json").read_text())["datasets"]
    assert 0 <= flips["civility"]["engines"]["both"]["mean_recall_at_1.5k"] <= 1
    assert "mean_recall_at_2.0k" in flips["goemotions"]["engines"]["tfidf"]
    bench(env, "audit.py", "oracle", "civility", "--draws", "1")
    bench(env, "audit.py", "near", "civility")
    near = json.loads((out(env) / "audit_near.json").read_text())["datasets"]["civility"]
    assert 0 < near["edited_cosine_median"] <= 1 and "0.8" in near["thresholds"]
    loop = ("loop", "--draws", "1", "--seeds", "1", "--drop", "audit", "oracle")
    bench(env, "audit.py", *loop, "--extra", *SMALL)
    [draw] = json.loads((out(env) / "audit_loop_audit_oracle.json").read_text())["draws"]
    assert all(0 <= f1 <= 1 for f1 in [*draw["cleaned"], *draw["noisy"], *draw["oracle"]])
    assert 0 <= draw["excluded_that_were_flipped"] <= draw["flipped"]


def test_the_calibration_benchmark(env):
    bench(env, "calibration.py", "prepare", "--per-class", "4")
    bench(
        env,
        "calibration.py",
        "train",
        "--seeds",
        "1",
        "--only",
        "civility",
        "bbc-notech",
        "--extra",
        *SMALL,
    )
    bench(env, "calibration.py", "measure", "--seeds", "1", "--rounds", "1")
    result = json.loads((out(env) / "calibration.json").read_text())
    [row] = result["runs"]
    assert row["run"] == "civility-1" and "ece_after" in row["test"]
    assert 0 <= result["ood"]["goemotions"]["mahalanobis (ours)"] <= 1
    assert result["latency"]["batch32_ms ratio"] > 0


def test_the_explanation_benchmark(env):
    # Uses the civility-1 run test_the_calibration_benchmark trained (same module env).
    if not (out(env) / "calibration" / "civility-1" / "report.html").is_file():
        bench(env, "calibration.py", "prepare", "--per-class", "4")
        bench(
            env, "calibration.py", "train", "--seeds", "1", "--only", "civility", "--extra", *SMALL
        )
    bench(env, "explain.py", "--only", "civility", "--texts", "4", "--no-fp32", "--steps", "8")
    result = json.loads((out(env) / "explain.json").read_text())["runs"]["civility"]
    assert result["texts"] == 4 and result["explain_seconds_per_text"] > 0
    assert result["deletion_ig"]["fall_random"] is not None and "run 8" in result["completeness"]

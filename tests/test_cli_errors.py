"""Every bad input as a user sees it: the real console script, one stderr line, exit 2.

TensorFlow's start-up logs would count as lines here (they go to file descriptor 2
whatever TF_CPP_MIN_LOG_LEVEL says), so these run `bertclf` in a fresh process.
"""

import json
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import one_error_line, run_script, write_folder


@pytest.fixture(scope="module")
def cases(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("bad")
    data = write_folder(root / "data")
    write_folder(root / "one", labels=["bug"])
    empty_class = write_folder(root / "emptyclass")
    (empty_class / "zzz").mkdir()
    (root / "body.csv").write_text("body,label\nhello,a\nbye,b\n")
    (root / "nl.csv").write_text('text,label\nhello,a\nbye,"b\nc"\nagain,a\nmore,b\n')
    (root / "gpt").mkdir()
    (root / "gpt" / "config.json").write_text('{"model_type": "gpt2"}')
    (root / "a-file").write_text("not a folder")
    write_folder(root / "unseen", per_class=1, labels=["feature"])
    (root / "unseen" / "zzz").mkdir()
    (root / "unseen" / "zzz" / "0.txt").write_text("a label training never saw")
    write_folder(root / "nlfolder", labels=["bug", "feature"])
    (root / "nlfolder" / "bug").rename(root / "nlfolder" / "bill\ning")
    (root / "nl.jsonl").write_text(
        '{"text": "hello", "label": "a"}\n{"text": "bye", "label": "b\\nc"}\n'
    )
    (root / "nolabel.jsonl").write_text('{"text": "hello", "label": "a"}\n{"text": "bye"}\n')
    existing = root / "existing"
    existing.mkdir()
    (existing / "x").write_text("someone's run")
    return {"root": root, "data": data, "encoder": tiny_encoder}


def train(c, *extra, data=None):
    d = str(data or c["data"])
    out = ["--out", str(c["root"] / "new")]
    return ["train", d, *out, "--model", c["encoder"], "--seq-len", "32", *extra]


BAD_TRAIN = {
    "missing folder": (lambda c: train(c, data=c["root"] / "nope"), "nope: no such"),
    "one class": (lambda c: train(c, data=c["root"] / "one"), "at least two"),
    "class folder without .txt": (
        lambda c: train(c, data=c["root"] / "emptyclass"),
        "zzz: class folder has no .txt files",
    ),
    "missing column": (lambda c: train(c, data=c["root"] / "body.csv"), "no column 'text'"),
    "label over two lines": (lambda c: train(c, data=c["root"] / "nl.csv"), "spans several"),
    "JSONL label over two lines": (
        lambda c: train(c, data=c["root"] / "nl.jsonl"),
        "nl.jsonl:2: label 'b\\nc' spans several lines",
    ),
    "class folder name over two lines": (
        lambda c: train(c, data=c["root"] / "nlfolder"),
        "class folder 'bill\\ning' has a line break in its name",
    ),
    "a later JSONL row without its label": (
        lambda c: train(c, data=c["root"] / "nolabel.jsonl"),
        "nolabel.jsonl:2: this row has no 'label'; add it",
    ),
    "not a BERT checkpoint": (
        lambda c: [*train(c)[:4], "--model", str(c["root"] / "gpt")],
        "not 'bert'",
    ),
    "missing encoder dir": (
        lambda c: [*train(c)[:4], "--model", str(c["root"] / "no-encoder")],
        "no such directory",
    ),
    "seq-len too small": (lambda c: train(c, "--seq-len", "4"), "--seq-len 4 is invalid"),
    "seq-len over 512": (lambda c: train(c, "--seq-len", "513"), "--seq-len 513"),
    "seq-len over the encoder's": (lambda c: train(c, "--seq-len", "100"), "64 tokens"),
    "batch size 0": (lambda c: train(c, "--batch-size", "0"), "--batch-size 0 is invalid"),
    "epochs 0": (lambda c: train(c, "--epochs", "0"), "--epochs 0 is invalid"),
    "stride 0": (lambda c: train(c, "--long", "chunk", "--stride", "0"), "--stride 0 is invalid"),
    "stride over the window": (
        lambda c: train(c, "--long", "chunk", "--seq-len", "16", "--stride", "15"),
        "--stride 15 is invalid: use 1..14",
    ),
    "stride without chunk": (lambda c: train(c, "--stride", "4"), "it needs --long chunk"),
    "chunk-pool without chunk": (
        lambda c: train(c, "--chunk-pool", "max"),
        "--chunk-pool 'max' is invalid: add --long chunk",
    ),
    "max-chunks 0": (lambda c: train(c, "--max-chunks", "0"), "--max-chunks 0 is invalid"),
    "chunk and head_tail": (
        lambda c: train(c, "--long", "chunk", "--truncate", "head_tail"),
        "drop --truncate head_tail",
    ),
    "chunk over the encoder's length": (
        lambda c: train(c, "--long", "chunk", "--seq-len", "100"),
        "64 tokens",
    ),
    "checkpoint-every -1": (
        lambda c: train(c, "--checkpoint-every", "-1"),
        "--checkpoint-every -1 is invalid: use 0 or more",
    ),
    "epochs not a number": (lambda c: train(c, "--epochs", "three"), "invalid int value"),
    "unknown clean step": (lambda c: train(c, "--clean", "shout"), "--clean 'shout'"),
    "unknown choice": (lambda c: train(c, "--pooling", "max"), "invalid choice: 'max'"),
    "existing run": (
        lambda c: [*train(c)[:2], "--out", str(c["root"] / "existing"), *train(c)[4:]],
        "already exists; pass --resume",
    ),
    "--out is a file": (
        lambda c: [*train(c)[:2], "--out", str(c["root"] / "a-file"), *train(c)[4:]],
        "is a file, not a run directory",
    ),
    "resume and overwrite": (lambda c: train(c, "--resume", "--overwrite"), "contradict"),
    "--val given a fraction": (
        lambda c: train(c, "--val", "0.1"),
        "--val 0.1: no such file or folder; --val takes a labelled folder or file (a fraction",
    ),
    "a hub encoder offline": (
        lambda c: [*train(c)[:4], "--model", "hf://google/bert_uncased_L-2_H-128_A-2"],
        "huggingface.co is not reachable",
    ),
    "resume without a run": (lambda c: train(c, "--resume"), "no run to resume"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN))
def test_bad_train_input_is_one_line_before_tensorflow(cases, case):
    argv, needle = BAD_TRAIN[case]
    argv = argv(cases)
    proc = run_script(*argv)
    assert needle in one_error_line(proc)
    assert not (cases["root"] / "new").exists()
    assert (cases["root"] / "existing" / "x").read_text() == "someone's run"


NO_TF = """
import json, sys
from bertclf.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules}))
"""


@pytest.mark.parametrize("case", ["missing folder", "missing column", "seq-len over the encoder's"])
def test_argument_errors_do_not_import_tensorflow(cases, case):
    argv = BAD_TRAIN[case][0](cases)
    proc = subprocess.run(
        [sys.executable, "-c", NO_TF, *argv], capture_output=True, text=True, timeout=120
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"code": 2, "tensorflow": False}


def test_errors_found_after_tensorflow_are_still_one_line(cases):
    # These need TensorFlow (a keras-hub preset list, labels read in full): start-up logs
    # must not reach stderr.
    assert "not a known name" in one_error_line(
        run_script(*train(cases)[:4], "--model", "bert-huge-xl")
    )
    unseen = run_script(*train(cases, "--test", str(cases["root"] / "unseen")))
    assert "['zzz'] do not occur in training" in one_error_line(unseen)
    assert not (cases["root"] / "new").exists()


@pytest.fixture(scope="module")
def trained_run(runs):
    return runs[0]


def _damaged(run: Path, tmp: Path, what: str) -> Path:
    copy = tmp / f"damaged-{what}"
    shutil.copytree(run, copy)
    if what == "weights":
        data = (copy / "best.weights.h5").read_bytes()
        (copy / "best.weights.h5").write_bytes(data[: len(data) // 3])
    elif what == "empty-weights":
        (copy / "best.weights.h5").write_bytes(b"")
    else:
        (copy / "config.json").write_text('{"config": {"data": ')
    return copy


@pytest.mark.parametrize("what", ["weights", "empty-weights", "config"])
def test_damaged_run_files_are_one_line(trained_run, tmp_path, cases, what):
    run = _damaged(trained_run, tmp_path, what)
    name = "config.json" if what == "config" else "best.weights.h5"
    for argv in (
        ["predict", str(run), "refund my invoice"],
        ["evaluate", str(run), str(cases["data"])],
        ["export", str(run), "--to", str(tmp_path / "models")],
    ):
        line = one_error_line(run_script(*argv))
        assert name in line and ("train again" in line or "restore" in line), line
    assert not any((tmp_path / "models").glob("*/[0-9]*"))
    if what == "config":
        line = one_error_line(run_script("train", "--out", str(run), "--resume"))
        assert "config.json: damaged" in line


def test_resume_with_a_damaged_checkpoint_is_one_line(trained_run, tmp_path):
    run = tmp_path / "ckpt"
    shutil.copytree(trained_run, run)
    for f in (run / "checkpoints").glob("*.data-*"):
        f.write_bytes(f.read_bytes()[:100])
    meta = json.loads((run / "config.json").read_text())
    meta["config"]["train"]["epochs"] = 2  # one more epoch to do
    (run / "config.json").write_text(json.dumps(meta))
    line = one_error_line(run_script("train", "--out", str(run), "--resume", "--no-progress"))
    assert "cannot be restored" in line and "--overwrite" in line


def _under_file_size_limit(argv: list[str], limit: int) -> subprocess.CompletedProcess:
    """`bertclf ARGV` in a fresh process that may write no file past `limit` bytes: the
    kernel refuses such a write (EFBIG) as it refuses one on a full disk (ENOSPC)."""

    def limit_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # refused writes fail, not kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return run_script(*argv, preexec_fn=limit_files)


def test_a_write_the_disk_refuses_is_one_line(trained_run, cases, tmp_path):
    models = tmp_path / "models"
    proc = _under_file_size_limit(
        ["export", str(trained_run), "--to", str(models), "--precision", "fp32"], 64 * 1024
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("bertclf: error: File too large: free space"), lines
    assert not list(models.rglob("saved_model.pb"))  # nothing published
    run = tmp_path / "run"
    argv = [
        *train(cases)[:3],
        str(run),
        *train(cases)[4:],
        "--epochs",
        "1",
        "--no-progress",
        "--quiet",
    ]
    proc = _under_file_size_limit(argv, 64 * 1024)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert f"training stopped while writing under {run}" in lines[0]
    assert "--resume" in lines[0]

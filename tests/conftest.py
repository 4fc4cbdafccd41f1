"""Shared fixtures: a tiny random BERT (keras-hub preset) and tiny datasets.

The tiny encoder keeps most tests to seconds; tests marked `slow` use the real
offline MiniLM encoder.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

TOPICS = {
    "billing": "invoice refund charged payment card price receipt subscription bill paid",
    "bug": "crash error broken fails exception freeze stack trace bug wrong",
    "feature": "please add support option would like wish request new export",
}
FILLER = ["the", "a", "and", "to", "of", "it", "my", "is", "this", "for", "on", "with"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_texts(label: str, n: int, seed: int) -> list[str]:
    rng = random.Random(f"{label}-{seed}")
    words = TOPICS[label].split()
    return [
        " ".join(
            rng.choice(words if rng.random() < 0.6 else FILLER) for _ in range(rng.randint(5, 14))
        )
        + f" ticket {label[0]}{i}"
        for i in range(n)
    ]


def write_folder(root: Path, per_class: int = 12, seed: int = 0, labels=None) -> Path:
    for label in labels or TOPICS:
        d = root / label
        d.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(make_texts(label, per_class, seed)):
            (d / f"{i:03d}.txt").write_text(text, encoding="utf-8")
    return root


@pytest.fixture()
def tiny_data(tmp_path) -> Path:
    """3 classes x 12 short texts in class sub-folders."""
    return write_folder(tmp_path / "data")


def _vocab() -> list[str]:
    words = set(FILLER + ["ticket", "build"])
    for text in TOPICS.values():
        words.update(text.split())
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    tokens = SPECIALS + sorted(words) + letters + [f"##{c}" for c in letters] + list(".,!?'-:")
    return list(dict.fromkeys(tokens))  # unique, order kept


def save_tiny_encoder(d: Path, hidden_dim: int = 16, max_sequence_length: int = 64) -> str:
    """A 1-layer BERT (no dropout) with the test vocabulary, saved as a keras-hub preset."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(_vocab()),
        num_layers=1,
        num_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=32,
        max_sequence_length=max_sequence_length,
        dropout=0.0,
    )
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=_vocab(), lowercase=True)
    backbone.save_to_preset(str(d))
    tokenizer.save_to_preset(str(d))
    return str(d)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """A 1-layer, hidden-16 BERT (no dropout) saved as a keras-hub preset directory."""
    return save_tiny_encoder(tmp_path_factory.mktemp("tiny_bert"))


def run_cli(*args: str, timeout: float = 600, env=None) -> subprocess.CompletedProcess:
    """Run `python -m bertclf ARGS` in a fresh process; returns the completed process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "bertclf", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def stderr_line(proc: subprocess.CompletedProcess) -> str:
    """The last non-empty stderr line (TensorFlow may log above it)."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def read_json(path) -> object:
    return json.loads(Path(path).read_text())


BERTCLF = Path(sys.executable).with_name("bertclf")  # the console script pip installed


def run_script(
    *args: str, timeout: float = 600, cwd=None, preexec_fn=None
) -> subprocess.CompletedProcess:
    """Run the real `bertclf` console script, as a user does (fresh process, real fd 2).

    `preexec_fn` runs in the child before it starts (for example, to set a limit)."""
    return subprocess.run(
        [str(BERTCLF), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
        preexec_fn=preexec_fn,
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """Assert exit status 2 and exactly one non-empty stderr line; return it."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1, lines
    assert lines[0].startswith("bertclf"), lines
    return lines[0]


def _train_runs(root: Path, encoder: str) -> list[Path]:
    from bertclf import DataConfig, ModelConfig, RunConfig, TrainConfig
    from bertclf.training.fine_tuning import train

    data = write_folder(root / "data")
    out = []
    for seed in (1, 2):
        cfg = RunConfig(
            data=DataConfig(str(data)),
            out=str(root / f"run{seed}"),
            model=ModelConfig(model=encoder, seq_len=32),
            # No contrastive stage: these runs are exported and served, not studied.
            train=TrainConfig(epochs=2, batch_size=8, lr=1e-3, contrastive=0),
            seed=seed,
        )
        # No report: these runs are exported and served; tests/test_report.py tests reports.
        train(cfg, progress=False, report=False)
        out.append(root / f"run{seed}")
    return out


@pytest.fixture(scope="session")
def runs(tmp_path_factory, tiny_encoder, worker_id) -> list[Path]:
    """Two differently seeded tiny runs (2 epochs): version 1 and 2 of one served model.

    Trained once a session: pytest-xdist's workers share them through the folder their
    temporary roots share, the first to take the lock training them (xdist's recipe for
    a session fixture made once). Tests read them and never write into them."""
    if worker_id == "master":  # no xdist
        return _train_runs(tmp_path_factory.mktemp("runs"), tiny_encoder)
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "shared-runs"
    with FileLock(f"{shared}.lock"):
        if not (shared / "trained").is_file():
            shutil.rmtree(shared, ignore_errors=True)
            _train_runs(shared, tiny_encoder)
            (shared / "trained").touch()
    return [shared / "run1", shared / "run2"]

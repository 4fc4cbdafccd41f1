"""--contrastive: SetFit's pairs, the stage pulling a class together, runs and resume."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from bertclf.config import policy
from bertclf.config.data import DataConfig
from bertclf.config.model import ModelConfig
from bertclf.config.run import RunConfig
from bertclf.config.train import TrainConfig
from bertclf.data.datasets import load_splits, read_labelled
from bertclf.errors import ConfigError
from bertclf.model import encoders
from bertclf.model.classifier import build_classifier
from bertclf.training.contrastive import PAIR_BATCH, ContrastiveStage, draw_pairs
from bertclf.training.fine_tuning import resolve_for_data, train
from bertclf.training.pipeline import EpochDataset
from test_training import tiny_config

from conftest import one_error_line, run_script


def test_pairs_have_one_partner_of_each_kind_per_text_and_iteration():
    labels = np.array([0, 0, 0, 1, 1, 2])
    pairs = draw_pairs(labels, iterations=3, seed=0)
    assert pairs.shape == (2 * 3 * len(labels), 3)
    i, j, target = pairs[:, 0].astype(int), pairs[:, 1].astype(int), pairs[:, 2]
    assert np.array_equal(labels[i] == labels[j], target == 1.0)
    for text in range(len(labels)):  # 3 same-class and 3 other-class partners each
        mine = target[i == text]
        assert (mine == 1.0).sum() == 3 and (mine == 0.0).sum() == 3
    assert np.array_equal(pairs, draw_pairs(labels, 3, seed=0))  # seeded
    assert not np.array_equal(pairs, draw_pairs(labels, 3, seed=1))


def _class_margin(model, preprocessor, texts, labels) -> float:
    """Mean cosine of same-class pairs minus that of other-class pairs."""
    v = tf.math.l2_normalize(model.pool(preprocessor(tf.constant(texts))), axis=-1).numpy()
    cos, same = v @ v.T, np.equal.outer(labels, labels)
    off = ~np.eye(len(labels), dtype=bool)
    return float(cos[same & off].mean() - cos[~same].mean())


def test_the_stage_pulls_classes_apart_and_trains_only_the_encoder(
    tiny_data, tiny_encoder, monkeypatch
):
    keras.utils.set_random_seed(0)
    examples = read_labelled(tiny_data)
    texts, labels = examples.texts, np.asarray(examples.labels)
    backbone, tokenizer = encoders.load(encoders.resolve(tiny_encoder))
    preprocessor, model = build_classifier(backbone, tokenizer, ModelConfig(seq_len=32), 3)
    head = [v.numpy().copy() for v in model.head_variables()]
    before = _class_margin(model, preprocessor, texts, labels)
    stage = ContrastiveStage(model, preprocessor, TrainConfig(precision="fp32"), bucket=4)
    # A rate far above SetFit's, so that the tiny random encoder moves in a few steps.
    monkeypatch.setattr("bertclf.training.contrastive.PAIR_LR", 1e-3)
    packed = EpochDataset(examples, preprocessor, batch_size=8).packed  # as a run packs them
    stats = stage.run(packed, labels, iterations=4, seed=0, progress=False)
    assert stats["pairs"] == 2 * 4 * len(texts)
    assert stats["steps"] == -(-stats["pairs"] // PAIR_BATCH)
    assert stats["last_loss"] < stats["first_loss"]
    assert _class_margin(model, preprocessor, texts, labels) > before + 0.05
    for var, value in zip(model.head_variables(), head, strict=True):
        np.testing.assert_array_equal(var.numpy(), value)  # the head is the loop's to train


def test_a_contrastive_run_records_the_stage_and_resumes_past_it(tmp_path, tiny_data, tiny_encoder):
    out = tmp_path / "run"
    config = tiny_config(tiny_data, out, tiny_encoder, epochs=1, contrastive=2)
    train(config, progress=False)
    stage = json.loads((out / "contrastive.json").read_text())
    assert stage["iterations"] == 2 and stage["pairs"] == 2 * 2 * 30  # 36 texts, 6 to validation
    saved = json.loads((out / "config.json").read_text())["config"]["train"]
    assert saved["contrastive"] == 2
    report = (out / "report.html").read_text()
    assert f"--contrastive 2): {stage['pairs']} pairs in {stage['steps']} steps" in report
    weights = (out / "best.weights.h5").read_bytes()
    # --resume of a finished run: the checkpoint holds the stage's result; no second stage.
    (out / "contrastive.json").unlink()
    train(config, resume=True, progress=False, report=False)  # the report: read above
    assert not (out / "contrastive.json").exists()
    assert (out / "best.weights.h5").read_bytes() == weights


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--contrastive", "-1"], "--contrastive -1"),
        (["--contrastive", "2", "--task", "multilabel", "--label-sep", ","], "--task"),
        (["--contrastive", "2", "--strategy", "mirrored"], "--strategy"),
        (["--contrastive", "2", "--long", "chunk"], "--long"),
    ],
)
def test_bad_contrastive_settings_get_one_line(tmp_path, tiny_data, flags, named):
    out = tmp_path / "run"
    proc = run_script("train", str(tiny_data), "--out", str(out), *flags)
    line = one_error_line(proc)
    assert proc.returncode == 2 and named in line and "--contrastive" in line, line
    assert not out.exists()


def test_contrastive_settings_are_checked_in_the_config():
    with pytest.raises(ConfigError, match="--contrastive"):
        TrainConfig(contrastive=-2)


def test_the_stage_is_on_by_default_for_few_short_single_label_texts_only():
    limit, words = policy.CONTRASTIVE_MAX_TEXTS, policy.CONTRASTIVE_MAX_WORDS
    short, long = "a few words", " ".join(["word"] * (words + 1))
    assert policy.contrastive(None, [short] * limit, None)[0] == policy.CONTRASTIVE_ITERATIONS
    assert policy.contrastive(None, [short] * (limit + 1), None)[0] == 0
    iterations, why = policy.contrastive(None, [long] * 3 + [short] * 2, None)
    assert iterations == 0 and f"median text {words + 1} words" in why
    iterations, why = policy.contrastive(None, [short] * 10, "--task multilabel")
    assert iterations == 0 and "--task multilabel" in why
    assert policy.contrastive(5, [long] * 10**3, None)[0] == 5  # an explicit value wins
    assert policy.contrastive(0, [short], None)[0] == 0


def test_the_resolved_stage_is_what_config_json_records(tmp_path, tiny_data):
    def resolved(data=tiny_data, **data_kw):
        config = RunConfig(DataConfig(str(data), **data_kw), out=str(tmp_path / "r"))
        splits = load_splits(config.data, config.seed)
        return resolve_for_data(config, splits)[0].train.contrastive

    assert resolved() == policy.CONTRASTIVE_ITERATIONS  # 30 training texts, single-label
    multilabel = tmp_path / "ml.csv"
    rows = "".join(f"t{i} a b,{'x,y' if i % 2 else 'x'}\n" for i in range(20))
    multilabel.write_text("text,label\n" + rows.replace(",x,y", ',"x,y"'))
    assert resolved(multilabel, task="multilabel", label_sep=",") == 0


def test_one_bar_on_a_terminal_counts_the_stage_and_every_epoch(tmp_path, tiny_data, tiny_encoder):
    import os
    import pty
    import re
    import subprocess
    import sys

    out = tmp_path / "run"
    args = [str(tiny_data), "--out", str(out), "--model", tiny_encoder, "--seq-len", "32"]
    args += ["--epochs", "2", "--batch-size", "8", "--contrastive", "2"]
    leader, follower = pty.openpty()  # stderr a terminal, as a user's
    proc = subprocess.Popen(
        [sys.executable, "-m", "bertclf", "train", *args],
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait() == 0, seen[-2000:]
    text = seen.decode("utf-8", "replace")
    stage = json.loads((out / "contrastive.json").read_text())["steps"]
    total = stage + 2 * 4  # 30 training texts in batches of 8: 4 steps an epoch
    totals = {
        (desc, int(t))
        for desc, t in re.findall(r"(contrastive|epoch \d/2)\S*\s.*?\d+/(\d+) ", text)
    }
    assert {t for _, t in totals} == {total}, totals  # one bar, one total: the run's
    assert {d.split()[0] for d, _ in totals} == {"contrastive", "epoch"}

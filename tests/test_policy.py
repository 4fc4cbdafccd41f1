"""The training policy: budget, class weights, the kept epoch, early stopping, the baseline."""

import json

import numpy as np
import pytest
import tensorflow as tf

from bertclf import DataConfig, ModelConfig, RunConfig, TrainConfig, load_run
from bertclf.config import policy
from bertclf.errors import ConfigError
from bertclf.model import encoders
from bertclf.training.fine_tuning import train

from conftest import one_error_line, run_script, write_folder


def test_budget_gives_small_data_enough_steps_and_large_data_no_more():
    assert policy.budget(None, 1780, 16)[0] == 3  # BBC: 112 steps an epoch
    assert policy.budget(None, 682, 16)[0] == 7  # 43 steps an epoch: 301 steps
    assert policy.budget(None, 204, 16)[0] == 20  # 13 steps an epoch: capped at 20
    assert policy.budget(5, 204, 16) == (5, "--epochs 5: 65 optimizer steps (13 an epoch)")


def test_a_high_rate_warns_only_for_a_large_encoder():
    assert policy.learning_rate_warning(policy.LEARNING_RATE, 384) is None  # the default encoder
    assert policy.learning_rate_warning(3e-5, 768) is None  # BERT-base at its usual rate
    warning = policy.learning_rate_warning(1e-4, 768)
    assert "--lr 1e-4" in warning and "hidden 768" in warning and "--lr 3e-5" in warning
    # Rates as papers write them, not as Python's :g does ("0.0001", "3e-05").
    assert [policy.rate(r) for r in (1e-4, 3e-5, 2.5e-5, 0.001)] == [
        "1e-4",
        "3e-5",
        "2.5e-5",
        "1e-3",
    ]


def test_class_weights_auto_past_the_ratio():
    assert policy.class_weights("auto", [0] * 13 + [1] * 10, 2)[0] is None  # 1.3 < 1.5
    weights, _ = policy.class_weights("auto", [0] * 30 + [1] * 10, 2)
    assert weights == pytest.approx([40 / (2 * 30), 40 / (2 * 10)])  # scikit-learn's balanced
    assert policy.class_weights("none", [0] * 30 + [1] * 10, 2)[0] is None
    assert policy.class_weights("balanced", [0] * 10 + [1] * 10, 2)[0] == [1.0, 1.0]


def test_selection_key_prefers_macro_f1_then_lower_loss():
    rows = [
        {"epoch": 1, "val_macro_f1": 0.40, "val_accuracy": 0.74, "val_loss": 0.55},
        {"epoch": 2, "val_macro_f1": 0.80, "val_accuracy": 0.74, "val_loss": 0.30},
        {"epoch": 3, "val_macro_f1": 0.80, "val_accuracy": 0.74, "val_loss": 0.10},
        {"epoch": 4, "val_macro_f1": 0.79, "val_accuracy": 0.80, "val_loss": 0.05},
    ]
    best = lambda select: max(rows, key=lambda r: policy.selection_key(r, select))["epoch"]  # noqa: E731
    assert best("macro_f1") == 3  # ties with epoch 2 on macro-F1, lower loss
    assert best("accuracy") == 4
    assert best("loss") == 4


def test_stopper():
    stop = policy.Stopper(patience=2)
    assert [stop.update(k) for k in (True, False, True, False, False)] == [
        False,
        False,
        False,
        False,
        True,
    ]
    assert not any(policy.Stopper(None).update(False) for _ in range(50))


def test_class_weighted_loss_equals_a_hand_computation(tiny_encoder):
    import keras_hub

    from bertclf.model.classifier import BertClassifier

    backbone = keras_hub.models.BertBackbone.from_preset(tiny_encoder)
    model = BertClassifier(backbone, num_labels=3)
    logits = tf.constant([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]])
    labels = tf.constant([0, 2, 1])
    weights = [0.5, 2.0, 1.5]
    got = model.per_example_loss(labels, logits, weights).numpy()
    z = logits.numpy()
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    want = [-log_softmax[i, y] * weights[y] for i, y in enumerate([0, 2, 1])]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_bad_policy_values_are_one_line(tmp_path):
    for flag, value, needle in (
        ("--select", "f2", "invalid choice: 'f2'"),
        ("--class-weight", "heavy", "invalid choice: 'heavy'"),
        ("--split", "random", "invalid choice: 'random'"),
        ("--patience", "0", "--patience 0 is invalid"),
        ("--ema", "1", "--ema 1.0 is invalid"),
        ("--layer-decay", "0", "--layer-decay 0.0 is invalid"),
    ):
        proc = run_script("train", str(tmp_path), "--out", str(tmp_path / "r"), flag, value)
        assert needle in one_error_line(proc)
    with pytest.raises(ConfigError, match="--patience 0"):
        TrainConfig(patience=0)
    one = write_folder(tmp_path / "one", labels=["bug"])
    assert "at least two" in one_error_line(run_script("baseline", str(one)))
    (tmp_path / "empty").mkdir()
    assert "found 0 class sub-folder" in one_error_line(
        run_script("baseline", str(tmp_path / "empty"))
    )


def test_early_stopping_and_the_baseline_beside_a_run(tmp_path, tiny_data, tiny_encoder):
    cfg = RunConfig(
        data=DataConfig(str(tiny_data), test=str(tiny_data)),
        out=str(tmp_path / "run"),
        model=ModelConfig(model=tiny_encoder, seq_len=32),
        # A learning rate too small to change a prediction: epoch 1 is kept, nothing beats it.
        train=TrainConfig(
            epochs=6,
            batch_size=8,
            lr=1e-12,
            patience=2,
            precision="fp32",
            reinit_layers=1,
            contrastive=0,  # the stage would move the embeddings this test compares
        ),
    )
    result = train(cfg, progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]  # stopped 2 epochs after 1
    assert result.kept_epoch == 1 and [r["kept"] for r in result.history] == [True, False, False]
    run = tmp_path / "run"
    saved = json.loads((run / "config.json").read_text())["config"]
    assert saved["train"]["epochs"] == 6 and saved["train"]["class_weight"] == "none"
    assert saved["train"]["reinit_layers"] == 1
    # --reinit-layers 1 drew the tiny encoder's one layer afresh and left the embeddings.
    trained = load_run(run).model.backbone
    pretrained, _ = encoders.load(encoders.resolve(tiny_encoder))
    for mine, theirs in zip(trained.weights, pretrained.weights, strict=True):
        assert mine.path == theirs.path
        if mine.path.startswith("transformer_layer_0/") and mine.path.endswith("kernel"):
            assert np.abs(mine.numpy() - theirs.numpy()).max() > 1e-3, mine.path
        elif not mine.path.startswith("transformer_layer_0/"):
            np.testing.assert_allclose(mine.numpy(), theirs.numpy(), atol=1e-6)
    assert saved["data"]["split"] == "stratified"  # resolved from auto on tiny data
    # The baseline inside the run equals `bertclf baseline` on the same split.
    proc = run_script("baseline", str(tiny_data), "--test", str(tiny_data), "--json")
    assert proc.returncode == 0, proc.stderr
    cli = json.loads(proc.stdout)
    inside = json.loads((run / "baseline.json").read_text())
    assert cli == inside == result.baseline
    assert result.history[0]["baseline_val_macro_f1"] == inside["validation"]["macro_f1"]
    test_metrics = json.loads((run / "test_metrics.json").read_text())
    assert test_metrics["baseline"] == inside["test"]
    assert "beside the linear baseline" in (run / "report.html").read_text()

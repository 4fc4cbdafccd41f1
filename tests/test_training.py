"""Training: run directory contents, no retracing, resume, mirrored strategy, real encoder.

Runs whose report no test here reads train with `report=False` (half a tiny run's time);
the report is read in test_train_writes_a_complete_run, test_test_set_scored_with_best_weights
and tests/test_report.py.
"""

import json
import logging
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from bertclf import DataConfig, ModelConfig, RunConfig, TrainConfig
from bertclf.errors import RunError
from bertclf.model.rundir import read_meta
from bertclf.prediction.trained_run import load_run
from bertclf.training.fine_tuning import train

from conftest import save_tiny_encoder, write_folder


def tiny_config(data, out, encoder, **train_kw):
    # fp32 unless a test asks otherwise: resume and mirrored compare weights closely. No
    # contrastive stage (tests/test_contrastive.py has its own runs).
    train_kw = {
        "epochs": 2,
        "batch_size": 8,
        "lr": 1e-3,
        "precision": "fp32",
        "contrastive": 0,
        **train_kw,
    }
    return RunConfig(
        data=DataConfig(str(data)),
        out=str(out),
        model=ModelConfig(model=encoder, seq_len=64),
        train=TrainConfig(**train_kw),
        seed=3,
    )


def scalars_and_histograms(logdir):
    tags = {}
    for path in logdir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                kind = (
                    "histo" if value.metadata.plugin_data.plugin_name == "histograms" else "scalar"
                )
                tags.setdefault(value.tag, set()).add((kind, event.step))
    return tags


def test_train_writes_a_complete_run(tmp_path, tiny_data, tiny_encoder):
    out = tmp_path / "run"
    result = train(tiny_config(tiny_data, out, tiny_encoder, epochs=3), progress=False)

    for name in ("config.json", "labels.txt", "vocab.txt", "best.weights.h5", "history.json"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "config.json").read_text())
    assert "labels" not in meta  # labels.txt is their one copy
    assert meta["encoder"]["kind"] == "local"
    assert meta["config"]["train"]["bucketing"] == "on"  # resolved, not "auto"
    assert (out / "labels.txt").read_text().split() == ["billing", "bug", "feature"]
    assert read_meta(out)["labels"] == ["billing", "bug", "feature"]
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    # Batches had several widths (bucketing) and a short last batch: still one trace each.
    assert result.traces == {"train_step": 1, "eval_step": 1}
    # best.weights.h5 holds the kept epoch: the best validation macro-F1, ties to the lower
    # validation loss (the default --select).
    kept = max(history, key=lambda r: (r["val_macro_f1"], -r["val_loss"]))
    assert result.kept_epoch == kept["epoch"] and history[kept["epoch"] - 1]["kept"]
    best = kept["val_accuracy"]
    assert result.best_val_accuracy == pytest.approx(best)
    run = load_run(out)
    from bertclf.data.datasets import load_splits

    val = load_splits(run.config.data, run.config.seed).val
    acc = float(np.mean(run.predict_proba(val.texts).argmax(1) == np.array(val.labels)))
    assert acc == pytest.approx(best, abs=1e-6)

    train_tags = scalars_and_histograms(out / "logs" / "train")
    val_tags = scalars_and_histograms(out / "logs" / "validation")
    for tag in ("loss", "accuracy", "learning_rate"):
        assert {s for _, s in train_tags[tag]} == {1, 2, 3}
        assert {s for _, s in val_tags[tag]} == {1, 2, 3}
    histos = [t for t, v in train_tags.items() if ("histo", 3) in v]
    assert sorted(histos) == sorted(
        f"adam_{m}/classifier/{w}" for m in "mv" for w in ("kernel", "bias")
    )


def test_learning_rate_warms_up_and_decays(tmp_path, tiny_data, tiny_encoder):
    result = train(
        tiny_config(tiny_data, tmp_path / "r", tiny_encoder, epochs=3, warmup=0.5),
        progress=False,
        report=False,
    )
    lrs = [r["learning_rate"] for r in result.history]
    # 29 train examples / batch 8 = 4 steps per epoch, 12 steps, warm-up 6.
    assert lrs == pytest.approx([1e-3 * 4 / 6, 1e-3 * 4 / 6, 0.0], abs=1e-9)


def test_a_bert_base_size_encoder_at_a_high_rate_warns(tmp_path, tiny_data, caplog):
    """Hidden size 768 (one layer, to stay quick) at 1e-4: the run logs the warning."""
    wide = save_tiny_encoder(tmp_path / "wide", hidden_dim=768)
    with caplog.at_level(logging.WARNING, logger="bertclf.training.fine_tuning"):
        cfg = tiny_config(tiny_data, tmp_path / "r", wide, epochs=1, lr=1e-4)
        train(cfg, progress=False, report=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith("--lr 1e-4 is above the rates published") for w in warnings)


def test_the_kept_weights_are_the_validated_moving_average(tmp_path, tiny_data, tiny_encoder):
    from bertclf.data.datasets import load_splits
    from bertclf.evaluation.evaluator import evaluate_examples
    from bertclf.training.optimization import average_decay

    # The rule, by hand: (1 + t) / (10 + t) over the first steps, then the --ema cap.
    got = [float(average_decay(t, 0.9)) for t in (0, 1, 71, 500)]
    np.testing.assert_allclose(got, [0.1, 2 / 11, 72 / 81, 0.9], rtol=1e-6)
    out = tmp_path / "run"
    # One epoch: it is the kept one, and the checkpoint holds the same step's averages.
    cfg = tiny_config(tiny_data, out, tiny_encoder, epochs=1, ema=0.9)
    result = train(cfg, progress=False, report=False)
    assert json.loads((out / "config.json").read_text())["config"]["train"]["ema"] == 0.9
    kept = result.history[0]
    # What was validated is what was kept: the kept weights give the row's figures again.
    run = load_run(out)
    m = evaluate_examples(run, load_splits(cfg.data, cfg.seed).val)
    assert m["macro_f1"] == pytest.approx(kept["val_macro_f1"], abs=1e-6)
    assert m["accuracy"] == pytest.approx(kept["val_accuracy"], abs=1e-6)
    # The kept weights are the averages; the checkpoint also holds the raw weights
    # (for --resume), which differ from them after a few steps.
    state = _final_state(out)
    kept_weights = [v.numpy() for v in run.model.trainable_variables]
    for i, value in enumerate(kept_weights):
        np.testing.assert_array_equal(value, state[f"averages/{i}/.ATTRIBUTES/VARIABLE_VALUE"])
    head = kept_weights[-2]  # the dense head's kernel [hidden, 3]
    raw = [v for k, v in state.items() if k.startswith("model/") and v.shape == head.shape]
    assert raw and not any(np.array_equal(v, head) for v in raw)


def test_existing_run_is_never_overwritten_silently(tmp_path, tiny_data, tiny_encoder):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(RunError, match="already exists; pass --resume .* or --overwrite"):
        train(tiny_config(tiny_data, out, tiny_encoder, epochs=1), progress=False, report=False)
    assert (out / "precious.txt").read_text() == "keep me"
    cfg = tiny_config(tiny_data, out, tiny_encoder, epochs=1)
    train(cfg, overwrite=True, progress=False, report=False)
    assert not (out / "precious.txt").exists() and (out / "best.weights.h5").is_file()


def test_resume_refuses_changed_settings(tmp_path, tiny_data, tiny_encoder):
    out = tmp_path / "run"
    train(tiny_config(tiny_data, out, tiny_encoder, epochs=1), progress=False, report=False)
    with pytest.raises(RunError, match="train.lr: run has 0.001, now 0.002"):
        train(
            tiny_config(tiny_data, out, tiny_encoder, epochs=1, lr=2e-3),
            resume=True,
            progress=False,
        )


KILL_MID_EPOCH = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from bertclf.training.trainer import Trainer
from bertclf.training.fine_tuning import train
from test_training import tiny_config

original = Trainer.run_epoch

def run_epoch(self, epoch):
    if epoch == 1:  # the second epoch: die on its third step, like kill -9
        step, calls = self.run_step, []
        def dying(batch):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return step(batch)
        self.run_step = dying
    return original(self, epoch)

Trainer.run_epoch = run_epoch
cfg = tiny_config({data!r}, {out!r}, {encoder!r}, epochs=3, checkpoint_every={every})
train(cfg, progress=False, report=False)
"""


def _final_state(run_dir):
    """Every tensor of the last checkpoint: weights, Adam moments, step, epoch, best."""
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints"))
    skip = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE")
    names = [n for n in reader.get_variable_to_shape_map() if n not in skip]  # saves: not state
    return {n: reader.get_tensor(n) for n in names}


def test_resume_after_kill_matches_uninterrupted(tmp_path, tiny_data, tiny_encoder, caplog):
    from pathlib import Path

    tests = str(Path(__file__).parent)
    full = tmp_path / "full"
    train(tiny_config(tiny_data, full, tiny_encoder, epochs=3), progress=False, report=False)
    # Killed on the third step of epoch 2: checkpoints at epoch ends only resume after
    # epoch 1; with --checkpoint-every 1, at step 3 of epoch 2 (its first two steps kept).
    for every, resumed_at in [(0, "after epoch 1 of 3"), (1, "epoch 2 at step 3 of")]:
        broken = tmp_path / f"broken{every}"
        script = KILL_MID_EPOCH.format(
            tests=tests, data=str(tiny_data), out=str(broken), encoder=tiny_encoder, every=every
        )
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == -9, proc.stderr[-2000:]
        history = json.loads((broken / "history.json").read_text())
        assert [r["epoch"] for r in history] == [1]  # epoch 2 was not finished

        caplog.clear()
        with caplog.at_level(logging.INFO, logger="bertclf"):
            result = train(
                tiny_config(tiny_data, broken, tiny_encoder, epochs=3),
                resume=True,
                progress=False,
                report=False,
            )
        assert f"--resume: continuing {resumed_at}" in caplog.text
        assert [r["epoch"] for r in result.history] == [1, 2, 3]
        a, b = _final_state(full), _final_state(broken)
        assert a.keys() == b.keys() and len(a) > 40
        for name in a:  # weights, Adam moments, dropout's random state, counters
            np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=f"{every}: {name}")


MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, {tests!r})
import numpy as np
from bertclf.prediction.trained_run import load_run
from bertclf.training.fine_tuning import train
from test_training import tiny_config
import dataclasses

results = {{}}
weights = {{}}
for strategy in ("mirrored", "default"):
    cfg = tiny_config({data!r}, {out!r} + strategy, {encoder!r}, epochs=2, strategy=strategy)
    # --long chunk at seq-len 8: most texts are 2-4 windows, pooled per text on each replica.
    model = dataclasses.replace(cfg.model, dropout=0.0, seq_len=8, long="chunk", max_chunks=4)
    cfg = dataclasses.replace(cfg, model=model)
    r = train(cfg, progress=False, report=False)
    long = json.load(open({out!r} + strategy + "/config.json"))["config"]["model"]["long"]
    loss = r.history[-1]["train_loss"]
    results[strategy] = {{"replicas": r.replicas, "loss": loss, "long": long}}
    weights[strategy] = load_run({out!r} + strategy).model.get_weights()
diff = max(float(np.max(np.abs(a - b))) for a, b in zip(weights["mirrored"], weights["default"]))
results["max_weight_diff"] = diff
print(json.dumps(results))
"""


def test_mirrored_strategy_on_two_logical_cpus(tmp_path, tiny_data, tiny_encoder):
    from pathlib import Path

    script = MIRRORED.format(
        tests=str(Path(__file__).parent),
        data=str(tiny_data),
        out=str(tmp_path / "run-"),
        encoder=tiny_encoder,
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["mirrored"]["replicas"] == 2 and res["default"]["replicas"] == 1
    assert res["mirrored"]["long"] == res["default"]["long"] == "chunk"
    # Without dropout, two replicas with summed gradients train the same model as one
    # device, up to float noise; this also holds for the short last batch, which splits
    # unevenly across the replicas (the loss is divided by the global batch size), and for
    # windowed texts (a batch splits by texts, each replica pools its own texts' windows).
    # The plain (one-window) path under mirrored: tests/test_multilabel.py.
    assert res["mirrored"]["loss"] == pytest.approx(res["default"]["loss"], rel=1e-5)
    assert res["max_weight_diff"] < 1e-4


@pytest.mark.slow
def test_real_offline_encoder_trains(tmp_path):
    data = write_folder(tmp_path / "d", per_class=8)
    cfg = RunConfig(
        data=DataConfig(str(data)),
        out=str(tmp_path / "run"),
        model=ModelConfig(seq_len=16),
        train=TrainConfig(epochs=1, batch_size=8),
    )
    result = train(cfg, progress=False)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["encoder"]["kind"] == "package" and meta["backbone"]["hidden_dim"] == 384
    assert meta["backbone"]["num_layers"] == 6
    assert result.history[0]["train_loss"] > 0 and np.isfinite(result.history[0]["val_loss"])
    probs = load_run(tmp_path / "run").predict_proba(["refund my invoice"])
    assert probs.shape == (1, 3) and probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_test_set_scored_with_best_weights(tmp_path, tiny_data, tiny_encoder, caplog):
    test = write_folder(tmp_path / "test", per_class=3, seed=9)
    # A training text in the test set (case and punctuation changed): the run says so.
    copied = (tiny_data / "bug" / "003.txt").read_text()
    (test / "bug" / "002.txt").write_text(copied.upper() + "!")
    exclude = tmp_path / "checked.txt"
    exclude.write_text("billing/001.txt\n")
    cfg = tiny_config(tiny_data, tmp_path / "run", tiny_encoder, epochs=1)
    import dataclasses

    data = dataclasses.replace(cfg.data, test=str(test), exclude=str(exclude))
    cfg = dataclasses.replace(cfg, data=data)
    with caplog.at_level(logging.INFO, logger="bertclf"):
        result = train(cfg, progress=False)
    m = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert m == result.test_metrics and m["examples"] == 9
    assert np.array(m["confusion_matrix"]).sum() == 9
    checks = json.loads((tmp_path / "run" / "data_checks.json").read_text())
    assert checks["same_as_training"]["test"] == 1 and checks["conflicting_groups"] == 0
    warned = [r for r in caplog.records if "data checks" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["excluded"] == ["billing/001.txt"]
    assert meta["config"]["data"]["exclude"] == str(exclude)
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Data checks" in page and "test texts also in training" in page


@pytest.mark.parametrize("options", [{"jit": "on"}, {"precision": "bf16"}, {"bucketing": "off"}])
def test_speed_options_train_and_trace_once(tmp_path, tiny_data, tiny_encoder, options):
    result = train(
        tiny_config(tiny_data, tmp_path / "run", tiny_encoder, epochs=2, **options),
        progress=False,
        report=False,
    )
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    for key, value in options.items():
        assert meta["config"]["train"][key] == value
    # XLA compiles one program per batch width; the tf.function itself is traced once.
    assert result.traces == {"train_step": 1, "eval_step": 1}
    assert all(np.isfinite(r["train_loss"]) for r in result.history)
    row = result.history[-1]
    assert row["real_tokens_per_second"] <= row["padded_tokens_per_second"]
    if options.get("precision") == "bf16":  # the export computes as the run did: parity holds
        assert keras.mixed_precision.global_policy().name == "float32"  # the caller's, restored
        from bertclf.export.exporter import export

        exported = export(tmp_path / "run", tmp_path / "models")
        assert exported.max_abs_diff <= 1e-5
        meta = json.loads((exported.path / "assets.extra" / "bertclf.json").read_text())
        assert meta["compute_dtype"] == "bfloat16"  # says what serving hosts need
    if options.get("bucketing") == "off":  # fixed padding: every batch is seq_len wide
        n_train = 30  # 36 texts, stratified split: 2 of 12 per class to validation
        assert row["padded_tokens_per_second"] == pytest.approx(
            n_train * 64 / row["seconds"], rel=1e-6
        )

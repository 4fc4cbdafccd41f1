"""What a score means: temperature, thresholds on small support, abstaining, the OOD score.

Unit tests on constructed numbers, then one tiny run (120 texts, 24 for validation: enough
to fit a temperature) trained with --abstain-precision, exported and read back in a
fresh process, as a user would.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from bertclf.evaluation import thresholds
from bertclf.evaluation.metrics import calibration_metrics, expected_calibration_error
from bertclf.model.calibration import confidence_np, probabilities_np
from bertclf.training.calibration import (
    abstain_threshold,
    fit_temperature,
    held_out_nll,
    nll,
)

from conftest import make_texts, one_error_line, run_script, write_folder

# ------------------------------------------------------------------ units


def overconfident(n=400, seed=0):
    """Logits of a 3-class model that is right 70% of the time but sure of every answer."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    guess = np.where(rng.random(n) < 0.7, labels, (labels + 1) % 3)
    logits = rng.normal(0, 0.5, (n, 3))
    logits[np.arange(n), guess] += 6.0
    return logits, labels


@pytest.mark.parametrize("head", ["softmax", "multilabel"])
def test_the_fitted_temperature_minimises_the_nll_on_a_grid(head):
    logits, labels = overconfident()
    if head == "multilabel":  # 3 labels, each a binary decision with enough support
        labels = np.eye(3, dtype=int)[labels]
    t = fit_temperature(logits, labels, head)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 2001))
    if head == "softmax":
        best = grid[np.argmin([nll(logits, labels, head, g) for g in grid])]
        assert t.shape == (1,) and t[0] == pytest.approx(best, rel=0.01)
        assert t[0] > 1.5  # an over-confident model is softened
    else:
        for j in range(3):
            column = [nll(logits[:, [j]], labels[:, [j]], head, g) for g in grid]
            assert t[j] == pytest.approx(grid[np.argmin(column)], rel=0.01)
    before = calibration_metrics(labels, probabilities_np(logits, head))
    after = calibration_metrics(labels, probabilities_np(logits / t, head))
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"]


def test_a_temperature_never_moves_the_argmax():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (500, 5))
    for t in (0.1, 0.7, 1.0, 2.5, 19.0):
        assert (probabilities_np(logits / t, "softmax").argmax(1) == logits.argmax(1)).all()


def test_a_temperature_that_does_not_help_held_out_texts_is_refused():
    logits, labels = overconfident()
    at_one, fitted = held_out_nll(logits, labels, "softmax")
    assert fitted < at_one  # over-confidence: the fitted T helps texts it was not fitted on
    # A calibrated model already: a fitted T can only follow the noise.
    rng = np.random.default_rng(2)
    p = rng.uniform(0.34, 1.0, 400)
    labels = (rng.random(400) > p).astype(int)  # right with probability p
    logits = np.log(np.c_[p, 1 - p])
    at_one, fitted = held_out_nll(logits, labels, "softmax")
    assert fitted >= at_one - 0.002


def test_ece_of_a_calibrated_model_is_small_and_of_an_overconfident_one_large():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.5, 1.0, 5000)
    right = rng.random(5000) < p
    probs = np.c_[p, 1 - p]
    labels = np.where(right, 0, 1)
    assert expected_calibration_error(labels, probs) < 0.03
    assert expected_calibration_error(labels, np.c_[np.full(5000, 0.99), np.full(5000, 0.01)]) > 0.2


def test_a_label_with_two_validation_positives_keeps_the_fallback_threshold():
    labels = np.zeros((60, 2), int)
    labels[:30, 0] = 1
    labels[:2, 1] = 1  # two positives: one text would choose the cut
    probs = np.where(labels == 1, 0.2, 0.05).astype(np.float32)
    cuts = thresholds.tune(labels, probs)
    assert cuts[0] < 0.5 and cuts[1] == 0.5
    assert thresholds.too_few(labels).tolist() == [False, True]


def test_the_abstain_threshold_is_the_lowest_that_reaches_the_precision():
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 1, 0, 1, 0])
    t, coverage, reached = abstain_threshold(confidence, correct, 0.75)
    assert (t, coverage, reached) == (0.7, 5 / 6, 0.8)
    assert abstain_threshold(confidence, correct, 1.0)[0] == 0.9
    assert abstain_threshold(confidence[3:], correct[3:], 1.0)[0] is None


def test_multilabel_confidence_is_the_least_sure_decision():
    scores = np.array([[0.9, 0.2, 0.6]])
    assert confidence_np(scores, np.array([0.5, 0.5, 0.5]))[0] == pytest.approx(0.6)
    assert confidence_np(scores, None)[0] == pytest.approx(0.9)


# ------------------------------------------------------------------ a real tiny run

STRANGE = ["zz qq 77 xx", "kk 0 9 jj vv", "ww yy 55 hh ll", "qq xx zz kk"]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, tiny_encoder):
    from bertclf import DataConfig, ModelConfig, RunConfig, TrainConfig
    from bertclf.training.fine_tuning import train

    root = tmp_path_factory.mktemp("calibrated")
    data = write_folder(root / "data", per_class=40)
    cfg = RunConfig(
        data=DataConfig(str(data)),
        out=str(root / "run"),
        model=ModelConfig(model=tiny_encoder, seq_len=32),
        train=TrainConfig(epochs=3, batch_size=8, lr=1e-3, contrastive=0, abstain_precision=0.9),
        seed=1,
    )
    train(cfg, progress=False)
    return root / "run"


def test_a_run_is_calibrated_and_its_predictions_carry_abstain_and_ood(calibrated):
    from bertclf import load_run

    report = json.loads((calibrated / "calibration.json").read_text())
    assert report["validation"]["examples"] == 24
    for key in ("ece", "nll", "brier"):
        assert {f"{key}_before", f"{key}_after"} <= set(report["validation"])
    fitted = report["fitted"]
    run = load_run(calibrated)
    texts = make_texts("billing", 6, 9) + make_texts("bug", 6, 9) + STRANGE
    out = run.outputs(texts)
    logits, _ = run.logits_and_vectors(texts)
    assert (out["scores"].argmax(1) == logits.argmax(1)).all()  # calibration keeps labels
    np.testing.assert_allclose(
        out["scores"], probabilities_np(logits / fitted["temperature"], "softmax"), atol=1e-5
    )
    # The abstain flag follows the stored threshold.
    assert fitted["abstain_threshold"] == report["abstain"]["threshold"]
    expected = out["scores"].max(1) < fitted["abstain_threshold"]
    assert out["abstain"].tolist() == expected.tolist()
    # Texts from another vocabulary score as less like the training data.
    inside, strange = out["ood_score"][:12], out["ood_score"][12:]
    assert np.median(strange) > np.max(np.median(inside)) and strange.min() > np.median(inside)
    rows = run.predict(texts[:1])
    assert set(rows[0]) == {"label", "probability", "probabilities", "abstain", "ood_score"}
    page = (calibrated / "report.html").read_text()
    assert "What a score means" in page and "Reliability, before and after calibration" in page


def test_the_export_gives_predicts_calibrated_scores_in_a_fresh_process(calibrated, tmp_path):
    from bertclf import load_run

    done = run_script("export", str(calibrated), "--to", str(tmp_path / "m"), "--name", "c")
    assert done.returncode == 0, done.stderr[-2000:]
    meta = json.loads((tmp_path / "m" / "c" / "1" / "assets.extra" / "bertclf.json").read_text())
    assert meta["calibration"]["abstain_threshold"] is not None
    texts = [*make_texts("feature", 4, 5), *STRANGE, ""]
    done = run_script("predict", str(tmp_path / "m" / "c"), *texts, "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    expected = load_run(calibrated).outputs(texts)
    got = np.array([[r["probabilities"][n] for n in ("billing", "bug", "feature")] for r in rows])
    np.testing.assert_allclose(got, expected["scores"], atol=1e-5)
    np.testing.assert_allclose([r["ood_score"] for r in rows], expected["ood_score"], rtol=1e-4)
    assert [r["abstain"] for r in rows] == expected["abstain"].tolist()


def test_too_few_validation_positives_warn_and_keep_half(tmp_path, tiny_encoder, caplog):
    """A multi-label run whose rare label has a handful of validation positives."""
    from bertclf import DataConfig, ModelConfig, RunConfig, TrainConfig
    from bertclf.data.datasets import load_splits
    from bertclf.prediction.trained_run import load_run
    from bertclf.training.calibration import calibrate
    from bertclf.training.fine_tuning import train

    rows = [(t, ["billing"]) for t in make_texts("billing", 60, 1)]
    rows += [(t, ["bug"]) for t in make_texts("bug", 60, 1)]
    rows += [(t, ["feature", "bug"]) for t in make_texts("feature", 10, 1)]  # rare
    data = tmp_path / "ml.jsonl"
    data.write_text("".join(json.dumps({"text": t, "labels": y}) + "\n" for t, y in rows))
    cfg = RunConfig(
        data=DataConfig(str(data), task="multilabel", label_field="labels"),
        out=str(tmp_path / "ml"),
        model=ModelConfig(model=tiny_encoder, seq_len=32),
        train=TrainConfig(epochs=1, batch_size=16, lr=1e-3, contrastive=0),
        seed=1,
    )
    train(cfg, progress=False, report=False)  # the thresholds are the subject
    splits = load_splits(cfg.data, cfg.seed)
    labels = np.asarray(splits.val.labels)
    few = thresholds.too_few(labels)
    assert few.tolist() == [False, False, True], labels.sum(0)  # billing, bug, feature
    caplog.set_level(logging.WARNING)
    caplog.clear()  # training warned once already; calibrating again warns again
    calibrate(load_run(tmp_path / "ml"), splits, cfg)
    stored = json.loads((tmp_path / "ml" / "thresholds.json").read_text())
    assert stored["thresholds"][2] == 0.5 and stored["tuned"] == [True, True, False]
    assert stored["positives"] == labels.sum(0).tolist()
    warned = [r.getMessage() for r in caplog.records if "stay at 0.5" in r.getMessage()]
    assert len(warned) == 1 and "feature (" in warned[0]


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--abstain-precision", "0", "--abstain-precision"),
        ("--abstain-precision", "1.5", "(0, 1]"),
        ("--calibrate", "platt", "--calibrate"),
    ],
)
def test_bad_calibration_flags_are_one_line(tmp_path, flag, value, named):
    data = write_folder(tmp_path / "data")
    done = run_script("train", str(data), "--out", str(tmp_path / "run"), flag, value)
    assert named in one_error_line(done)
    assert not (tmp_path / "run").exists()

"""After training: fit what makes a score mean something (`bertclf.model.calibration`).

`calibrate(run, splits)` runs once, on the kept weights, before the report:

1. The temperature (`--calibrate temperature`, the default): the T that minimises the
   validation split's negative log-likelihood of softmax(logits / T) (sigmoid for a
   binary sigmoid head), searched on log T in [1/20, 20] (Guo et al. 2017). Multi-label:
   one T for all labels first, then each label with at least `MIN_SUPPORT` validation
   positives and negatives gets its own; the others keep the shared one. A validation
   split of fewer than `MIN_VALIDATION` texts is too small to fit even one number: the
   run says so and keeps T = 1. So does a run whose temperature, fitted on four fifths
   of the validation split, does not lower the NLL of the fifth left out (`held_out_nll`,
   5 folds): a split with few mistakes lets a fitted T follow those few texts.
2. Multi-label thresholds, tuned again on the calibrated scores (same rule as during
   training, `bertclf.evaluation.thresholds`, with its fallback to 0.5 for labels with
   too few validation examples, which the run names in a warning).
3. The out-of-distribution score: class means of the training texts' sentence vectors
   and the inverse of their shared covariance, estimated with Ledoit-Wolf shrinkage
   (scikit-learn; stable when texts are fewer than the vector's 384 dimensions), on at
   most `OOD_TEXTS` training texts; its threshold is the validation split's 99th
   percentile.
4. With `--abstain-precision P`: the lowest confidence at which the validation texts at
   or above it are right at least P of the time.

Everything measured goes to RUN/calibration.json: ECE (15 bins), NLL and Brier before
and after, on validation and (when the run has one) test, with the reliability bins the
report draws.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from bertclf.config.run import RunConfig
from bertclf.evaluation import thresholds as thresholds_lib
from bertclf.evaluation.metrics import calibration_metrics, reliability
from bertclf.fileio import read_json, write_json
from bertclf.model import calibration as calibration_lib
from bertclf.model import rundir
from bertclf.model.calibration import Calibration, confidence_np, probabilities_np

logger = logging.getLogger(__name__)

MIN_VALIDATION = 20  # validation texts needed to fit a temperature
OOD_TEXTS = 5000  # training texts the OOD statistics are fitted on, at most
LOG_T_BOUNDS = (np.log(1 / 20), np.log(20))
MIN_SUPPORT = thresholds_lib.MIN_SUPPORT


# ------------------------------------------------------------------ temperature


def nll(logits: np.ndarray, labels: np.ndarray, head: str, temperature) -> float:
    """Mean negative log-likelihood of `labels` under probabilities(logits / T)."""
    probs = probabilities_np(np.asarray(logits) / np.asarray(temperature), head)
    return calibration_metrics(labels, probs)["nll"]


def _best_t(logits, labels, head) -> float:
    result = minimize_scalar(
        lambda log_t: nll(logits, labels, head, np.exp(log_t)),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, head: str) -> np.ndarray:
    """[1] temperature (single-label) or [num_labels] (multi-label) minimising the NLL.

    Args:
        logits: [n, L'] the model's logits (L' = 1 for a binary sigmoid head).
        labels: [n] class ids, or [n, L] 0/1 for `head="multilabel"`.
        head: `softmax`, `sigmoid` or `multilabel`.
    """
    shared = _best_t(logits, labels, head)
    if head != "multilabel":
        return np.array([shared], np.float32)
    temperature = np.full(np.shape(labels)[1], shared, np.float32)
    for j in np.flatnonzero(~thresholds_lib.too_few(labels)):
        temperature[j] = _best_t(logits[:, [j]], labels[:, [j]], head)
    return temperature


def held_out_nll(logits: np.ndarray, labels: np.ndarray, head: str, folds: int = 5):
    """(NLL at T = 1, NLL of temperatures fitted on the other folds), over `folds` folds.

    A temperature fitted on the whole validation split always lowers that split's NLL;
    this says whether it lowers it on texts it was not fitted on. With few validation
    mistakes (a BBC split with 4 of 356 wrong) the fit follows those few texts, and a
    sharpening T < 1 can raise the NLL of new texts several-fold.
    """
    from sklearn.model_selection import KFold

    logits, labels = np.asarray(logits), np.asarray(labels)
    split = KFold(n_splits=min(folds, len(labels)), shuffle=True, random_state=0)
    total_one = total_fitted = 0.0
    for fit, held in split.split(logits):
        t = _best_t(logits[fit], labels[fit], head)
        total_one += nll(logits[held], labels[held], head, 1.0) * len(held)
        total_fitted += nll(logits[held], labels[held], head, t) * len(held)
    return total_one / len(labels), total_fitted / len(labels)


# ------------------------------------------------------------------ OOD and abstaining


def fit_ood(vectors: np.ndarray, labels: np.ndarray, multilabel: bool):
    """(means [C, H], precision [H, H]): class means and the shared covariance's inverse.

    Multi-label texts have no single class: one mean for all (C = 1).
    """
    from sklearn.covariance import LedoitWolf

    x = np.asarray(vectors, np.float64)
    labels = np.zeros(len(x), int) if multilabel else np.asarray(labels)
    classes = np.unique(labels)
    means = np.stack([x[labels == c].mean(axis=0) for c in classes])  # [C, H]
    centred = x - means[np.searchsorted(classes, labels)]
    estimate = LedoitWolf(assume_centered=True).fit(centred)
    return means.astype(np.float32), estimate.precision_.astype(np.float32)


def abstain_threshold(confidence: np.ndarray, correct: np.ndarray, precision: float):
    """The lowest confidence t such that the texts with confidence >= t are right at least
    `precision` of the time: (t, their share, their precision). None for t when no t
    reaches it (then every prediction abstains)."""
    order = np.argsort(-np.asarray(confidence), kind="stable")
    conf, right = np.asarray(confidence)[order], np.asarray(correct, np.float64)[order]
    kept_precision = np.cumsum(right) / np.arange(1, len(right) + 1)
    # Only cut between different confidences: texts with equal confidence go together.
    last_of_value = np.append(conf[1:] != conf[:-1], True)
    ok = np.flatnonzero(last_of_value & (kept_precision >= precision - 1e-12))
    if not len(ok):
        return None, 0.0, None
    k = ok[-1]
    return float(conf[k]), (k + 1) / len(conf), float(kept_precision[k])


# ------------------------------------------------------------------ the step


def calibrate(run, splits, config: RunConfig) -> dict[str, Any]:
    """Fit the run's calibration on its kept weights; write calibration.json and ood.npz
    (and for a multi-label run thresholds.json, tuned again on the calibrated scores).

    Args:
        run: the run (`bertclf.prediction.trained_run.TrainedRun`) with its kept weights.
        splits: its data, as training read it.
        config: the resolved run config (`--calibrate`, `--abstain-precision`).

    Returns the report written to calibration.json.
    """
    head = run.model.head  # `multilabel` for a multi-label run
    val = splits.val
    val_logits, val_vectors = run.logits_and_vectors(val.texts)
    val_labels = np.asarray(val.labels)
    method, temperature, skipped = config.train.calibrate, np.ones(1, np.float32), None
    if method == "temperature" and len(val) < MIN_VALIDATION:
        skipped = (
            f"{len(val)} validation texts, fewer than the {MIN_VALIDATION} a temperature "
            "needs: scores are not calibrated (give more validation data, --val-split or --val)"
        )
        logger.warning("calibration skipped: %s", skipped)
        method = "none"
    elif method == "temperature":
        at_one, fitted_nll = held_out_nll(val_logits, val_labels, head)
        if fitted_nll < at_one:
            temperature = fit_temperature(val_logits, val_labels, head)
        else:
            skipped = (
                f"a temperature fitted on 4/5 of the validation split did not lower the "
                f"NLL of the other 1/5 (5 folds: {fitted_nll:.4f} against {at_one:.4f} "
                "at T = 1): scores kept as they are"
            )
            logger.info("calibration: %s", skipped)
            method = "none"
    if head == "multilabel" and method == "none":
        temperature = np.ones(val_labels.shape[1], np.float32)
    thresholds = _retune_thresholds(run, config, val_labels, val_logits / temperature, head)
    means, precision = _fit_ood(run, splits, config.seed)
    draft = Calibration(method, temperature, means, precision, 0.0, None, thresholds)
    val_out = draft.outputs_np(val_logits, val_vectors, head)
    ood_threshold = float(np.quantile(val_out["ood_score"], calibration_lib.OOD_QUANTILE))
    report: dict[str, Any] = {"method": method, "skipped": skipped}
    abstain = None
    if config.train.abstain_precision is not None:
        abstain = _abstain(config.train.abstain_precision, val_labels, val_out, thresholds)
        report["abstain"] = abstain
    fitted = Calibration(
        method,
        temperature,
        means,
        precision,
        ood_threshold,
        None if abstain is None else abstain["threshold"],
        thresholds,
    )
    parts = [("validation", val_labels, val_logits)]
    if splits.test is not None:
        test_logits, _ = run.logits_and_vectors(splits.test.texts)
        parts.append(("test", np.asarray(splits.test.labels), test_logits))
    for name, labels, logits in parts:
        report[name] = _measure(labels, logits, temperature, head)
    report["ood"] = {
        "score": "mahalanobis",
        "fitted_on": int(min(len(splits.train), OOD_TEXTS)),
        "threshold": ood_threshold,
        "quantile": calibration_lib.OOD_QUANTILE,
    }
    calibration_lib.write(run.path, fitted, report)
    _log(report, temperature)
    return report


def _measure(labels, logits, temperature, head) -> dict[str, Any]:
    before = probabilities_np(logits, head)
    after = probabilities_np(logits / temperature, head)
    m0, m1 = calibration_metrics(labels, before), calibration_metrics(labels, after)
    out: dict[str, Any] = {"examples": int(len(labels))}
    for key in ("ece", "nll", "brier"):
        out[f"{key}_before"], out[f"{key}_after"] = m0[key], m1[key]
    out["reliability_before"] = reliability(labels, before)
    out["reliability_after"] = reliability(labels, after)
    return out


def _retune_thresholds(run, config, labels, scaled_logits, head):
    """Multi-label: thresholds tuned on the calibrated validation scores, written to
    thresholds.json (same weights, same epoch); the labels that keep 0.5 are named."""
    if head != "multilabel":
        return None
    positives, negatives = thresholds_lib.support(labels)
    few = thresholds_lib.too_few(labels)
    if config.train.thresholds == "tune" and few.any():
        names = [
            f"{n} ({p} positives, {q} negatives)"
            for n, p, q, f in zip(run.label_names, positives, negatives, few, strict=True)
            if f
        ]
        logger.warning(
            "%d labels have fewer than %d validation positives or negatives: their thresholds "
            "stay at 0.5 instead of being tuned on a few texts (%s%s); more validation data "
            "lets them be tuned",
            len(names),
            MIN_SUPPORT,
            ", ".join(names[:5]),
            ", ..." if len(names) > 5 else "",
        )
    probs = probabilities_np(scaled_logits, head)
    cuts = thresholds_lib.decide(config.train.thresholds, labels, probs)
    stored = read_json(run.path / rundir.THRESHOLDS)
    write_json(
        run.path / rundir.THRESHOLDS,
        {
            **stored,
            "thresholds": [float(t) for t in cuts],
            "calibrated": config.train.calibrate == "temperature",
            "positives": positives.tolist(),
            "negatives": negatives.tolist(),
            "tuned": (~few).tolist() if config.train.thresholds == "tune" else None,
        },
    )
    return cuts


def _fit_ood(run, splits, seed: int):
    train = splits.train
    index = np.arange(len(train))
    if len(index) > OOD_TEXTS:  # a random share: the covariance needs no more
        index = np.sort(np.random.default_rng(seed).choice(index, OOD_TEXTS, replace=False))
    texts = [train.texts[i] for i in index]
    _, vectors = run.logits_and_vectors(texts)
    labels = np.asarray(train.labels)[index]
    return fit_ood(vectors, labels, run.multilabel)


def _abstain(precision: float, labels, outputs, thresholds) -> dict[str, Any]:
    scores = outputs["scores"]
    if thresholds is None:
        correct = scores.argmax(axis=1) == labels
    else:
        correct = np.all((scores >= thresholds[None, :]) == labels.astype(bool), axis=1)
    t, coverage, reached = abstain_threshold(confidence_np(scores, thresholds), correct, precision)
    if t is None:
        logger.warning(
            "--abstain-precision %s: no confidence reaches that precision on the validation "
            "split, so every prediction abstains; choose a lower precision",
            precision,
        )
        t = 1.01  # above any probability: abstain on everything
    return {
        "precision": precision,
        "threshold": t,
        "validation_coverage": coverage,
        "validation_precision": reached,
    }


def _log(report: dict[str, Any], temperature: np.ndarray) -> None:
    v = report["validation"]
    if report["method"] == "temperature":
        t = f"{temperature[0]:.3f}" if len(temperature) == 1 else f"{len(temperature)} labels"
        logger.info(
            "calibration: temperature %s; validation ECE %.4f -> %.4f, NLL %.4f -> %.4f",
            t,
            v["ece_before"],
            v["ece_after"],
            v["nll_before"],
            v["nll_after"],
        )
    if "abstain" in report:
        a = report["abstain"]
        logger.info(
            "abstain below confidence %.4f: validation precision %s on %.0f%% of the texts",
            a["threshold"],
            "-" if a["validation_precision"] is None else f"{a['validation_precision']:.4f}",
            100 * a["validation_coverage"],
        )

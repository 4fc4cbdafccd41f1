"""The linear baseline a fine-tuned model must beat: TF-IDF word 1-2 grams + a linear SVM.

It is what a practitioner fits first, in seconds, and on small sets it is often hard to
beat. `bertclf baseline DATA` fits it on exactly the split `bertclf train` uses (same
`--seed`, `--val-split`, `--split`), and every training run fits it too and reports it
beside the fine-tuned model. Settings: sublinear TF, word unigrams and bigrams,
`LinearSVC(class_weight="balanced", random_state=0)` (scikit-learn's defaults
otherwise). An SVM has no probabilities: the softmax of its margins stands in for them,
so its accuracy and F1 are the SVM's own, and its "loss" is only a rough figure.
Multi-label data: one such SVM per label (`OneVsRestClassifier`), the sigmoid of each
margin standing in for the label's probability, and per-label thresholds tuned on the
validation split exactly as the fine-tuned model's (`bertclf.evaluation.thresholds`), so the two
are compared under the same decision rule.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from bertclf.data.datasets import Examples, Splits
from bertclf.evaluation import thresholds as thresholds_lib
from bertclf.evaluation.metrics import compute_metrics

logger = logging.getLogger(__name__)

NAME = "TF-IDF (word 1-2 grams) + LinearSVC"


@dataclass
class BaselineResult:
    """The baseline's metrics on the validation split and (if any) the test set."""

    validation: dict[str, Any]
    test: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"model": NAME, "validation": self.validation, "test": self.test}


def make_baseline(multilabel: bool = False):
    """The scikit-learn pipeline (unfitted)."""
    svm = LinearSVC(class_weight="balanced", random_state=0)  # liblinear shuffles: seeded
    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        OneVsRestClassifier(svm) if multilabel else svm,
    )


def _scores(model, texts: list[str], num_labels: int) -> np.ndarray:
    """[n, num_labels] softmax of the SVM's margins (a binary SVM has one margin)."""
    margins = model.decision_function(texts)
    if margins.ndim == 1:  # binary: the margin of class 1
        margins = np.stack([-margins, margins], axis=1) / 2
    if margins.shape[1] != num_labels:  # a class absent from training: no margin of its own
        full = np.full((len(texts), num_labels), -1e9)
        full[:, model.classes_] = margins
        margins = full
    exp = np.exp(margins - margins.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _label_scores(model, texts: list[str], num_labels: int) -> np.ndarray:
    """Multi-label: [n, num_labels] sigmoid of each label's SVM margin."""
    margins = np.asarray(model.decision_function(texts)).reshape(len(texts), num_labels)
    return 1.0 / (1.0 + np.exp(-margins))


def score(model, examples: Examples, thresholds: np.ndarray | None = None) -> dict[str, Any]:
    num_labels = len(examples.label_names)
    if examples.multilabel:
        probs = _label_scores(model, examples.texts, num_labels)
    else:
        probs = _scores(model, examples.texts, num_labels)
    return compute_metrics(np.asarray(examples.labels), probs, examples.label_names, thresholds)


def fit_baseline(splits: Splits, threshold_rule: str = "tune") -> BaselineResult:
    """Fit on the training split; score validation (and test).

    Multi-label: thresholds decided on the validation split by `threshold_rule`
    (`--thresholds`), and used on the test set too.
    """
    multilabel = splits.train.multilabel
    with warnings.catch_warnings(record=True) as caught:
        # liblinear may stop at its iteration cap on large sets: the fit is still usable,
        # and a user should see one bertclf line about it, not scikit-learn's two.
        warnings.simplefilter("always", ConvergenceWarning)
        model = make_baseline(multilabel).fit(splits.train.texts, np.asarray(splits.train.labels))
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        logger.info("baseline: liblinear stopped at its iteration limit (the fit is used as is)")
    thresholds = None
    if multilabel:
        val_probs = _label_scores(model, splits.val.texts, len(splits.label_names))
        labels = np.asarray(splits.val.labels)
        thresholds = thresholds_lib.decide(threshold_rule, labels, val_probs)
    test = score(model, splits.test, thresholds) if splits.test is not None else None
    return BaselineResult(score(model, splits.val, thresholds), test)

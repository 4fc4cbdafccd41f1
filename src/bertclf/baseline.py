"""The linear baseline a fine-tuned model must beat: TF-IDF word 1-2 grams + a linear SVM.

It is what a practitioner fits first, in seconds, and on small sets it is often hard to
beat. `bertclf baseline DATA` fits it on exactly the split `bertclf train` uses (same
`--seed`, `--val-split`, `--split`), and every training run fits it too and reports it
beside the fine-tuned model. Settings: sublinear TF, word unigrams and bigrams,
`LinearSVC(class_weight="balanced", random_state=0)` (scikit-learn's defaults
otherwise). An SVM has no probabilities: the softmax of its margins stands in for them,
so its accuracy and F1 are the SVM's own, and its "loss" is only a rough figure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from bertclf.data import Examples, Splits
from bertclf.evaluation import compute_metrics

logger = logging.getLogger(__name__)

NAME = "TF-IDF (word 1-2 grams) + LinearSVC"


@dataclass
class BaselineResult:
    """The baseline's metrics on the validation split and (if any) the test set."""

    validation: dict[str, Any]
    test: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"model": NAME, "validation": self.validation, "test": self.test}


def make_baseline():
    """The scikit-learn pipeline (unfitted)."""
    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        LinearSVC(class_weight="balanced", random_state=0),  # liblinear shuffles: seeded
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


def score(model, examples: Examples) -> dict[str, Any]:
    probs = _scores(model, examples.texts, len(examples.label_names))
    return compute_metrics(np.asarray(examples.labels), probs, examples.label_names)


def fit_baseline(splits: Splits) -> BaselineResult:
    """Fit on the training split; score validation (and test)."""
    model = make_baseline().fit(splits.train.texts, splits.train.labels)
    test = score(model, splits.test) if splits.test is not None else None
    return BaselineResult(score(model, splits.val), test)
